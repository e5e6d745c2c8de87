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
The ``edge-denoise`` command line: one entry point, subcommands from ``commands/``.

Every leaf command accepts ``--json``: its result is then printed as one JSON
object on the last line of stdout. Errors end the command with a one-line
reason on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

from . import __version__
from .commands.common import CliError, EXPECTED_ERRORS
from .commands.provenance import provenance

# Each module defines ``register(groups)``; ``groups`` maps '' (top level),
# 'train' and 'bench' to argparse sub-parser collections.
COMMAND_MODULES = (
    'edge_denoise_ros.commands.train',
    'edge_denoise_ros.commands.evaluate',
    'edge_denoise_ros.commands.denoiser',
    'edge_denoise_ros.commands.bag',
    'edge_denoise_ros.commands.scheduler',
    'edge_denoise_ros.commands.surgery',
    'edge_denoise_ros.commands.codecs',
    'edge_denoise_ros.commands.demo',
    'edge_denoise_ros.commands.link',
)


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog='edge-denoise',
        description='Defended, split DNN inference for robots: denoise at the edge, '
                    'cut the classifier, encode features, finish on a host.')
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    top = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    groups = {'': top}
    for name, text in (('train', 'train and ship weights (seeded)'),
                       ('bench', 'benchmarks; ratios measured side by side in one run')):
        group = top.add_parser(name, help=text, description=text)
        groups[name] = group.add_subparsers(dest=f'{name}_command', metavar='WHAT',
                                            required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    started = time.time()
    args = parser.parse_args(argv)
    try:
        outcome = args.func(args)
    except KeyboardInterrupt:
        print('edge-denoise: interrupted', file=sys.stderr)
        return 130
    except CliError as exc:
        print(f'edge-denoise: error: {exc}', file=sys.stderr)
        return exc.code
    except EXPECTED_ERRORS as exc:
        reason = ' '.join(str(exc).split()) or type(exc).__name__
        print(f'edge-denoise: error: {reason}', file=sys.stderr)
        return 2
    result, code = outcome if isinstance(outcome, tuple) else (outcome, 0)
    if getattr(args, 'json', False) and result is not None:
        if isinstance(result, dict):   # which command, commit and machine made it
            result = {**result, 'provenance': provenance(argv, started)}
        sys.stdout.flush()
        print(json.dumps(result, sort_keys=False))
    return code


if __name__ == '__main__':
    sys.exit(main())
