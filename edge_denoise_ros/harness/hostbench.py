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
``edge-denoise bench hosts``: one host serving 1..N robots, batched and one by one.

Feature messages are recorded once from the edge stage (the edge's default settings:
DUNET_D, cut layer1, JPEG q5 features), then for each robot count N a fresh
``host_node`` serves N simulated robots sending them at ``rate_hz`` each
(:mod:`.fleet`): first one by one (``max_batch: 1``), then batched, the same messages
in the same run. Figures are measured at the robots after ``warmup`` seconds:
classifications received per second, send -> classification latency p50/p99, and
every frame not classified, dropped with the host's reason (played = classified +
dropped, checked per robot).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .fleet import DEFAULT_RATE_HZ, record_features, run_fleet
from .isolation import lease_domain
from .labelled_frames import load_source, source_of
from ..core import batching, pipeline

SATURATED = 0.95      # serving less than this fraction of the offered frames/s: saturated
BAR_RATIO = 1.5       # batched frames/s over one-by-one where one-by-one saturates
_BATCH = batching.BatchConfig()


@dataclass
class HostBenchConfig:
    """What ``bench hosts`` measures."""

    robots: tuple = (1, 2, 4, 8, 16)
    rate_hz: float = DEFAULT_RATE_HZ
    duration: float = 10.0
    warmup: float = 2.0
    max_batch: int = _BATCH.max_batch
    max_batch_delay_ms: float = _BATCH.max_batch_delay_ms
    queue_depth: int = _BATCH.queue_depth
    messages: int = 64
    bundle: str = ''              # a bundle's target, tails and test frames ('' = the default)
    cut: str = ''                 # with a bundle: the edge's settings ('' = the edge default)
    codec: str = ''
    quality: int = 0
    log_dir: str | None = None

    def edge(self) -> tuple[pipeline.Target, pipeline.EdgeSettings, list | None]:
        """Return the target, the edge's settings and the frames the messages are made of."""
        if not self.bundle:
            return pipeline.Target(), pipeline.EdgeSettings(), None
        target = pipeline.Target(bundle=self.bundle)
        d = pipeline.EdgeSettings()
        defense = 'dunet_d' if 'dunet_d' in pipeline.defenses_for(target) else 'none'
        settings = pipeline.EdgeSettings(defense, self.cut or d.cut, self.codec or d.codec,
                                         self.quality or d.quality)
        found = load_source(source_of(None, target.bundle), target.labels, self.messages)
        return target, settings, [np.ascontiguousarray(img) for img in found.images]

    def check(self) -> None:
        """Refuse impossible numbers."""
        if not self.robots or min(self.robots) < 1 or max(self.robots) > 256:
            raise ValueError(f'robot counts must lie in 1..256, got {self.robots}')
        if not self.rate_hz > 0 or self.duration <= self.warmup or self.warmup < 0:
            raise ValueError(f'need rate > 0 and duration > warmup >= 0, got {self.rate_hz}, '
                             f'{self.duration}, {self.warmup}')
        if self.max_batch < 2:
            raise ValueError(f'the batched side needs max_batch >= 2, got {self.max_batch}')
        batching.BatchConfig(self.max_batch, self.max_batch_delay_ms, self.queue_depth)
        if self.messages < 1:
            raise ValueError(f'messages must be >= 1, got {self.messages}')


def host_params(cfg: HostBenchConfig, batched: bool) -> dict:
    """Return the host's parameters for one side of the comparison."""
    return {'max_batch': cfg.max_batch if batched else 1,
            'max_batch_delay_ms': cfg.max_batch_delay_ms, 'queue_depth': cfg.queue_depth,
            'bundle': cfg.bundle}


def measure_point(n: int, batched: bool, cfg: HostBenchConfig, messages, env: dict,
                  log_dir: Path) -> dict:
    """Run one host with ``n`` robots; return the row (figures at the robots, accounts)."""
    robots = [f'robot{i + 1}' for i in range(n)]
    load_before = os.getloadavg()[0]
    result = run_fleet({'host_node': robots}, messages, env,
                       log_dir / f'{n}_{"batched" if batched else "unbatched"}',
                       host_params=host_params(cfg, batched), rate_hz=cfg.rate_hz,
                       duration_s=cfg.duration, warmup_s=cfg.warmup)
    reasons: dict[str, int] = {}
    for account in result.robots:
        for key, value in account['drop_reasons'].items():
            reasons[key] = reasons.get(key, 0) + value
    total = result.statuses.get('edge_denoise_ros: host_node', {})
    batches = int(total.get('batches', 0))
    frames = int(total.get('frames', 0))
    return {'robots': n, 'batched': batched, **{k: result.figures[k] for k in
                                                ('frames_per_s', 'p50_ms', 'p99_ms')},
            'dropped': sum(a['dropped'] for a in result.robots),
            'offered_per_s': round(n * cfg.rate_hz, 2),
            'played': sum(a['played'] for a in result.robots),
            'classified': sum(a['classified'] for a in result.robots),
            'drop_reasons': reasons,
            'unaccounted': sum(a['unaccounted'] for a in result.robots),
            'result_lost': sum(a['result_lost'] for a in result.robots),
            'robot_callback_lag_p99_ms': result.figures['robot_callback_lag_p99_ms'],
            'host_received': sum(a['host_received'] for a in result.robots),
            'mean_batch': round(frames / batches, 2) if batches else None,
            'host_cpu_ms_per_frame': round(1000 * sum(result.host_cpu_s.values()) / frames, 3)
            if frames else None,
            'load_1min': [round(load_before, 2), round(os.getloadavg()[0], 2)],
            'exit_codes': result.exit_codes, 'timing': result.timing}


