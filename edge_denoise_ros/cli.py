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
import contextlib
import importlib
import json
import signal
import sys
import threading
import time

from . import __version__
from .core import heap
from .commands.common import CliError, EXPECTED_ERRORS
from .commands.provenance import provenance, source_commit

# Groups of subcommands: name -> (one-line help, description of ``GROUP --help``).
GROUPS = {
    'train': ('train and ship weights (seeded)', None),
    'bench': ('benchmarks; ratios measured side by side in one run', None),
    'data': ('make data sets', None),
    'bundle': ('a bundle: measure its accuracy profile, show it', None),
    'bag': ('rosbag2: play, record, info, make-demo',
            'rosbag2 bags (sqlite3 or MCAP) without rosbag2_py: play, record, info, make-demo'),
}

# Every command: (group, name) -> ('module:function' in commands/, one-line help); group ''
# is the top level. ``function(parser)`` adds the command's arguments and its handler; only
# the chosen command's module is imported, so ``--help`` lists all of them without loading
# torch or rclpy. ``--help`` lists them in this order (a group where its first command is).
COMMANDS = {
    ('train', 'target'): (
        'train:register_target',
        'train the default target classifier (small ResNet) on Fashion-MNIST'),
    ('train', 'denoiser'): (
        'denoiser:register_train_denoiser',
        "train DUNET with HGD's guided loss against the frozen target"),
    ('train', 'denoiser-d'): (
        'denoiser:register_train_denoiser_d',
        'Tucker-decompose the trained DUNET into DUNET_D and fine-tune it post hoc'),
    ('train', 'host-finetune'): (
        'codecs:register_host_finetune',
        'fine-tune the host tail on decoded features (Ko et al.): head frozen'),
    ('train', 'deepn-jpeg-table'): (
        'codecs:register_deepn_table',
        'compute the DeepN-JPEG quantization table from the train split'),
    ('data', 'scenes'): (
        'datasets:register_scenes',
        'write the realistic profile: Fashion-MNIST items over real photographs at random '
        'scale, position, rotation, colour and lighting, as train/test ImageFolders'),
    ('data', 'items'): (
        'datasets:register_items',
        "the scenes' items alone, upright on black in a random colour (28x28): a first "
        'training stage for a target that then learns the scenes'),
    ('bundle', 'accuracy'): (
        'bundles:register_accuracy',
        "measure a bundle's held-out accuracy per (cut, codec, quality), with the tail the "
        'host would use; the planner never picks an unmeasured lossy setting'),
    ('bundle', 'show'): (
        'bundles:register_show',
        "a bundle's target, files, sizes, denoisers, tails and accuracy profile"),
    ('bench', 'denoiser'): (
        'denoiser:register_bench_denoiser',
        'wall time of DUNET vs DUNET_D, measured side by side in one run'),
    ('bench', 'layout'): (
        'denoiser:register_bench_layout',
        "a bundle DUNET's training step in NCHW and channels-last, side by side: time, and "
        'how far each gradient is from the same step in float64'),
    ('bench', 'scheduler'): (
        'scheduler:register',
        'chain latency under background load (priority vs FIFO) and pipelined vs sequential '
        'defended frames/s'),
    ('bench', 'planner'): (
        'surgery:register_bench_planner',
        'planner choice vs every candidate run end to end, at several uplinks'),
    ('bench', 'hosts'): (
        'hosts:register',
        'one host serving 1..N simulated robots (recorded edge features at 30 Hz each), '
        'batched and one by one side by side: frames/s, latency p50/p99, drops'),
    ('bench', 'codecs'): (
        'codecs:register_bench_codecs',
        'ratio, accuracy and speed of every feature codec at every cut, and DeepN-JPEG vs '
        'JPEG at equal accuracy'),
    ('bench', 'fuzz'): (
        'robustness:register_fuzz',
        'hostile messages by class of fault against a running host_node or edge, each '
        'followed by a valid one: crashes, counting, worst CPU and memory per message'),
    ('bench', 'soak'): (
        'robustness:register_soak',
        'a long camera stream through edge_process and host_node: every frame classified '
        'or dropped with a reason, memory growth per node, p99 latency first vs last'),
    ('bench', 'link'): (
        'link:register',
        'edge and host in two network namespaces joined by a tc-shaped veth; frames/s, '
        'latency, bytes and drops of every strategy at each rate (needs root)'),
    ('bench', 'camera'): (
        'camera:register',
        'camera frames at real sizes (rgb8) between two processes: sent, received, latency '
        'p50/p99, with the camera QoS and the Fast DDS profile'),
    ('', 'eval'): (
        'evaluate:register',
        'accuracy[defense][attack] of the target on the Fashion-MNIST test split'),
    ('', 'macs'): (
        'denoiser:register_macs',
        'per-layer MACs (kh*kw*ci*co*ho*wo) of DUNET and DUNET_D'),
    ('bag', 'play'): (
        'bag:register_play',
        "publish a bag's messages with their recorded timing (like ros2 bag play)"),
    ('bag', 'record'): (
        'bag:register_record',
        'record topics into a new rosbag2 (MCAP default)'),
    ('bag', 'info'): (
        'bag:register_info',
        "a bag's storage, span, topics and message counts"),
    ('bag', 'make-demo'): (
        'demo:register_make_demo',
        'write the demo camera bag: Fashion-MNIST test frames, half clean and half '
        'PGD-adversarial against the target, ground truth on a second topic'),
    ('', 'plan'): (
        'surgery:register_plan',
        'cost every cut x codec, host-only and edge-only over a link; pick one'),
    ('', 'profile'): (
        'surgery:register_profile',
        "measure every cut's head and tail, codecs and the frame path here"),
    ('', 'demo'): (
        'demo:register',
        'replay the demo camera bag (half PGD-adversarial) through edge_process and '
        'host_node on a private localhost DDS domain; account for every frame'),
}


