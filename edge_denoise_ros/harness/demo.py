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
The main job: replay the demo bag through real edge and host processes.

:func:`run_demo` makes the demo bag if missing (the Fashion-MNIST one of the
default target; with a ``bundle`` or ``data``, the target's own, from
:mod:`.bundle_bag`), starts ``host_node`` and ``edge_process`` (given the
``bundle`` parameter) on a private localhost-only DDS domain (with the shipped
Fast DDS large-data profile; the edge optionally held to a CPU quota,
``edge_cpus``), replays the bag,
and accounts for every frame: played = classified + dropped (with reasons).
Accuracy is split into clean and adversarial frames and compared with the
same frames evaluated in this process (:func:`reference`), with the defense
and without it; ``agreement`` is the share of classified frames whose class
is the unsplit model's on the defended input (:func:`model_reference`).
"""

from __future__ import annotations

import collections
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .bundle_bag import BundleBagConfig, ensure_bundle_bag
from .cpuquota import CpuQuota
from .demo_bag import (DEFAULT_DEMO_BAG, demo_metadata, DemoBagConfig, ensure_bag,
                       read_ground_truth, stamp_ns)
from .isolation import lease_domain
from .labelled_frames import source_of
from .launcher import run_edge_host, RunResult
from ..core import pipeline, tails
from ..core.bundle import Bundle
from ..core.models import compute_threads
from ..ros import conversions, dds
from ..ros.bag import read_messages
from ..ros.edge_common import AUTO


@dataclass
class DemoConfig:
    """
    What the demo runs: the target and its frames, the edge's settings, the replay.

    ``bag`` None: ``out/demo_bag`` for the default target, else the target's
    cached demo bag. ``bundle``: the nodes' and the reference's target;
    ``data``: the frames (an ImageFolder or a bag with ground truth; default:
    the bundle's test data). ``eps``: PGD's budget in a bag made from them.
    """

    bag: str | None = None
    bundle: str | None = None
    data: str | None = None
    eps: float = DemoBagConfig.eps
    defense: str = pipeline.DEFAULT_DEFENSE
    cut: str = pipeline.DEFAULT_CUT
    codec: str = pipeline.DEFAULT_CODEC
    quality: int = pipeline.DEFAULT_QUALITY
    composed: bool = True
    rate: float = 1.0
    frames: int = DemoBagConfig.frames
    edge_params: dict = field(default_factory=dict)
    host_params: dict = field(default_factory=dict)
    log_dir: str | None = None
    edge_cpus: float | None = None     # hold the edge process to this many cores (cgroup)

    def edge(self) -> dict:
        """Return the edge node parameters."""
        return {'defense': self.defense, 'cut': self.cut, 'codec': self.codec,
                'quality': self.quality, **self.target_params(), **self.edge_params}

    def host(self) -> dict:
        """Return the host node parameters."""
        return {**self.target_params(), **self.host_params}

    def target_params(self) -> dict:
        """Return the parameters that name the target (both nodes take them)."""
        return {'bundle': self.bundle} if self.bundle else {}


def bundle_defaults(bundle: str) -> dict:
    """
    Return the demo's defense, cut and codec for a bundle's target.

    Its DUNET_D, else its DUNET, else none; cut and codec planned by the edge (auto).
    """
    have = Bundle.load(bundle).card.get('denoisers', {})
    defense = next((d for d in (pipeline.DEFAULT_DEFENSE, 'dunet') if d in have), 'none')
    return {'defense': defense, 'cut': AUTO, 'codec': AUTO}


def camera_frames(path: str, topic: str = '/image_raw'):
    """Yield ``(stamp_ns, frame, encoding)`` of a bag's camera messages."""
    for _, _, _, msg in read_messages(path, [topic]):
        frame, encoding = conversions.camera_msg_to_image(msg)
        yield stamp_ns(msg.header), frame, encoding


def reference(path: str, settings: pipeline.EdgeSettings, target: pipeline.Target | None = None,
              topic: str = '/image_raw') -> dict[int, int]:
    """Classify a bag's frames in this process, edge and host stages back to back."""
    target = target or pipeline.Target()
    edge = pipeline.EdgeStage(target, settings)
    host = pipeline.HostStage(target, tails=tails.finetuned_tails(target))
    preds = {}
    with compute_threads(1):  # batch-1 inference, as in the nodes
        for stamp, frame, encoding in camera_frames(path, topic):
            out = edge.process(frame, encoding)
            logits, _ = host.process(out.payload, out.meta)
            preds[stamp] = int(logits.argmax())
    return preds


@torch.no_grad()
def model_reference(path: str, defense: str, target: pipeline.Target,
                    topic: str = '/image_raw') -> dict[int, int]:
    """Classify a bag's frames with the unsplit model on the defended input, in this process."""
    module = pipeline.build_defense(defense, target)
    preds = {}
    with compute_threads(1):
        for stamp, frame, encoding in camera_frames(path, topic):
            x = target.preprocess(frame, encoding)
            preds[stamp] = int(target.model(module(x)).argmax())
    return preds


def settings_in_use(cfg: DemoConfig, result: RunResult) -> pipeline.EdgeSettings:
    """
    Return the edge's settings: as set, or where cut or codec is auto, as its diagnostics say.

    Without those diagnostics: the cut and codec most classifications name.
    """
    if AUTO not in (cfg.cut, cfg.codec):
        return pipeline.EdgeSettings(cfg.defense, cfg.cut, cfg.codec, cfg.quality)
    name = 'edge_denoise_ros: ' + ('target' if cfg.composed else 'edge_node')
    noted = result.statuses.get(name, {})
    quality = None
    if noted.get('cut') and noted.get('codec'):
        cut, codec = noted['cut'], noted['codec']
        quality = int(noted['quality']) if noted.get('quality', '-').isdigit() else None
    else:
        seen = collections.Counter((r.get('cut'), r.get('codec'))
                                   for r in result.records.values())
        if not seen:
            raise RuntimeError('nothing was classified, and with cut or codec auto the '
                               "edge's diagnostics did not say which it used")
        (cut, codec), _ = seen.most_common(1)[0]
    if cut == pipeline.FRAME_CUT:       # the quality noted is the camera frame's
        return pipeline.EdgeSettings(cfg.defense, cut, codec, cfg.quality,
                                     quality or pipeline.DEFAULT_FRAME_QUALITY)
    return pipeline.EdgeSettings(cfg.defense, cut, codec, quality or cfg.quality)


def agreement(preds: dict[int, int], other: dict[int, int]) -> float | None:
    """Return the share of ``preds`` whose class ``other`` has for the same frame."""
    same = [s for s in preds if s in other]
    return sum(preds[s] == other[s] for s in same) / len(same) if same else None


def accuracy_by_kind(preds: dict[int, int], truths: dict[int, dict]) -> dict:
    """Return accuracy on clean and on adversarial frames (None where no frame)."""
    out = {}
    for kind, adv in (('clean', False), ('adversarial', True)):
        keys = [s for s in preds if s in truths and bool(truths[s]['adversarial']) == adv]
        ok = sum(preds[s] == truths[s]['label'] for s in keys)
        out[kind] = ok / len(keys) if keys else None
    return out


def _num(values: dict, key: str) -> int:
    try:
        return int(float(values.get(key, 0)))
    except ValueError:
        return 0


def drop_reasons(result: RunResult, composed: bool) -> dict:
    """Explain ``played - classified`` from the nodes' diagnostics."""
    reasons: dict[str, int] = {}
    st = result.statuses
    edge_names = ('edge_denoise_ros: denoiser', 'edge_denoise_ros: target') if composed \
        else ('edge_denoise_ros: edge_node',)
    received = 0
    for name in (*edge_names, 'edge_denoise_ros: host_node'):
        values = st.get(name, {})
        for key, value in values.items():
            if key.startswith(('dropped.', 'errors.')):
                side = 'host' if name.endswith('host_node') else 'edge'
                reasons[f'{side}.{key}'] = reasons.get(f'{side}.{key}', 0) + _num(values, key)
    first = st.get(edge_names[0], {})
    received = _num(first, 'frames') + _num(first, 'dropped.skipped') + _num(first, 'errors')
    classified = len(result.records)
    explained = sum(reasons.values())
    rest = result.played - classified - explained
    if rest > 0:
        not_received = max(0, result.played - received)
        if not_received:
            reasons['edge.not_received'] = min(rest, not_received)
            rest -= reasons['edge.not_received']
        if rest > 0:
            reasons['unaccounted'] = rest
    return {k: v for k, v in reasons.items() if v}


def summarize_demo(cfg: DemoConfig, result: RunResult, truths: dict, ref: dict | None = None,
                   undefended: dict | None = None, unsplit: dict | None = None) -> dict:
    """Return the demo's JSON summary (``unsplit``: :func:`model_reference`'s classes)."""
    preds = {s: r['class_id'] for s, r in result.records.items() if s in truths}
    latencies = sorted(r['latency_ms'] for r in result.records.values()
                       if r.get('latency_ms') is not None)
    sizes = [r['bytes'] for r in result.records.values()]
    frame_bytes = 224 * 224 * 3
    meta = demo_metadata(cfg.bag)
    if meta.get('frame_bytes'):
        frame_bytes = meta['frame_bytes']
    elif meta:
        frame_bytes = (meta['size'] * (meta.get('width') or meta['size'])
                       * (1 if meta['encoding'] == 'mono8' else 3))
    classified = len(preds)
    summary = {
        'played': result.played, 'classified': classified,
        'dropped': result.played - classified,
        'drop_reasons': drop_reasons(result, cfg.composed),
        'accuracy': accuracy_by_kind(preds, truths),
        'latency_ms': {'p50': _q(latencies, 0.5), 'p99': _q(latencies, 0.99)},
        'bytes_per_frame': sum(sizes) / len(sizes) if sizes else None,
        'raw_bytes_per_frame': frame_bytes,
        'cut': cfg.cut, 'codec': cfg.codec, 'quality': cfg.quality, 'defense': cfg.defense,
        'edge': 'edge_process' if cfg.composed else 'edge_node',
        'bundle': cfg.bundle,
        'agreement': None if unsplit is None else agreement(preds, unsplit),
        'crashed': result.crashed, 'exit_codes': result.exit_codes,
        'timing': result.report.get('timing', {}),
    }
    if ref is not None:
        same = {s: ref[s] for s in preds if s in ref}
        summary['reference'] = {'defended': accuracy_by_kind(same, truths),
                                'agreement': agreement(preds, same)}
    if undefended is not None:
        summary['reference']['undefended'] = accuracy_by_kind(undefended, truths)
    return summary


def _q(values: list, q: float):
    if not values:
        return None
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 3)


