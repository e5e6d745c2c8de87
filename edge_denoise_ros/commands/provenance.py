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
Where a ``--json`` result came from: the command line, the source commit, the machine.

Every ``edge-denoise ... --json`` result carries ``provenance`` (see ``cli.main``), so a
figure copied into the README or ``docs/results/`` says which command, which commit of
this package and which machine made it. Nothing here may fail a command: what cannot be
found is ``None``.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from ..core import heap

# The folder that holds the package (the repository root in a checkout).
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    """Run git in the package's source folder; its stdout, or None on any failure."""
    try:
        done = subprocess.run(('git', '-C', str(SOURCE_ROOT), *args), capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_commit() -> dict:
    """
    Return the git commit of the package's source and whether tracked files differ from it.

    ``{'commit': None, 'dirty': None}`` when the package is not in a git checkout of its
    own (an installed copy, a tarball), or git is missing.
    """
    top = _git('rev-parse', '--show-toplevel')
    if top is None or Path(top).resolve() != SOURCE_ROOT:
        return {'commit': None, 'dirty': None}
    status = _git('status', '--porcelain', '--untracked-files=no')
    return {'commit': _git('rev-parse', 'HEAD'),
            'dirty': None if status is None else bool(status)}


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cgroup_cpu_quota() -> float | None:
    """Return the CPUs this process's cgroup allows (quota / period), or None when unlimited."""
    lines = (_read('/proc/self/cgroup') or '').splitlines()
    for line in lines:
        _, controllers, group = line.split(':', 2)
        if controllers == '':   # cgroup v2: "0::/group"
            limit = _read(f'/sys/fs/cgroup{group.rstrip("/")}/cpu.max')
            if limit and not limit.startswith('max'):
                quota, period = limit.split()[:2]
                return round(int(quota) / int(period), 3)
        elif 'cpu' in controllers.split(','):   # cgroup v1: "1:cpu,cpuacct:/group"
            base = f'/sys/fs/cgroup/{controllers}{group.rstrip("/")}'
            quota = _read(f'{base}/cpu.cfs_quota_us')
            period = _read(f'{base}/cpu.cfs_period_us')
            if quota and period and int(quota) > 0:
                return round(int(quota) / int(period), 3)
    return None


def _cpu_model() -> str | None:
    for line in (_read('/proc/cpuinfo') or '').splitlines():
        if line.startswith('model name'):
            return line.split(':', 1)[1].strip()
    return platform.processor() or None


def _torch_version() -> str | None:
    torch = sys.modules.get('torch')   # the version that ran, when the command imported it
    if torch is not None:
        return getattr(torch, '__version__', None)
    try:
        return importlib.metadata.version('torch')
    except importlib.metadata.PackageNotFoundError:
        return None


def _os_release() -> str | None:
    try:
        return platform.freedesktop_os_release().get('PRETTY_NAME')
    except OSError:
        return None


def _gpu() -> dict:
    """CUDA as torch saw it, when the command imported torch; not asked otherwise."""
    torch = sys.modules.get('torch')
    if torch is None:
        return {'cuda': None}
    try:
        if not torch.cuda.is_available():
            return {'cuda': False}
        return {'cuda': True, 'gpu': torch.cuda.get_device_name(0)}
    except Exception:   # a broken driver must not fail the command that already ran
        return {'cuda': None}


VIRTIO_BALLOON = '0x0005'
BALLOON_F_REPORTING = 5        # feature bit: free page reporting


def free_page_reporting(root: str = '/sys/bus/virtio/devices') -> bool:
    """
    Return whether a virtio balloon hands this machine's freed memory back to a hypervisor.

    Where it does (free page reporting), a page freed and touched again waits for the
    hypervisor to back it: fresh large buffers cost more than on a machine of its own.
    """
    for device in sorted(Path(root).glob('*')):
        if _read(f'{device}/device') == VIRTIO_BALLOON:
            features = _read(f'{device}/features') or ''
            if features[BALLOON_F_REPORTING:BALLOON_F_REPORTING + 1] == '1':
                return True
    return False


def machine() -> dict:
    """Describe this machine: OS, Python, torch, CPUs (and a cgroup CPU quota if any), GPU."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {'os': _os_release(), 'platform': platform.platform(), 'machine': platform.machine(),
            'cpu_model': _cpu_model(), 'cpu_count': os.cpu_count(), 'cpus_usable': usable,
            'cgroup_cpu_quota': cgroup_cpu_quota(),
            'free_page_reporting': free_page_reporting(), 'python': platform.python_version(),
            'torch': _torch_version(), **_gpu()}


def provenance(argv: list[str], started: float | None = None,
               source: dict | None = None) -> dict:
    """
    Return the provenance record of one ``edge-denoise`` run with arguments ``argv``.

    ``started`` is the ``time.time()`` at which the command began; the record then also
    says how long it ran. ``source`` is :func:`source_commit` as it was then: the code
    that ran (an hour-long training outlives commits made beside it). When the
    checkout changed since, ``source_changed`` says so.
    """
    now = time.time()
    at_end = source_commit()
    record = {'command': shlex.join(['edge-denoise', *argv]), **(source or at_end),
              'machine': machine()}
    if source is not None and source != at_end:
        record['source_changed'] = True
    kept = heap.held()
    if kept:
        record['malloc'] = kept   # freed memory kept (train): changes times only
    if started is not None:
        record['started_utc'] = _utc(started)
        record['seconds'] = round(now - started, 1)
    record['utc'] = _utc(now)
    return record


def _utc(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).isoformat(
        timespec='seconds')
