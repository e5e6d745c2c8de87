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
Keep DDS traffic on this machine: localhost discovery and a private domain id.

Tests, the demo and the benchmarks start ROS processes; each run takes a
domain id no other run on this machine holds (an advisory lock file per id)
and restricts discovery to localhost, so nothing reaches the network.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Fast DDS maps a domain to UDP ports 7400 + 250 * id (+ offsets): ids up to
# 232 are valid; stay well inside the range and off the default domain 0.
DOMAIN_RANGE = (10, 200)
_LOCK_DIR = Path(tempfile.gettempdir())


@dataclass
class DomainLease:
    """A domain id held for this process until ``release()`` (or exit)."""

    domain_id: int
    _fd: int

    def env(self, base: dict | None = None) -> dict:
        """Return an environment for child processes on this private domain."""
        return isolated_env(self.domain_id, base)

    def release(self) -> None:
        """Give the id back."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> 'DomainLease':
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lease_domain(rng: random.Random | None = None) -> DomainLease:
    """Take a ROS domain id that no other run on this machine holds."""
    lo, hi = DOMAIN_RANGE
    ids = list(range(lo, hi + 1))
    (rng or random.Random()).shuffle(ids)
    for domain_id in ids:
        path = _LOCK_DIR / f'edge_denoise_ros.domain.{domain_id}.lock'
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return DomainLease(domain_id, fd)
    raise RuntimeError(f'every ROS domain id in {DOMAIN_RANGE} is held by another run')


def isolated_env(domain_id: int, base: dict | None = None) -> dict:
    """Return ``base`` (default: this environment) set to localhost-only DDS on a domain."""
    env = dict(os.environ if base is None else base)
    env['ROS_DOMAIN_ID'] = str(domain_id)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env.pop('ROS_STATIC_PEERS', None)
    env.pop('ROS_LOCALHOST_ONLY', None)
    env.setdefault('PYTHONUNBUFFERED', '1')
    return env
