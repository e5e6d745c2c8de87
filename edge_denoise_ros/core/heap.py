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
The C library's allocator: let a training process reuse the memory it frees.

A training step allocates the same large activations and gradients every step
and frees them at its end. glibc maps an allocation above its mmap threshold
(dynamic, up to 32 MB) on its own and gives it back when freed, and gives the
heap's free top back past its trim threshold: every step then faults those
pages in afresh, zeroed by the kernel (on a VM whose balloon reports freed
pages, backed again by the hypervisor). :func:`keep_freed_memory` keeps them
instead. Allocation does not change arithmetic: a seeded run trains the same
weights, in less time (README, "Your model").
"""

from __future__ import annotations

import ctypes
import os

MALLOPT = {'M_TRIM_THRESHOLD': -1, 'M_TOP_PAD': -2, 'M_MMAP_THRESHOLD': -3}   # glibc's
HEAP_LARGEST_BYTES = 1 << 30   # allocations up to this size come from the heap
HEAP_KEEP_BYTES = (1 << 31) - 1   # up to this much free heap stays (2 GiB: a C int's most)
HEAP_TOP_PAD_BYTES = 256 << 20
NO_KEEP_ENV = 'EDGE_DENOISE_RETURN_FREED_MEMORY'

_held: list[str] = []


def glibc_malloc():
    """Return the C library (ctypes) with glibc's ``mallopt``, ``malloc``, ``free``, or None."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not all(hasattr(libc, f) for f in ('mallopt', 'malloc', 'free')):
        return None                                # not glibc: its allocator's own policy
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


def set_options(libc, options: dict[str, int]) -> list[str]:
    """Set glibc's ``mallopt`` options by name (``MALLOPT``); return the ``name=value`` set."""
    return [f'{name}={value}' for name, value in options.items()
            if libc.mallopt(MALLOPT[name], value) == 1]


def keep_freed_memory(env: dict | None = None) -> list[str]:
    """
    Keep the memory this process frees for its next allocations (glibc); return what was set.

    Allocations up to ``HEAP_LARGEST_BYTES`` come from the heap, which keeps up
    to ``HEAP_KEEP_BYTES`` of free memory and grows ``HEAP_TOP_PAD_BYTES`` at a
    time. The process then holds on to its peak memory until it exits: meant
    for training commands, not for long-running nodes (their
    large messages are handled by :mod:`..ros.dds`). Nothing is set with
    ``EDGE_DENOISE_RETURN_FREED_MEMORY`` in ``env`` (default: this environment)
    or on another C library.
    """
    env = os.environ if env is None else env
    libc = None if env.get(NO_KEEP_ENV) else glibc_malloc()
    if libc is None:
        return []
    for setting in set_options(libc, {'M_MMAP_THRESHOLD': HEAP_LARGEST_BYTES,
                                      'M_TRIM_THRESHOLD': HEAP_KEEP_BYTES,
                                      'M_TOP_PAD': HEAP_TOP_PAD_BYTES}):
        if setting not in _held:
            _held.append(setting)
    return list(_held)


def held() -> list[str]:
    """Return the allocator settings :func:`keep_freed_memory` made in this process."""
    return list(_held)
