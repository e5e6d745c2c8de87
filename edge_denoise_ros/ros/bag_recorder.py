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
Record topics into a rosbag2 (MCAP by default), like ``ros2 bag record``.

A recorder subscribes to the topics as soon as discovery shows them (their
types and the publishers' QoS come from the graph) and writes the CDR bytes
it receives, never deserialized, with ``rosbags``' writer.
"""

from __future__ import annotations

from pathlib import Path
import threading

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import Writer

from .bag import (absolute, BAG_VERSION, message_class, normalize_msgtype, Progress,
                  rosbags_qos, storage_plugin, typestore)
from .common import spin_until_done, sub_events


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
        self.timer = None

    def start(self) -> None:
        """Subscribe to the topics discovery shows now, and to the others once it does."""
        self._discover()
        self.timer = self.node.create_timer(0.1, self._discover)

    def _discover(self) -> None:
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

    def finish(self, interrupted: bool = False) -> dict:
        """Destroy the node, write the bag's metadata; return what was recorded."""
        self.done.set()
        self.node.destroy_node()
        self.writer.close()
        span = (self.last_ns - self.first_ns) / 1e9 if self.first_ns is not None else 0.0
        return {'bag': str(self.out), 'storage': self.storage,
                'topics': {t: {'type': self.types.get(t), 'count': n}
                           for t, n in self.counts.items()},
                'total': sum(self.counts.values()), 'duration_s': round(span, 6),
                'missing': [t for t in self.topics if t not in self.connections],
                'interrupted': interrupted}


def record(out, topics, storage: str = 'mcap', duration: float | None = None,
           max_messages: int | None = None, ros_args: list[str] | None = None, context=None,
           progress: Progress | None = None) -> dict:
    """
    Record ``topics`` into a new rosbag2 directory ``out`` (MCAP by default).

    Stops after ``duration`` seconds, after ``max_messages`` messages in all,
    or on Ctrl-C, whichever comes first; the bag is closed properly in every
    case. Returns counts per topic (``missing``: topics never seen).
    """
    if duration is not None and not duration > 0:
        raise ValueError(f'duration must be > 0 seconds, got {duration}')
    if max_messages is not None and max_messages < 1:
        raise ValueError(f'max_messages must be >= 1, got {max_messages}')
    storage_plugin(storage)
    if Path(out).exists():
        raise ValueError(f'{out} exists already; choose a new output directory')
    return spin_until_done(lambda: BagRecorder(out, topics, storage, context=context,
                                               progress=progress, max_messages=max_messages),
                           context, ros_args, duration=duration, period=0.05)
