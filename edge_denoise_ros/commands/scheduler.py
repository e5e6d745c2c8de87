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

The measurements are :mod:`harness.scheduler_bench`'s; this command prints
their tables and the JSON result.
"""

import os

import torch

from .common import format_table, parse_list, positive_float, positive_int, ProgressBar
from ..harness.scheduler_bench import (BACKGROUND_PRIORITY, CAMERA_PRIORITY, pipeline_bench,
                                       priority_bench, SchedulerBenchConfig)


def register(p) -> None:
    """Add ``bench scheduler``'s arguments."""
    d = SchedulerBenchConfig()
    p.add_argument('--rate', type=positive_float, default=d.rate,
                   help='camera frames per second')
    p.add_argument('--frames', type=positive_int, default=d.frames,
                   help='measured camera frames per latency phase')
    p.add_argument('--warmup', type=positive_int, default=d.warmup,
                   help='camera frames run before measuring, per phase and round')
    p.add_argument('--rounds', type=positive_int, default=d.rounds,
                   help='interleaved rounds the latency frames are split over')
    p.add_argument('--threads', type=positive_int, default=d.threads,
                   help='torch intra-op threads per launcher worker')
    p.add_argument('--workers', type=positive_int, default=d.workers,
                   help='launcher workers (the CPU "device") in the latency phases')
    p.add_argument('--spare-workers', type=int, default=d.spare_workers,
                   help='launcher slots only for a job outranking all running ones (see '
                        'core.scheduler.SchedulerConfig.spare_workers)')
    p.add_argument('--hold-ms', type=float, default=d.hold_ms,
                   help='scheduler session hold (see core.scheduler.SchedulerConfig.hold_s)')
    p.add_argument('--background-batches', type=lambda t: parse_list(t, int),
                   default=list(d.background_batches),
                   help='batch sizes of the two background models (DUNET small, small ResNet)')
    p.add_argument('--pipeline-frames', type=positive_int, default=d.pipeline_frames,
                   help='frames per pipelining measurement, small pair')
    p.add_argument('--pipeline-rounds', type=positive_int, default=d.pipeline_rounds,
                   help='alternating rounds per pipelining measurement (median kept)')
    p.add_argument('--pipeline-workers', type=positive_int, default=d.pipeline_workers,
                   help='launcher workers in the pipelining runs')
    p.add_argument('--full-frames', type=int, default=d.full_frames,
                   help='frames for DUNET_D full + inception_v3 at 299x299 (0: skip)')
    p.add_argument('--full-rounds', type=positive_int, default=d.full_rounds,
                   help='alternating rounds for the full pair (median kept)')
    p.add_argument('--no-direct', action='store_true',
                   help='skip the plain-torch MultiThreadedExecutor baseline')
    p.set_defaults(func=run)


def run(args) -> dict:
    """Run both benchmarks and print their tables."""
    cfg = SchedulerBenchConfig(
        rate=args.rate, frames=args.frames, warmup=args.warmup, rounds=args.rounds,
        threads=args.threads, workers=args.workers, spare_workers=args.spare_workers,
        hold_ms=args.hold_ms, background_batches=tuple(args.background_batches),
        pipeline_frames=args.pipeline_frames, pipeline_rounds=args.pipeline_rounds,
        pipeline_workers=args.pipeline_workers, full_frames=args.full_frames,
        full_rounds=args.full_rounds, direct=not args.no_direct)
    cfg.check()
    load_before = [round(v, 2) for v in os.getloadavg()]
    priority = priority_bench(cfg, ProgressBar('bench scheduler: latency'))
    pipeline = pipeline_bench(cfg, ProgressBar('bench scheduler: pipelining'))
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
