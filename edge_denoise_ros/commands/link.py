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

"""``edge-denoise bench link``: offloading strategies over a real, shaped link."""

from __future__ import annotations

from .common import format_table, parse_list, positive_float, positive_int, ProgressBar
from ..harness.linkbench import (AUTO_STRATEGIES, LinkBenchConfig, run as run_bench,
                                 STRATEGIES)


def register(p) -> None:
    """Add ``bench link``'s arguments."""
    d = LinkBenchConfig()
    p.add_argument('--rates', type=lambda t: parse_list(t, float), default=list(d.rates),
                   help='uplink rates in Mbit/s, comma-separated')
    p.add_argument('--downlink', type=positive_float, default=d.downlink,
                   help='downlink rate in Mbit/s')
    p.add_argument('--declared-mbps', type=positive_float, default=None,
                   help='the uplink the edge is told and plans with (default: each of --rates): '
                        'a link slower or faster than the robot was configured for')
    p.add_argument('--strategies', type=parse_list, default=list(STRATEGIES),
                   help=f'comma-separated, of {",".join(STRATEGIES)}')
    p.add_argument('--duration', type=positive_float, default=d.duration,
                   help='seconds of camera replay per strategy and rate')
    p.add_argument('--warmup', type=float, default=d.warmup,
                   help='seconds at the start of each run left out of the figures')
    p.add_argument('--edge-cpus', type=positive_float, default=d.edge_cpus,
                   help='a really weak edge: hold the edge process to this many cores with a '
                        'cgroup CPU quota (0.25: a quarter core); its planner profile is '
                        'measured under the same quota')
    p.add_argument('--edge-slowdown', type=positive_float, default=d.edge_slowdown,
                   help='what-if only: make every edge model stage k times slower by waiting '
                        '(and plan for it); measured figures come from --edge-cpus')
    p.add_argument('--frame-size', default=d.frame_size,
                   help='camera frames WIDTHxHEIGHT of the bench bag (the demo frames '
                        'stretched)')
    p.add_argument('--image-quality', type=positive_int, default=d.image_quality,
                   help='JPEG quality of the host-only jpeg strategy')
    p.add_argument('--feature-quality', type=positive_int, default=d.feature_quality,
                   help='JPEG quality of the split_jpeg and auto strategies')
    p.add_argument('--bag', default=d.bag, help='camera bag (default: the demo bag at '
                   '--frame-size, out/link_bag_<size>, made if missing)')
    p.add_argument('--defense', default=d.defense,
                   help='the edge\'s defense (the host runs it for host-only frames)')
    p.add_argument('--bundle', default=d.bundle,
                   help="a bundle: its target, defenses and tails on both sides, its test frames "
                        "(half PGD-attacked at 8/255) at --frame-size as the camera")
    p.add_argument('--out', default=None, help='folder for link.json and link.png')
    p.add_argument('--log-dir', default=None, help='node logs (default: a temporary folder)')
    p.set_defaults(func=run)


def run(args) -> dict:
    """Run the benchmark and print its table."""
    cfg = LinkBenchConfig(rates=tuple(args.rates), downlink=args.downlink,
                          declared=args.declared_mbps,
                          strategies=tuple(args.strategies), duration=args.duration,
                          warmup=args.warmup, edge_slowdown=args.edge_slowdown,
                          edge_cpus=args.edge_cpus, frame_size=args.frame_size,
                          image_quality=args.image_quality,
                          feature_quality=args.feature_quality, bag=args.bag,
                          bundle=args.bundle or '', defense=args.defense, out=args.out,
                          log_dir=args.log_dir)
    result = run_bench(cfg, progress=ProgressBar('bench link'))
    print(format_table(result['rows'], ['rate_mbps', 'declared_mbps', 'strategy', 'fps',
                                        'p50_ms', 'p99_ms', 'bytes_per_frame', 'accuracy',
                                        'edge_cpu', 'dropped', 'cut', 'codec']))
    if result.get('edge_quota'):
        q = result['edge_quota']
        print(f"edge held to {q['cpus']:g} cores (cgroup {q['cgroup']}, {q['quota_us']} us per "
              f"{q['period_us']} us); edge_cpu: cores the edge process used")
    by_rate = {}
    for r in result['rows']:
        by_rate.setdefault(r['rate_mbps'], {})[r['strategy']] = r['fps']
    for rate, fps in by_rate.items():
        notes = []
        if 'raw' in fps and 'split_jpeg' in fps:
            ratio = fps['split_jpeg'] / fps['raw'] if fps['raw'] else float('inf')
            notes.append(f'split_jpeg/raw {ratio:.1f}x')
        best = max(fps.values())
        for name in AUTO_STRATEGIES:
            if name in fps and len(fps) > 1:
                notes.append(f'{name} {fps[name] / best:.0%} of the best' if best
                             else 'no frames')
        if notes:
            print(f'{rate:g} Mbit/s: ' + ', '.join(notes))
    if 'plot' in result:
        print(f'plot: {result["plot"]}')
    return result
