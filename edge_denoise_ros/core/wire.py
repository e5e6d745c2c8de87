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
The self-describing wire format of a message, and the error every malformed one raises.

A message is a ``sensor_msgs/CompressedImage``: ``format`` is
:func:`format_string` of the meta data (``edge_denoise/1 codec=... shape=...``)
and ``data`` the payload alone. :func:`parse_format` turns that text back into
typed meta data and :func:`check_meta` checks it before any decoder runs: every
key must apply to the message's codec (:data:`CODEC_KEYS`; an unknown key or one
that does not apply is refused), every value is checked for its type and range,
``size`` and ``crc32`` are required, and the caps bound every size a message may
claim. The edge stream's accounting fields (``epoch``, ``seq``, ``t_rx``) are
checked for their form here and judged by :mod:`.accounting`. The codecs
themselves live in :mod:`.codecs`.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

import numpy as np

from .accounting import EPOCH_PATTERN, MAX_SEQ

VERSION = 'edge_denoise/1'
FEATURE_CODECS = ('raw', 'lossless', 'q8', 'jpeg')
IMAGE_CODECS = ('jpeg', 'deepn_jpeg')
FRAME_CODECS = ('raw',) + IMAGE_CODECS  # what a uint8 camera frame may be sent as
CODECS = tuple(dict.fromkeys(FEATURE_CODECS + FRAME_CODECS))  # raw, lossless, q8, jpeg, deepn_jpeg
FLOAT_DTYPES = ('float32', 'float16')
LAYOUTS = ('planes', 'words')      # of the lossless codec's non-zero values
QUALITY_RANGE = (1, 100)           # a JPEG quality (jpeg is the one codec that takes one)

# Caps, checked before anything is allocated; decode() takes per-call overrides.
MAX_PAYLOAD_BYTES = 16 << 20        # one message's data
MAX_ELEMENTS = 1 << 24              # values of a decoded tensor / pixels of an image
MAX_FORMAT_CHARS = 2048             # the format string

TILE_ALIGN = 8                      # largest tile padding (option align=8: 8x8 blocks)
MAX_TOKEN_CHARS = 200               # the annotations cut and model
MAX_T_RX = (1 << 63) - 1            # ns since the Unix epoch, as a signed 64-bit integer

# Keys every message may carry; then, per codec and kind of payload, the keys it requires.
REQUIRED_KEYS = ('codec', 'shape', 'dtype', 'size', 'crc32')
ANNOTATION_KEYS = ('cut', 'model')
ACCOUNTING_KEYS = ('epoch', 'seq', 't_rx')      # the edge stream's (see core.accounting)
CODEC_KEYS = {
    ('raw', 'features'): (),
    ('lossless', 'features'): ('layout',),
    ('q8', 'features'): ('scale', 'zp'),
    ('jpeg', 'features'): ('scale', 'zp', 'quality', 'grid', 'tile'),
    ('raw', 'frame'): (),
    ('jpeg', 'frame'): ('quality',),
    ('deepn_jpeg', 'frame'): ('table',),
}
FRAME_KEYS = ('defense',)                        # a camera frame may name the host's defense

# Order in which format_string() writes the known keys; unknown keys follow, sorted.
_KEY_ORDER = ('codec', 'cut', 'model', 'shape', 'dtype', 'layout', 'scale', 'zp', 'quality',
              'table', 'grid', 'tile', 'defense', 'size', 'crc32', 'epoch', 'seq', 't_rx')
# A meta value, and the annotations cut and model: one token of these characters.
TOKEN = re.compile(r'[A-Za-z0-9_.:+\-/]+\Z')
_KEY = re.compile(r'[a-z][a-z0-9_]*\Z')
_INT = re.compile(r'[0-9]{1,12}\Z')
_INT19 = re.compile(r'[0-9]{1,19}\Z')
_NAME = re.compile(r'[a-z][a-z0-9_]{0,31}\Z')
_DIMS = re.compile(r'[0-9]{1,9}(x[0-9]{1,9}){0,3}\Z')
_HEX8 = re.compile(r'[0-9a-f]{8}\Z')


class CodecError(ValueError):
    """A message that cannot be encoded or decoded; the reason is one line."""

    def __init__(self, reason: str):
        super().__init__(' '.join(str(reason).split()) or 'codec error')


def format_string(meta: Mapping[str, Any]) -> str:
    """Return the ``CompressedImage.format`` text of ``meta``: version, then key=value."""
    if not isinstance(meta, Mapping):
        raise CodecError(f'meta must be a mapping, got {type(meta).__name__}')
    parts = [VERSION]
    keys = [k for k in _KEY_ORDER if k in meta]
    keys += sorted(k for k in meta if k not in _KEY_ORDER)
    for key in keys:
        value = meta[key]
        if value is None:
            continue
        if not isinstance(key, str) or not _KEY.match(key):
            raise CodecError(f'bad meta key {key!r}')
        text = _value_text(key, value)
        if not TOKEN.match(text):
            raise CodecError(f'meta value of {key} has characters outside [A-Za-z0-9_.:+-/]: '
                             f'{text[:40]!r}')
        parts.append(f'{key}={text}')
    text = ' '.join(parts)
    if len(text) > MAX_FORMAT_CHARS:
        raise CodecError(f'format string longer than {MAX_FORMAT_CHARS} characters')
    return text


