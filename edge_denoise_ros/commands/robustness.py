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

"""``edge-denoise bench fuzz`` and ``bench soak``: hostile messages and a long stream."""

from __future__ import annotations

from .common import format_table, non_negative_int, positive_float, positive_int, ProgressBar
from ..harness.fuzz import FuzzConfig, run_fuzz, TARGETS
from ..harness.soak import run_soak, SoakConfig

FUZZ_FIELDS = ('cases', 'crashes', 'counted', 'uncounted', 'rss_growth_pct', 'worst_ms',
               'worst_mb', 'valid_classified_fraction')


def register_fuzz(p) -> None:
    """Add ``bench fuzz``'s arguments."""
    d = FuzzConfig()
    p.add_argument('--target', choices=TARGETS, default=d.target,
                   help='the node under test: host_node, or the edge (edge_process, raw '
                        'and compressed camera input, half of the cases each)')
    p.add_argument('--cases', type=positive_int, default=d.cases, help='hostile messages')
    p.add_argument('--seed', type=int, default=d.seed, help='seed of the cases')
    p.add_argument('--warmup', type=positive_int, default=d.warmup,
                   help='valid messages before the cases (their median CPU time is the '
                        "probe's cost taken off each case)")
    p.add_argument('--burst', type=non_negative_int, default=d.burst,
                   help='large bad messages sent back to back at the end, twice; the memory '
                        'each burst leaves behind is reported (0: none)')
    p.add_argument('--edge-node', action='store_true',
                   help='edge: the single edge_node instead of edge_process')
    p.add_argument('--log-dir', default=None, help='node logs (default: a temporary folder)')
    p.set_defaults(func=run_fuzz_command)


def run_fuzz_command(args) -> dict:
    """Run ``bench fuzz`` and print its figures and the worst classes."""
    cfg = FuzzConfig(target=args.target, cases=args.cases, seed=args.seed,
                     warmup=args.warmup, composed=not args.edge_node, log_dir=args.log_dir,
                     burst=args.burst)
    result = run_fuzz(cfg, progress=ProgressBar(f'bench fuzz {args.target}'))
    print(format_table([{k: result[k] for k in FUZZ_FIELDS}], list(FUZZ_FIELDS)))
    rows = [{'kind': kind, **k} for kind, k in result['by_kind'].items()]
    rows.sort(key=lambda r: -r['worst_ms'])
    print(format_table(rows, ['kind', 'n', 'classified', 'worst_ms', 'median_ms', 'worst_mb',
                              'median_mb']))
    return result


def register_soak(p) -> None:
    """Add ``bench soak``'s arguments."""
    d = SoakConfig()
    p.add_argument('--frames', type=positive_int, default=d.frames,
                   help='camera frames to publish')
    p.add_argument('--rate', type=positive_float, default=d.rate_hz, help='frames per second')
    p.add_argument('--warmup', type=positive_int, default=d.warmup,
                   help='frames left out of the memory and latency baselines')
    p.add_argument('--window', type=positive_int, default=d.window,
                   help='frames in the first and the last latency window')
    p.add_argument('--edge-node', action='store_true',
                   help='the single edge_node instead of edge_process')
    p.add_argument('--bundle', default=None,
                   help='a bundle the nodes serve; the frames are its held-out scenes '
                        '(default: the shipped 1x28x28 classifier, Fashion-MNIST frames)')
    p.add_argument('--frame-size', default=d.frame_size, help='camera frames WIDTHxHEIGHT')
    p.add_argument('--log-dir', default=None, help='node logs (default: a temporary folder)')
    p.set_defaults(func=run_soak_command)


def run_soak_command(args) -> dict:
    """Run ``bench soak`` and print its figures."""
    cfg = SoakConfig(frames=args.frames, rate_hz=args.rate, warmup=args.warmup,
                     window=args.window, composed=not args.edge_node, log_dir=args.log_dir,
                     bundle=args.bundle, frame_size=args.frame_size)
    result = run_soak(cfg, progress=ProgressBar('bench soak'))
    print(format_table([{k: result[k] for k in ('frames', 'classified', 'p99_first_ms',
                                                'p99_last_ms')}]))
    print('dropped:', result['dropped_by_reason'] or 'none')
    print('RSS growth after warm-up (%):', result['rss_growth_pct_by_node'])
    return result
