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
``edge-denoise demo`` and ``bag make-demo``: the demo bag, replayed through real processes.

``demo`` is the main job: edge and host as real processes on real DDS, every
frame accounted for; with ``--bundle`` the bundle's target, on its own test
frames or ``--data``. ``bag make-demo`` writes the default target's demo bag.
"""

from __future__ import annotations

import time

from .heldout import DEFAULT_EPS as BUNDLE_EPS
from .common import CliError, format_table, jpeg_quality, pixel_budget, positive_float
from .common import positive_int, ProgressBar
from ..core import data, defenses, pipeline
from ..core.models import set_torch_threads
from ..harness.bundle_bag import DEMO_BAGS
from ..harness.demo import bundle_defaults, DemoConfig, run_demo
from ..harness.demo_bag import DEFAULT_DEMO_BAG, DemoBagConfig, make_demo_bag
from ..ros.bag import STORAGES


def register(p) -> None:
    """Add ``demo``'s arguments."""
    p.add_argument('--bundle', default=None,
                   help='a bundle folder (edge-denoise train ... --out B): both nodes serve its '
                        'target; unset: the shipped 1x28x28 target')
    p.add_argument('--data', default=None,
                   help='frames with ground truth: an ImageFolder (ROOT/<class>/<image>) or a '
                        "bag in the demo bag's layout; unset: the bundle's own test data")
    p.add_argument('--bag', default=None,
                   help=f'demo bag directory, made if missing or stale; unset: '
                        f'{DEFAULT_DEMO_BAG}, with --bundle or --data '
                        f'{DEMO_BAGS}/<target hash>-<key>')
    p.add_argument('--frames', type=positive_int, default=DemoBagConfig.frames,
                   help='frames in a newly made demo bag (at most as many as --data has)')
    p.add_argument('--eps', type=pixel_budget, default=None,
                   help=f'PGD L-inf budget on the attacked half; unset: {BUNDLE_EPS:.4f} '
                        f'(8/255) with --bundle, else {DemoBagConfig.eps}')
    p.add_argument('--defense', default=None, choices=defenses.defense_names(),
                   help=f'edge defense; unset: {pipeline.DEFAULT_DEFENSE}, with --bundle its '
                        f'{pipeline.DEFAULT_DEFENSE}, else its dunet, else none')
    p.add_argument('--cut', default=None,
                   help=f'cut name, frame (host-only), output (edge-only) or auto; unset: '
                        f'{pipeline.DEFAULT_CUT}, with --bundle auto')
    p.add_argument('--codec', default=None,
                   help=f'feature (or frame) codec, or auto; unset: {pipeline.DEFAULT_CODEC}, '
                        f'with --bundle auto')
    p.add_argument('--quality', type=jpeg_quality, default=pipeline.DEFAULT_QUALITY,
                   help='JPEG quality')
    p.add_argument('--single-node', action='store_true',
                   help='run edge_node instead of edge_process (denoiser + target composed)')
    p.add_argument('--rate', type=positive_float, default=1.0, help='replay speed factor')
    p.add_argument('--edge-cpus', type=positive_float, default=None,
                   help='hold the edge process to this many cores with a cgroup CPU quota '
                        '(0.25: a quarter core; needs root)')
    p.add_argument('--log-dir', default=None, help='node logs (default: a temporary folder)')
    p.set_defaults(func=run)


def register_make_demo(p) -> None:
    """Add ``bag make-demo``'s arguments."""
    d = DemoBagConfig()
    p.add_argument('-o', '--output', default=DEFAULT_DEMO_BAG, help='new bag directory')
    p.add_argument('--frames', type=positive_int, default=d.frames, help='camera frames')
    p.add_argument('--size', type=positive_int, default=d.size,
                   help='frame side in pixels (a multiple of 28); with --width the height')
    p.add_argument('--width', type=int, default=d.width,
                   help='frame width (even): frames of WIDTH x SIZE, the sample stretched; '
                        '0 = square')
    p.add_argument('--encoding', choices=data.ENCODINGS, default=d.encoding,
                   help='image encoding')
    p.add_argument('--rate', type=positive_float, default=d.rate_hz, help='camera rate in Hz')
    p.add_argument('--adversarial-fraction', type=float, default=d.adversarial_fraction,
                   help='share of frames attacked with PGD')
    p.add_argument('--eps', type=pixel_budget, default=d.eps,
                   help='PGD L-inf budget (0.0314 or 8/255)')
    p.add_argument('--steps', type=positive_int, default=d.steps, help='PGD steps')
    p.add_argument('--step-size', type=pixel_budget, default=d.step_size,
                   help='PGD step (0.0078 or 2/255)')
    p.add_argument('--seed', type=int, default=d.seed, help='seed of every random choice')
    p.add_argument('-s', '--storage', choices=STORAGES, default=d.storage, help='storage')
    p.add_argument('--compressed', choices=('png', 'jpeg'), default=None,
                   help='write sensor_msgs/CompressedImage on <camera-topic>/compressed '
                        '(png is lossless; jpeg alters the adversarial noise)')
    p.add_argument('--jpeg-quality', type=jpeg_quality, default=d.jpeg_quality,
                   help='JPEG quality with --compressed jpeg')
    p.add_argument('--camera-topic', default=d.camera_topic, help='camera topic')
    p.add_argument('--truth-topic', default=d.truth_topic, help='ground-truth topic')
    p.add_argument('--model', default=d.model, help='target model attacked')
    p.add_argument('--force', action='store_true', help='replace an existing bag')
    p.add_argument('--threads', type=positive_int, default=None, help='torch intra-op threads')
    p.set_defaults(func=run_make_demo)


