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
rosbag2 without rosbag2_py: play, record, inspect and make bags with ``rosbags``.

- ``play``: publishes a rosbag2 directory's messages (sqlite3 or MCAP storage)
  on live rclpy publishers with their recorded timing, like ``ros2 bag play``:
  ``rate``, ``loop``, a topic selection, ``old:=new`` remapping, QoS by type
  (camera images: sensor data; everything else: reliable). The messages are
  published as the CDR bytes stored in the bag, never re-serialized. It
  reports how many messages of each topic it published.
- ``record``: subscribes to topics (their types and QoS found by discovery)
  and writes the CDR bytes it receives to a rosbag2 (MCAP by default).
- ``make_demo_bag``: a camera bag of Fashion-MNIST test frames, half clean and
  half PGD-adversarial against the target, with the ground truth of every
  frame on a second topic. Seeded: the same settings give the same messages.
- ``main``: the ``bag_player`` executable (``ros2 run edge_denoise_ros
  bag_player BAG``), the same as ``edge-denoise bag play``.

rosbags messages and rclpy messages are converted through their common CDR
encoding (``rosbags``' ``serialize_cdr`` / ``deserialize_cdr`` on one side,
``rclpy.serialization`` on the other).
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

STORAGES = ('mcap', 'sqlite3')
# rosbag2 metadata version written: 8 is read by Jazzy and newer (and by rosbags).
BAG_VERSION = 8
# The message definitions the bags are written with: the distribution of the
# installed message packages (Kilted); standard types are identical in Jazzy.
TYPESTORE = 'ros2_kilted'
CAMERA_TYPES = frozenset({'sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage',
                          'sensor_msgs/msg/CameraInfo'})
CAMERA_QOS = ('sensor', 'reliable')
DEFAULT_DEMO_BAG = 'out/demo_bag'
DEMO_METADATA_KEY = 'edge_denoise_demo'
# After every played topic has a subscriber, wait this long more: DDS discovery
# is two-sided, and the subscribers may not have matched the publishers yet.
DISCOVERY_SETTLE_S = 0.3

Progress = Callable[[int, int, dict], None]

_TYPESTORE = None


