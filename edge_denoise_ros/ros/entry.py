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

On glibc, a node starts itself again at once (same process, ``execve``) with
malloc tunables added to ``GLIBC_TUNABLES`` (:func:`malloc_tunables`; one the user
names already is left as theirs):

- ``glibc.malloc.hugetlb=1``: buffers come in transparent huge pages where the
  system allows them (``madvise``), a few dozen page faults instead of thousands.
- A message pool (``EDGE_DENOISE_MESSAGE_POOL_MB``, default :data:`MESSAGE_POOL_MB`
  per node, ``0`` for none): one heap for every thread (``arena_max=1``), no
  mappings of their own for large buffers (``mmap_max=0``), and that many bytes of
  free heap kept (``top_pad``, ``trim_threshold``), which the node touches once it
  is built (:func:`.dds.fill_message_pool`). A large message's copies (Fast DDS's,
  rmw's, Python's) then reuse memory the node already holds instead of fresh pages:
  no page faults, no growth (README: Fast DDS).

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
MESSAGE_POOL_ENV = 'EDGE_DENOISE_MESSAGE_POOL_MB'
# The largest message a node takes whole, twice (Fast DDS's reassembly and the node's own
# copy): the host's 16 MB features cap; at the edge a 4K rgb8 frame (25 MB), over the
# pixel cap but received and copied before it is refused.
MESSAGE_POOL_MB = {'edge_node': 64, 'edge_process': 64, 'host_node': 48}
TOP_PAD_TUNABLE = 'glibc.malloc.top_pad'
TRIM_TUNABLE = 'glibc.malloc.trim_threshold'


def message_pool_mb(node: str, env: dict) -> int:
    """Return the message pool of ``node`` in MB (``EDGE_DENOISE_MESSAGE_POOL_MB``, or its own)."""
    raw = env.get(MESSAGE_POOL_ENV, '').strip()
    if not raw:
        return MESSAGE_POOL_MB.get(node, 0)
    try:
        mb = int(raw)
    except ValueError:
        mb = -1
    if not 0 <= mb <= 4096:
        raise ValueError(f'{MESSAGE_POOL_ENV} must be a whole number of MB from 0 to 4096, '
                         f'got {raw!r}')
    return mb


def _named(tunables: str) -> dict:
    return dict(t.split('=', 1) for t in tunables.split(':') if '=' in t)


def malloc_tunables(node: str, env: dict) -> dict | None:
    """
    Return ``env`` with ``node``'s malloc tunables added, or None to keep the process as it is.

    Huge pages, and the message pool unless it is 0 MB. A tunable that
    ``GLIBC_TUNABLES`` names already is left as it is (set by the user, or by
    this process's earlier start). None when nothing is to be added, when
    ``EDGE_DENOISE_NO_HUGETLB`` is set, or when the C library is not glibc.
    """
    if env.get(NO_HUGETLB_ENV):
        return None
    try:
        libc = os.confstr('CS_GNU_LIBC_VERSION') or ''
    except (ValueError, OSError):
        libc = ''
    if not libc.startswith('glibc'):
        return None
    pool = message_pool_mb(node, env) << 20
    wanted = {HUGETLB_TUNABLE: 1}
    if pool:
        wanted.update({'glibc.malloc.arena_max': 1, 'glibc.malloc.mmap_max': 0,
                       TOP_PAD_TUNABLE: pool, TRIM_TUNABLE: pool})
    tunables = env.get('GLIBC_TUNABLES', '')
    named = _named(tunables)
    added = [f'{k}={v}' for k, v in wanted.items() if k not in named]
    if not added:
        return None
    return {**env, 'GLIBC_TUNABLES': ':'.join(([tunables] if tunables else []) + added)}


def message_pool_bytes(env: dict) -> int:
    """Return the free heap this process was started to keep (its ``top_pad``), or 0."""
    named = _named(env.get('GLIBC_TUNABLES', ''))
    pad = named.get(TOP_PAD_TUNABLE, '')
    return int(pad) if pad.isdigit() and named.get(TRIM_TUNABLE) == pad else 0


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
    try:
        env = malloc_tunables(node, dict(os.environ))
    except ValueError as exc:
        print(f'{node}: error: {exc}', file=sys.stderr)
        sys.stderr.flush()
        os._exit(2)
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
