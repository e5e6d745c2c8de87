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
``edge-denoise bench link``: every offloading strategy over a real shaped link.

The edge (``edge_process``, the camera replay and the result collector) runs
in one network namespace, ``host_node`` in another; the veth between them is
shaped with ``tc tbf`` at each uplink rate (and the downlink rate the other
way). Each strategy replays the demo bag (640x480 camera frames by
default) at camera rate, looping, for ``duration`` seconds and is measured
at the robot: sustained frames/s of results received back, end-to-end
latency (camera frame at the edge -> result back at the edge) p50/p99, bytes
per frame, dropped frames (``camera_lost``: those that never reached the edge's
callback; each node's last ``diagnostics`` say where the rest went), accuracy
against the bag's ground truth on the frames classified, and the CPU the edge
process used (cores).

Strategies: ``raw``, ``jpeg``, ``deepn_jpeg`` (host-only: the camera frame
goes up), ``jpeg_model`` (host-only: the frame resized on the edge to the
model's input, JPEG), ``h264`` (host-only as FogROS2 does it: an H.264 stream, the
peer of :mod:`.video_peer`), ``edge`` (edge-only), ``split_lossless`` and
``split_jpeg`` (at the planner's cut for that codec and rate), ``auto``
(the edge node plans at start-up from the declared rate: ``cut: auto``) and
``auto_measured`` (the same, then paces and re-plans with the uplink it
measures from the host's receipts: ``measure_uplink``). ``declared`` tells the
edge another uplink than the link has (a link slower or faster than the robot
was configured for).

A really weak edge: ``edge_cpus`` confines the edge process to that many
cores with a cgroup CPU quota (:mod:`.cpuquota`); the split strategies'
cuts are then planned from an edge profile measured under the same quota,
and ``auto``'s edge measures its own at start-up, inside the quota, against
a host profile measured outside it. ``edge_slowdown`` (each stage made k
times slower by waiting) stays a what-if, never a headline.

The edge side (camera replay and edge process) loads the shipped Fast DDS
large-data profile, so camera frames reach the edge whole; the host side
talks UDPv4 only, so everything between edge and host crosses the link.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2

from .cpuquota import CpuQuota
from .bundle_bag import BundleBagConfig, ensure_bundle_bag
from .demo_bag import DemoBagConfig, ensure_bag, read_ground_truth
from .isolation import lease_domain
from .labelled_frames import source_of
from .launcher import run_edge_host
from .netns import LinkPair, unavailable
from ..core import frames, pipeline, planner, profiling, surgery, video
from ..core.frames import parse_size
from ..core.evaluation import BUNDLE_EPS
from ..core.models import set_torch_threads
from ..ros import conversions, dds
from ..ros.bag import read_messages

STRATEGIES = ('raw', 'jpeg', 'deepn_jpeg', 'jpeg_model', 'h264', 'edge', 'split_lossless',
              'split_jpeg', 'auto', 'auto_measured')
AUTO_STRATEGIES = ('auto', 'auto_measured')
# host-only strategies: (frame codec, frame_scale)
FRAME_STRATEGIES = {'raw': ('raw', 'camera'), 'jpeg': ('jpeg', 'camera'),
                    'deepn_jpeg': ('deepn_jpeg', 'camera'), 'jpeg_model': ('jpeg', 'model')}
SPLIT_STRATEGIES = {'split_lossless': 'lossless', 'split_jpeg': 'jpeg'}
VIDEO_STRATEGIES = {'h264': ('video_edge', 'video_host')}
FRAME_SIZE = '640x480'
LINK_BAG = 'out/link_bag_{size}'   # the demo bag's frames at the bench's frame size


@dataclass
class LinkBenchConfig:
    """What ``bench link`` measures."""

    rates: tuple = (2.0, 10.0, 45.0)
    declared: float | None = None     # the uplink the edge is told (None: each shaped rate)
    downlink: float = planner.Link().downlink_mbps
    strategies: tuple = STRATEGIES
    duration: float = 20.0
    warmup: float = 3.0
    edge_slowdown: float = 1.0        # what-if only: stages made k times slower by waiting
    edge_cpus: float | None = None    # a real weak edge: a cgroup CPU quota of this many cores
    frame_size: str = FRAME_SIZE      # camera frames WIDTHxHEIGHT of the bench's bag
    bag: str = ''                     # '' = LINK_BAG at frame_size (made if missing)
    defense: str = pipeline.DEFAULT_DEFENSE
    image_quality: int = pipeline.DEFAULT_FRAME_QUALITY
    feature_quality: int = pipeline.DEFAULT_QUALITY
    bundle: str = ''                  # a bundle's target and frames ('' = the default 1x28x28)
    out: str | None = None
    log_dir: str | None = None

    def check(self) -> None:
        """Refuse unknown strategies and impossible numbers."""
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(f'unknown strategy {unknown[0]!r}; expected some of {STRATEGIES}')
        if not self.rates or min(self.rates) <= 0 or self.downlink <= 0 or (
                self.declared is not None and self.declared <= 0):
            raise ValueError(f'rates, downlink and declared must be > 0 Mbit/s, got '
                             f'{self.rates}, {self.downlink}, {self.declared}')
        if self.duration <= self.warmup or self.warmup < 0:
            raise ValueError(f'duration must exceed warmup >= 0, got {self.duration}, '
                             f'{self.warmup}')
        if self.edge_slowdown < 1:
            raise ValueError(f'edge slowdown must be >= 1, got {self.edge_slowdown}')
        if self.edge_cpus is not None and not 0.01 <= self.edge_cpus <= 1024:
            raise ValueError(f'edge CPUs must be in 0.01..1024, got {self.edge_cpus}')
        parse_size(self.frame_size)

    def declared_at(self, rate: float) -> float:
        """Return the uplink the edge is told when the link is shaped to ``rate`` Mbit/s."""
        return self.declared or rate

    @property
    def bag_path(self) -> str:
        """Return the camera bag replayed (the default one at ``frame_size``)."""
        return self.bag or LINK_BAG.format(size=self.frame_size)

    def target(self) -> pipeline.Target:
        """Return the target benchmarked: the bundle's, or the default."""
        return pipeline.Target(bundle=self.bundle or None)

    def make_bag(self, target: pipeline.Target) -> str:
        """Return the camera bag to replay, made first if missing (a bundle's: its test frames)."""
        if self.bag and Path(self.bag).exists():   # a bag of the user's is used as it is
            return self.bag
        width, height = parse_size(self.frame_size)
        if not self.bundle:
            ensure_bag(self.bag_path, DemoBagConfig.frames, width=width, height=height)
            return self.bag_path
        cfg = BundleBagConfig(eps=BUNDLE_EPS, camera_size=self.frame_size)
        path, _ = ensure_bundle_bag(target, source_of(None, target.bundle), cfg)
        return path


def planned_cuts(cfg: LinkBenchConfig, rate: float, target=None,
                 profiles: dict | None = None) -> dict[str, str]:
    """
    Return the planner's cut for each split strategy's codec at ``rate`` (or the declared one).

    ``profiles``: ``{'edge': file, 'host': file}`` measured beforehand (the
    edge's under its CPU quota); without them both sides are measured here.
    """
    wanted = [s for s in cfg.strategies if s in SPLIT_STRATEGIES]
    if not wanted:
        return {}
    target = target or pipeline.Target()
    profiles = profiles or {}
    online = planner.make_planner(
        target.model, target.input_shape, planner.Link(cfg.declared_at(rate), cfg.downlink),
        edge_profile=profiles.get('edge'), host_profile=profiles.get('host'),
        edge_slowdown=cfg.edge_slowdown, codecs=[SPLIT_STRATEGIES[s] for s in wanted],
        frame_codecs=[], model_name=target.name, quality=cfg.feature_quality,
        accuracy_profile=(target.bundle.accuracy_profile(target.hash)
                          if target.bundle else None),
        defenses=functools.partial(pipeline.defense_modules, target), defense=cfg.defense)
    rows = online.plan().rows
    cuts = {}
    for strategy in wanted:
        split = [r for r in rows if r['kind'] == surgery.SPLIT
                 and r['codec'] == SPLIT_STRATEGIES[strategy]]
        allowed = [r for r in split if not r.get('excluded')]   # within the accuracy bound
        best = min(allowed or split, key=lambda r: r['total_ms'])
        cuts[strategy] = target.check_cut(best['cut'])
    return cuts


def edge_params(strategy: str, rate: float, cfg: LinkBenchConfig, cuts: dict,
                profiles: dict | None = None) -> dict:
    """Return the edge node's parameters for one strategy at one rate."""
    if strategy in VIDEO_STRATEGIES:     # the video edge only encodes: no target there
        return {}
    p = {'defense': cfg.defense, 'emulate_slowdown': cfg.edge_slowdown,
         'edge_slowdown': cfg.edge_slowdown, 'uplink_mbps': cfg.declared_at(rate),
         'downlink_mbps': cfg.downlink, 'quality': cfg.feature_quality,
         'frame_quality': cfg.image_quality, 'bundle': cfg.bundle}
    if strategy in FRAME_STRATEGIES:
        codec, scale = FRAME_STRATEGIES[strategy]
        p.update(cut=pipeline.FRAME_CUT, codec=codec, frame_scale=scale)
    elif strategy == 'edge':
        p.update(cut=pipeline.OUTPUT_CUT, codec='raw')
    elif strategy in SPLIT_STRATEGIES:
        p.update(cut=cuts[strategy], codec=SPLIT_STRATEGIES[strategy])
    else:
        p.update(cut='auto', codec='auto', measure_uplink=strategy == 'auto_measured')
        if profiles and profiles.get('frame'):   # profiled with a frame of this camera
            p['profile_frame'] = profiles['frame']
        if profiles and profiles.get('host'):  # the edge measures itself, in its quota
            p['host_profile'] = profiles['host']
    return p


def measure(result, warmup: float, truths: dict | None = None,
            edge: str = 'edge_process') -> dict:
    """
    Return one run's figures at the robot.

    Frames/s, latency p50/p99, bytes/frame, drops; with ``truths`` (the bag's
    ground truth by stamp) the accuracy on the frames classified; the CPU
    the ``edge`` process used over the replay (cores).
    """
    start, end = result.window
    lo = start + int(warmup * 1e9)
    inside = [(t, r) for t, r in result.received if lo <= t <= end]
    span = (end - lo) / 1e9
    lat = sorted((t - r['edge_rx_ns']) / 1e6 for t, r in inside if r.get('edge_rx_ns'))
    sizes = [r['bytes'] for _, r in result.received]

    def q(p):
        return round(lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))], 2) if lat else None
    cuts = sorted({r['cut'] for _, r in result.received})
    codecs = sorted({r['codec'] for _, r in result.received})
    correct = {s: r['class_id'] == truths[s]['label'] for s, r in
               ((x['stamp']['sec'] * 10**9 + x['stamp']['nanosec'], x)
                for _, x in result.received) if s in (truths or {})}
    judged = list(correct.values())
    wall = (end - start) / 1e9
    cpu = result.cpu_s.get(edge)
    return {'fps': round(len(inside) / span, 2) if span > 0 else 0.0,
            'accuracy': round(sum(judged) / len(judged), 4) if judged else None,
            'edge_cpu': round(cpu / wall, 3) if cpu is not None and wall > 0 else None,
            'p50_ms': q(0.5), 'p99_ms': q(0.99),
            'bytes_per_frame': round(sum(sizes) / len(sizes), 1) if sizes else None,
            'played': result.played, 'classified': len(result.received),
            'dropped': max(0, result.played - len(result.received)),
            'cut': ','.join(cuts), 'codec': ','.join(codecs),
            'correct': {str(s): ok for s, ok in correct.items()}}