def typestore():
    """Return the rosbags typestore of ``TYPESTORE`` (built once)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore
        _TYPESTORE = get_typestore(Stores(TYPESTORE))
    return _TYPESTORE


# --- message types and conversions -------------------------------------------------------------

def normalize_msgtype(msgtype: str) -> str:
    """Return ``pkg/msg/Name`` for ``pkg/msg/Name`` or ``pkg/Name``."""
    parts = msgtype.strip().split('/')
    if len(parts) == 2:
        parts = [parts[0], 'msg', parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f'bad message type {msgtype!r}; expected pkg/msg/Name')
    return '/'.join(parts)


def message_class(msgtype: str):
    """Import the rclpy message class of ``pkg/msg/Name`` (``ValueError`` if not installed)."""
    pkg, kind, name = normalize_msgtype(msgtype).split('/')
    try:
        return getattr(importlib.import_module(f'{pkg}.{kind}'), name)
    except (ImportError, AttributeError):
        raise ValueError(f'message type {msgtype} is not installed in this Python '
                         f'(no module {pkg}.{kind} with {name})') from None


def msgtype_of(msg) -> str:
    """Return ``pkg/msg/Name`` of an rclpy message (or message class)."""
    cls = msg if isinstance(msg, type) else type(msg)
    pkg, kind = cls.__module__.split('.')[:2]
    return f'{pkg}/{kind}/{cls.__name__}'


def to_cdr(msg) -> bytes:
    """Serialize an rclpy message to the CDR bytes a bag stores."""
    from rclpy.serialization import serialize_message
    return serialize_message(msg)


def canonical_cdr(msg) -> bytes:
    """
    Serialize an rclpy message with zeroed alignment padding (rosbags' serializer).

    rclpy's serializer leaves padding bytes uninitialised, so the same message
    can give different bytes; bags written from these are byte-reproducible.
    """
    msgtype = msgtype_of(msg)
    return bytes(typestore().serialize_cdr(typestore().deserialize_cdr(to_cdr(msg), msgtype),
                                           msgtype))


def from_cdr(data: bytes, msgtype: str):
    """Deserialize CDR bytes into an rclpy message of ``msgtype``."""
    from rclpy.serialization import deserialize_message
    return deserialize_message(bytes(data), message_class(msgtype))


def rclpy_to_rosbags(msg):
    """Convert an rclpy message to the rosbags message with the same CDR bytes."""
    return typestore().deserialize_cdr(to_cdr(msg), msgtype_of(msg))


def rosbags_to_rclpy(msg):
    """Convert a rosbags message to the rclpy message with the same CDR bytes."""
    msgtype = msg.__msgtype__
    return from_cdr(bytes(typestore().serialize_cdr(msg, msgtype)), msgtype)


def camera_qos_profile():
    """Return the QoS of camera topics: ``qos_profile_sensor_data`` (best effort, depth 5)."""
    from rclpy.qos import qos_profile_sensor_data
    return qos_profile_sensor_data


def reliable_qos_profile(depth: int = 100):
    """Return the QoS of every other topic: reliable, volatile, keep last ``depth``."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def qos_for_type(msgtype: str, camera_qos: str = 'sensor'):
    """Return the QoS a topic of ``msgtype`` is played with (camera types: ``camera_qos``)."""
    if camera_qos not in CAMERA_QOS:
        raise ValueError(f'camera QoS must be one of {CAMERA_QOS}, got {camera_qos!r}')
    if normalize_msgtype(msgtype) in CAMERA_TYPES and camera_qos == 'sensor':
        return camera_qos_profile()
    return reliable_qos_profile()


def rosbags_qos(profile):
    """Convert an rclpy ``QoSProfile`` to the ``rosbags`` Qos recorded in a bag's metadata."""
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)

    def duration(d):
        ns = d.nanoseconds
        return QosTime(ns // 10**9, ns % 10**9)

    return Qos(history=QosHistory(int(profile.history)), depth=int(profile.depth),
               reliability=QosReliability(int(profile.reliability)),
               durability=QosDurability(int(profile.durability)),
               deadline=duration(profile.deadline), lifespan=duration(profile.lifespan),
               liveliness=QosLiveliness(int(profile.liveliness)),
               liveliness_lease_duration=duration(profile.liveliness_lease_duration),
               avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions))


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


def absolute(topic: str) -> str:
    """Return ``topic`` with a leading ``/``."""
    return topic if topic.startswith('/') else '/' + topic


def storage_plugin(storage: str):
    """Return the rosbags ``StoragePlugin`` of ``'mcap'`` or ``'sqlite3'``."""
    from rosbags.rosbag2 import StoragePlugin
    if storage not in STORAGES:
        raise ValueError(f'storage must be one of {STORAGES}, got {storage!r}')
    return StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3


# --- reading ---------------------------------------------------------------------------------

def open_bag(path):
    """
    Open a rosbag2 for reading: a bag directory, or one ``.mcap`` / ``.db3`` file.

    Returns an open ``rosbags.rosbag2.Reader``. A missing path is a
    ``FileNotFoundError``; anything that is not a readable bag a ``ValueError``
    saying why.
    """
    from rosbags.rosbag2 import Reader, ReaderError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'bag not found: {path}')
    if path.is_dir() and not (path / 'metadata.yaml').is_file():
        raise ValueError(f'{path} is not a rosbag2 directory (no metadata.yaml in it)')
    try:
        reader = Reader(path)
        reader.open()
    except ReaderError as exc:
        raise ValueError(f'cannot read bag {path}: {exc}') from None
    except Exception as exc:  # a damaged storage file: sqlite3 / mcap errors of every kind
        raise ValueError(f'cannot read bag {path}: {type(exc).__name__}: {exc}') from None
    return reader


def _storage_of(reader) -> str:
    storage = getattr(reader.storage, 'storages', None) or [reader.storage]
    name = type(storage[0]).__name__.lower()
    return 'mcap' if 'mcap' in name else 'sqlite3'


