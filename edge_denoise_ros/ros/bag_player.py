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
``bag_player``: publish a rosbag2's messages with their recorded timing, like ``ros2 bag play``.

The messages of a bag directory (sqlite3 or MCAP storage) go out on live
rclpy publishers: ``rate``, ``loop``, a topic selection, ``old:=new``
remapping, QoS by type (camera images: sensor data; everything else:
reliable). They are published as the CDR bytes stored in the bag, never
re-serialized. Playback starts once every played camera topic has a
subscriber (up to ``wait_for_subscribers`` seconds, 10 by default): frames
published before the edge discovered the player would be lost uncounted.
The report says how many messages of each topic went out, and which topics
had no subscriber in time.
``main`` is the ``bag_player`` executable (``ros2 run edge_denoise_ros
bag_player BAG``), the same as ``edge-denoise bag play``.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
import json
import sys
import threading
import time

from rclpy.node import Node

from .bag import (absolute, CAMERA_QOS, CAMERA_TYPES, message_class, normalize_msgtype,
                  open_bag, Progress, qos_for_type, storage_of)
from .common import pub_events, spin_until_done
from .dds import use_shipped_profile

# After every played topic has a subscriber, wait this long more: DDS discovery
# is two-sided, and the subscribers may not have matched the publishers yet.
DISCOVERY_SETTLE_S = 0.3
# By default playback waits this long for a subscriber on every played camera topic.
DEFAULT_WAIT_S = 10.0


@dataclass
class PlayOptions:
    """How to play a bag (the options of ``ros2 bag play`` that matter here)."""

    rate: float = 1.0                 # playback speed factor (2.0: twice as fast)
    loop: bool = False                # start over at the end, until interrupted
    topics: tuple[str, ...] | None = None   # play only these topics (default: all)
    remap: dict[str, str] = field(default_factory=dict)  # '/old' -> 'new'
    delay: float = 0.0                # seconds to wait before the first message
    wait_for_subscribers: float = DEFAULT_WAIT_S  # wait up to this long (s) for subscribers
    camera_qos: str = 'sensor'        # camera topics: 'sensor' (best effort) or 'reliable'

    def check(self) -> None:
        """Raise ``ValueError`` for a bad option."""
        if not self.rate > 0:
            raise ValueError(f'rate must be > 0, got {self.rate}')
        if self.delay < 0 or self.wait_for_subscribers < 0:
            raise ValueError('delay and wait_for_subscribers must be >= 0')
        if self.camera_qos not in CAMERA_QOS:
            raise ValueError(f'camera QoS must be one of {CAMERA_QOS}, got {self.camera_qos!r}')


@dataclass
class PlayReport:
    """What a playback published: the counts let a consumer account for every message."""

    bag: str
    storage: str
    rate: float
    played: dict[str, int]            # published topic name -> messages published
    total: int
    loops: int                        # complete passes over the bag
    bag_duration_s: float             # span of the played messages in the bag
    wall_s: float                     # wall time from the first message to the last
    max_lag_ms: float                 # latest publish after its scheduled time
    skipped: dict[str, str] = field(default_factory=dict)  # bag topic -> reason
    unmatched: list[str] = field(default_factory=list)    # topics nobody subscribed in time
    interrupted: bool = False

    def as_dict(self) -> dict:
        """Return the report as a JSON-able dict."""
        return asdict(self)


