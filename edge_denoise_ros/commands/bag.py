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

"""``edge-denoise bag ...``: play, record, inspect and make rosbag2 bags (with rosbags)."""

from __future__ import annotations

import time

from .common import (CliError, ProgressBar, add_command, format_table, positive_float,
                     positive_int, set_threads)


def register(groups) -> None:
    """Add the ``bag`` group: ``play``, ``record``, ``info``, ``make-demo``."""
    from ..ros import bag

    group = groups[''].add_parser('bag', help='rosbag2: play, record, info, make-demo',
                                  description='rosbag2 bags (sqlite3 or MCAP) without '
                                              'rosbag2_py: play, record, info, make-demo')
    sub = group.add_subparsers(dest='bag_command', metavar='WHAT', required=True)

    p = add_command(sub, 'play', run_play,
                    "publish a bag's messages with their recorded timing (like ros2 bag play)")
    bag.add_play_arguments(p)
    p.add_argument('--progress', action='store_true', help='show a progress bar on stderr')

    p = add_command(sub, 'record', run_record, 'record topics into a new rosbag2 (MCAP default)')
    p.add_argument('topics', nargs='+', metavar='TOPIC', help='topics to record')
    p.add_argument('-o', '--output', required=True, help='new bag directory')
    p.add_argument('-s', '--storage', choices=bag.STORAGES, default='mcap', help='storage')
    p.add_argument('--duration', type=positive_float, default=None,
                   help='stop after this many seconds')
    p.add_argument('--max-messages', type=positive_int, default=None,
                   help='stop after this many messages (all topics together)')

    p = add_command(sub, 'info', run_info, "a bag's storage, span, topics and message counts")
    p.add_argument('bag', help='rosbag2 directory, or one .mcap/.db3 file')

    d = bag.DemoBagConfig()
    p = add_command(sub, 'make-demo', run_make_demo,
                    'write the demo camera bag: Fashion-MNIST test frames, half clean and half '
                    'PGD-adversarial against the target, ground truth on a second topic')
    p.add_argument('-o', '--output', default=bag.DEFAULT_DEMO_BAG, help='new bag directory')
    p.add_argument('--frames', type=positive_int, default=d.frames, help='camera frames')
    p.add_argument('--size', type=positive_int, default=d.size,
                   help='frame side in pixels (a multiple of 28)')
    p.add_argument('--encoding', choices=('bgr8', 'rgb8', 'mono8'), default=d.encoding,
                   help='image encoding')
    p.add_argument('--rate', type=positive_float, default=d.rate_hz, help='camera rate in Hz')
    p.add_argument('--adversarial-fraction', type=float, default=d.adversarial_fraction,
                   help='share of frames attacked with PGD')
    p.add_argument('--eps', type=positive_float, default=d.eps, help='PGD L-inf budget')
    p.add_argument('--steps', type=positive_int, default=d.steps, help='PGD steps')
    p.add_argument('--step-size', type=positive_float, default=d.step_size, help='PGD step')
    p.add_argument('--seed', type=int, default=d.seed, help='seed of every random choice')
    p.add_argument('-s', '--storage', choices=bag.STORAGES, default=d.storage, help='storage')
    p.add_argument('--compressed', choices=('png', 'jpeg'), default=None,
                   help='write sensor_msgs/CompressedImage on <camera-topic>/compressed '
                        '(png is lossless; jpeg alters the adversarial noise)')
    p.add_argument('--jpeg-quality', type=positive_int, default=d.jpeg_quality,
                   help='JPEG quality with --compressed jpeg')
    p.add_argument('--camera-topic', default=d.camera_topic, help='camera topic')
    p.add_argument('--truth-topic', default=d.truth_topic, help='ground-truth topic')
    p.add_argument('--model', default=d.model, help='target model attacked')
    p.add_argument('--force', action='store_true', help='replace an existing bag')
    p.add_argument('--threads', type=positive_int, default=None, help='torch intra-op threads')


def run_play(args) -> dict:
    """Play a bag and print what was published."""
    from ..ros import bag

    progress = ProgressBar('play') if args.progress else None
    report = bag.play(args.bag, bag.play_options(args), progress=progress)
    print(bag.format_play_report(report))
    return report.as_dict()


def run_record(args) -> dict:
    """Record topics and print the counts."""
    from ..ros import bag

    if args.duration is None and args.max_messages is None:
        print('recording until Ctrl-C (bound it with --duration or --max-messages)')
    result = bag.record(args.output, args.topics, storage=args.storage, duration=args.duration,
                        max_messages=args.max_messages)
    rows = [{'topic': t, 'type': v['type'] or '(never seen)', 'messages': v['count']}
            for t, v in result['topics'].items()]
    print(format_table(rows))
    print(f'recorded {result["total"]} messages over {result["duration_s"]:.2f} s into '
          f'{result["bag"]} ({result["storage"]})')
    return result


def run_info(args) -> dict:
    """Print a bag's topics and counts."""
    from ..ros import bag

    info = bag.bag_info(args.bag)
    rows = [{'topic': t, 'type': v['type'], 'messages': v['count']}
            for t, v in info['topics'].items()]
    print(format_table(rows))
    print(f'{info["messages"]} messages over {info["duration_s"]:.3f} s, storage '
          f'{info["storage"]}')
    for key, value in info['custom_data'].items():
        print(f'custom data {key}: {value}')
    return info


def run_make_demo(args) -> dict:
    """Write the demo bag; print its size and the undefended target's accuracy on it."""
    from ..ros import bag

    set_threads(args.threads)
    cfg = bag.DemoBagConfig(
        frames=args.frames, size=args.size, encoding=args.encoding, rate_hz=args.rate,
        adversarial_fraction=args.adversarial_fraction, eps=args.eps, steps=args.steps,
        step_size=args.step_size, seed=args.seed, storage=args.storage,
        compressed=args.compressed, jpeg_quality=args.jpeg_quality,
        camera_topic=args.camera_topic, truth_topic=args.truth_topic, model=args.model)
    if not 0 <= cfg.adversarial_fraction <= 1:
        raise CliError(f'--adversarial-fraction must be in [0, 1], got {cfg.adversarial_fraction}')
    start = time.monotonic()
    result = bag.make_demo_bag(args.output, cfg, overwrite=args.force,
                               progress=ProgressBar('make-demo'))
    result['seconds'] = round(time.monotonic() - start, 2)
    acc = result['target_accuracy']
    print(format_table([
        {'frames': 'clean', 'n': result['clean'], 'target accuracy': acc['clean']},
        {'frames': 'adversarial', 'n': result['adversarial'],
         'target accuracy': acc['adversarial']}]))
    print(f'wrote {result["bag"]} ({result["storage"]}, {result["bytes"] / 1e6:.1f} MB): '
          f'{result["frames"]} {result["size"]}x{result["size"]} {result["encoding"]} frames '
          f'on {result["camera_topic"]} at {result["rate_hz"]:g} Hz, ground truth on '
          f'{result["truth_topic"]}, in {result["seconds"]:.1f} s')
    return result