def bag_info(path) -> dict:
    """Describe a bag: storage, message count, span, topics (type, count), custom data."""
    reader = open_bag(path)
    try:
        topics = {topic: {'type': info.msgtype, 'count': info.msgcount}
                  for topic, info in sorted(reader.topics.items())}
        count = reader.message_count
        meta = getattr(reader.storage, 'metadata', None)
        custom = dict(getattr(meta, 'custom', None) or {})
        return {'bag': str(path), 'storage': _storage_of(reader), 'messages': count,
                'duration_s': round(reader.duration / 1e9, 6) if count else 0.0,
                'start_ns': reader.start_time if count else None,
                'topics': topics, 'custom_data': custom}
    finally:
        reader.close()


def read_messages(path, topics=None):
    """
    Yield ``(topic, msgtype, timestamp_ns, rclpy message)`` for every message of a bag.

    ``topics`` (names, with or without the leading ``/``) limits the topics.
    """
    reader = open_bag(path)
    try:
        wanted = None if topics is None else {absolute(t) for t in topics}
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not conns:
            return
        for conn, stamp, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, stamp, from_cdr(raw, conn.msgtype)
    finally:
        reader.close()


# --- play ------------------------------------------------------------------------------------

@dataclass
class PlayOptions:
    """How to play a bag (the options of ``ros2 bag play`` that matter here)."""

    rate: float = 1.0                 # playback speed factor (2.0: twice as fast)
    loop: bool = False                # start over at the end, until interrupted
    topics: tuple[str, ...] | None = None   # play only these topics (default: all)
    remap: dict[str, str] = field(default_factory=dict)  # '/old' -> 'new'
    delay: float = 0.0                # seconds to wait before the first message
    wait_for_subscribers: float = 0.0  # wait up to this long for a subscriber per topic
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
        from rclpy.node import Node

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
        from .common import pub_events

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

    def _wait_for_subscribers(self) -> None:
        deadline = time.monotonic() + self.options.wait_for_subscribers
        while not self.stop.is_set():
            waiting = [name for name, pub in self.publishers.values()
                       if pub.get_subscription_count() == 0]
            if not waiting:
                self.stop.wait(DISCOVERY_SETTLE_S)
                return
            if time.monotonic() >= deadline:
                self.unmatched = sorted(waiting)
                self.node.get_logger().warning(
                    f'no subscriber on {", ".join(self.unmatched)} after '
                    f'{self.options.wait_for_subscribers:g} s; playing anyway')
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
            pub.publish(raw if isinstance(raw, bytes) else bytes(raw))
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
        return PlayReport(bag=self.bag, storage=_storage_of(self.reader),
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
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.utilities import get_default_context

    options = options or PlayOptions()
    options.check()
    open_bag(bag).close()  # a bad path fails here, before DDS starts
    own = not (context or get_default_context()).ok()
    if own:
        rclpy.init(args=ros_args or [sys.argv[0]], context=context)
    player = None
    interrupted = False
    try:
        player = BagPlayer(bag, options, node_name=node_name, context=context,
                           progress=progress)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(player.node)
        player.start()
        while not player.done.is_set():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        interrupted = True
    finally:
        if player is not None:
            player.halt()
            report = player.report(interrupted=interrupted)
            player.destroy()
        if own:
            rclpy.try_shutdown(context=context)
    if player is None:
        raise KeyboardInterrupt
    if player.error is not None:
        raise player.error
    return report


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
    parser.add_argument('--wait-for-subscribers', type=float, default=0.0, metavar='SECONDS',
                        help='before playing, wait up to SECONDS for a subscriber on every '
                             'played topic')
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
    from ..commands.common import format_table

    rows = [{'topic': topic, 'published': n} for topic, n in report.played.items()]
    lines = [format_table(rows)]
    lines += [f'skipped {topic}: {why}' for topic, why in report.skipped.items()]
    if report.unmatched:
        lines.append(f'no subscriber in time on: {", ".join(report.unmatched)}')
    lines.append(f'played {report.total} messages from {report.bag} ({report.storage}) at '
                 f'rate {report.rate:g}: {report.loops} full pass(es), '
                 f'{report.wall_s:.2f} s wall for {report.bag_duration_s:.2f} s of bag, '
                 f'max lag {report.max_lag_ms:.1f} ms'
                 + (' (interrupted)' if report.interrupted else ''))
    return '\n'.join(lines)


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
    try:
        report = play(parsed.bag, play_options(parsed), ros_args=ros_args)
    except (ValueError, FileNotFoundError) as exc:
        print(f'bag_player: error: {exc}', file=sys.stderr)
        return 2
    print(format_play_report(report))
    if parsed.json:
        print(json.dumps(report.as_dict()))
    return 0


# --- record ----------------------------------------------------------------------------------

class BagRecorder:
    """
    A ``bag_recorder`` node: raw subscriptions whose CDR bytes go into a rosbag2.

    Topics are subscribed as soon as discovery shows them (their type and
    publishers' QoS come from the graph): best effort if any publisher is
    best effort, reliable otherwise.
    """

    def __init__(self, out, topics, storage: str = 'mcap', node_name: str = 'bag_recorder',
                 context=None, progress: Progress | None = None,
                 max_messages: int | None = None):
        from rclpy.node import Node
        from rosbags.rosbag2 import Writer

        if not topics:
            raise ValueError('name at least one topic to record')
        self.out = Path(out)
        if self.out.exists():
            raise ValueError(f'{self.out} exists already; choose a new output directory')
        self.topics = [absolute(t) for t in topics]
        self.storage = storage
        self.max_messages = max_messages
        self.progress = progress
        self.writer = Writer(self.out, version=BAG_VERSION, storage_plugin=storage_plugin(storage))
        self.writer.open()
        self.node = Node(node_name, context=context)
        self.connections = {}
        self.counts = {t: 0 for t in self.topics}
        self.types = {}
        self.subscriptions = []
        self.done = threading.Event()
        self.first_ns = self.last_ns = None
        self.error: BaseException | None = None
        self._discover()
        self.timer = self.node.create_timer(0.1, self._discover)

    def _discover(self) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        pending = [t for t in self.topics if t not in self.connections]
        if not pending:
            return
        graph = dict(self.node.get_topic_names_and_types())
        for topic in pending:
            types = graph.get(topic)
            if not types:
                continue
            msgtype = normalize_msgtype(types[0])
            infos = self.node.get_publishers_info_by_topic(topic)
            if not infos:
                continue
            try:
                cls = message_class(msgtype)
                typestore().get_msgdef(msgtype)
            except Exception as exc:
                self.error = ValueError(f'cannot record {topic} ({msgtype}): {exc}')
                self.done.set()
                return
            offered = [i.qos_profile for i in infos]
            best_effort = any(q.reliability == ReliabilityPolicy.BEST_EFFORT for q in offered)
            latched = all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
            qos = QoSProfile(
                depth=100,
                reliability=(ReliabilityPolicy.BEST_EFFORT if best_effort
                             else ReliabilityPolicy.RELIABLE),
                durability=(DurabilityPolicy.TRANSIENT_LOCAL if latched
                            else DurabilityPolicy.VOLATILE))
            self.connections[topic] = self.writer.add_connection(
                topic, msgtype, typestore=typestore(),
                offered_qos_profiles=[rosbags_qos(offered[0])])
            self.types[topic] = msgtype
            from .common import sub_events

            self.subscriptions.append(self.node.create_subscription(
                cls, topic, lambda raw, t=topic: self._write(t, raw), qos, raw=True,
                event_callbacks=sub_events()))
            self.node.get_logger().info(f'recording {topic} ({msgtype})')

    def _write(self, topic: str, raw: bytes) -> None:
        if self.done.is_set():
            return
        stamp = self.node.get_clock().now().nanoseconds
        self.writer.write(self.connections[topic], stamp, raw)
        self.counts[topic] += 1
        self.first_ns = stamp if self.first_ns is None else self.first_ns
        self.last_ns = stamp
        total = sum(self.counts.values())
        if self.progress is not None and self.max_messages:
            self.progress(total, self.max_messages, {'topic': topic})
        if self.max_messages is not None and total >= self.max_messages:
            self.done.set()

    def close(self) -> dict:
        """Destroy the node, write the bag's metadata; return what was recorded."""
        self.done.set()
        self.node.destroy_node()
        self.writer.close()
        span = (self.last_ns - self.first_ns) / 1e9 if self.first_ns is not None else 0.0
        return {'bag': str(self.out), 'storage': self.storage,
                'topics': {t: {'type': self.types.get(t), 'count': n}
                           for t, n in self.counts.items()},
                'total': sum(self.counts.values()), 'duration_s': round(span, 6),
                'missing': [t for t in self.topics if t not in self.connections]}


def record(out, topics, storage: str = 'mcap', duration: float | None = None,
           max_messages: int | None = None, ros_args: list[str] | None = None, context=None,
           progress: Progress | None = None) -> dict:
    """
    Record ``topics`` into a new rosbag2 directory ``out`` (MCAP by default).

    Stops after ``duration`` seconds, after ``max_messages`` messages in all,
    or on Ctrl-C, whichever comes first; the bag is closed properly in every
    case. Returns counts per topic (``missing``: topics never seen).
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.utilities import get_default_context

    if duration is not None and not duration > 0:
        raise ValueError(f'duration must be > 0 seconds, got {duration}')
    if max_messages is not None and max_messages < 1:
        raise ValueError(f'max_messages must be >= 1, got {max_messages}')
    storage_plugin(storage)
    if Path(out).exists():
        raise ValueError(f'{out} exists already; choose a new output directory')
    own = not (context or get_default_context()).ok()
    if own:
        rclpy.init(args=ros_args or [sys.argv[0]], context=context)
    recorder = None
    interrupted = False
    try:
        recorder = BagRecorder(out, topics, storage, context=context, progress=progress,
                               max_messages=max_messages)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(recorder.node)
        deadline = None if duration is None else time.monotonic() + duration
        while not recorder.done.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            executor.spin_once(timeout_sec=0.05)
    except (KeyboardInterrupt, ExternalShutdownException):
        interrupted = True
    finally:
        result = recorder.close() if recorder is not None else None
        if own:
            rclpy.try_shutdown(context=context)
    if recorder is None:
        raise KeyboardInterrupt
    if recorder.error is not None:
        raise recorder.error
    result['interrupted'] = interrupted
    return result


# --- the demo bag ----------------------------------------------------------------------------

@dataclass
class DemoBagConfig:
    """Settings of the demo camera bag (every one recorded in the bag's custom data)."""

    frames: int = 300                  # 10 s of camera at 30 Hz
    size: int = 224                    # frame side: a multiple of 28 (nearest-neighbour x8)
    encoding: str = 'bgr8'
    rate_hz: float = 30.0
    adversarial_fraction: float = 0.5
    eps: float = 0.1                   # PGD: L-inf budget, steps, step size (pixels in [0, 1])
    steps: int = 10
    step_size: float = 0.025
    seed: int = 0
    storage: str = 'mcap'
    compressed: str | None = None      # None: sensor_msgs/Image; 'png' or 'jpeg': CompressedImage
    jpeg_quality: int = 95
    camera_topic: str = '/image_raw'   # '/compressed' is appended for CompressedImage frames
    truth_topic: str = '/ground_truth'
    frame_id: str = 'camera'
    start_ns: int = 1_767_225_600 * 10**9   # 2026-01-01T00:00:00Z: the same bag every time
    model: str = 'small_resnet'

    def check(self) -> None:
        """Raise ``ValueError`` for a bad setting."""
        from ..core.data import ENCODINGS, INPUT_SIZE

        if self.frames < 1:
            raise ValueError(f'frames must be >= 1, got {self.frames}')
        if self.size < INPUT_SIZE or self.size % INPUT_SIZE:
            raise ValueError(f'size must be a multiple of {INPUT_SIZE}, got {self.size}')
        if self.encoding not in ENCODINGS:
            raise ValueError(f'encoding must be one of {ENCODINGS}, got {self.encoding!r}')
        if not self.rate_hz > 0:
            raise ValueError(f'rate must be > 0 Hz, got {self.rate_hz}')
        if not 0 <= self.adversarial_fraction <= 1:
            raise ValueError(f'adversarial fraction must be in [0, 1], got '
                             f'{self.adversarial_fraction}')
        if self.compressed not in (None, 'png', 'jpeg'):
            raise ValueError(f"compressed must be None, 'png' or 'jpeg', got {self.compressed!r}")
        storage_plugin(self.storage)

    @property
    def image_topic(self) -> str:
        """Return the camera topic the frames are written on."""
        base = absolute(self.camera_topic)
        return base + '/compressed' if self.compressed else base


def demo_truth(stamp_ns: int, frame_id: str, seq: int, index: int, label: int,
               adversarial: bool) -> dict:
    """Return the ground truth record of one demo frame (the JSON of the truth topic)."""
    from ..core.data import CLASSES

    return {'stamp': {'sec': stamp_ns // 10**9, 'nanosec': stamp_ns % 10**9},
            'stamp_ns': stamp_ns, 'frame_id': frame_id, 'seq': seq, 'index': index,
            'label': label, 'label_name': CLASSES[label], 'adversarial': adversarial}


def stamp_ns(header) -> int:
    """Return a header's stamp in nanoseconds (the key frames and truths are matched by)."""
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def read_ground_truth(path, topic: str = '/ground_truth') -> dict[int, dict]:
    """
    Return a demo bag's ground truth by frame stamp: ``{stamp_ns: demo_truth record}``.

    Reads only the truth topic, so a consumer can account for every frame
    (clean or adversarial, its label) without replaying the bag.
    """
    truths = {}
    for _, _, _, msg in read_messages(path, [topic]):
        record = json.loads(msg.data)
        truths[int(record['stamp_ns'])] = record
    if not truths:
        raise ValueError(f'no ground truth on {absolute(topic)} in bag {path}')
    return truths


def demo_metadata(path) -> dict:
    """Return the settings a demo bag was made with (its custom data), ``{}`` for other bags."""
    text = bag_info(path)['custom_data'].get(DEMO_METADATA_KEY)
    return json.loads(text) if text else {}


def demo_samples(cfg: DemoBagConfig, model=None, progress: Progress | None = None):
    """
    Choose and attack the demo's test samples; return ``(images, labels, indices, adv)``.

    ``images`` uint8 ``(N, 28, 28)``: the test images at seeded random indices,
    the ``adv`` ones (a seeded choice of ``round(N * fraction)``) replaced by
    PGD against ``model`` (default: the shipped target), quantised to uint8.
    """
    import numpy as np
    import torch

    from ..core import attacks, data, models

    rng = np.random.default_rng(cfg.seed)
    images, labels = data.load_fashion_mnist('test')
    if cfg.frames > len(labels):
        raise ValueError(f'at most {len(labels)} frames (the test split), got {cfg.frames}')
    indices = np.sort(rng.choice(len(labels), size=cfg.frames, replace=False))
    images, labels = images[indices].copy(), labels[indices]
    n_adv = int(round(cfg.frames * cfg.adversarial_fraction))
    adv = np.zeros(cfg.frames, dtype=bool)
    adv[rng.choice(cfg.frames, size=n_adv, replace=False)] = True
    if n_adv:
        model = model if model is not None else models.build_model(cfg.model)
        model.eval()
        generator = torch.Generator().manual_seed(cfg.seed)
        where = np.flatnonzero(adv)
        batch = 100
        for start in range(0, len(where), batch):
            idx = where[start:start + batch]
            x = data.to_tensor(images[idx])
            y = torch.from_numpy(labels[idx])
            xa = attacks.pgd(model, x, y, cfg.eps, cfg.steps, cfg.step_size,
                             random_start=True, generator=generator)
            images[idx] = data.to_uint8(xa)
            if progress is not None:
                progress(min(start + batch, len(where)), len(where), {'stage': 'pgd'})
    return images, labels, indices, adv


def demo_frame_msg(image, stamp: int, cfg: DemoBagConfig):
    """Build the camera message of one 28x28 sample (Image, or CompressedImage if asked)."""
    from std_msgs.msg import Header

    from ..core.data import sample_to_frame
    from . import conversions

    header = Header(frame_id=cfg.frame_id)
    header.stamp.sec, header.stamp.nanosec = stamp // 10**9, stamp % 10**9
    frame = sample_to_frame(image, cfg.size, cfg.encoding)
    if cfg.compressed:
        return conversions.image_to_compressed_msg(frame, cfg.encoding, cfg.compressed,
                                                   quality=cfg.jpeg_quality, header=header)
    return conversions.image_to_msg(frame, cfg.encoding, header=header)


def make_demo_bag(out=DEFAULT_DEMO_BAG, cfg: DemoBagConfig | None = None, model=None,
                  overwrite: bool = False, progress: Progress | None = None) -> dict:
    """
    Write the demo camera bag; return a summary (counts, size, the target's accuracy on it).

    Frame ``i`` is stamped ``start_ns + i / rate_hz``; its ground truth (a
    ``std_msgs/String`` JSON, see ``demo_truth``) is written at the same bag
    time and its frame 1 µs later, so a player delivers the truth first. The
    target's accuracy on the clean and the adversarial frames is measured on
    the frames as stored (decoded and preprocessed as a node would).
    """
    import torch
    from rosbags.rosbag2 import Writer
    from std_msgs.msg import String

    from ..core import data, models
    from . import conversions

    cfg = cfg or DemoBagConfig()
    cfg.check()
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise ValueError(f'{out} exists already; pass overwrite (--force) to replace it')
        if not (out / 'metadata.yaml').is_file():
            raise ValueError(f'{out} exists and is not a rosbag2 directory; not replacing it')
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model if model is not None else models.build_model(cfg.model)
    model.eval()
    images, labels, indices, adv = demo_samples(cfg, model, progress)

    camera_cls = 'sensor_msgs/msg/CompressedImage' if cfg.compressed else 'sensor_msgs/msg/Image'
    store = typestore()
    inputs = []
    writer = Writer(out, version=BAG_VERSION, storage_plugin=storage_plugin(cfg.storage))
    record = {**asdict(cfg), 'model_hash': models.state_hash(model),
              'clean': int((~adv).sum()), 'adversarial': int(adv.sum())}
    writer.set_custom_data(DEMO_METADATA_KEY, json.dumps(record, sort_keys=True))
    writer.open()
    try:
        truth_conn = writer.add_connection(
            absolute(cfg.truth_topic), 'std_msgs/msg/String', typestore=store,
            offered_qos_profiles=[rosbags_qos(reliable_qos_profile())])
        image_conn = writer.add_connection(
            cfg.image_topic, camera_cls, typestore=store,
            offered_qos_profiles=[rosbags_qos(camera_qos_profile())])
        for i in range(cfg.frames):
            stamp = cfg.start_ns + int(round(i * 1e9 / cfg.rate_hz))
            truth = demo_truth(stamp, cfg.frame_id, i, int(indices[i]), int(labels[i]),
                               bool(adv[i]))
            writer.write(truth_conn, stamp, canonical_cdr(String(data=json.dumps(truth))))
            msg = demo_frame_msg(images[i], stamp, cfg)
            writer.write(image_conn, stamp + 1000, canonical_cdr(msg))
            frame, encoding = conversions.camera_msg_to_image(msg)
            inputs.append(data.preprocess_frame(frame, encoding))
            if progress is not None:
                progress(i + 1, cfg.frames, {'stage': 'write'})
    except BaseException:
        writer.close()
        shutil.rmtree(out, ignore_errors=True)
        raise
    writer.close()
    with torch.no_grad():
        pred = torch.cat([model(x) for x in torch.cat(inputs).split(250)]).argmax(1).numpy()
    correct = pred == labels

    def acc(mask):
        return round(float(correct[mask].mean()), 4) if mask.any() else None

    size = sum(p.stat().st_size for p in out.rglob('*') if p.is_file())
    return {'bag': str(out), 'storage': cfg.storage, 'frames': cfg.frames,
            'clean': int((~adv).sum()), 'adversarial': int(adv.sum()),
            'camera_topic': cfg.image_topic, 'camera_type': camera_cls,
            'truth_topic': absolute(cfg.truth_topic), 'size': cfg.size,
            'encoding': cfg.encoding, 'rate_hz': cfg.rate_hz,
            'duration_s': round((cfg.frames - 1) / cfg.rate_hz, 6), 'bytes': size,
            'target_accuracy': {'clean': acc(~adv), 'adversarial': acc(adv)},
            'model_hash': record['model_hash'], 'seed': cfg.seed}


if __name__ == '__main__':
    sys.exit(main())