class BagPlayer:
    """
    A ``bag_player`` node: one publisher per played topic, a thread that publishes on time.

    ``node`` is the rclpy Node (held, not subclassed, so this module imports
    without rclpy): add it to any executor, call ``start()``, wait for ``done``.
    Messages are timed from the first played message; ``report()`` says what
    went out, per published (remapped, resolved) topic name.
    """

    def __init__(self, bag, options: PlayOptions | None = None, node_name: str = 'bag_player',
                 context=None, progress: Progress | None = None):
        self.options = options or PlayOptions()
        self.options.check()
        self.reader = open_bag(bag)
        self.bag = str(bag)
        self.progress = progress
        self.node = Node(node_name, context=context)
        self.publishers = {}        # bag topic -> (published name, publisher)
        self.skipped = {}
        wanted = None
        if self.options.topics:
            wanted = {absolute(t) for t in self.options.topics}
            present = sorted({c.topic for c in self.reader.connections})
            missing = sorted(wanted - set(present))
            if missing:
                self.reader.close()
                self.node.destroy_node()
                raise ValueError(f'topic {missing[0]} is not in bag {bag}; it has '
                                 f'{", ".join(present)}')
        for conn in self.reader.connections:
            if (wanted is not None and conn.topic not in wanted) or conn.topic in self.publishers:
                continue
            try:
                cls = message_class(conn.msgtype)
            except ValueError as exc:
                self.skipped[conn.topic] = str(exc)
                self.node.get_logger().warning(f'skipping {conn.topic}: {exc}')
                continue
            name = self.options.remap.get(conn.topic, conn.topic)
            qos = qos_for_type(conn.msgtype, self.options.camera_qos)
            pub = self.node.create_publisher(cls, name, qos, event_callbacks=pub_events())
            self.publishers[conn.topic] = (pub.topic_name, pub)  # the resolved name
        self.connections = [c for c in self.reader.connections if c.topic in self.publishers]
        self.counts = {name: 0 for name, _ in self.publishers.values()}
        self.done = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.loops = 0
        self.max_lag = 0.0
        self.first_wall = self.last_wall = None
        self.first_stamp = self.last_stamp = None
        self.unmatched: list[str] = []
        self._thread = threading.Thread(target=self._run, name='bag_player', daemon=True)

    def start(self) -> None:
        """Start publishing (in a thread); ``done`` is set when playback ends."""
        self._thread.start()

    def awaited(self) -> list:
        """Return the publishers playback waits for: camera topics (all if there is none)."""
        camera = [self.publishers[c.topic] for c in self.connections
                  if normalize_msgtype(c.msgtype) in CAMERA_TYPES]
        return list(dict.fromkeys(camera)) if camera else list(self.publishers.values())

    def _wait_for_subscribers(self) -> None:
        deadline = time.monotonic() + self.options.wait_for_subscribers
        awaited = self.awaited()
        while not self.stop.is_set():
            waiting = [name for name, pub in awaited if pub.get_subscription_count() == 0]
            if not waiting:
                self.stop.wait(DISCOVERY_SETTLE_S)
                return
            if time.monotonic() >= deadline:
                self.unmatched = sorted(waiting)
                self.node.get_logger().warning(
                    f'no subscriber on {", ".join(self.unmatched)} after '
                    f'{self.options.wait_for_subscribers:g} s; playing anyway: what goes out '
                    f'before a subscriber matches is lost (start the subscriber first, or '
                    f'wait longer with --wait-for-subscribers)')
                return
            self.stop.wait(0.05)

    def _run(self) -> None:
        try:
            if self.options.wait_for_subscribers > 0:
                self._wait_for_subscribers()
            if self.options.delay > 0:
                self.stop.wait(self.options.delay)
            total = sum(c.msgcount for c in self.connections)
            while self.connections and not self.stop.is_set():
                self._play_once(total)
                if self.stop.is_set():
                    break
                self.loops += 1
                if not self.options.loop:
                    break
        except BaseException as exc:  # reported by play(); the thread must not die silently
            self.error = exc
        finally:
            self.done.set()

    def _play_once(self, total: int) -> None:
        start_ns = None
        t0 = time.monotonic()
        step = 0
        for conn, stamp, raw in self.reader.messages(connections=self.connections):
            if start_ns is None:
                start_ns = stamp
            due = t0 + (stamp - start_ns) / 1e9 / self.options.rate
            while not self.stop.is_set():
                wait = due - time.monotonic()
                if wait <= 0:
                    break
                self.stop.wait(min(wait, 0.1))
            if self.stop.is_set():
                return
            name, pub = self.publishers[conn.topic]
            try:
                pub.publish(raw if isinstance(raw, bytes) else bytes(raw))
            except Exception:
                if self.node.context.ok():
                    raise
                return      # Ctrl-C shut the context down before finish() stopped us: the end
            now = time.monotonic()
            if self.loops == 0:
                self.first_stamp = start_ns
                self.last_stamp = stamp
            self.max_lag = max(self.max_lag, now - due)
            self.first_wall = now if self.first_wall is None else self.first_wall
            self.last_wall = now
            self.counts[name] += 1
            step += 1
            if self.progress is not None:
                self.progress(step, total, {'loop': self.loops + 1})

    def report(self, interrupted: bool = False) -> PlayReport:
        """Return what was published so far."""
        span = 0.0 if self.first_stamp is None else (self.last_stamp - self.first_stamp) / 1e9
        wall = 0.0 if self.first_wall is None else self.last_wall - self.first_wall
        return PlayReport(bag=self.bag, storage=storage_of(self.reader),
                          rate=self.options.rate, played=dict(self.counts),
                          total=sum(self.counts.values()), loops=self.loops,
                          bag_duration_s=round(span, 6), wall_s=round(wall, 6),
                          max_lag_ms=round(self.max_lag * 1e3, 3), skipped=dict(self.skipped),
                          unmatched=list(self.unmatched), interrupted=interrupted)

    def halt(self) -> None:
        """Stop publishing and wait for the thread to end."""
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def finish(self, interrupted: bool = False) -> PlayReport:
        """Stop, report what was published, destroy the node and close the bag."""
        self.halt()
        report = self.report(interrupted=interrupted)
        self.destroy()
        return report

    def destroy(self) -> None:
        """Stop publishing, destroy the node, close the bag."""
        self.halt()
        self.node.destroy_node()
        if self.reader.is_open:
            self.reader.close()


