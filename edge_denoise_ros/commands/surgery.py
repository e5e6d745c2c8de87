# Copyright 2026 The edge_denoise_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
``edge-denoise plan``, ``profile`` and ``bench planner``: where to cut the target model.

``profile`` measures a model on this machine (run it on the robot to get an
edge profile); ``plan`` costs every candidate (each cut x codec, host-only,
edge-only) over a declared link and prints the choice, within an accuracy
profile (``--bundle``; ``--max-accuracy-drop``) and a codec allow-list
(``--codecs``) as the edge node's ``cut: auto`` does; ``bench planner``
checks the planner's latency model (accuracy aside) against every candidate
run end to end.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
import functools
import json
from pathlib import Path

import cv2
import torch

from .common import (format_table, jpeg_quality, nonnegative_float, parse_list, positive_float,
                     positive_int, ProgressBar)
from ..core import (defenses, frames, mincut, models, pipeline, profiling, surgery, tails,
                    validation, wire)
from ..core.defenses import defense_names
from ..core.models import set_torch_threads
from ..core.planner import DEFAULT_MAX_ACCURACY_DROP, Link, make_planner, Stream

LINK = Link()   # the declared link's defaults

PLAN_COLUMNS = ('name', 'shape', 'quality', 'bytes', 'edge_ms', 'transfer_ms', 'host_ms',
                'total_ms', 'min_uplink_mbps', 'drop_pt', 'pick', 'excluded')
# The validation bar: the planner's choice within 5 % of the measured best.
TOLERANCE = 0.05


def parse_shape(text: str) -> tuple[int, ...]:
    """Argparse type: ``CxHxW`` (or ``HxW``) positive integers."""
    try:
        dims = tuple(int(t) for t in text.lower().split('x'))
    except ValueError:
        dims = ()
    if len(dims) not in (2, 3) or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f'expected CxHxW (e.g. 3x224x224), got {text!r}')
    return dims