def driver(spec: dict) -> dict:
    """Run one strategy from inside the edge namespace (see :func:`run_strategy`)."""
    edge, host = spec['executables']
    result = run_edge_host(spec['bag'], spec['edge_params'], spec['host_params'],
                           spec['edge_env'], Path(spec['log_dir']),
                           envs={host: spec['host_env']},
                           prefixes={host: spec['host_prefix'], edge: spec['edge_prefix']},
                           duration=spec['duration'], start_timeout=300.0, drain_timeout=10.0,
                           executables=(edge, host))
    row = measure(result, spec['warmup'], read_ground_truth(spec['bag']), edge)
    row['crashed'] = result.crashed
    # Each node's last diagnostics (received, served, dropped by reason) and the player's
    # count: a run that classified little says where its frames went.
    row['diagnostics'] = {name.split(': ', 1)[-1]: values
                          for name, values in sorted(result.statuses.items())}
    row['player'] = {k: result.report.get(k) for k in ('played', 'skipped', 'max_lag_ms')}
    row['camera_lost'] = camera_lost(result.played, row['diagnostics'])
    return row


CAMERA_INTAKES = ('denoiser', 'edge_node')    # the node whose callback takes camera frames


def camera_lost(played: int, diagnostics: dict) -> int | None:
    """
    Return the camera frames played that never reached the edge's callback, or None.

    Best-effort frames a CPU-starved edge process could not take in are lost in
    the middleware, where the edge cannot count them; the player's count less
    the edge's ``received`` can.
    """
    for name in CAMERA_INTAKES:
        received = diagnostics.get(name, {}).get('received')
        if received is not None:
            return played - int(float(received))
    return None