def play(bag, options: PlayOptions | None = None, ros_args: list[str] | None = None,
         context=None, progress: Progress | None = None,
         node_name: str = 'bag_player') -> PlayReport:
    """
    Play a bag on live publishers until it ends (or, with ``loop``, until interrupted).

    ``ros_args`` go to ``rclpy.init`` (``['prog', '--ros-args', ...]``; default:
    none, so the process's own command line is not parsed by rcl); ``context`` is an
    rclpy ``Context`` to use (default: the global one, initialised and shut
    down here). Ctrl-C ends playback early: the report then says
    ``interrupted``. Returns the ``PlayReport``.
    """
    options = options or PlayOptions()
    options.check()
    open_bag(bag).close()  # a bad path fails here, before DDS starts
    return spin_until_done(lambda: BagPlayer(bag, options, node_name=node_name, context=context,
                                             progress=progress), context, ros_args)


def add_play_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``bag play``'s arguments (shared by ``edge-denoise bag play`` and ``bag_player``)."""
    parser.add_argument('bag', help='rosbag2 directory (sqlite3 or MCAP), or one .mcap/.db3 file')
    parser.add_argument('-r', '--rate', type=float, default=1.0,
                        help='playback speed factor (2: twice as fast)')
    parser.add_argument('-l', '--loop', action='store_true',
                        help='start over at the end, until interrupted')
    parser.add_argument('--topics', nargs='+', default=None, metavar='TOPIC',
                        help='play only these topics')
    parser.add_argument('--remap', '-m', nargs='+', default=[], metavar='OLD:=NEW',
                        help='publish topic OLD under the name NEW')
    parser.add_argument('-d', '--delay', type=float, default=0.0,
                        help='seconds to wait before the first message')
    parser.add_argument('--wait-for-subscribers', type=float, default=DEFAULT_WAIT_S,
                        metavar='SECONDS',
                        help='before playing, wait up to SECONDS for a subscriber on every '
                             'played camera topic (every played topic if none is a camera '
                             'topic); 0 plays at once')
    parser.add_argument('--camera-qos', choices=CAMERA_QOS, default='sensor',
                        help='QoS of camera topics (Image, CompressedImage, CameraInfo): '
                             'sensor data (best effort) or reliable; other topics are reliable')
    return parser