def accuracy_drop(text: str) -> float:
    """Argparse type: percentage points >= 0."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f'expected percentage points >= 0, got {text}')
    return value


def codec_list(text: str) -> list[str]:
    """Argparse type: comma-separated codecs of ``core.wire.CODECS``."""
    codecs = parse_list(text)
    unknown = [c for c in codecs if c not in wire.CODECS]
    if unknown:
        raise argparse.ArgumentTypeError(f'unknown codec {unknown[0]!r}; expected some of '
                                         f'{", ".join(wire.CODECS)}')
    return codecs


def _model_args(p, frame_help: str,
                codecs_help: str = 'feature codecs to consider (default: all of '
                                   'core.codecs)') -> None:
    p.add_argument('--model', default=models.DEFAULT_MODEL,
                   help=f'{models.DEFAULT_MODEL}, a torchvision classifier (e.g. resnet50) or '
                        f'a .pt2 file')
    p.add_argument('--weights', default=None, help='local state-dict file for the model')
    p.add_argument('--input', type=parse_shape, default=None,
                   help='model input CxHxW (default: the model\'s natural size)')
    p.add_argument('--frame', default=None, help=frame_help)
    p.add_argument('--codecs', type=codec_list, default=None, help=codecs_help)
    p.add_argument('--quality', type=jpeg_quality, default=pipeline.DEFAULT_QUALITY,
                   help='JPEG quality of the jpeg feature codec, as the edge sends it (the '
                        'node parameter quality, and its default: %(default)s)')
    p.add_argument('--frame-quality', type=jpeg_quality, default=pipeline.DEFAULT_FRAME_QUALITY,
                   help='JPEG quality of host-only jpeg frames (the node parameter '
                        'frame_quality, and its default: %(default)s)')
    _timing_args(p, threads=None, clock='wall', stat='median')


def _timing_args(p, threads: int | None, clock: str, stat: str) -> None:
    """Add ``--frame-codecs`` and how stage times are taken: threads, clock and statistic."""
    p.add_argument('--frame-codecs', type=parse_list, default=None,
                   help='host-only frame codecs (default: raw and the image codecs that work)')
    p.add_argument('--threads', type=positive_int, default=threads,
                   help='torch (and OpenCV) intra-op threads; 1 makes CPU time a latency')
    p.add_argument('--clock', choices=('wall', 'cpu'), default=clock,
                   help='wall time, or this process\'s CPU time (with --threads 1: latency '
                        'without the other tenants of a shared machine)')
    p.add_argument('--stat', default=stat,
                   help='figure of repeated timings: median, or pNN (e.g. p20: the time when '
                        'undisturbed, steadier on a shared machine)')


FRAME_HELP = ('camera frame: an image file, or HxW for the built-in example frame '
              '(default: >= 224x224, gray Fashion-MNIST for 1-channel models)')


def register_plan(p) -> None:
    """Add ``plan``'s arguments."""
    _model_args(p, FRAME_HELP, codecs_help='the codecs the edge may send, features and frames '
                                           '(the node parameter codecs; default: all); only '
                                           'these feature codecs are profiled')
    p.add_argument('--bundle', default=None,
                   help='bundle folder: its target, input and preparation are planned, and '
                        'its accuracy profile bounds the choice (default: the default target\'s '
                        'shipped measurements; other models: none, so only lossless codecs or '
                        'edge-only)')
    p.add_argument('--defense', default='none', choices=defense_names(),
                   help='the input defense the edge node runs (its parameter defense): its '
                        'time counts on the edge for edge-only and split candidates, on the '
                        'host for host-only frames (default: none, the model alone)')
    p.add_argument('--max-accuracy-drop', type=accuracy_drop, default=DEFAULT_MAX_ACCURACY_DROP,
                   help='never pick a lossy cut/codec/quality losing more held-out accuracy '
                        '(percentage points), nor an unmeasured one (the node parameter '
                        'max_accuracy_drop)')
    p.add_argument('--uplink-mbps', type=positive_float, default=LINK.uplink_mbps,
                   help='edge to host')
    p.add_argument('--downlink-mbps', type=positive_float, default=LINK.downlink_mbps,
                   help='host to edge')
    p.add_argument('--rtt-ms', type=float, default=LINK.rtt_ms,
                   help='round-trip time added per frame')
    p.add_argument('--result-bytes', type=int, default=LINK.result_bytes,
                   help='size of the result sent back (the seed: 25 bytes for ResNet50)')
    p.add_argument('--camera-fps', type=nonnegative_float, default=0.0,
                   help='the camera\'s frames/s: pick what serves the most of them, then the '
                        'least latency (default 0: one frame\'s latency alone)')
    p.add_argument('--intake-ms', type=nonnegative_float, default=0.0,
                   help='edge time each camera frame costs to take in, served or not, in the '
                        'edge profile\'s units (the edge node measures it: ~/plan stream)')
    p.add_argument('--edge-slowdown', type=positive_float, default=1.0,
                   help='the edge is k times slower than the edge profile (or this machine)')
    p.add_argument('--host-slowdown', type=positive_float, default=1.0,
                   help='the host is k times slower than the host profile (< 1: faster)')
    p.add_argument('--edge-profile', default=None,
                   help='edge profile file (edge-denoise profile --out, run on the robot)')
    p.add_argument('--host-profile', default=None, help='host profile file')
    p.add_argument('--repeats', type=positive_int, default=5,
                   help='timed rounds when a side is profiled here')
    p.add_argument('--warmup', type=int, default=1, help='untimed rounds first')
    p.add_argument('--sort', action='store_true', help='order the table by total time')
    p.add_argument('--min-cut', action='store_true',
                   help='also solve the DADS min-cut over all partitions (raw float32 '
                        'tensors, per-node times), which may cut across branches')
    p.set_defaults(func=plan_command)


def register_profile(p) -> None:
    """Add ``profile``'s arguments."""
    _model_args(p, FRAME_HELP)
    p.add_argument('--bundle', default=None,
                   help='bundle folder: profile its target, and time its denoisers')
    p.add_argument('--repeats', type=positive_int, default=10, help='timed rounds')
    p.add_argument('--warmup', type=int, default=2, help='untimed rounds first')
    p.add_argument('--out', default=None, help='write the profile here (JSON)')
    p.set_defaults(func=profile_command)


