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
The scheduler benchmark: priority projection and pipelining, measured side by side.

Priority: a camera timer at a fixed rate runs the defended chain (denoiser then
target, one frame at a time) in a high-priority callback group; its latency
(from the frame's due time to the target's output) is measured alone, then
with two low-priority background models whose timers keep the device busy,
under (a) the ``PriorityExecutor`` + ``Scheduler`` and (b) FIFO: the same
nodes, models and scheduler on rclpy's ``MultiThreadedExecutor``, where no
callback has a priority, so every job queues first-come first-served. (c)
``direct``: the same on ``MultiThreadedExecutor`` with plain torch calls in
the callbacks (no scheduler), what a ROS node does by default.

Pipelining: defended frames/s of the pipeline (denoise i+1 while target i)
vs sequential (denoise then target per frame) vs the target alone, for the
default small pair and for DUNET_D (full) + inception_v3 at 299x299.
``edge-denoise bench scheduler`` runs both and prints them.
"""

# No ``from __future__ import annotations``: rclpy passes a timer callback its TimerInfo only
# when the parameter's annotation is the TimerInfo class itself (not a string).
from dataclasses import dataclass
import os
import statistics
import threading
import time
from typing import Callable

import numpy as np
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.timer import TimerInfo
import torch

from .isolation import lease_domain
from ..core import dunet, models, overlap
from ..core import scheduler as S
from ..core.scheduled_model import ScheduledModel
from ..ros.executor import priority_group, PriorityExecutor

CAMERA_PRIORITY = 10
BACKGROUND_PRIORITY = 0

Progress = Callable[[int, int, dict], None]


@dataclass
class SchedulerBenchConfig:
    """What ``bench scheduler`` measures (the command's options and their defaults)."""

    rate: float = 20.0                 # camera frames per second
    frames: int = 200                  # measured camera frames per latency phase
    warmup: int = 5                    # camera frames run before measuring, per phase and round
    rounds: int = 4                    # interleaved rounds the latency frames are split over
    threads: int = 1                   # torch intra-op threads per launcher worker
    workers: int = 1                   # launcher workers (the CPU "device"), latency phases
    spare_workers: int = 0             # see core.scheduler.SchedulerConfig.spare_workers
    hold_ms: float = 5.0               # see core.scheduler.SchedulerConfig.hold_s
    background_batches: tuple = (2, 8)  # batch sizes of the background DUNET and ResNet
    pipeline_frames: int = 60          # frames per pipelining measurement, small pair
    pipeline_rounds: int = 3           # alternating rounds per pipelining measurement
    pipeline_workers: int = 2          # launcher workers in the pipelining runs
    full_frames: int = 4               # frames for DUNET_D full + inception_v3 (0: skip)
    full_rounds: int = 2               # alternating rounds for the full pair
    direct: bool = True                # also the plain-torch MultiThreadedExecutor baseline

    def check(self) -> None:
        """Raise ``ValueError`` for a setting the benchmark cannot run with."""
        if not 0 <= self.hold_ms <= 1000:
            raise ValueError(f'--hold-ms must lie in [0, 1000], got {self.hold_ms}')
        if len(self.background_batches) != 2:
            raise ValueError(f'--background-batches takes two sizes, got '
                             f'{list(self.background_batches)}')


# ---------------------------------------------------------------------------- models


def small_pair():
    """Return (DUNET_D small, default target): shipped weights when present, else untrained."""
    try:
        denoiser, trained = dunet.load_denoiser('dunet_d', 'small'), True
    except FileNotFoundError:
        ranks = dunet.default_ranks(dunet.build_dunet('small'), 'paper')
        denoiser, trained = dunet.build_dunet_d('small', ranks).eval(), False
    try:
        target = models.build_model()
    except FileNotFoundError:
        target, trained = models.build_model(pretrained=False), False
    return denoiser, target, trained


def full_pair():
    """Return (DUNET_D full with the paper's ranks, inception_v3), untrained: timing only."""
    ranks = dunet.default_ranks(dunet.build_dunet('full'), 'paper')
    return dunet.build_dunet_d('full', ranks).eval(), models.build_model('inception_v3')


def background_models(batches):
    """Return the two low-priority background models and their inputs."""
    gen = torch.Generator().manual_seed(1)
    return [('background_dunet', dunet.build_dunet('small').eval(),
             torch.rand(batches[0], 1, 28, 28, generator=gen)),
            ('background_resnet', models.build_model(pretrained=False),
             torch.rand(batches[1], 1, 28, 28, generator=gen))]


def _plain_call(module):
    @torch.no_grad()
    def call(x, frame=None):
        return module(x)
    return call


# ----------------------------------------------------------------------- ROS phases


class CameraChain(Node):
    """Denoise then classify one camera frame per timer tick; record the latency."""

    def __init__(self, context, clock: Clock, chain, frames, period: float, total: int):
        super().__init__('camera_chain', context=context)
        group = priority_group(self, 'inference', default=CAMERA_PRIORITY)
        self.clock, self.frames, self.total = clock, frames, total
        self.latencies, self.expected, self.done = [], [], threading.Event()
        self.denoiser, self.target = chain
        self.timer = self.create_timer(period, self.tick, callback_group=group, clock=clock)

    def tick(self, info: TimerInfo) -> None:
        """Run the chain on the next frame; the latency counts from the tick's due time."""
        i = len(self.latencies)
        if i >= self.total:
            self.done.set()
            return
        self.target(self.denoiser(self.frames[i % len(self.frames)], frame=i), frame=i)
        due = info.expected_call_time.nanoseconds
        self.latencies.append((self.clock.now().nanoseconds - due) / 1e6)
        self.expected.append(due)


class Background(Node):
    """Run a low-priority model back to back (a 1 ms timer in its own group)."""

    def __init__(self, context, clock: Clock, name: str, model, x):
        super().__init__(name, context=context)
        group = priority_group(self, 'inference', default=BACKGROUND_PRIORITY)
        self.model, self.x, self.forwards = model, x, 0
        self.timer = self.create_timer(0.001, self.tick, callback_group=group, clock=clock)

    def tick(self) -> None:
        """Run the model once."""
        self.model(self.x)
        self.forwards += 1


def latency_phase(context, kind, chain, background, frames, n, cfg: SchedulerBenchConfig,
                  scheduler=None) -> dict:
    """
    Run the camera chain (with or without background) on one executor for ``n`` frames.

    Return the raw latencies (ms, after ``cfg.warmup`` frames), the timer
    ticks the chain fell behind on, the background forwards and device time.
    """
    period = 1.0 / cfg.rate
    total = cfg.warmup + n
    clock = Clock(clock_type=ClockType.STEADY_TIME)
    camera = CameraChain(context, clock, chain, frames, period, total)
    others = [Background(context, clock, *b) for b in background]
    if kind == 'priority':
        executor = PriorityExecutor(num_threads=3, spare_threads=1, scheduler=scheduler,
                                    context=context)
    else:
        executor = MultiThreadedExecutor(num_threads=3, context=context)
    for node in [camera] + others:
        executor.add_node(node)
    busy0 = scheduler.stats()['busy_s'] if scheduler else 0.0
    errors = []

    def spin():
        try:
            executor.spin()
        except BaseException as exc:  # noqa: B902 - reported by the waiting thread
            if not camera.done.is_set():
                errors.append(exc)  # (an rclpy race while shutting down is not an error)
            camera.done.set()

    start = time.monotonic()
    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    finished = camera.done.wait(total * period * 20 + 60)
    wall = time.monotonic() - start
    executor.shutdown()
    spinner.join(60)
    for node in [camera] + others:
        node.destroy_node()
    if errors:
        raise errors[0]
    if not finished:
        raise RuntimeError(f'{kind}: the camera chain ran {len(camera.latencies)} of {total} '
                           f'frames in {wall:.0f} s')
    gaps = np.diff(np.array(camera.expected[cfg.warmup:])) / 1e9
    return {'latencies': camera.latencies[cfg.warmup:],
            'skipped_ticks': int(np.maximum(np.round(gaps / period) - 1, 0).sum()),
            'background_forwards': [n.forwards for n in others],
            'busy_s': (scheduler.stats()['busy_s'] - busy0) if scheduler else None,
            'wall_s': wall}


def summarize_latency(runs: list[dict]) -> dict:
    """Pool the latency runs of one condition into percentiles and counters."""
    lat = np.array([v for r in runs for v in r['latencies']])
    out = {'p50_ms': round(float(np.percentile(lat, 50)), 2),
           'p99_ms': round(float(np.percentile(lat, 99)), 2),
           'mean_ms': round(float(lat.mean()), 2), 'max_ms': round(float(lat.max()), 2),
           'frames': int(lat.size), 'skipped_ticks': sum(r['skipped_ticks'] for r in runs),
           'background_forwards': [sum(f) for f in zip(*(r['background_forwards']
                                                         for r in runs))]}
    if runs[0]['busy_s'] is not None:
        out['device_busy'] = round(sum(r['busy_s'] for r in runs)
                                   / sum(r['wall_s'] for r in runs), 3)
    return out


def priority_bench(cfg: SchedulerBenchConfig, progress: Progress) -> dict:
    """
    Measure the chain's latency alone and loaded, for priority, FIFO and direct.

    The conditions are interleaved in ``cfg.rounds`` rounds (each runs every
    executor alone then loaded) and pooled, so that a slow spell of a shared
    machine spreads over all of them instead of landing on one.
    """
    cfg.check()
    denoiser, target, _ = small_pair()
    gen = torch.Generator().manual_seed(0)
    frames = [torch.rand(1, 1, 28, 28, generator=gen) for _ in range(16)]
    bg = background_models(cfg.background_batches)
    sched_cfg = S.SchedulerConfig(workers=cfg.workers, spare_workers=cfg.spare_workers,
                                  intra_op_threads=cfg.threads, hold_s=cfg.hold_ms / 1e3)
    kinds = ['priority', 'fifo'] + (['direct'] if cfg.direct else [])
    runs = {(k, p): [] for k in kinds for p in ('isolated', 'loaded')}
    per_round = -(-cfg.frames // cfg.rounds)
    step, steps = 0, cfg.rounds * len(runs)
    with lease_domain() as lease:
        os.environ.update(lease.env())
        context = Context()
        rclpy.init(context=context, domain_id=lease.domain_id)
        try:
            with S.Scheduler(sched_cfg) as sched:
                scheduled = (ScheduledModel(denoiser, sched, 'dunet_d'),
                             ScheduledModel(target, sched, 'target'))
                scheduled_bg = [(n, ScheduledModel(m, sched, n), x) for n, m, x in bg]
                plain = (_plain_call(denoiser), _plain_call(target))
                plain_bg = [(n, _plain_call(m), x) for n, m, x in bg]
                for r in range(cfg.rounds):
                    n = min(per_round, cfg.frames - r * per_round)
                    for kind in kinds if n > 0 else []:
                        chain, loaders = ((plain, plain_bg) if kind == 'direct'
                                          else (scheduled, scheduled_bg))
                        for phase, background in (('isolated', []), ('loaded', loaders)):
                            progress(step, steps, {'round': r, 'phase': f'{kind} {phase}'})
                            runs[kind, phase].append(latency_phase(
                                context, 'priority' if kind == 'priority' else 'fifo', chain,
                                background, frames, n, cfg,
                                sched if kind != 'direct' else None))
                            step += 1
                progress(steps, steps, {})
        finally:
            rclpy.try_shutdown(context=context)
    results = {}
    for kind in kinds:
        r = results[kind] = {p: summarize_latency(runs[kind, p]) for p in ('isolated', 'loaded')}
        r['ratio'] = round(r['loaded']['p99_ms'] / r['isolated']['p99_ms'], 3)
    return results


# ------------------------------------------------------------------------ pipelining


def throughput(denoiser, target, frames, workers, threads, rounds) -> dict:
    """Return defended frames/s pipelined and sequential, and the target's alone."""
    sched_cfg = S.SchedulerConfig(workers=workers, intra_op_threads=threads)
    fps = {'target_alone': [], 'denoiser_alone': [], 'sequential': [], 'pipelined': []}
    with S.Scheduler(sched_cfg) as sched:
        d = ScheduledModel(denoiser, sched, 'denoiser')
        t = ScheduledModel(target, sched, 'target')
        overlap.sequential(d, t, frames[:1])  # warm-up
        for _ in range(rounds):
            for name, model in (('target_alone', t), ('denoiser_alone', d)):
                start = time.perf_counter()
                for i, x in enumerate(frames):
                    model(x, frame=i)
                fps[name].append(len(frames) / (time.perf_counter() - start))
            start = time.perf_counter()
            seq = overlap.sequential(d, t, frames)
            fps['sequential'].append(len(frames) / (time.perf_counter() - start))
            start = time.perf_counter()
            pipe = overlap.overlapped(d, t, frames, depth=2)
            fps['pipelined'].append(len(frames) / (time.perf_counter() - start))
    same = all(torch.allclose(a, b, atol=1e-4) for a, b in zip(seq, pipe))
    out = {k: round(statistics.median(v), 3) for k, v in fps.items()}
    # Perfect overlap: the slower stage alone sets the pace.
    bound = min(out['target_alone'], out['denoiser_alone'])
    out.update({'pipelined_vs_sequential': round(out['pipelined'] / out['sequential'], 3),
                'pipelined_vs_target': round(out['pipelined'] / out['target_alone'], 3),
                'pipelined_vs_bound': round(out['pipelined'] / bound, 3),
                'frames': len(frames), 'rounds': rounds, 'outputs_match': same,
                'workers': workers, 'threads': threads})
    return out


def pipeline_bench(cfg: SchedulerBenchConfig, progress: Progress) -> dict:
    """Measure pipelining for the small pair and (unless skipped) the full pair."""
    gen = torch.Generator().manual_seed(0)
    denoiser, target, trained = small_pair()
    frames = [torch.rand(1, 1, 28, 28, generator=gen) for _ in range(cfg.pipeline_frames)]
    progress(0, 2, {'pair': 'small'})
    out = {'small': throughput(denoiser, target, frames, cfg.pipeline_workers, cfg.threads,
                               cfg.pipeline_rounds)}
    out['small']['trained_weights'] = trained
    if cfg.full_frames > 0:
        progress(1, 2, {'pair': 'full'})
        denoiser, target = full_pair()
        frames = [torch.rand(1, 3, 299, 299, generator=gen) for _ in range(cfg.full_frames)]
        out['full'] = throughput(denoiser, target, frames, cfg.pipeline_workers, cfg.threads,
                                 cfg.full_rounds)
    progress(2, 2, {})
    return out
