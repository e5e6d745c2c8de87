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
``edge-denoise bench scheduler``: priority projection and pipelining, measured side by side.

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
"""

import os
import threading
import time

from .common import (add_command, format_table, parse_list, positive_float, positive_int,
                     ProgressBar)

CAMERA_PRIORITY = 10
BACKGROUND_PRIORITY = 0


def register(groups) -> None:
    """Add ``bench scheduler``."""
    p = add_command(groups['bench'], 'scheduler', run,
                    'chain latency under background load (priority vs FIFO) and '
                    'pipelined vs sequential defended frames/s')
    p.add_argument('--rate', type=positive_float, default=20.0, help='camera frames per second')
    p.add_argument('--frames', type=positive_int, default=200,
                   help='measured camera frames per latency phase')
    p.add_argument('--warmup', type=positive_int, default=5,
                   help='camera frames run before measuring, per phase and round')
    p.add_argument('--rounds', type=positive_int, default=4,
                   help='interleaved rounds the latency frames are split over')
    p.add_argument('--threads', type=positive_int, default=1,
                   help='torch intra-op threads per launcher worker')
    p.add_argument('--workers', type=positive_int, default=1,
                   help='launcher workers (the CPU "device") in the latency phases')
    p.add_argument('--spare-workers', type=int, default=0,
                   help='launcher slots only for a job outranking all running ones (see '
                        'core.scheduler.SchedulerConfig.spare_workers)')
    p.add_argument('--hold-ms', type=float, default=5.0,
                   help='scheduler session hold (see core.scheduler.SchedulerConfig.hold_s)')
    p.add_argument('--background-batches', type=lambda t: parse_list(t, int), default=[2, 8],
                   help='batch sizes of the two background models (DUNET small, small ResNet)')
    p.add_argument('--pipeline-frames', type=positive_int, default=60,
                   help='frames per pipelining measurement, small pair')
    p.add_argument('--pipeline-rounds', type=positive_int, default=3,
                   help='alternating rounds per pipelining measurement (median kept)')
    p.add_argument('--pipeline-workers', type=positive_int, default=2,
                   help='launcher workers in the pipelining runs')
    p.add_argument('--full-frames', type=int, default=4,
                   help='frames for DUNET_D full + inception_v3 at 299x299 (0: skip)')
    p.add_argument('--full-rounds', type=positive_int, default=2,
                   help='alternating rounds for the full pair (median kept)')
    p.add_argument('--no-direct', action='store_true',
                   help='skip the plain-torch MultiThreadedExecutor baseline')


# ---------------------------------------------------------------------------- models


def small_pair():
    """Return (DUNET_D small, default target): shipped weights when present, else untrained."""
    from ..core import dunet, models

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
    from ..core import dunet, models

    ranks = dunet.default_ranks(dunet.build_dunet('full'), 'paper')
    return dunet.build_dunet_d('full', ranks).eval(), models.build_model('inception_v3')


def background_models(batches):
    """Return the two low-priority background models and their inputs."""
    import torch

    from ..core import dunet, models

    if len(batches) != 2:
        raise ValueError(f'--background-batches takes two sizes, got {batches}')
    gen = torch.Generator().manual_seed(1)
    return [('background_dunet', dunet.build_dunet('small').eval(),
             torch.rand(batches[0], 1, 28, 28, generator=gen)),
            ('background_resnet', models.build_model(pretrained=False),
             torch.rand(batches[1], 1, 28, 28, generator=gen))]


def _plain_call(module):
    import torch

    @torch.no_grad()
    def call(x, frame=None):
        return module(x)
    return call


# ----------------------------------------------------------------------- ROS phases


def _nodes(context, chain, background, frames, period, total):
    """Build the camera chain node and the background nodes (priority groups declared)."""
    from rclpy.clock import Clock, ClockType
    from rclpy.node import Node
    from rclpy.timer import TimerInfo

    from ..ros.executor import priority_group

    clock = Clock(clock_type=ClockType.STEADY_TIME)

    class CameraChain(Node):
        """Denoise then classify one camera frame per timer tick; record the latency."""

        def __init__(self):
            super().__init__('camera_chain', context=context)
            group = priority_group(self, 'inference', default=CAMERA_PRIORITY)
            self.latencies, self.expected, self.done = [], [], threading.Event()
            self.denoiser, self.target = chain
            self.timer = self.create_timer(period, self.tick, callback_group=group, clock=clock)

        def tick(self, info: TimerInfo) -> None:
            i = len(self.latencies)
            if i >= total:
                self.done.set()
                return
            self.target(self.denoiser(frames[i % len(frames)], frame=i), frame=i)
            due = info.expected_call_time.nanoseconds
            self.latencies.append((clock.now().nanoseconds - due) / 1e6)
            self.expected.append(due)

    class Background(Node):
        """Run a low-priority model back to back (a 1 ms timer in its own group)."""

        def __init__(self, name, model, x):
            super().__init__(name, context=context)
            group = priority_group(self, 'inference', default=BACKGROUND_PRIORITY)
            self.model, self.x, self.forwards = model, x, 0
            self.timer = self.create_timer(0.001, self.tick, callback_group=group, clock=clock)

        def tick(self) -> None:
            self.model(self.x)
            self.forwards += 1

    return CameraChain(), [Background(*b) for b in background]


def latency_phase(context, kind, chain, background, frames, n, args, scheduler=None) -> dict:
    """
    Run the camera chain (with or without background) on one executor for ``n`` frames.

    Return the raw latencies (ms, after ``args.warmup`` frames), the timer
    ticks the chain fell behind on, the background forwards and device time.
    """
    import numpy as np
    from rclpy.executors import MultiThreadedExecutor

    from ..ros.executor import PriorityExecutor

    period = 1.0 / args.rate
    total = args.warmup + n
    camera, others = _nodes(context, chain, background, frames, period, total)
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
    gaps = np.diff(np.array(camera.expected[args.warmup:])) / 1e9
    return {'latencies': camera.latencies[args.warmup:],
            'skipped_ticks': int(np.maximum(np.round(gaps / period) - 1, 0).sum()),
            'background_forwards': [n.forwards for n in others],
            'busy_s': (scheduler.stats()['busy_s'] - busy0) if scheduler else None,
            'wall_s': wall}


def summarize(runs: list[dict]) -> dict:
    """Pool the latency runs of one condition into percentiles and counters."""
    import numpy as np

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


def priority_bench(args, progress) -> dict:
    """
    Measure the chain's latency alone and loaded, for priority, FIFO and direct.

    The conditions are interleaved in ``args.rounds`` rounds (each runs every
    executor alone then loaded) and pooled, so that a slow spell of a shared
    machine spreads over all of them instead of landing on one.
    """
    import rclpy
    import torch
    from rclpy.context import Context

    from ..core.scheduler import ScheduledModel, Scheduler, SchedulerConfig
    from ..harness.isolation import lease_domain

    denoiser, target, _ = small_pair()
    gen = torch.Generator().manual_seed(0)
    frames = [torch.rand(1, 1, 28, 28, generator=gen) for _ in range(16)]
    bg = background_models(args.background_batches)
    cfg = SchedulerConfig(workers=args.workers, spare_workers=args.spare_workers,
                          intra_op_threads=args.threads, hold_s=args.hold_ms / 1e3)
    kinds = ['priority', 'fifo'] + ([] if args.no_direct else ['direct'])
    runs = {(k, p): [] for k in kinds for p in ('isolated', 'loaded')}
    per_round = -(-args.frames // args.rounds)
    step, steps = 0, args.rounds * len(runs)
    with lease_domain() as lease:
        os.environ.update(lease.env())
        context = Context()
        rclpy.init(context=context, domain_id=lease.domain_id)
        try:
            with Scheduler(cfg) as sched:
                scheduled = (ScheduledModel(denoiser, sched, 'dunet_d'),
                             ScheduledModel(target, sched, 'target'))
                scheduled_bg = [(n, ScheduledModel(m, sched, n), x) for n, m, x in bg]
                plain = (_plain_call(denoiser), _plain_call(target))
                plain_bg = [(n, _plain_call(m), x) for n, m, x in bg]
                for r in range(args.rounds):
                    n = min(per_round, args.frames - r * per_round)
                    for kind in kinds if n > 0 else []:
                        chain, loaders = ((plain, plain_bg) if kind == 'direct'
                                          else (scheduled, scheduled_bg))
                        for phase, background in (('isolated', []), ('loaded', loaders)):
                            progress(step, steps, {'round': r, 'phase': f'{kind} {phase}'})
                            runs[kind, phase].append(latency_phase(
                                context, 'priority' if kind == 'priority' else 'fifo', chain,
                                background, frames, n, args,
                                sched if kind != 'direct' else None))
                            step += 1
                progress(steps, steps, {})
        finally:
            rclpy.try_shutdown(context=context)
    results = {}
    for kind in kinds:
        r = results[kind] = {p: summarize(runs[kind, p]) for p in ('isolated', 'loaded')}
        r['ratio'] = round(r['loaded']['p99_ms'] / r['isolated']['p99_ms'], 3)
    return results


# ------------------------------------------------------------------------ pipelining


def throughput(denoiser, target, frames, workers, threads, rounds) -> dict:
    """Return defended frames/s pipelined and sequential, and the target's alone."""
    import statistics

    import torch

    from ..core import scheduler as S

    cfg = S.SchedulerConfig(workers=workers, intra_op_threads=threads)
    fps = {'target_alone': [], 'denoiser_alone': [], 'sequential': [], 'pipelined': []}
    with S.Scheduler(cfg) as sched:
        d = S.ScheduledModel(denoiser, sched, 'denoiser')
        t = S.ScheduledModel(target, sched, 'target')
        S.sequential(d, t, frames[:1])  # warm-up
        for _ in range(rounds):
            for name, model in (('target_alone', t), ('denoiser_alone', d)):
                start = time.perf_counter()
                for i, x in enumerate(frames):
                    model(x, frame=i)
                fps[name].append(len(frames) / (time.perf_counter() - start))
            start = time.perf_counter()
            seq = S.sequential(d, t, frames)
            fps['sequential'].append(len(frames) / (time.perf_counter() - start))
            start = time.perf_counter()
            pipe = S.pipelined(d, t, frames, depth=2)
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


