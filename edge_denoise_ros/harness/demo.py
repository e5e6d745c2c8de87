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

:func:`run_demo` makes the demo bag if missing, starts ``host_node`` and
``edge_process`` on a private localhost-only DDS domain (with the shipped
Fast DDS large-data profile; the edge optionally held to a CPU quota,
``edge_cpus``), replays the bag,
and accounts for every frame: played = classified + dropped (with reasons).
Accuracy is split into clean and adversarial frames and compared with the
same frames evaluated in this process (:func:`reference`), with the defense
and without it.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cpuquota import CpuQuota
from .demo_bag import (DEFAULT_DEMO_BAG, demo_metadata, DemoBagConfig, ensure_bag,
                       read_ground_truth, stamp_ns)
from .isolation import lease_domain
from .launcher import run_edge_host, RunResult
from ..core import pipeline, tails
from ..core.models import compute_threads
from ..ros import conversions, dds
from ..ros.bag import read_messages


@dataclass
class DemoConfig:
    """What the demo runs: the bag, the edge's settings, the replay."""

    bag: str = DEFAULT_DEMO_BAG
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
                'quality': self.quality, **self.edge_params}


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
                   undefended: dict | None = None) -> dict:
    """Return the demo's JSON summary."""
    preds = {s: r['class_id'] for s, r in result.records.items() if s in truths}
    latencies = sorted(r['latency_ms'] for r in result.records.values()
                       if r.get('latency_ms') is not None)
    sizes = [r['bytes'] for r in result.records.values()]
    frame_bytes = 224 * 224 * 3
    meta = demo_metadata(cfg.bag)
    if meta:
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
        'crashed': result.crashed, 'exit_codes': result.exit_codes,
        'timing': result.report.get('timing', {}),
    }
    if ref is not None:
        same = {s: ref[s] for s in preds if s in ref}
        summary['reference'] = {
            'defended': accuracy_by_kind(same, truths),
            'agreement': (sum(preds[s] == same[s] for s in same) / len(same)) if same else None}
    if undefended is not None:
        summary['reference']['undefended'] = accuracy_by_kind(undefended, truths)
    return summary


def _q(values: list, q: float):
    if not values:
        return None
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 3)


def run_demo(cfg: DemoConfig, progress=None, with_reference: bool = True) -> dict:
    """Run the demo end to end; return its summary (see :func:`summarize_demo`)."""
    ensure_bag(cfg.bag, cfg.frames, progress)
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
            result = run_edge_host(cfg.bag, cfg.edge(), cfg.host_params,
                                   dds.profile_env(lease.env()), log_dir,
                                   composed=cfg.composed, rate=cfg.rate, prefixes=prefixes)
        edge_quota = None if quota is None else {**quota.describe(), **quota.throttled()}
    finally:
        if quota is not None:
            quota.remove()
    ref = undefended = None
    if with_reference:
        target = pipeline.Target()
        s = pipeline.EdgeSettings(cfg.defense, cfg.cut, cfg.codec, cfg.quality)
        ref = reference(cfg.bag, s, target)
        undefended = reference(cfg.bag, pipeline.EdgeSettings('none', cfg.cut, cfg.codec,
                                                              cfg.quality), target)
    summary = summarize_demo(cfg, result, truths, ref, undefended)
    summary['seconds'] = round(time.monotonic() - start, 1)
    summary['logs'] = str(log_dir)
    span = (result.window[1] - result.window[0]) / 1e9
    cpu = result.cpu_s.get(edge_exe)
    summary['edge_cpu'] = round(cpu / span, 3) if cpu is not None and span > 0 else None
    summary['edge_quota'] = edge_quota
    return summary