def run_strategy(pair, domain_id: int, strategy: str, rate: float, cfg: LinkBenchConfig,
                 cuts: dict, log_dir: Path, quota: CpuQuota | None = None,
                 profiles: dict | None = None, bag: str | None = None) -> dict:
    """Measure one strategy at one rate: a driver process in the edge namespace."""
    log = log_dir / f'{strategy}_{rate:g}'
    bag = bag or cfg.bag_path
    executables = VIDEO_STRATEGIES.get(strategy, ('edge_process', 'host_node'))
    spec = {'bag': str(Path(bag).resolve()), 'executables': executables,
            'edge_params': edge_params(strategy, rate, cfg, cuts, profiles),
            'host_params': {**({'defense': cfg.defense} if strategy in VIDEO_STRATEGIES else {}),
                            'bundle': cfg.bundle},
            'edge_env': dds.profile_env(pair.dds_env('edge', domain_id)),
            'host_env': pair.dds_env('host', domain_id), 'host_prefix': pair.prefix('host'),
            'edge_prefix': quota.prefix() if quota is not None else [],
            'duration': cfg.duration, 'warmup': cfg.warmup, 'log_dir': str(log)}
    before = pair.stats()
    proc = subprocess.run([*pair.prefix('edge'), sys.executable, '-u', '-m', __name__,
                           '--driver'], input=json.dumps(spec), capture_output=True,
                          text=True, env=spec['edge_env'], timeout=cfg.duration + 600)
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f'{strategy} at {rate:g} Mbit/s failed: {" | ".join(tail)}')
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    after = pair.stats()
    row['link_up_bytes'] = after['up']['bytes'] - before['up']['bytes']
    row['link_dropped_packets'] = (after['up']['dropped_packets']
                                   - before['up']['dropped_packets'])
    return {'rate_mbps': rate, 'declared_mbps': cfg.declared_at(rate), 'strategy': strategy,
            'edge_cpus': cfg.edge_cpus, **row}