def judge(rows: list[dict]) -> dict:
    """
    Check the bar: where one-by-one serving saturates, batched >= 1.5x frames/s, p99 no worse.

    Saturated: one by one serves under ``SATURATED`` of the offered frames/s. Every
    saturated robot count is compared; the bar holds at the first.
    """
    points = []
    for n in sorted({r['robots'] for r in rows}):
        one = next((r for r in rows if r['robots'] == n and not r['batched']), None)
        many = next((r for r in rows if r['robots'] == n and r['batched']), None)
        if one is None or many is None or one['frames_per_s'] >= SATURATED * \
                one['offered_per_s']:
            continue
        ratio = many['frames_per_s'] / one['frames_per_s'] if one['frames_per_s'] else None
        p99_ok = many['p99_ms'] is not None and (one['p99_ms'] is None
                                                 or many['p99_ms'] <= one['p99_ms'])
        points.append({'robots': n, 'ratio': None if ratio is None else round(ratio, 2),
                       'p99_batched_ms': many['p99_ms'], 'p99_unbatched_ms': one['p99_ms'],
                       'met': ratio is not None and ratio >= BAR_RATIO and p99_ok})
    first = points[0] if points else None
    return {'saturated_at': first and first['robots'], 'points': points,
            'met': bool(first and first['met']), 'ratio_needed': BAR_RATIO}


def run(cfg: HostBenchConfig, progress=None) -> dict:
    """Measure every robot count one by one and batched; return rows and the bar."""
    cfg.check()
    target, settings, frames = cfg.edge()
    messages = record_features(cfg.messages, settings, target, frames=frames)
    log_dir = Path(cfg.log_dir or tempfile.mkdtemp(prefix='edge_denoise_hosts_'))
    rows = []
    total = 2 * len(cfg.robots)
    with lease_domain() as lease:
        env = lease.env()
        for n in cfg.robots:
            for batched in (False, True):
                rows.append(measure_point(n, batched, cfg, messages, env, log_dir))
                if progress is not None:
                    r = rows[-1]
                    progress(len(rows), total, {'robots': n, 'batched': batched,
                                                'fps': r['frames_per_s'], 'p99': r['p99_ms']})
    return {'rows': rows, 'bar': judge(rows), 'config': asdict(cfg), 'logs': str(log_dir),
            'message_bytes': round(sum(len(p) for p, _ in messages) / len(messages), 1),
            'settings': {k: v for k, v in messages[0][1].items()
                         if k in ('cut', 'codec', 'quality', 'shape')}}


def plot(result: dict, path: Path | str) -> Path:
    """Plot frames/s and p99 latency against the robot count, batched and one by one."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = result['rows']
    counts = sorted({r['robots'] for r in rows})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    offered = [next(r['offered_per_s'] for r in rows if r['robots'] == n) for n in counts]
    ax1.plot(counts, offered, color='gray', linestyle=':', label='offered (robots x rate)')
    for batched, label in ((False, 'one by one (max_batch 1)'),
                           (True, f'batched (max_batch {result["config"]["max_batch"]})')):
        mine = sorted((r for r in rows if r['batched'] == batched), key=lambda r: r['robots'])
        ax1.plot([r['robots'] for r in mine], [r['frames_per_s'] for r in mine], marker='o',
                 label=label)
        ax2.plot([r['robots'] for r in mine],
                 [r['p99_ms'] if r['p99_ms'] is not None else float('nan') for r in mine],
                 marker='o', label=label)
    for ax, label in ((ax1, 'frames/s classified (at the robots)'),
                      (ax2, 'p99 latency, send -> result, ms (log)')):
        ax.set_xscale('log', base=2)
        ax.set_xticks(counts, [str(n) for n in counts])
        ax.minorticks_off()
        ax.set_xlabel(f'robots at {result["config"]["rate_hz"]:g} Hz each, one host')
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    ax2.set_yscale('log')
    ax1.legend(fontsize=8)
    fig.suptitle('edge_denoise_ros: one host, many robots - dynamic batching')
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
