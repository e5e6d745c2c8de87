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
A third party decodes every codec from the README's wire-format rules alone.

``third_party_decode`` below is written from the README section "Wire format"
with numpy, zstandard, OpenCV and zlib only: no code of this package. The
package only makes the messages; what the third party decodes must equal what
the package decodes, bit for bit.
"""

import math
from pathlib import Path
import re
import zlib

import cv2
import numpy as np
import pytest
import zstandard

from edge_denoise_ros.core import codecs, wire

README = Path(__file__).resolve().parents[1] / 'README.md'


# ------------------------------------------------------------- the third party's decoder

def parse_format(text: str) -> dict:
    """``edge_denoise/1 key=value ...``: dims as int tuples, integers as int, the rest str."""
    words = text.split(' ')
    assert words[0] == 'edge_denoise/1'
    meta = {}
    for word in words[1:]:
        key, value = word.split('=', 1)
        if key in ('shape', 'grid', 'tile'):
            meta[key] = tuple(int(v) for v in value.split('x'))
        elif key in ('size', 'zp', 'quality', 'seq', 't_rx'):
            meta[key] = int(value)
        elif key == 'scale':
            meta[key] = float(value)
        else:
            meta[key] = value
    return meta


def _dequantize(q: np.ndarray, scale: float, zp: int) -> np.ndarray:
    return (q.astype(np.float32) - np.float32(zp)) * np.float32(scale)


def third_party_decode(payload: bytes, fmt: str):
    """Decode one message by the README's rules; return a numpy array."""
    meta = parse_format(fmt)
    assert meta['size'] == len(payload)
    assert int(meta['crc32'], 16) == zlib.crc32(payload)
    shape, dtype, codec = meta['shape'], meta['dtype'], meta['codec']
    n = math.prod(shape)
    if dtype == 'uint8':                      # a camera frame (cut=frame)
        if codec == 'raw':
            return np.frombuffer(payload, np.uint8).reshape(shape)
        color = len(shape) == 3 and shape[2] == 3
        image = cv2.imdecode(np.frombuffer(payload, np.uint8),
                             cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE)
        return image.reshape(shape)           # B, G, R order for colour
    little = {'float32': '<f4', 'float16': '<f2'}[dtype]
    if codec == 'raw':
        return np.frombuffer(payload, little).reshape(shape)
    if codec == 'lossless':
        word = np.dtype({'float32': '<u4', 'float16': '<u2'}[dtype])
        body = np.frombuffer(zstandard.ZstdDecompressor().decompress(payload), np.uint8)
        nb = (n + 7) // 8
        mask = np.unpackbits(body[:nb], count=n).astype(bool)   # value i: bit 7 - i % 8
        nnz = int(mask.sum())
        raw = body[nb:nb + nnz * word.itemsize]
        if meta['layout'] == 'planes':                          # plane k: byte k of each word
            raw = raw.reshape(word.itemsize, nnz).T
        words = np.zeros(n, word)
        words[mask] = np.ascontiguousarray(raw).view(word).ravel()
        return words.view(little).reshape(shape)
    if codec == 'q8':
        q = np.frombuffer(zstandard.ZstdDecompressor().decompress(payload), np.uint8)
        return _dequantize(q, meta['scale'], meta['zp']).reshape(shape)
    assert codec == 'jpeg'                    # features tiled into one gray JPEG mosaic
    c = math.prod(shape[:-2]) if len(shape) > 1 else 1
    h, w = (shape[-2], shape[-1]) if len(shape) > 1 else (1, shape[0])
    (rows, cols), (th, tw) = meta['grid'], meta['tile']
    mosaic = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert mosaic.shape == (rows * th, cols * tw)
    q = np.empty((c, h, w), np.uint8)
    for k in range(c):                        # channel k: tile row k // cols, column k % cols
        r, col = divmod(k, cols)
        q[k] = mosaic[r * th:r * th + h, col * tw:col * tw + w]
    return _dequantize(q, meta['scale'], meta['zp']).reshape(shape)