def play_options(args: argparse.Namespace) -> PlayOptions:
    """Build ``PlayOptions`` from parsed ``add_play_arguments`` arguments."""
    options = PlayOptions(rate=args.rate, loop=args.loop,
                          topics=tuple(args.topics) if args.topics else None,
                          remap=parse_remap(args.remap), delay=args.delay,
                          wait_for_subscribers=args.wait_for_subscribers,
                          camera_qos=args.camera_qos)
    options.check()
    return options


def format_play_report(report: PlayReport) -> str:
    """Render a play report as a small table and a summary line."""
    counts = {topic: f'{n:,}' for topic, n in report.played.items()}
    wt = max([len('topic'), *map(len, counts)])
    wn = max([len('published'), *map(len, counts.values())])
    lines = [f'{"topic":<{wt}}  {"published":<{wn}}', f'{"-" * wt}  {"-" * wn}']
    lines += [f'{topic:>{wt}}  {n:>{wn}}' for topic, n in counts.items()]
    if not counts:
        lines = ['(no rows)']
    lines += [f'skipped {topic}: {why}' for topic, why in report.skipped.items()]
    if report.unmatched:
        lines.append(f'no subscriber in time on: {", ".join(report.unmatched)}')
    lines.append(f'played {report.total} messages from {report.bag} ({report.storage}) at '
                 f'rate {report.rate:g}: {report.loops} full pass(es), '
                 f'{report.wall_s:.2f} s wall for {report.bag_duration_s:.2f} s of bag, '
                 f'max lag {report.max_lag_ms:.1f} ms'
                 + (' (interrupted)' if report.interrupted else ''))
    return '\n'.join(lines)


def parse_remap(rules) -> dict[str, str]:
    """
    Parse ``old:=new`` rules into ``{'/old': new}``.

    Old names are matched against the bag's (absolute) topic names, so a
    relative old name gets a leading ``/``; the new name is used as given
    (a relative one resolves in the player's namespace).
    """
    out = {}
    for rule in rules or ():
        old, sep, new = rule.partition(':=')
        old, new = old.strip(), new.strip()
        if not sep or not old or not new:
            raise ValueError(f'bad remapping {rule!r}; expected old:=new')
        out[absolute(old)] = new
    return out


def split_ros_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """
    Split ``argv`` into ``(own arguments, ['prog', '--ros-args', ...])``.

    Only the ``--ros-args ... [--]`` sections go to rcl: our ``--remap
    old:=new`` values must not be taken for (deprecated) bare ROS remapping
    rules, which rcl would apply to every name in the process.
    """
    own, ros = [], [argv[0]] if argv else []
    inside = False
    for arg in argv[1:]:
        if arg == '--ros-args':
            inside = True
            ros.append(arg)
        elif inside and arg == '--':
            inside = False
        else:
            (ros if inside else own).append(arg)
    return own, ros


def main(args: list[str] | None = None) -> int:
    """Run ``bag_player``: ``ros2 run edge_denoise_ros bag_player BAG [options]``."""
    argv = list(sys.argv if args is None else ['bag_player', *args])
    own, ros_args = split_ros_args(argv)
    parser = add_play_arguments(argparse.ArgumentParser(
        prog='bag_player', description='publish a rosbag2 (sqlite3 or MCAP) with its timing'))
    parser.add_argument('--json', action='store_true',
                        help='print the report as one JSON object on the last stdout line')
    parsed = parser.parse_args(own)
    use_shipped_profile()   # large camera frames arrive whole only with it (README: Fast DDS)
    try:
        report = play(parsed.bag, play_options(parsed), ros_args=ros_args)
    except (ValueError, FileNotFoundError) as exc:
        print(f'bag_player: error: {exc}', file=sys.stderr)
        return 2
    print(format_play_report(report))
    if parsed.json:
        print(json.dumps(report.as_dict()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