def pipeline_bench(args, progress) -> dict:
    """Measure pipelining for the small pair and (unless skipped) the full pair."""
    import torch

    gen = torch.Generator().manual_seed(0)
    denoiser, target, trained = small_pair()
    frames = [torch.rand(1, 1, 28, 28, generator=gen) for _ in range(args.pipeline_frames)]
    progress(0, 2, {'pair': 'small'})
    out = {'small': throughput(denoiser, target, frames, args.pipeline_workers, args.threads,
                               args.pipeline_rounds)}
    out['small']['trained_weights'] = trained
    if args.full_frames > 0:
        progress(1, 2, {'pair': 'full'})
        denoiser, target = full_pair()
        frames = [torch.rand(1, 3, 299, 299, generator=gen) for _ in range(args.full_frames)]
        out['full'] = throughput(denoiser, target, frames, args.pipeline_workers, args.threads,
                                 args.full_rounds)
    progress(2, 2, {})
    return out


# ------------------------------------------------------------------------------ run


def run(args) -> dict:
    """Run both benchmarks and print their tables."""
    import torch

    if not 0 <= args.hold_ms <= 1000:
        raise ValueError(f'--hold-ms must lie in [0, 1000], got {args.hold_ms}')
    load_before = [round(v, 2) for v in os.getloadavg()]
    priority = priority_bench(args, ProgressBar('bench scheduler: latency'))
    pipeline = pipeline_bench(args, ProgressBar('bench scheduler: pipelining'))
    load_after = [round(v, 2) for v in os.getloadavg()]

    rows = []
    for kind, r in priority.items():
        for phase in ('isolated', 'loaded'):
            rows.append({'executor': kind, 'phase': phase, **{
                k: r[phase].get(k) for k in ('p50_ms', 'p99_ms', 'max_ms', 'skipped_ticks',
                                             'device_busy')}})
        rows[-1]['ratio'] = r['ratio']
    print(format_table(rows, ['executor', 'phase', 'p50_ms', 'p99_ms', 'max_ms', 'ratio',
                              'skipped_ticks', 'device_busy']))
    keys = ('target_alone', 'denoiser_alone', 'sequential', 'pipelined',
            'pipelined_vs_sequential', 'pipelined_vs_bound', 'frames')
    prow = [{'pair': name, **{k: r[k] for k in keys}} for name, r in pipeline.items()]
    print(format_table(prow))
    print(f'camera {args.rate:g} Hz, {args.frames} frames/phase; torch threads {args.threads}; '
          f'load average {load_before} -> {load_after}')
    result = {
        'priority': {'isolated_p99_ms': priority['priority']['isolated']['p99_ms'],
                     'loaded_p99_ms': priority['priority']['loaded']['p99_ms'],
                     'ratio': priority['priority']['ratio'],
                     'isolated_p50_ms': priority['priority']['isolated']['p50_ms'],
                     'loaded_p50_ms': priority['priority']['loaded']['p50_ms']},
        'fifo': {'loaded_p99_ms': priority['fifo']['loaded']['p99_ms'],
                 'ratio': priority['fifo']['ratio'],
                 'isolated_p99_ms': priority['fifo']['isolated']['p99_ms'],
                 'isolated_p50_ms': priority['fifo']['isolated']['p50_ms'],
                 'loaded_p50_ms': priority['fifo']['loaded']['p50_ms']},
        'pipeline': pipeline,
        'details': priority,
        'config': {'rate_hz': args.rate, 'frames': args.frames, 'warmup': args.warmup,
                   'rounds': args.rounds,
                   'threads': args.threads, 'workers': args.workers,
                   'spare_workers': args.spare_workers, 'hold_ms': args.hold_ms,
                   'background_batches': args.background_batches,
                   'camera_priority': CAMERA_PRIORITY, 'background_priority': BACKGROUND_PRIORITY,
                   'device': 'cpu', 'cuda_available': torch.cuda.is_available(),
                   'cpus': len(os.sched_getaffinity(0)), 'torch': torch.__version__},
        'load_average': {'before': load_before, 'after': load_after},
    }
    if 'direct' in priority:
        result['direct'] = {'isolated_p99_ms': priority['direct']['isolated']['p99_ms'],
                            'loaded_p99_ms': priority['direct']['loaded']['p99_ms'],
                            'ratio': priority['direct']['ratio']}
    return result