def prepare_bag(cfg: DemoConfig, target: pipeline.Target | None, progress=None) -> str:
    """Make the demo's bag if missing or stale; return its path."""
    if target is None:
        bag = cfg.bag or DEFAULT_DEMO_BAG
        ensure_bag(bag, cfg.frames, progress)
        return bag
    bag_cfg = BundleBagConfig(eps=cfg.eps, frames=cfg.frames)
    with compute_threads(1):
        bag, _ = ensure_bundle_bag(target, source_of(cfg.data, target.bundle), bag_cfg,
                                   cfg.bag, progress)
    return bag


def run_demo(cfg: DemoConfig, progress=None, with_reference: bool = True) -> dict:
    """Run the demo end to end; return its summary (see :func:`summarize_demo`)."""
    target = None
    if cfg.bundle or cfg.data:
        with compute_threads(1):    # small models, batch 1: more threads only contend
            target = pipeline.Target(bundle=cfg.bundle) if cfg.bundle else pipeline.Target()
    cfg = replace(cfg, bag=prepare_bag(cfg, target, progress))
    truths = read_ground_truth(cfg.bag)
    log_dir = Path(cfg.log_dir or tempfile.mkdtemp(prefix='edge_denoise_demo_'))
    start = time.monotonic()
    edge_exe = 'edge_process' if cfg.composed else 'edge_node'
    quota = CpuQuota(cfg.edge_cpus) if cfg.edge_cpus is not None else None
    try:
        prefixes = {}
        if quota is not None:
            quota.create()
            prefixes[edge_exe] = quota.prefix()
        with lease_domain() as lease:
            result = run_edge_host(cfg.bag, cfg.edge(), cfg.host(),
                                   dds.profile_env(lease.env()), log_dir,
                                   composed=cfg.composed, rate=cfg.rate, prefixes=prefixes)
        edge_quota = None if quota is None else {**quota.describe(), **quota.throttled()}
    finally:
        if quota is not None:
            quota.remove()
    s = settings_in_use(cfg, result)
    cfg = replace(cfg, cut=s.cut, codec=s.codec, quality=s.quality)
    ref = undefended = unsplit = None
    if with_reference:
        with compute_threads(1):
            target = target or pipeline.Target()
            ref = reference(cfg.bag, s, target)
            undefended = reference(cfg.bag, replace(s, defense='none'), target)
            unsplit = model_reference(cfg.bag, cfg.defense, target)
    summary = summarize_demo(cfg, result, truths, ref, undefended, unsplit)
    summary['seconds'] = round(time.monotonic() - start, 1)
    summary['logs'] = str(log_dir)
    span = (result.window[1] - result.window[0]) / 1e9
    cpu = result.cpu_s.get(edge_exe)
    summary['edge_cpu'] = round(cpu / span, 3) if cpu is not None and span > 0 else None
    summary['edge_quota'] = edge_quota
    return summary