# --------------------------------------------------------------------------- the tests

def _cases():
    rng = np.random.default_rng(7)
    relu = np.maximum(rng.normal(size=(16, 28, 28)), 0).astype(np.float32)
    signed = rng.normal(size=(10,)).astype(np.float32)
    wide = np.maximum(rng.normal(size=(2, 3, 5, 7)), 0).astype(np.float32)
    repeated = np.repeat(relu[:, :, :4], 7, axis=2)       # runs of equal values: layout words
    gray = rng.integers(0, 256, size=(30, 40), dtype=np.uint8)
    color = cv2.GaussianBlur(rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8), (5, 5), 2)
    return [
        ('raw float32', relu, 'raw', {}), ('raw float16', relu, 'raw', {'dtype': 'float16'}),
        ('raw 1-D', signed, 'raw', {}),
        ('lossless planes', relu, 'lossless', {}),
        ('lossless words', repeated, 'lossless', {}),
        ('lossless float16', relu, 'lossless', {'dtype': 'float16'}),
        ('lossless signed', signed, 'lossless', {}),
        ('q8', relu, 'q8', {}), ('q8 signed', signed, 'q8', {}),
        ('jpeg q5', relu, 'jpeg', {'quality': 5}), ('jpeg 4-D', wide, 'jpeg', {'quality': 50}),
        ('jpeg align 8', relu[:5, :13, :11], 'jpeg', {'quality': 90, 'align': 8}),
        ('jpeg 1-D', signed, 'jpeg', {'quality': 75}),
        ('frame raw gray', gray, 'raw', {}), ('frame raw color', color, 'raw', {}),
        ('frame jpeg', color, 'jpeg', {'quality': 90}),
        ('frame jpeg gray', gray, 'jpeg', {'quality': 80}),
        ('frame deepn_jpeg', color, 'deepn_jpeg', {}),
    ]


@pytest.mark.parametrize('name,value,codec,options', _cases(), ids=[c[0] for c in _cases()])
def test_third_party_decodes_every_codec_like_the_package(name, value, codec, options):
    payload, meta = codecs.encode(value, codec, cut='layer1', model='0123abcd', **options)
    fmt = wire.format_string(meta)
    theirs = third_party_decode(payload, fmt)
    ours = codecs.decode(payload, fmt)
    ours = ours.numpy() if hasattr(ours, 'numpy') else ours
    assert theirs.shape == ours.shape and theirs.dtype == ours.dtype
    assert np.array_equal(theirs.view(np.uint8), ours.view(np.uint8)), name
    if codec in ('raw', 'lossless') and value.dtype != np.uint8:
        want = value.astype(options.get('dtype', 'float32'))
        assert np.array_equal(theirs, want)   # bit-exact codecs are bit exact


def test_layouts_both_occur():
    layouts = {codecs.encode(v, 'lossless')[1]['layout'] for _, v, c, o in _cases()
               if c == 'lossless' and not o}
    assert layouts == {'planes', 'words'}


def _wire_section() -> str:
    text = README.read_text()
    match = re.search(r'^### Wire format\n(.*?)(?=^## |^### )', text, re.M | re.S)
    assert match, 'README has no "### Wire format" section'
    return ' '.join(match.group(1).split())


def test_readme_states_the_rules_this_decoder_follows():
    section = _wire_section()
    for rule in ('edge_denoise/1', 'crc32', 'little-endian', 'zstd', 'bitmap',
                 'most significant bit first', 'layout=words', 'layout=planes',
                 'byte k', '(q - zp) * scale', 'float32', 'grid', 'tile',
                 'channel k', 'k // cols', 'k % cols', 'B, G, R', 'epoch', 'seq', 't_rx',
                 'deepn_jpeg', 'table'):
        assert rule.lower() in section.lower(), f'the wire-format section does not state {rule!r}'
    for key in wire.CODECS:
        assert f'`{key}`' in section, key
