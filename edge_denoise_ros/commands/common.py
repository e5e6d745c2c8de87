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

"""Helpers shared by the subcommands: errors, argument types, tables, a progress bar."""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Sequence

from ..core.wire import check_quality


class CliError(Exception):
    """A reason to stop the command with a one-line message and an exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


# Exceptions a command may raise for bad input; reported in one line, never a traceback.
EXPECTED_ERRORS = (ValueError, FileNotFoundError, PermissionError)


def positive_int(text: str) -> int:
    """Argparse type: an integer > 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got {text}')
    return value


def non_negative_int(text: str) -> int:
    """Argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'expected an integer >= 0, got {text}')
    return value


def positive_float(text: str) -> float:
    """Argparse type: a float > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f'expected a positive number, got {text}')
    return value


def pixel_budget(text: str) -> float:
    """Argparse type: an L-inf budget on [0, 1] pixels, as a number or a fraction (``8/255``)."""
    num, _, den = text.partition('/')
    try:
        value = float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f'expected a number or a fraction such as 8/255, '
                                         f'got {text!r}') from None
    if not 0 < value < 1:
        hint = f' (did you mean {text}/255?)' if value >= 1 and not den else ''
        raise argparse.ArgumentTypeError(f'an L-inf budget is a share of the pixel range, '
                                         f'between 0 and 1, got {text}{hint}')
    return value


def nonnegative_float(text: str) -> float:
    """Argparse type: a finite float >= 0."""
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f'expected a finite number >= 0, got {text}')
    return value


def jpeg_quality(text: str) -> int:
    """Argparse type: a JPEG quality (``core.wire.check_quality``: an integer in 1..100)."""
    try:
        return check_quality(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f'{exc} ({text!r})') from None


def add_schedule_args(p, epochs: int, batch_size: int, lr: float, lr_help: str,
                      layout: bool = False) -> None:
    """Add a training command's ``--epochs``, ``--batch-size``, ``--lr``, ``--seed``, layout."""
    p.add_argument('--epochs', type=positive_int, default=epochs, help='passes over the data')
    p.add_argument('--batch-size', type=positive_int, default=batch_size, help='images per step')
    p.add_argument('--lr', type=positive_float, default=lr, help=lr_help)
    p.add_argument('--seed', type=int, default=0, help='seed of every random choice')
    if layout:
        p.add_argument('--channels-last', action='store_true',
                       help='train in the channels-last memory format (often faster on CPUs; '
                            'other rounding, so other weights than without it); the saved '
                            'weights are the same format either way')


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Render dict rows as an aligned plain-text table."""
    if not rows:
        return '(no rows)'
    columns = list(columns or rows[0].keys())

    def cell(v) -> str:
        if isinstance(v, float):
            return f'{v:.4g}' if abs(v) < 1e5 else f'{v:,.0f}'
        if isinstance(v, int) and not isinstance(v, bool):
            return f'{v:,}'
        if isinstance(v, (list, tuple)):
            return 'x'.join(str(i) for i in v)
        return '' if v is None else str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
    lines = ['  '.join(c.ljust(w) for c, w in zip(columns, widths)),
             '  '.join('-' * w for w in widths)]
    lines += ['  '.join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    return '\n'.join(lines)


class ProgressBar:
    """A small progress bar on stderr: ``progress(step, total, info)`` compatible."""

    def __init__(self, label: str, stream=None, min_interval: float = 0.2):
        self.label = label
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.last = 0.0
        self.min_interval = min_interval

    def __call__(self, step: int, total: int, info: dict | None = None) -> None:
        now = time.monotonic()
        if step < total and now - self.last < self.min_interval:
            return
        self.last = now
        frac = step / max(total, 1)
        elapsed = now - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        bar = '#' * int(frac * 30)
        extra = ' '.join(f'{k}={_short(v)}' for k, v in (info or {}).items())
        end = '\n' if step >= total else ''
        self.stream.write(f'\r{self.label} [{bar:<30}] {step}/{total} '
                          f'{elapsed:5.0f}s eta {eta:5.0f}s {extra}{end}')
        self.stream.flush()


def _short(v) -> str:
    return f'{v:.4f}' if isinstance(v, float) else str(v)


def parse_list(text: str, kind: type = str) -> list:
    """Parse a comma-separated list (``'2,10,45'``)."""
    items = [t.strip() for t in text.split(',') if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f'expected a comma-separated list, got {text!r}')
    return [kind(t) for t in items]


def command_of(args) -> str:
    """Return the command line a record names (``cli.main``'s argv, also in-process)."""
    return getattr(args, 'command_line', None) or ' '.join(['edge-denoise', *sys.argv[1:]])


def warn_stale(b) -> list[str]:
    """Print a warning per denoiser of bundle ``b`` made for files it no longer holds."""
    lines = b.stale()
    for line in lines:
        print(f'warning: {line}')
    return lines
