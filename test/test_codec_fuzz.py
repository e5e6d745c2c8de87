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
Property test: mutated payloads and format strings only ever raise CodecError.

Thousands of seeded mutations (truncations, bit flips, byte runs, splices;
with the checksum left stale *and* recomputed, so the decoders themselves
see the damage) of every codec's messages, and of their format strings.
"""

import math
import random
import zlib

import numpy as np
import torch

from edge_denoise_ros.core import codecs, wire
from edge_denoise_ros.core.wire import CodecError


def _messages():
    rng = np.random.default_rng(0)
    relu = np.maximum(rng.normal(size=(16, 9, 9)), 0).astype(np.float32)
    signed = rng.normal(size=(3, 5, 6)).astype(np.float32)
    image = rng.integers(0, 256, size=(20, 24), dtype=np.uint8)
    repeated = np.repeat(relu[:, :, :3], 3, axis=2)  # runs of equal values: 'words' layout
    out = []
    for tensor, codec, opts in (
            (relu, 'raw', {}), (relu, 'raw', {'dtype': 'float16'}),
            (relu, 'lossless', {}), (relu, 'lossless', {'dtype': 'float16'}),
            (signed, 'lossless', {}), (repeated, 'lossless', {}),
            (repeated, 'lossless', {'dtype': 'float16'}), (relu, 'q8', {}), (signed, 'q8', {}),
            (relu, 'jpeg', {'quality': 50}), (relu, 'jpeg', {'quality': 90, 'align': 8}),
            (image, 'jpeg', {'quality': 75}), (image, 'deepn_jpeg', {})):
        payload, meta = codecs.encode(tensor, codec, cut='layer1', model='abc123', **opts)
        out.append((payload, meta))
    assert {m['layout'] for _, m in out if m['codec'] == 'lossless'} == {'planes', 'words'}
    return out


def _mutate(payload: bytes, r: random.Random) -> bytes:
    b = bytearray(payload)
    kind = r.randrange(7)
    if kind == 0:                                     # truncate
        return bytes(b[:r.randrange(len(b))])
    if kind == 1:                                     # flip bits
        for _ in range(r.randint(1, 4)):
            i = r.randrange(len(b))
            b[i] ^= 1 << r.randrange(8)
    elif kind == 2:                                   # overwrite a run
        i = r.randrange(len(b))
        for j in range(i, min(len(b), i + r.randint(1, 16))):
            b[j] = r.choice((0, 0xFF, r.randrange(256)))
    elif kind == 3:                                   # insert bytes
        i = r.randrange(len(b) + 1)
        b[i:i] = bytes(r.randrange(256) for _ in range(r.randint(1, 8)))
    elif kind == 4:                                   # delete a run
        i = r.randrange(len(b))
        del b[i:i + r.randint(1, 16)]
    elif kind == 5:                                   # header bytes (JPEG markers, zstd frame)
        i = r.randrange(min(len(b), 200))
        b[i] = r.randrange(256)
    else:                                             # splice a copy of itself
        i, j = sorted(r.randrange(len(b) + 1) for _ in range(2))
        b[r.randrange(len(b) + 1):0] = b[i:j]
    return bytes(b)


def _check_result(out, meta):
    shape = tuple(meta['shape'])
    if isinstance(out, torch.Tensor):
        assert tuple(out.shape) == shape and torch.isfinite(out.float()).all()
    else:
        assert isinstance(out, np.ndarray) and out.shape == shape and out.dtype == np.uint8


def test_mutated_payloads_only_raise_codec_error():
    r = random.Random(1234)
    messages = _messages()
    raised = returned = 0
    for round_ in range(3000):
        payload, meta = messages[round_ % len(messages)]
        bad = _mutate(payload, r) if r.random() < 0.97 else payload
        fresh = dict(meta, size=len(bad), crc32=f'{zlib.crc32(bad):08x}')
        for m in (meta, fresh) if round_ % 2 else (fresh,):
            try:
                out = codecs.decode(bad, m)
            except CodecError as exc:
                assert '\n' not in str(exc) and str(exc)
                raised += 1
            else:
                _check_result(out, m)
                returned += 1
    assert raised > 2000 and returned > 0


def _mutate_text(text: str, r: random.Random) -> str:
    tokens = text.split(' ')
    kind = r.randrange(9)
    if kind == 0 and len(tokens) > 1:                 # drop a key
        del tokens[r.randrange(1, len(tokens))]
    elif kind == 1:                                   # duplicate a key
        tokens.append(r.choice(tokens[1:]))
    elif kind == 2:                                   # change a value
        i = r.randrange(1, len(tokens))
        key = tokens[i].split('=')[0]
        value = r.choice(['', '0', '-1', 'nan', 'inf', '1e309', '0x10', '99999999999',
                          '4x4x4x4x4', '0x0', 'float64', 'jpeg', 'deepn_jpeg', 'uint8',
                          '1.5', '256', 'x', 'zzzzzzzz', str(r.randrange(1 << 30))])
        tokens[i] = f'{key}={value}'
    elif kind == 3:                                   # random characters
        i = r.randrange(len(text) + 1)
        text = text[:i] + ''.join(chr(r.randrange(1, 0x250)) for _ in range(3)) + text[i:]
        return text
    elif kind == 4:                                   # version
        tokens[0] = r.choice(['edge_denoise/0', 'edge_denoise/2', 'edge_denoise', 'EDGE', ''])
    elif kind == 5:                                   # truncate
        return text[:r.randrange(len(text))]
    elif kind == 6:                                   # swap codec
        tokens = [t if not t.startswith('codec=') else
                  'codec=' + r.choice(wire.CODECS) for t in tokens]
    elif kind == 7:                                   # huge
        return text + ' x=' + 'a' * r.choice((10, 5000))
    else:                                             # shape change
        tokens = [t if not t.startswith('shape=') else
                  'shape=' + 'x'.join(str(r.randint(1, 40)) for _ in range(r.randint(1, 4)))
                  for t in tokens]
    return ' '.join(tokens)


def test_mutated_format_strings_only_raise_codec_error():
    r = random.Random(99)
    messages = _messages()
    raised = 0
    for round_ in range(3000):
        payload, meta = messages[round_ % len(messages)]
        text = _mutate_text(wire.format_string(meta), r)
        try:
            parsed = wire.parse_format(text)
        except CodecError as exc:
            assert '\n' not in str(exc)
            raised += 1
            continue
        try:
            out = codecs.decode(payload, text)
        except CodecError as exc:
            assert '\n' not in str(exc)
            raised += 1
        else:
            _check_result(out, parsed)
    assert raised > 1500


def test_odd_meta_values_only_raise_codec_error():
    payload, meta = next(m for m in _messages() if m[1]['codec'] == 'jpeg')
    odd = [None, -1, 0, 1.5, math.nan, math.inf, 'x', b'x', [], (), (0,), (1, 2, 3, 4, 5),
           (-3, 4), {'a': 1}, True, 10 ** 30, (10 ** 9, 10 ** 9), 'float32', 'jpeg']
    for key in list(meta) + ['codec', 'grid', 'tile', 'zp', 'scale', 'extra']:
        for value in odd:
            try:
                codecs.decode(payload, dict(meta, **{key: value}))
            except CodecError:
                pass
    for bad_meta in (None, 3, 'edge_denoise/1', b'\xff\xfe', [('codec', 'raw')], {}):
        try:
            codecs.decode(payload, bad_meta)
        except CodecError:
            pass
    for bad_payload in (None, 3, 'text', [1, 2, 300], np.zeros(3, np.float32), [], b''):
        try:
            codecs.decode(bad_payload, meta)
        except CodecError:
            pass
