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

"""``edge-denoise bench camera``: camera frames at real sizes between two processes."""

from __future__ import annotations

from .common import format_table, parse_list, positive_float, positive_int, ProgressBar
from ..core.frames import parse_size
from ..harness.camerabench import CameraBenchConfig, run as run_bench
from ..ros.dds import CAMERA_RELIABILITY


def fastdds_profile(text: str) -> str | None:
    """Argparse type of ``--fastdds-profile``: shipped -> '', none -> None, else a path."""
    return {'shipped': '', 'none': None}.get(text, text)


def register(p) -> None:
    """Add ``bench camera``'s arguments."""
    d = CameraBenchConfig()
    p.add_argument('--sizes', type=lambda t: parse_list(t, parse_size),
                   default=','.join(f'{w}x{h}' for w, h in d.sizes),
                   help='frame sizes WIDTHxHEIGHT (rgb8), comma-separated')
    p.add_argument('--rate', type=positive_float, default=d.rate, help='camera rate in Hz')
    p.add_argument('--frames', type=positive_int, default=d.frames, help='frames per size')
    p.add_argument('--qos', choices=CAMERA_RELIABILITY, default=d.reliability,
                   help='camera QoS reliability of publisher and subscriber (camera_qos)')
    p.add_argument('--depth', type=positive_int, default=d.depth,
                   help='camera QoS history depth (camera_qos_depth)')
    p.add_argument('--fastdds-profile', type=fastdds_profile, default='shipped',
                   metavar='shipped|none|PATH',
                   help='Fast DDS profile of both processes: the shipped large-data profile '
                        '(config/fastdds_large_data.xml), none (Fast DDS defaults) or a file')
    p.set_defaults(func=run)


def run(args) -> dict:
    """Run the benchmark and print its table."""
    sizes = [parse_size(s) if isinstance(s, str) else tuple(s) for s in args.sizes]
    cfg = CameraBenchConfig(sizes=tuple(sizes), rate=args.rate, frames=args.frames,
                            reliability=args.qos, depth=args.depth, profile=args.fastdds_profile)
    result = run_bench(cfg, progress=ProgressBar('bench camera'))
    print(format_table(result['rows'], ['size', 'sent', 'received', 'received_pct', 'p50_ms',
                                        'p99_ms']))
    profile = result['fastdds']['FASTDDS_DEFAULT_PROFILES_FILE'] or 'none (Fast DDS defaults)'
    print(f'camera QoS {cfg.reliability}, depth {cfg.depth}; Fast DDS profile: {profile}')
    return result