def chosen_command(argv: list[str]) -> tuple[str, str] | None:
    """Return the ``(group, name)`` that ``argv`` runs, or None (help, a bad name)."""
    words = [a for a in argv if not a.startswith('-')]
    if words and ('', words[0]) in COMMANDS:
        return '', words[0]
    if len(words) > 1 and (words[0], words[1]) in COMMANDS:
        return words[0], words[1]
    return None


def load_command(parser: argparse.ArgumentParser, group: str, name: str) -> None:
    """Import the module of one command and let it add its arguments and handler."""
    module, function = COMMANDS[group, name][0].split(':')
    register = getattr(importlib.import_module(f'{__package__}.commands.{module}'), function)
    register(parser)


def build_parser(load=None) -> argparse.ArgumentParser:
    """
    Build the argument parser: every command with its help, the arguments of some.

    ``load`` is the ``(group, name)`` commands whose modules are imported to
    add their arguments (default: all of them).
    """
    parser = argparse.ArgumentParser(
        prog='edge-denoise',
        description='Defended, split DNN inference for robots: denoise at the edge, '
                    'cut the classifier, encode features, finish on a host.')
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    top = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    groups = {'': top}
    for (group, name), (_, text) in COMMANDS.items():
        if group not in groups:
            text_g, description = GROUPS[group]
            sub = top.add_parser(group, help=text_g, description=description or text_g)
            groups[group] = sub.add_subparsers(dest=f'{group}_command', metavar='WHAT',
                                               required=True)
        leaf = groups[group].add_parser(name, help=text, description=text,
                                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        leaf.add_argument('--json', action='store_true',
                          help='print the result as one JSON object on the last stdout line')
        if load is None or (group, name) in load:
            load_command(leaf, group, name)
    return parser


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupt_on_sigterm():
    """
    Within this, SIGTERM (``kill``, a timeout) interrupts as Ctrl-C does.

    So a benchmark that is killed still removes what it made (network
    namespaces, CPU-quota cgroups, the nodes it started) on its way out.
    Where the handler cannot be set (not the main thread) or someone else set
    one, nothing changes.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return
    signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    as_program = argv is None       # the process is this command's own (not a test calling in)
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = chosen_command(argv)
    parser = build_parser(load=[chosen])
    started = time.time()
    args = parser.parse_args(argv)
    args.command_line = ' '.join(['edge-denoise', *argv])   # what bundle cards record
    if as_program and chosen is not None and chosen[0] == 'train':
        heap.keep_freed_memory()   # the same weights, without fresh pages every step (for good)
    source = source_commit() if getattr(args, 'json', False) else None   # the code that runs
    try:
        with interrupt_on_sigterm():
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
            result = {**result, 'provenance': provenance(argv, started, source)}
        sys.stdout.flush()
        print(json.dumps(result, sort_keys=False))
    return code


if __name__ == '__main__':
    sys.exit(main())
