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
A really weak edge: a child process held to a fraction of a CPU core by a cgroup.

:class:`CpuQuota` makes a cgroup with a CFS quota of ``cpus`` cores (cgroup v2
``cpu.max`` where the unified hierarchy has the cpu controller, else the v1
cpu controller's ``cpu.cfs_quota_us``), gives a command prefix that moves the
child into it before it starts (``sh -c 'echo $$ > cgroup.procs; exec ...'``,
so it composes with ``ip netns exec``, which hides ``/sys/fs/cgroup``: the
group is reached through ``/proc/<pid>/root``), reports the group's CPU time and
throttling, and removes the group on exit (also on failure). Needs root.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path('/sys/fs/cgroup')
PERIOD_US = 100_000
_COUNTER = itertools.count()


def cgroup_version(root: Path = ROOT) -> str | None:
    """Return ``'v2'`` (unified with cpu), ``'v1'`` (cpu controller mounted) or None."""
    controllers = root / 'cgroup.controllers'
    if controllers.is_file() and 'cpu' in controllers.read_text().split():
        return 'v2'
    if (root / 'cpu' / 'cpu.cfs_quota_us').is_file():
        return 'v1'
    return None


def unavailable(root: Path = ROOT) -> str | None:
    """Return why a CPU quota cannot be set here, or None."""
    if os.geteuid() != 0:
        return 'needs root (cgroup cpu controller)'
    if cgroup_version(root) is None:
        return (f'no cgroup cpu controller under {root} (neither cgroup v2 with cpu in '
                f'cgroup.controllers nor v1 {root}/cpu)')
    return None


def _write(path: Path, text: str) -> None:
    with open(path, 'w') as f:
        f.write(text)


@dataclass
class CpuQuota:
    """A cgroup holding its processes to ``cpus`` cores; a context manager."""

    cpus: float
    name: str = ''
    root: Path = ROOT

    def __post_init__(self):
        if not 0.01 <= self.cpus <= 1024:
            raise ValueError(f'CPU quota must be in 0.01..1024 cores, got {self.cpus}')
        self.name = self.name or f'edge_denoise_{os.getpid()}_{next(_COUNTER)}'
        self.version = None
        self.groups: list[Path] = []

    @property
    def quota_us(self) -> int:
        """Return the CFS quota per ``PERIOD_US`` period."""
        return max(1000, int(round(self.cpus * PERIOD_US)))

    def __enter__(self) -> 'CpuQuota':
        self.create()
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def create(self) -> None:
        """Make the group (v2, or v1 cpu plus cpuacct for the CPU time) and set the quota."""
        reason = unavailable(self.root)
        if reason:
            raise PermissionError(f'--edge-cpus {reason}')
        self.version = cgroup_version(self.root)
        try:
            if self.version == 'v2':
                control = self.root / 'cgroup.subtree_control'
                if 'cpu' not in control.read_text().split():
                    _write(control, '+cpu')
                group = self.root / self.name
                group.mkdir()
                self.groups = [group]
                _write(group / 'cpu.max', f'{self.quota_us} {PERIOD_US}')
            else:
                group = self.root / 'cpu' / self.name
                group.mkdir()
                self.groups = [group]
                _write(group / 'cpu.cfs_period_us', str(PERIOD_US))
                _write(group / 'cpu.cfs_quota_us', str(self.quota_us))
                acct = self.root / 'cpuacct'
                if (acct / 'cpuacct.usage').is_file() and acct.resolve() != group.parent.resolve():
                    (acct / self.name).mkdir()
                    self.groups.append(acct / self.name)
        except OSError as exc:
            self.remove()
            raise PermissionError(f'cannot set a CPU quota under {self.root}: {exc}') from None

    def prefix(self) -> list[str]:
        """
        Return a command prefix that runs a program inside the group.

        The group is named through this process's root (``/proc/<pid>/root``):
        ``ip netns exec`` mounts a fresh ``/sys`` without the cgroup file
        systems, so a prefix inside it cannot reach ``/sys/fs/cgroup`` directly.
        """
        if not self.groups:
            raise RuntimeError('create the CPU quota first')
        here = f'/proc/{os.getpid()}/root'
        moves = ' && '.join(f'echo $$ > {here}{g / "cgroup.procs"}' for g in self.groups)
        return ['sh', '-c', f'{moves} && exec "$@"', 'edge_denoise_cpu_quota']

    def pids(self) -> list[int]:
        """Return the processes in the group now."""
        if not self.groups:
            return []
        try:
            return [int(p) for p in (self.groups[0] / 'cgroup.procs').read_text().split()]
        except OSError:
            return []

    def usage_ns(self) -> int | None:
        """Return the CPU time of everything the group ran so far (ns), or None if unknown."""
        for group in self.groups:
            try:
                if (group / 'cpu.stat').is_file() and self.version == 'v2':
                    stat = dict(line.split() for line in (group / 'cpu.stat').read_text()
                                .splitlines())
                    return int(stat['usage_usec']) * 1000
                if (group / 'cpuacct.usage').is_file():
                    return int((group / 'cpuacct.usage').read_text())
            except (OSError, KeyError, ValueError):
                continue
        return None

    def throttled(self) -> dict:
        """Return how often and how long the group was held back (``cpu.stat``)."""
        try:
            stat = dict(line.split() for line in (self.groups[0] / 'cpu.stat').read_text()
                        .splitlines())
        except (IndexError, OSError, ValueError):
            return {}
        if 'throttled_usec' in stat:
            ms = int(stat['throttled_usec']) / 1e3
        else:
            ms = int(stat.get('throttled_time', 0)) / 1e6
        return {'periods': int(stat.get('nr_periods', 0)),
                'throttled_periods': int(stat.get('nr_throttled', 0)),
                'throttled_ms': round(ms, 1)}

    def describe(self) -> dict:
        """Return what the quota is (for results)."""
        return {'cpus': self.cpus, 'cgroup': self.version, 'quota_us': self.quota_us,
                'period_us': PERIOD_US}

    def remove(self, timeout: float = 5.0) -> None:
        """Move leftover processes to the parent group and delete the group; never raises."""
        for group in reversed(self.groups):
            deadline = time.monotonic() + timeout
            while group.exists():
                try:
                    for pid in (group / 'cgroup.procs').read_text().split():
                        _write(group.parent / 'cgroup.procs', pid)
                    group.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
        self.groups = []