def bag_frame(bag: str, out: Path, topic: str = '/image_raw') -> Path:
    """Write the bag's first camera frame as a PNG (what the profiles are measured with)."""
    for _, _, _, msg in read_messages(bag, [topic]):
        frame, encoding = conversions.msg_to_image(msg)
        cv2.imwrite(str(out), frames.opencv_image(frame, encoding))
        return out
    raise ValueError(f'no camera frame on {topic} in bag {bag}')


def measure_profiles(cfg: LinkBenchConfig, folder: Path, quota: CpuQuota, bag: str) -> dict:
    """
    Measure the host's profile here and the edge's under ``quota``; return their files.

    Each in its own process (``--profile``), at the qualities the edge sends,
    timing every defense, with the bag's first camera frame (``frame``: the
    edge node's ``profile_frame`` too), so the edge's stage times are what the
    quota makes of them and codec sizes those of the frames replayed.
    """
    out = {'frame': str(bag_frame(bag, folder / 'profile_frame.png'))}
    for side, prefix in (('host', []), ('edge', quota.prefix())):
        spec = {'out': str(folder / f'{side}_profile.json'), 'frame': out['frame'],
                'bundle': cfg.bundle,
                'quality': cfg.feature_quality, 'frame_quality': cfg.image_quality}
        proc = subprocess.run([*prefix, sys.executable, '-u', '-m', __name__, '--profile'],
                              input=json.dumps(spec), capture_output=True, text=True,
                              timeout=1800)
        if proc.returncode != 0:
            tail = ' | '.join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise RuntimeError(f'measuring the {side} profile failed: {tail}')
        out[side] = spec['out']
    return out


