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
rosbag2 without rosbag2_py: bridge ``rosbags`` and rclpy, open and describe bags.

The pieces the player (:mod:`.bag_player`), the recorder (:mod:`.bag_recorder`)
and the demo bag (``harness.demo_bag``) share: message types and their CDR
bytes, the QoS a topic is played and recorded with, storage plugins, and
reading (``open_bag``, ``bag_info``, ``read_messages``) of sqlite3 and MCAP bags.

rosbags messages and rclpy messages are converted through their common CDR
encoding (``rosbags``' ``serialize_cdr`` / ``deserialize_cdr`` on one side,
``rclpy.serialization`` on the other).
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Callable

from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin
from rosbags.typesys import get_typestore, Stores

STORAGES = ('mcap', 'sqlite3')
# rosbag2 metadata version written: 8 is read by Jazzy and newer (and by rosbags).
BAG_VERSION = 8
# The message definitions the bags are written with: the distribution of the
# installed message packages (Kilted); standard types are identical in Jazzy.
TYPESTORE = 'ros2_kilted'
CAMERA_TYPES = frozenset({'sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage',
                          'sensor_msgs/msg/CameraInfo'})
CAMERA_QOS = ('sensor', 'reliable')

Progress = Callable[[int, int, dict], None]


@functools.cache
def typestore():
    """Return the rosbags typestore of ``TYPESTORE`` (built once)."""
    return get_typestore(Stores(TYPESTORE))


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
    return qos_profile_sensor_data


def reliable_qos_profile(depth: int = 100):
    """Return the QoS of every other topic: reliable, volatile, keep last ``depth``."""
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


def absolute(topic: str) -> str:
    """Return ``topic`` with a leading ``/``."""
    return topic if topic.startswith('/') else '/' + topic


def storage_plugin(storage: str):
    """Return the rosbags ``StoragePlugin`` of ``'mcap'`` or ``'sqlite3'``."""
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


def storage_of(reader) -> str:
    """Return the storage of an open reader: ``'mcap'`` or ``'sqlite3'``."""
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
        return {'bag': str(path), 'storage': storage_of(reader), 'messages': count,
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
