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

"""``edge-denoise bench hosts``: one host, 1..N robots, batched and one by one side by side."""

from __future__ import annotations

from .common import format_table, parse_list, positive_float, positive_int, ProgressBar
from ..harness.hostbench import HostBenchConfig, plot, run as run_bench


def register(p) -> None:
    """Add ``bench hosts``'s arguments."""
    d = HostBenchConfig()
    p.add_argument('--robots', type=lambda t: parse_list(t, int), default=list(d.robots),
                   help='robot counts, comma-separated (one host serves them all)')
    p.add_argument('--rate', type=positive_float, default=d.rate_hz,
                   help='frames per second each robot sends')
    p.add_argument('--duration', type=positive_float, default=d.duration,
                   help='seconds each robot count is played, per side')
    p.add_argument('--warmup', type=float, default=d.warmup,
                   help='seconds at the start of each run left out of the figures')
    p.add_argument('--max-batch', type=positive_int, default=d.max_batch,
                   help='max_batch of the batched side (the other side runs max_batch 1)')
    p.add_argument('--max-batch-delay-ms', type=float, default=d.max_batch_delay_ms,
                   help='max_batch_delay_ms of the host')
    p.add_argument('--queue-depth', type=positive_int, default=d.queue_depth,
                   help='per-robot queue of the host (newest wins)')
    p.add_argument('--messages', type=positive_int, default=d.messages,
                   help='distinct feature messages recorded from the edge stage and replayed')
    p.add_argument('--bundle', default=d.bundle,
                   help="a bundle: its target and tails on the host, messages made from its "
                        "test frames by its edge stage (DUNET_D) at --cut/--codec/--quality")
    p.add_argument('--cut', default=d.cut, help='with --bundle: the edge\'s cut')
    p.add_argument('--codec', default=d.codec, help='with --bundle: the feature codec')
    p.add_argument('--quality', type=int, default=d.quality,
                   help='with --bundle: the JPEG quality (0: the edge default)')
    p.add_argument('--plot', default=None, help='write the plot here (e.g. '
                   'docs/results/hosts.png)')
    p.add_argument('--log-dir', default=None, help='host logs (default: a temporary folder)')
    p.set_defaults(func=run)


def run(args) -> dict:
    """Run the benchmark and print its table and the bar."""
    cfg = HostBenchConfig(robots=tuple(args.robots), rate_hz=args.rate,
                          duration=args.duration, warmup=args.warmup,
                          max_batch=args.max_batch, max_batch_delay_ms=args.max_batch_delay_ms,
                          queue_depth=args.queue_depth, messages=args.messages,
                          bundle=args.bundle or '', cut=args.cut, codec=args.codec,
                          quality=args.quality, log_dir=args.log_dir)
    result = run_bench(cfg, progress=ProgressBar('bench hosts'))
    print(format_table(result['rows'], ['robots', 'batched', 'offered_per_s', 'frames_per_s',
                                        'p50_ms', 'p99_ms', 'dropped', 'played',
                                        'mean_batch', 'unaccounted']))
    bar = result['bar']
    for point in bar['points']:
        print(f'{point["robots"]} robots (one by one saturated): batched '
              f'{point["ratio"]}x the frames/s, p99 {point["p99_batched_ms"]} ms vs '
              f'{point["p99_unbatched_ms"]} ms -> {"met" if point["met"] else "NOT met"}')
    if not bar['points']:
        print('one-by-one serving never saturated: add robot counts to find where it does')
    if args.plot:
        result['plot'] = str(plot(result, args.plot))
        print(f'plot: {result["plot"]}')
    return result