def profile_main(spec: dict) -> None:
    """Measure the target's sustained profile in this process and save it (``--profile``)."""
    set_torch_threads(1)
    target = pipeline.Target(bundle=spec.get('bundle') or None)
    frame = frames.read_image(spec['frame'])
    measured = profiling.measure_profile(
        target.model, frame, target.input_shape, target.name, quality=spec['quality'],
        frame_quality=spec['frame_quality'], defenses=pipeline.defense_modules(target),
        clock='cpu')
    profiling.sustained(measured, profiling.cpu_share()).save(spec['out'])


def run(cfg: LinkBenchConfig, progress=None) -> dict:
    """Measure every strategy at every rate; return ``{"rows": [...], ...}``."""
    cfg.check()
    reason = unavailable()
    if reason:
        raise PermissionError(f'bench link {reason}')
    target = cfg.target()
    bag = cfg.make_bag(target)
    log_dir = Path(cfg.log_dir or tempfile.mkdtemp(prefix='edge_denoise_link_'))
    rows = []
    total = len(cfg.rates) * len(cfg.strategies)
    quota = CpuQuota(cfg.edge_cpus) if cfg.edge_cpus is not None else None
    profiles = None
    try:
        if quota is not None:
            quota.create()
            log_dir.mkdir(parents=True, exist_ok=True)
            profiles = measure_profiles(cfg, log_dir, quota, bag)
        with lease_domain() as lease, LinkPair(f'{os.getpid() % 100000}',
                                               index=lease.domain_id) as pair:
            for rate in cfg.rates:
                pair.shape(rate, cfg.downlink)
                cuts = planned_cuts(cfg, rate, target, profiles)
                for strategy in cfg.strategies:
                    rows.append(run_strategy(pair, lease.domain_id, strategy, rate, cfg, cuts,
                                             log_dir, quota, profiles, bag))
                    if progress is not None:
                        progress(len(rows), total, {'rate': rate, 'strategy': strategy})
        edge_quota = None if quota is None else {**quota.describe(), **quota.throttled()}
    finally:
        if quota is not None:
            quota.remove()
    summary = summarize(rows)
    for row in rows:
        row.pop('correct', None)
    result = {'rows': rows, 'summary': summary, 'config': asdict(cfg), 'logs': str(log_dir),
              'machine': machine(), 'edge_quota': edge_quota, 'profiles': profiles,
              'h264': asdict(video.H264Config())}
    if cfg.out:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / 'link.json').write_text(json.dumps(result, indent=2) + '\n')
        plot(rows, out / 'link.png')
        result['plot'] = str(out / 'link.png')
    return result