def _value_text(key: str, value) -> str:
    if key in ('shape', 'grid', 'tile'):
        return 'x'.join(str(int(v)) for v in value)
    if key == 'scale':
        return repr(float(value))
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def parse_format(text) -> dict:
    """Parse a ``CompressedImage.format`` text into checked, typed meta data."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode('ascii')
        except UnicodeDecodeError:
            raise CodecError('format string is not ASCII') from None
    if not isinstance(text, str):
        raise CodecError(f'format must be a string, got {type(text).__name__}')
    if len(text) > MAX_FORMAT_CHARS:
        raise CodecError(f'format string longer than {MAX_FORMAT_CHARS} characters')
    if not text.isascii():
        raise CodecError('format string is not ASCII')
    tokens = text.split()
    if not tokens:
        raise CodecError('empty format string')
    head = tokens[0]
    if head != VERSION:
        if head.startswith('edge_denoise/'):
            raise CodecError(f'unsupported wire version {head[:40]!r}; this side speaks '
                             f'{VERSION!r}')
        raise CodecError(f'not an edge_denoise message (format starts {head[:40]!r})')
    meta: dict[str, Any] = {}
    for token in tokens[1:]:
        key, sep, value = token.partition('=')
        if not sep or not _KEY.match(key) or not value or not TOKEN.match(value):
            raise CodecError(f'bad key=value token {token[:40]!r}')
        if key in meta:
            raise CodecError(f'duplicate key {key!r}')
        meta[key] = _parse_value(key, value)
    return check_meta(meta)


def _parse_value(key: str, value: str):
    if key in ('shape', 'grid', 'tile'):
        if not _DIMS.match(value):
            raise CodecError(f'{key} must be like 16x28x28, got {value[:40]!r}')
        return tuple(int(v) for v in value.split('x'))
    if key in ('zp', 'quality', 'size'):
        if not _INT.match(value):
            raise CodecError(f'{key} must be a non-negative integer, got {value[:40]!r}')
        return int(value)
    if key in ('seq', 't_rx'):
        if not _INT19.match(value):
            raise CodecError(f'{key} must be a non-negative integer, got {value[:40]!r}')
        return int(value)
    if key == 'scale':
        try:
            return float(value)
        except ValueError:
            raise CodecError(f'scale must be a number, got {value[:40]!r}') from None
    return value


def check_meta(meta: Mapping[str, Any]) -> dict:
    """
    Check meta data before any decoder runs; return a typed copy.

    Required: :data:`REQUIRED_KEYS` and the keys of the message's codec
    (:data:`CODEC_KEYS`). Allowed besides: ``cut``, ``model``, the accounting
    fields and, for camera frames, ``defense``. Any other key is refused, and
    every value is checked for its type and range.
    """
    if not isinstance(meta, Mapping):
        raise CodecError(f'meta must be a mapping, got {type(meta).__name__}')
    meta = dict(meta)
    codec = meta.get('codec')
    if codec is None:
        raise CodecError('missing key codec')
    if codec not in CODECS:
        raise CodecError(f'unknown codec {str(codec)[:40]!r}; expected one of {CODECS}')
    for key in ('shape', 'dtype'):
        if key not in meta:
            raise CodecError(f'missing key {key} for codec {codec}')
    shape = _dims(meta, 'shape', 1, 4)
    meta['shape'] = shape
    dtype = meta['dtype']
    n = math.prod(shape)
    if n > MAX_ELEMENTS:
        raise CodecError(f'shape {dims_text(shape)} has {n} elements, over the cap {MAX_ELEMENTS}')
    if dtype == 'uint8':
        kind = 'frame'
        if codec not in FRAME_CODECS:
            raise CodecError(f'codec {codec} carries float features, not dtype uint8')
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3)):
            raise CodecError(f'an image must be HxW or HxWx3, got shape {dims_text(shape)}')
    elif dtype in FLOAT_DTYPES:
        kind = 'features'
        if codec not in FEATURE_CODECS:
            raise CodecError(f'codec {codec} carries uint8 images, not dtype {dtype}')
        if codec in ('q8', 'jpeg') and dtype != 'float32':
            raise CodecError(f'codec {codec} decodes to float32, got dtype {dtype}')
    else:
        raise CodecError(f'unknown dtype {str(dtype)[:20]!r}; expected float32, float16 or '
                         f'uint8')
    needed = CODEC_KEYS[codec, kind]
    allowed = set(REQUIRED_KEYS + ANNOTATION_KEYS + ACCOUNTING_KEYS + needed)
    if kind == 'frame':
        allowed.update(FRAME_KEYS)
    for key in meta:
        if key not in allowed:
            raise CodecError(f'key {str(key)[:40]!r} does not apply to codec {codec} '
                             f'({kind}); its keys: {", ".join(sorted(allowed))}')
    for key in needed:
        if key not in meta:
            raise CodecError(f'missing key {key} for codec {codec}')
    for key, check in _CHECKS.items():
        if key in meta:
            meta[key] = check(meta[key])
    if codec == 'jpeg' and kind == 'features':
        grid, tile = _dims(meta, 'grid', 2, 2), _dims(meta, 'tile', 2, 2)
        meta['grid'], meta['tile'] = grid, tile
        c, h, w = chw(shape)
        if grid[0] * grid[1] < c or (grid[0] - 1) * grid[1] >= c:
            raise CodecError(f'grid {dims_text(grid)} does not fit {c} channels')
        if not (h <= tile[0] < h + TILE_ALIGN and w <= tile[1] < w + TILE_ALIGN):
            raise CodecError(f'tile {dims_text(tile)} does not fit {h}x{w} channels')
        if max(grid[0] * tile[0], grid[1] * tile[1]) > 65535:
            raise CodecError(f'mosaic of {dims_text(grid)} tiles of {dims_text(tile)} is '
                             f'too large for JPEG')
    for key in ('size', 'crc32'):   # checked last: what a message lacks says more first
        if key not in meta:
            raise CodecError(f'missing key {key}: every message carries the size '
                             f'and CRC-32 of its payload')
    return meta


def _integer(key: str, lo: int, hi: int):
    def check(value) -> int:
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or \
                not lo <= value <= hi:
            raise CodecError(f'{key} must be an integer in [{lo}, {hi}], got {value!r}'[:160])
        return int(value)
    return check


def _pattern(key: str, pattern: re.Pattern, what: str):
    def check(value) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise CodecError(f'{key} must be {what}, got {value!r}'[:160])
        return value
    return check


def _scale(value) -> float:
    """Return a quantization step: a number whose float32 is finite and > 0, 255 times too."""
    if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool):
        raise CodecError(f'scale must be a number, got {value!r}'[:160])
    with np.errstate(over='ignore', under='ignore'):
        f32 = np.float32(value)
        ok = math.isfinite(value) and f32 > 0 and np.isfinite(f32 * np.float32(255))
    if not ok:
        raise CodecError(f'scale must be a finite float32 > 0, got {value!r}'[:160])
    return float(value)


def _token(key: str):
    def check(value) -> str:
        if not isinstance(value, str) or not TOKEN.match(value) or \
                len(value) > MAX_TOKEN_CHARS:
            raise CodecError(f'{key} must be a token of [A-Za-z0-9_.:+-/] of at most '
                             f'{MAX_TOKEN_CHARS} characters, got {value!r}'[:160])
        return value
    return check


_CHECKS = {
    'size': _integer('size', 0, 1 << 40),
    'crc32': _pattern('crc32', _HEX8, '8 lower-case hex digits'),
    'cut': _token('cut'), 'model': _token('model'),
    'epoch': _pattern('epoch', EPOCH_PATTERN, '8 to 32 lower-case hex digits'),
    'seq': _integer('seq', 1, MAX_SEQ),
    't_rx': _integer('t_rx', 0, MAX_T_RX),
    'layout': lambda v: v if v in LAYOUTS else _refuse('layout', v, f'one of {LAYOUTS}'),
    'scale': _scale,
    'zp': _integer('zp', 0, 255),
    'quality': _integer('quality', *QUALITY_RANGE),
    'table': _pattern('table', _HEX8, '8 lower-case hex digits (a table id)'),
    'defense': _pattern('defense', _NAME, 'a defense name'),
}


def _refuse(key: str, value, what: str):
    raise CodecError(f'{key} must be {what}, got {value!r}'[:160])


def _dims(meta, key, lo, hi) -> tuple[int, ...]:
    value = meta[key]
    if not isinstance(value, (tuple, list)) or not lo <= len(value) <= hi or \
            not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                    for v in value):
        raise CodecError(f'{key} must be {lo} to {hi} positive integers, got {value!r}'[:200])
    value = tuple(int(v) for v in value)
    if max(value) > 1 << 24:
        raise CodecError(f'{key} {dims_text(value)} has a dimension over {1 << 24}')
    return value


def check_quality(q) -> int:
    """Return a JPEG quality, an integer in ``QUALITY_RANGE``; raise CodecError if it is not."""
    return _CHECKS['quality'](q)


def dims_text(dims) -> str:
    """Return dimensions as text: ``16x28x28``."""
    return 'x'.join(str(d) for d in dims)


def chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Return (C, H, W) of a feature shape: leading dimensions are tiled as channels."""
    if len(shape) == 1:
        return 1, 1, shape[0]
    return math.prod(shape[:-2]), shape[-2], shape[-1]
