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
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

NODES = {'edge_node': 'edge_node', 'edge_process': 'edge_process', 'host_node': 'host_node'}


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


def run(node: str, args=None) -> int:
    """
    Load the node executable's module, run its ``main`` and end the process with its status.

    ``main`` (:func:`.common.run_nodes`) has stopped the nodes and rclpy when it
    returns; the process then ends at once with that status, without the
    interpreter's finalization: an import cut short by a signal inside a C extension
    (torch) can otherwise make it end the process by SIGINT after all.
    """
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _interrupted)
    try:
        module = importlib.import_module(f'{__package__}.{NODES[node]}')
        code = module.main(args)
    except KeyboardInterrupt:   # before run_nodes took the signals over: nothing to clean up
        code = 0
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
