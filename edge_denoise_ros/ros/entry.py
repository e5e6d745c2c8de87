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
The node executables' entry points: ``edge_node``, ``edge_process``, ``host_node``.

A node's module imports torch, OpenCV and rclpy at its top, which takes seconds; a
launch file that is stopped meanwhile sends SIGINT (then SIGTERM) into those imports.
This module imports nothing heavy: it takes the signals first, then loads the node's
module on demand (as the CLI loads a subcommand's), so a signal at any moment, also
during the imports, ends the process quietly with status 0. Once the nodes run,
:func:`.common.run_nodes` handles the signals itself.

``python -m edge_denoise_ros.ros.entry host_node --ros-args ...`` runs a node the
same way (the harness starts the nodes so).

On glibc, a node starts itself again at once (same process, ``execve``) with the
tunable ``glibc.malloc.hugetlb=1`` added to ``GLIBC_TUNABLES``, unless that names
it already: the buffers of a large message then come in transparent huge pages
where the system allows them (``madvise``), a few dozen page faults instead of
thousands each, which is most of what receiving one costs (README: Fast DDS).
``EDGE_DENOISE_NO_HUGETLB=1`` keeps the process as started.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

NODES = {'edge_node': 'edge_node', 'edge_process': 'edge_process', 'host_node': 'host_node'}


HUGETLB_TUNABLE = 'glibc.malloc.hugetlb'
NO_HUGETLB_ENV = 'EDGE_DENOISE_NO_HUGETLB'


def with_hugetlb(env: dict) -> dict | None:
    """
    Return ``env`` with glibc's huge-page tunable for malloc added, or None to keep it.

    None when ``GLIBC_TUNABLES`` names the tunable already (set by the user, or by
    this process's earlier start), when ``EDGE_DENOISE_NO_HUGETLB`` is set, or when
    the C library is not glibc.
    """
    tunables = env.get('GLIBC_TUNABLES', '')
    if HUGETLB_TUNABLE in tunables or env.get(NO_HUGETLB_ENV):
        return None
    try:
        libc = os.confstr('CS_GNU_LIBC_VERSION') or ''
    except (ValueError, OSError):
        libc = ''
    if not libc.startswith('glibc'):
        return None
    return {**env, 'GLIBC_TUNABLES': ':'.join(t for t in (tunables, f'{HUGETLB_TUNABLE}=1')
                                              if t)}


_SIGNALLED: list[int] = []


def _interrupted(signum, frame) -> None:
    _SIGNALLED.append(signum)
    raise KeyboardInterrupt


def run(node: str, args=None) -> int:
    """
    Load the node executable's module, run its ``main`` and end the process with its status.

    ``main`` (:func:`.common.run_nodes`) has stopped the nodes and rclpy when it
    returns; the process then ends at once with that status, without the
    interpreter's finalization: an import cut short by a signal inside a C extension
    (torch) can otherwise make it end the process by SIGINT after all.

    A signal that lands inside a C extension's import may come out as that import's
    own error (numpy's C API turns any failure into an ImportError) or be swallowed
    by a fallback import: once one has arrived, either still ends the process with 0.
    """
    env = with_hugetlb(dict(os.environ))
    if env is not None and getattr(sys, 'orig_argv', None):
        sys.stdout.flush()
        os.execve(sys.executable, sys.orig_argv, env)     # the same process, started again
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _interrupted)
    try:
        module = importlib.import_module(f'{__package__}.{NODES[node]}')
        if _SIGNALLED:
            raise KeyboardInterrupt
        code = module.main(args)
    except KeyboardInterrupt:   # before run_nodes took the signals over: nothing to clean up
        code = 0
    except Exception:
        if not _SIGNALLED:
            raise
        code = 0                # the signal, turned into an import's error on its way
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def edge_node(args=None) -> int:
    """Run ``edge_node``."""
    return run('edge_node', args)


def edge_process(args=None) -> int:
    """Run ``edge_process``."""
    return run('edge_process', args)


def host_node(args=None) -> int:
    """Run ``host_node``."""
    return run('host_node', args)


if __name__ == '__main__':
    if len(sys.argv) < 2 or sys.argv[1] not in NODES:
        print(f'usage: python -m {__package__}.entry {{{",".join(NODES)}}} [--ros-args ...]',
              file=sys.stderr)
        sys.exit(2)
    name = sys.argv.pop(1)
    sys.exit(run(name))