def run(args):
    """Run the demo and print its summary."""
    if args.bundle:
        chosen = bundle_defaults(args.bundle)
    else:
        chosen = {'defense': pipeline.DEFAULT_DEFENSE, 'cut': pipeline.DEFAULT_CUT,
                  'codec': pipeline.DEFAULT_CODEC}
    chosen.update({k: getattr(args, k) for k in chosen if getattr(args, k) is not None})
    eps = args.eps or (BUNDLE_EPS if args.bundle else DemoBagConfig.eps)
    cfg = DemoConfig(bag=args.bag, bundle=args.bundle, data=args.data, eps=eps,
                     quality=args.quality, composed=not args.single_node, rate=args.rate,
                     frames=args.frames, log_dir=args.log_dir, edge_cpus=args.edge_cpus,
                     **chosen)
    try:
        s = run_demo(cfg, progress=ProgressBar('replay'))
    except RuntimeError as exc:
        raise CliError(str(exc), code=1) from None
    acc, ref = s['accuracy'], s.get('reference', {})
    pct = (lambda v: '-' if v is None else f'{100 * v:.1f} %')
    print(f"\nframes: played {s['played']}, classified {s['classified']}, "
          f"dropped {s['dropped']}" + (f" {s['drop_reasons']}" if s['drop_reasons'] else ''))
    rows = [{'': f"pipeline ({s['defense']})", 'clean': pct(acc['clean']),
             'adversarial': pct(acc['adversarial'])}]
    if ref:
        rows.append({'': f"in-process, same frames ({s['defense']})",
                     'clean': pct(ref['defended']['clean']),
                     'adversarial': pct(ref['defended']['adversarial'])})
        rows.append({'': 'in-process, undefended', 'clean': pct(ref['undefended']['clean']),
                     'adversarial': pct(ref['undefended']['adversarial'])})
    print(format_table(rows))
    if s['agreement'] is not None:
        print(f"agreement with the unsplit model in-process (same defense, same frames): "
              f"{pct(s['agreement'])} of classified frames")
    if s['bundle']:
        print(f"target: bundle {s['bundle']}")
    lat = s['latency_ms']
    print(f"latency (edge receipt -> host result): p50 {lat['p50']} ms, p99 {lat['p99']} ms")
    if s['bytes_per_frame']:
        print(f"bytes per frame: {s['bytes_per_frame']:.0f} sent vs {s['raw_bytes_per_frame']} "
              f"raw ({s['raw_bytes_per_frame'] / s['bytes_per_frame']:.0f}x smaller); cut "
              f"{s['cut']}, codec {s['codec']}"
              f"{' q' + str(s['quality']) if s['codec'] == 'jpeg' else ''}, {s['edge']}")
    if s['edge_quota']:
        print(f"edge held to {s['edge_quota']['cpus']:g} cores (cgroup "
              f"{s['edge_quota']['cgroup']}); it used {s['edge_cpu']} cores")
    print(f"took {s['seconds']} s; node logs in {s['logs']}")
    failed = bool(s['crashed']) or any(c not in (0, None) for c in s['exit_codes'].values())
    if failed:
        print(f"a node crashed: {s['crashed'] or s['exit_codes']}")
    return s, (1 if failed else 0)


def run_make_demo(args) -> dict:
    """Write the demo bag; print its size and the undefended target's accuracy on it."""
    set_torch_threads(args.threads)
    cfg = DemoBagConfig(
        frames=args.frames, size=args.size, width=args.width, encoding=args.encoding,
        rate_hz=args.rate,
        adversarial_fraction=args.adversarial_fraction, eps=args.eps, steps=args.steps,
        step_size=args.step_size, seed=args.seed, storage=args.storage,
        compressed=args.compressed, jpeg_quality=args.jpeg_quality,
        camera_topic=args.camera_topic, truth_topic=args.truth_topic, model=args.model)
    if not 0 <= cfg.adversarial_fraction <= 1:
        raise CliError(f'--adversarial-fraction must be in [0, 1], got {cfg.adversarial_fraction}')
    start = time.monotonic()
    result = make_demo_bag(args.output, cfg, overwrite=args.force,
                           progress=ProgressBar('make-demo'))
    result['seconds'] = round(time.monotonic() - start, 2)
    acc = result['target_accuracy']
    print(format_table([
        {'frames': 'clean', 'n': result['clean'], 'target accuracy': acc['clean']},
        {'frames': 'adversarial', 'n': result['adversarial'],
         'target accuracy': acc['adversarial']}]))
    print(f'wrote {result["bag"]} ({result["storage"]}, {result["bytes"] / 1e6:.1f} MB): '
          f'{result["frames"]} {result["width"] or result["size"]}x{result["size"]} '
          f'{result["encoding"]} frames '
          f'on {result["camera_topic"]} at {result["rate_hz"]:g} Hz, ground truth on '
          f'{result["truth_topic"]}, in {result["seconds"]:.1f} s')
    return result