def register_bench_planner(p) -> None:
    """Add ``bench planner``'s arguments."""
    p.add_argument('--models', type=parse_list, default=[models.DEFAULT_MODEL, 'resnet50'],
                   help='comma-separated models')
    p.add_argument('--uplinks', type=lambda t: parse_list(t, float), default=[1.0, 10.0, 100.0],
                   help='uplink speeds in Mbit/s')
    p.add_argument('--downlink-mbps', type=positive_float, default=LINK.downlink_mbps,
                   help='host to edge')
    p.add_argument('--edge-slowdown', type=positive_float, default=10.0,
                   help='the emulated edge is k times slower than this machine')
    p.add_argument('--codecs', type=parse_list, default=None, help='feature codecs')
    p.add_argument('--repeats', type=positive_int, default=None,
                   help='timed rounds (default: 16 for models under 5 ms, else 5)')
    p.add_argument('--pairs', type=positive_int, default=None,
                   help='rounds of the head-to-head runs of the choice and the finalists '
                        '(default: 3 x repeats)')
    _timing_args(p, threads=1, clock='cpu', stat='p20')
    p.add_argument('--out', default=None, help='also write the result here (JSON)')
    p.set_defaults(func=bench_planner)


def _load(args):
    """
    Return ``(target, model, input_shape, frame)`` from the common arguments.

    ``target``: the bundle's (its model, input and preparation), None without ``--bundle``.
    """
    torch.manual_seed(0)  # models without weights files: the same features, run to run
    if getattr(args, 'bundle', None):
        target = pipeline.Target(bundle=args.bundle)
        args.model = target.name
        return (target, target.model, target.input_shape,
                _frame(args.frame, target.input_shape))
    model = models.build_target(args.model, weights=args.weights)
    shape = args.input or models.input_shape(args.model)   # a .pt2: the shape it was exported
    if len(shape) == 2:
        shape = (models.input_shape(args.model)[0],) + tuple(shape)
    return None, model, tuple(shape), _frame(args.frame, shape)


def _defenses(target, shape) -> dict:
    """Return the defenses a profile times: the bundle target's, else those the input fits."""
    if target is not None:
        return pipeline.defense_modules(target)
    return {name: defenses.build_defense(name) for name in pipeline.usable_defenses(shape)
            if name != 'none'}


def _frame(text, shape):
    if text is None:
        return frames.frame_for(shape)
    path = Path(text)
    if path.is_file():
        return frames.read_image(path)
    try:
        size = parse_shape(text)
    except argparse.ArgumentTypeError:
        raise FileNotFoundError(f'--frame: no such image file, and not HxW: {text}') from None
    return frames.example_frame(size[-2:], gray=shape[0] == 1)


def _fmt_rows(rows: list[dict], choice: str) -> list[dict]:
    out = []
    for r in rows:
        r = dict(r)
        if r['kind'] == 'edge_only':
            r['min_uplink_mbps'] = '-'
        elif r['min_uplink_mbps'] is None:
            r['min_uplink_mbps'] = 'never'
        for k in ('quality', 'drop_pt'):
            r[k] = '-' if r[k] is None else r[k]
        r['pick'] = '<==' if r['name'] == choice else ''
        for k, v in r.items():  # no 1.285e+04 in the table
            if isinstance(v, float) and abs(v) >= 1000:
                r[k] = int(round(v))
        out.append(r)
    return out


def _round(rows: list[dict]) -> list[dict]:
    return [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
            for r in rows]


def _accuracy_profile(args, target) -> tuple[dict, str]:
    """Return the accuracy profile ``plan`` weighs and where it came from."""
    if target is not None:
        return target.bundle.accuracy_profile(target.hash), f'bundle {args.bundle}'
    if args.model == models.DEFAULT_MODEL and args.input is None:
        target = pipeline.Target(args.model, args.weights)
        return tails.shipped_accuracy_profile(target), 'the shipped tails\' measurements'
    return {}, 'none (only lossless codecs or edge-only)'