def summarize(rows: list[dict]) -> list[dict]:
    """
    Return per rate the fastest fixed strategy and how ``auto`` compares with it.

    ``auto_vs_best``: auto's frames/s over the best's; accuracy of both on the
    frames both classified (``paired_frames``; the same camera frames, so
    which frames a run happened to drop does not move the difference) and on
    all each classified. Needs the rows' per-frame ``correct`` maps.
    """
    out = []
    for rate in dict.fromkeys(r['rate_mbps'] for r in rows):
        here = [r for r in rows if r['rate_mbps'] == rate]
        fixed = [r for r in here if r['strategy'] not in AUTO_STRATEGIES and r['fps']]
        auto = next((r for r in here if r['strategy'] == 'auto'), None)
        if not fixed:
            continue
        best = max(fixed, key=lambda r: r['fps'])
        entry = {'rate_mbps': rate, 'best': best['strategy'], 'best_fps': best['fps'],
                 'best_accuracy': best['accuracy']}
        if auto is not None:
            mine, theirs = auto.get('correct') or {}, best.get('correct') or {}
            both = sorted(set(mine) & set(theirs))
            entry.update({
                'auto_fps': auto['fps'], 'auto_accuracy': auto['accuracy'],
                'auto_cut': auto['cut'], 'auto_codec': auto['codec'],
                'auto_vs_best': round(auto['fps'] / best['fps'], 3),
                'paired_frames': len(both),
                'auto_paired_accuracy': _fraction(mine[s] for s in both),
                'best_paired_accuracy': _fraction(theirs[s] for s in both)})
            if both:
                entry['paired_difference_pt'] = round(
                    100 * (entry['auto_paired_accuracy'] - entry['best_paired_accuracy']), 2)
        out.append(entry)
    return out


def _fraction(values) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else None


def machine() -> dict:
    """Return what the numbers were measured on."""
    return {'cpus': os.cpu_count(), 'platform': platform.platform(),
            'python': platform.python_version()}


def plot(rows: list[dict], path: Path) -> Path:
    """Plot frames/s and p99 latency against the uplink rate, one line per strategy."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for strategy in dict.fromkeys(r['strategy'] for r in rows):
        mine = sorted((r for r in rows if r['strategy'] == strategy),
                      key=lambda r: r['rate_mbps'])
        rates = [r['rate_mbps'] for r in mine]
        ax1.plot(rates, [r['fps'] for r in mine], marker='o', label=strategy)
        ax2.plot(rates, [r['p99_ms'] if r['p99_ms'] is not None else float('nan')
                         for r in mine], marker='o', label=strategy)
    ticks = sorted({r['rate_mbps'] for r in rows})
    for ax, label in ((ax1, 'frames/s (results back at the robot)'),
                      (ax2, 'p99 latency, ms (log)')):
        ax.set_xscale('log')
        ax.set_xticks(ticks, [f'{t:g}' for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel('uplink, Mbit/s (tc tbf)')
        ax.set_ylabel(label)
        ax.grid(True, which='both', alpha=0.3)
    ax2.set_yscale('log')
    ax2.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax2.yaxis.set_major_formatter(ScalarFormatter())
    ax2.yaxis.set_minor_formatter(NullFormatter())
    ax1.legend(fontsize=8)
    fig.suptitle('edge_denoise_ros: offloading strategies over a shaped link')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _child_main(role: str) -> int:
    spec = json.loads(sys.stdin.read())
    if role == '--profile':
        profile_main(spec)
        return 0
    try:
        row = driver(spec)
    except RuntimeError as exc:
        print(f'driver: {exc}', file=sys.stderr)
        return 1
    print(json.dumps(row))
    return 0


if __name__ == '__main__' and sys.argv[1:] in (['--driver'], ['--profile']):
    sys.exit(_child_main(sys.argv[1]))
