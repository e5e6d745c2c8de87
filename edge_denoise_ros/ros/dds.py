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
Camera frames at real sizes over DDS: the shipped Fast DDS profile and the camera QoS.

A 640x480 rgb8 frame (900 KB) does not fit Fast DDS's default shared-memory
segment: between two processes it travels as ~15 fragments of at most 64 KB,
and a best-effort subscriber loses most frames at 30 Hz. ``config/fastdds_large_data.xml``
gives the shared-memory transport 32 MB segments, room for all of them; every process on the camera
path must load it through ``FASTDDS_DEFAULT_PROFILES_FILE`` (the camera driver
too). :func:`camera_qos` is the edge's camera subscription QoS (the nodes'
``camera_qos`` and ``camera_qos_depth`` parameters). A node gives a
large message's memory back once it has taken it (:func:`give_large_samples_back`):
a burst of oversized messages leaves nothing behind. A node started through its entry
point keeps a message pool instead (:func:`fill_message_pool`): a large message's
buffers come from memory it already holds.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from .entry import message_pool_bytes
from ..core.heap import glibc_malloc, set_options

PROFILE_ENV = 'FASTDDS_DEFAULT_PROFILES_FILE'
QOS_FROM_XML_ENV = 'RMW_FASTRTPS_USE_QOS_FROM_XML'
BUILTIN_ENV = 'FASTDDS_BUILTIN_TRANSPORTS'
PROFILE_NAME = 'fastdds_large_data.xml'
CAMERA_RELIABILITY = ('best_effort', 'reliable')
# Best effort matches every camera driver (a reliable subscription does not match a
# best-effort publisher) and, with the shipped profile, holds 640x480 at 30 Hz.
DEFAULT_CAMERA_QOS = 'best_effort'
DEFAULT_CAMERA_DEPTH = 5
LARGE_ALLOCATION_BYTES = 8 << 20     # and up: own mappings, given back when freed


def profile_path() -> Path:
    """
    Return the shipped Fast DDS profile: ``config/`` of a checkout, else the ament share.

    ``config/`` beside the package serves a source checkout or an editable
    install; a colcon install has it in ``share/edge_denoise_ros/config``.
    """
    source = Path(__file__).resolve().parents[2] / 'config' / PROFILE_NAME
    if source.is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory  # ROS installs
        return Path(get_package_share_directory('edge_denoise_ros')) / 'config' / PROFILE_NAME
    except (ImportError, LookupError, ValueError):
        return source


def profile_env(env: dict | None = None, profile: str | os.PathLike | None = '') -> dict:
    """
    Return ``env`` (default: this environment) with a Fast DDS profile set.

    ``profile`` ``''`` is the shipped profile, ``None`` removes any profile
    (Fast DDS's default transports), otherwise a path. A profile replaces
    ``FASTDDS_BUILTIN_TRANSPORTS``, which is removed with it.
    """
    env = dict(os.environ if env is None else env)
    if profile is None:
        env.pop(PROFILE_ENV, None)
        return env
    path = Path(profile) if profile else profile_path()
    if not path.is_file():
        raise FileNotFoundError(f'Fast DDS profile not found: {path}')
    env[PROFILE_ENV] = str(path.resolve())
    env.pop(BUILTIN_ENV, None)
    return env


def large_data_ready(env: dict | None = None) -> bool:
    """Return whether Fast DDS is set up for large samples (a profile or LARGE_DATA)."""
    env = os.environ if env is None else env
    return bool(env.get(PROFILE_ENV)) or env.get(BUILTIN_ENV, '').upper() == 'LARGE_DATA'


def use_shipped_profile() -> str | None:
    """
    Load the shipped profile in this process unless Fast DDS was told otherwise.

    For tools of this package (``bag play``, ``bag record``, ``bag_player``)
    that create their participant after this call: they set
    ``FASTDDS_DEFAULT_PROFILES_FILE`` when neither it nor
    ``FASTDDS_BUILTIN_TRANSPORTS`` is set. Returns the profile set, or None.
    """
    if large_data_ready() or os.environ.get(BUILTIN_ENV):
        return None
    path = profile_path()
    if not path.is_file():
        return None
    os.environ[PROFILE_ENV] = str(path)
    return str(path)


