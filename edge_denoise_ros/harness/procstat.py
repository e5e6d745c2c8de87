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
CPU time and memory of another process, read from ``/proc`` (Linux).

- :func:`cpu_ns`: CPU time of every thread of a process, in nanoseconds
  (``/proc/<pid>/task/*/schedstat``: scheduler run time, not 10 ms ticks),
  so the cost of one message can be told apart;
- :func:`rss_bytes` / :func:`peak_rss_bytes`: resident memory now and its
  peak (``VmRSS``/``VmHWM``); :func:`reset_peak` starts a new peak window
  (``clear_refs`` 5), so the peak of one message can be read.
"""

from __future__ import annotations

import os


def cpu_ns(pid: int) -> int:
    """Return the CPU time of the live threads of ``pid`` so far (ns)."""
    total = 0
    base = f'/proc/{pid}/task'
    for tid in os.listdir(base):
        try:
            with open(f'{base}/{tid}/schedstat') as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return total


def _status(pid: int, key: str) -> int:
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) * 1024
    raise OSError(f'no {key} in /proc/{pid}/status')


def rss_bytes(pid: int) -> int:
    """Return the resident memory of ``pid`` now (bytes)."""
    return _status(pid, 'VmRSS')


def peak_rss_bytes(pid: int) -> int:
    """Return the peak resident memory of ``pid`` since start or the last :func:`reset_peak`."""
    return _status(pid, 'VmHWM')


def reset_peak(pid: int) -> bool:
    """Start a new peak-memory window for ``pid``; return False where not permitted."""
    try:
        with open(f'/proc/{pid}/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False