def plan_command(args) -> dict:
    """Profile (or load profiles), cost every candidate, print the table and the choice."""
    set_torch_threads(args.threads)
    target, model, shape, frame = _load(args)
    accuracy, source = _accuracy_profile(args, target)
    link = Link(args.uplink_mbps, args.downlink_mbps, args.rtt_ms, args.result_bytes)
    features = None if args.codecs is None else \
        [c for c in args.codecs if c in wire.FEATURE_CODECS]
    planner = make_planner(
        model, shape, link, args.edge_profile, args.host_profile, args.edge_slowdown,
        args.host_slowdown, frame, features, args.frame_codecs, args.repeats, args.warmup,
        clock=args.clock, stat=args.stat, model_name=args.model,
        progress=ProgressBar('profile'), quality=args.quality, frame_quality=args.frame_quality,
        accuracy_profile=accuracy, max_accuracy_drop=args.max_accuracy_drop,
        allowed=args.codecs, defenses=functools.partial(_defenses, target, shape),
        defense=args.defense, stream=Stream(args.camera_fps, args.intake_ms))
    result = planner.plan()
    rows = _round(result.rows)
    shown = sorted(rows, key=lambda r: r['total_ms']) if args.sort else rows
    columns = PLAN_COLUMNS if not args.camera_fps else \
        PLAN_COLUMNS[:-2] + ('served_fps', 'limited_by') + PLAN_COLUMNS[-2:]
    print(format_table(_fmt_rows(shown, result.choice.name), columns))
    best = result.row(result.choice.name)
    edge_only = result.row(surgery.EDGE_ONLY)
    print(f'model {args.model} input {"x".join(map(str, shape))}, frame '
          f'{"x".join(map(str, frame.shape))}; uplink {link.uplink_mbps:g} Mbit/s, downlink '
          f'{link.downlink_mbps:g} Mbit/s, rtt {link.rtt_ms:g} ms; edge '
          f'{_side(planner.edge_profile, args.edge_slowdown)}, host '
          f'{_side(planner.host_profile, args.host_slowdown)}')
    print(f'accuracy profile: {source}, {len(accuracy)} entries; max drop '
          f'{args.max_accuracy_drop:g} pt; {result.excluded} of {len(rows)} candidates excluded')
    served = '' if not args.camera_fps else (
        f'; serves {best["served_fps"]:.2f} of {args.camera_fps:g} camera frames/s (limited by '
        f'the {best["limited_by"]}; edge-only {edge_only["served_fps"]:.2f}), intake '
        f'{args.intake_ms:g} ms a frame')
    print(f'choice: {result.choice.name}  {best["total_ms"]:.2f} ms '
          f'(edge-only {edge_only["total_ms"]:.2f} ms, '
          f'{edge_only["total_ms"] / best["total_ms"]:.2f}x){served}')
    out = {'candidates': rows, 'choice': result.choice.name, 'model': args.model,
           'input': list(shape), 'link': result.as_dict()['link'],
           'stream': result.as_dict()['stream'],
           'edge_slowdown': args.edge_slowdown, 'host_slowdown': args.host_slowdown,
           'max_accuracy_drop': args.max_accuracy_drop, 'accuracy_profile': source,
           'considered': len(rows), 'excluded': result.excluded}
    if args.min_cut:
        out['min_cut'] = _min_cut(model, frame, shape, planner, args, link)
    return out


def _min_cut(model, frame, shape, planner, args, link) -> dict:
    traced = surgery.trace(model, frames.preprocess(frame, shape))
    mc = mincut.profile_min_cut(traced, planner.edge_profile, planner.host_profile,
                                args.edge_slowdown, args.host_slowdown, link)
    kind = (f'the single cut {mc.single_cut}' if mc.single_cut
            else f'{len(mc.sent)} tensors across branches')
    print(f'DADS min-cut (raw float32, per-node times): {mc.total_ms:.2f} ms, sends {kind} '
          f'({mc.bytes:,} B: {", ".join(mc.sent)}); best single-tensor cut by the same '
          f'per-node times: {mc.best_single} {mc.best_single_ms:.2f} ms; edge-only '
          f'{mc.edge_only_ms:.2f} ms')
    d = asdict(mc)
    d['edge_nodes'] = len(mc.edge_nodes)
    d['shapes'] = [list(t) for t in mc.shapes]
    return d


def _side(profile, slowdown: float) -> str:
    node = profile.machine.get('node', '?')
    return f'{profile.model}@{node} x{slowdown:g}'


