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

"""``edge-denoise bag play|record|info``: rosbag2 bags with rosbags (no rosbag2_py)."""

from __future__ import annotations

from .common import format_table, positive_float, positive_int, ProgressBar
from ..ros.bag import bag_info, STORAGES
from ..ros.bag_player import add_play_arguments, format_play_report, play, play_options
from ..ros.bag_recorder import record
from ..ros.dds import use_shipped_profile


def register_play(p) -> None:
    """Add ``bag play``'s arguments (those of ``bag_player``) and ``--progress``."""
    add_play_arguments(p)
    p.add_argument('--progress', action='store_true', help='show a progress bar on stderr')
    p.set_defaults(func=run_play)


def register_record(p) -> None:
    """Add ``bag record``'s arguments."""
    p.add_argument('topics', nargs='+', metavar='TOPIC', help='topics to record')
    p.add_argument('-o', '--output', required=True, help='new bag directory')
    p.add_argument('-s', '--storage', choices=STORAGES, default='mcap', help='storage')
    p.add_argument('--duration', type=positive_float, default=None,
                   help='stop after this many seconds')
    p.add_argument('--max-messages', type=positive_int, default=None,
                   help='stop after this many messages (all topics together)')
    p.set_defaults(func=run_record)


def register_info(p) -> None:
    """Add ``bag info``'s arguments."""
    p.add_argument('bag', help='rosbag2 directory, or one .mcap/.db3 file')
    p.set_defaults(func=run_info)


def run_play(args) -> dict:
    """Play a bag and print what was published."""
    progress = ProgressBar('play') if args.progress else None
    use_shipped_profile()   # large camera frames: the publisher needs the profile too
    report = play(args.bag, play_options(args), progress=progress)
    print(format_play_report(report))
    return report.as_dict()


def run_record(args) -> dict:
    """Record topics and print the counts."""
    if args.duration is None and args.max_messages is None:
        print('recording until Ctrl-C (bound it with --duration or --max-messages)')
    use_shipped_profile()   # large best-effort camera frames arrive whole only with it
    result = record(args.output, args.topics, storage=args.storage, duration=args.duration,
                    max_messages=args.max_messages)
    rows = [{'topic': t, 'type': v['type'] or '(never seen)', 'messages': v['count']}
            for t, v in result['topics'].items()]
    print(format_table(rows))
    print(f'recorded {result["total"]} messages over {result["duration_s"]:.2f} s into '
          f'{result["bag"]} ({result["storage"]})')
    return result


def run_info(args) -> dict:
    """Print a bag's topics and counts."""
    info = bag_info(args.bag)
    rows = [{'topic': t, 'type': v['type'], 'messages': v['count']}
            for t, v in info['topics'].items()]
    print(format_table(rows))
    print(f'{info["messages"]} messages over {info["duration_s"]:.3f} s, storage '
          f'{info["storage"]}')
    for key, value in info['custom_data'].items():
        print(f'custom data {key}: {value}')
    return info