def is_shipped_profile(path: str | os.PathLike | None) -> bool:
    """Return whether ``path`` is the shipped profile (of this checkout or install)."""
    if not path:
        return False
    try:
        return Path(path).resolve() == profile_path().resolve()
    except OSError:
        return False


def give_large_samples_back(env: dict | None = None) -> list[str]:
    """
    Set this node process up so a large message costs no lasting memory.

    Call before rclpy starts. With the shipped profile in ``env`` (default:
    this environment), sets ``RMW_FASTRTPS_USE_QOS_FROM_XML=1`` unless it is
    set, so Fast DDS applies the profile's readers (DYNAMIC history memory,
    freed once a sample is taken) instead of ROS 2's preallocated pool that
    keeps the largest sample each slot ever held. A process started with a
    message pool (:func:`.entry.malloc_tunables`) serves large messages from it
    (:func:`fill_message_pool`). Otherwise, on glibc, allocations of
    ``LARGE_ALLOCATION_BYTES`` and up get their own mappings, returned when
    freed (``mallopt(M_MMAP_THRESHOLD)``), instead of a heap that grows to the
    largest message once held and stays there. Returns what it set.
    """
    env = os.environ if env is None else env
    done = []
    if is_shipped_profile(env.get(PROFILE_ENV)) and QOS_FROM_XML_ENV not in env:
        env[QOS_FROM_XML_ENV] = '1'
        done.append(f'{QOS_FROM_XML_ENV}=1')
    pool = message_pool_bytes(env)
    if pool:
        done.append(f'message pool {pool >> 20} MB')
        return done
    libc = glibc_malloc()
    if libc is None:
        return done
    # Fixing one threshold fixes the heap's trim threshold too (128 KB): every camera frame
    # would grow the heap and give it back; up to two large allocations' worth stays.
    return done + set_options(libc, {'M_MMAP_THRESHOLD': LARGE_ALLOCATION_BYTES,
                                     'M_TRIM_THRESHOLD': 2 * LARGE_ALLOCATION_BYTES})


def fill_message_pool(env: dict | None = None) -> int:
    """
    Touch this process's message pool once, so that no large message pays for fresh pages.

    Call once the nodes are built (what they allocated while starting came out of
    the free heap the pool keeps). A process started with a pool keeps that many
    bytes of free heap, in one heap for all threads; allocating and touching them
    here makes them resident, and freeing them leaves them in the heap, where a
    large message's buffers then come from. Where a fresh page is costly (a VM
    whose balloon takes freed memory back: README, Limitations), this is what a
    large message would otherwise pay. Returns the bytes touched (0: no pool).
    """
    pool = message_pool_bytes(os.environ if env is None else env)
    libc = glibc_malloc() if pool else None
    block = libc.malloc(pool) if libc is not None else None
    if not block:
        return 0
    try:
        ctypes.memset(block, 0, pool)
    finally:
        libc.free(block)
    return pool


def camera_qos(reliability: str = DEFAULT_CAMERA_QOS,
               depth: int = DEFAULT_CAMERA_DEPTH) -> QoSProfile:
    """Return the QoS of a camera subscription (or publisher): keep last ``depth``, volatile."""
    if reliability not in CAMERA_RELIABILITY:
        raise ValueError(f'camera QoS reliability must be one of {CAMERA_RELIABILITY}, got '
                         f'{reliability!r}')
    if not 1 <= int(depth) <= 1000:
        raise ValueError(f'camera QoS depth must be in 1..1000, got {depth}')
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=(ReliabilityPolicy.RELIABLE if reliability == 'reliable'
                                   else ReliabilityPolicy.BEST_EFFORT),
                      durability=DurabilityPolicy.VOLATILE)