def profile_command(args) -> dict:
    """Measure a profile here; print per-cut times and codec sizes; save it with --out."""
    set_torch_threads(args.threads)
    target, model, shape, frame = _load(args)
    prof = profiling.measure_profile(model, frame, shape, args.model, args.codecs,
                                     args.frame_codecs, args.repeats, args.warmup,
                                     clock=args.clock, stat=args.stat,
                                     progress=ProgressBar('profile'), quality=args.quality,
                                     frame_quality=args.frame_quality,
                                     defenses=_defenses(target, shape))
    sizes = {}
    for f in prof.features:
        sizes.setdefault(f['cut'], {})[f['codec']] = f['bytes']
    rows = [{'cut': c['label'] or c['name'], 'index': c['index'], 'shape': c['shape'],
             'bytes': c['bytes'], 'mac_share': round(c['edge_mac_share'], 4),
             'head_ms': round(c['head_ms'], 4), 'tail_ms': round(c['tail_ms'], 4),
             **{f'{k}_bytes': v for k, v in sizes.get(c['name'], {}).items()}}
            for c in prof.cuts]
    print(format_table(rows))
    print(f'whole model {prof.full_ms:.3f} ms, preprocess {prof.preprocess_ms:.3f} ms; '
          f'frame {"x".join(map(str, prof.frame_shape))}: '
          + ', '.join(f"{i['codec']} {i['bytes']} B" for i in prof.images))
    if args.out:
        path = prof.save(args.out)
        print(f'saved {path}')
    return prof.as_dict()


def bench_planner(args) -> tuple[dict, int]:
    """Validate the planner against end-to-end runs; exit 1 if a choice misses the bar."""
    set_torch_threads(args.threads)
    cv2.setNumThreads(args.threads)
    reports, ok = [], True
    for name in args.models:
        model = models.build_target(name)
        shape = models.input_shape(name)
        repeats = args.repeats or (16 if profiling.is_fast(model, torch.rand(1, *shape)) else 5)
        res = validation.validate(model, shape, args.uplinks, edge_slowdown=args.edge_slowdown,
                                  link=Link(downlink_mbps=args.downlink_mbps),
                                  codecs=args.codecs, frame_codecs=args.frame_codecs,
                                  repeats=repeats, warmup=1,
                                  pairs=args.pairs, clock=args.clock, stat=args.stat,
                                  model_name=name, progress=ProgressBar(f'bench {name}'))
        rows = [{'model': name, 'uplink_mbps': s['uplink_mbps'], 'choice': s['choice'],
                 'predicted_ms': round(s['predicted_ms'], 3),
                 'choice_measured_ms': round(s['choice_measured_ms'], 3),
                 'measured_best': s['best'], 'best_measured_ms': round(s['best_measured_ms'], 3),
                 'ratio': round(s['ratio'], 4),
                 'edge_only_ms': round(s['edge_only_measured_ms'], 3),
                 'ok': s['ratio'] <= 1 + TOLERANCE} for s in res['speeds']]
        ok = ok and all(r['ok'] for r in rows)
        print(format_table(rows))
        print(f'{name}: {res["candidates"]} candidates, {repeats} rounds + {res["pairs"]} '
              f'paired rounds, burst {res["burst"]}, edge x{args.edge_slowdown:g}, '
              f'{args.clock} clock, {args.stat}, {args.threads} thread(s)')
        reports.append({'model': name, 'input': list(shape), 'rows': rows,
                        'candidates': res['candidates'], 'repeats': repeats,
                        'pairs': res['pairs'], 'paired_ratios': [s['paired_ratios']
                                                                 for s in res['speeds']],
                        'measured': res['measured']})
    result = {'tolerance': TOLERANCE, 'edge_slowdown': args.edge_slowdown,
              'clock': args.clock, 'stat': args.stat, 'threads': args.threads,
              'uplinks': args.uplinks, 'passed': ok, 'models': reports}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + '\n')
    print('planner within 5 % of the measured best everywhere' if ok else
          'planner MISSED the 5 % bar somewhere (see ok=False)')
    return result, 0 if ok else 1
