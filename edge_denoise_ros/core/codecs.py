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
Feature and image codecs: encode a tensor or a camera frame, decode a message.

Feature codecs (a float ``C x H x W`` tensor, the output of the edge's head):

- ``raw``: float32 or float16 little-endian bytes;
- ``lossless``: bit-exact round trip of what is sent (float32, or float16 with
  ``dtype='float16'``): a bitmap of the non-zero values ReLU leaves, the
  non-zero values (as byte planes, or as whole words when equal values
  repeat), then zstd (whose entropy stage is Huffman/FSE); measured against
  a plain Huffman code as in Ko et al. by ``edge-denoise bench codecs``;
- ``q8``: 8-bit quantization with a per-tensor scale and zero point, then the
  same lossless stage;
- ``jpeg``: the 8-bit tensor's channels tiled into one gray 2-D mosaic and
  encoded as a real baseline JPEG at quality ``quality`` (Ko et al.); the
  payload is a plain ``.jpg`` any viewer opens.

Image codecs (a uint8 ``H x W`` or ``H x W x 3`` camera frame, host-only path):

- ``jpeg``: standard (IJG) tables scaled by ``quality``;
- ``deepn_jpeg``: a DNN-favourable luminance table (DeepN-JPEG, see
  :mod:`.deepn_jpeg`), written into a standard JPEG by Pillow.

On the wire a message is a ``sensor_msgs/CompressedImage``: ``format`` is
:func:`.wire.format_string` of the meta data (``edge_denoise/1 codec=...
shape=...``) and ``data`` the payload alone. :func:`decode` accepts the meta
dict or that text; every malformed input raises :class:`.wire.CodecError`
with a one-line reason (nothing is ever unpickled, no decoder runs on a
header that does not match the meta data, and sizes are capped before
anything is allocated).
"""

from __future__ import annotations

import heapq
import io
import json
import math
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
import torch
import zstandard

from .imageheaders import check_image, ImageHeaderError, sniff, ZSTD_MAGIC
from .libwarnings import library_warnings
from .models import weights_path
from .wire import (check_meta, check_quality, chw, CODECS, CodecError, dims_text,
                   FEATURE_CODECS, FLOAT_DTYPES, FRAME_CODECS, MAX_ELEMENTS, MAX_PAYLOAD_BYTES,
                   parse_format, TILE_ALIGN, TOKEN)

DEFAULT_LEVEL = 1                   # zstd level of the lossless stages (1: fastest of 1-3)
DEFAULT_QUALITY = 75                # JPEG quality when none is given
TABLE_FILE = 'deepn_jpeg_table.json'  # the shipped DeepN-JPEG table, in weights/

_LE = {'float32': np.dtype('<f4'), 'float16': np.dtype('<f2')}
_BITS = {'float32': np.dtype('<u4'), 'float16': np.dtype('<u2')}


# ----------------------------------------------------------------------------- encode

def encode(tensor, codec: str, **options) -> tuple[bytes, dict]:
    """
    Encode a feature tensor or an image; return ``(payload, meta)``.

    A float tensor / array (``C x H x W``, or 1 to 4 dimensions) takes the
    feature codecs ``raw``, ``lossless``, ``q8``, ``jpeg``; a uint8 ``H x W``
    or ``H x W x 3`` array takes the image codecs ``jpeg``, ``deepn_jpeg``.

    Options: ``dtype`` ('float32' or 'float16', raw/lossless), ``level`` (zstd
    level), ``quality`` (1..100, jpeg), ``qtable`` (64 ints in row-major order,
    deepn_jpeg; default: the shipped table), ``align`` (tile padding of the
    jpeg mosaic, 1 (default) or 8), and the annotations ``cut`` and ``model`` (carried
    in the meta data, checked by the host).
    """
    if codec not in CODECS:
        raise CodecError(f'unknown codec {str(codec)[:40]!r}; expected one of {CODECS}')
    annotations = {k: options.pop(k) for k in ('cut', 'model') if options.get(k) is not None}
    for key, value in annotations.items():
        if not isinstance(value, str) or not TOKEN.match(value) or len(value) > 200:
            raise CodecError(f'{key} must be a short token of [A-Za-z0-9_.:+-/], got {value!r}')
    array = _as_array(tensor)
    if array.dtype == np.uint8:
        if codec not in FRAME_CODECS:
            raise CodecError(f'codec {codec} takes float features; uint8 images take '
                             f'{FRAME_CODECS}')
        payload, meta = _encode_image(array, codec, options)
    else:
        if codec not in FEATURE_CODECS:
            raise CodecError(f'codec {codec} takes uint8 images, got {array.dtype} values')
        payload, meta = _encode_feature(array, codec, options)
    if options:
        raise CodecError(f'unknown option(s) for codec {codec}: {sorted(options)}')
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CodecError(f'payload of {len(payload)} bytes is over the cap {MAX_PAYLOAD_BYTES}')
    meta = {'codec': codec, **annotations, **meta, 'size': len(payload),
            'crc32': f'{zlib.crc32(payload):08x}'}
    return payload, meta


def _as_array(tensor) -> np.ndarray:
    if hasattr(tensor, 'detach'):  # a torch tensor
        tensor = tensor.detach().cpu()
        if str(tensor.dtype) == 'torch.bfloat16':
            tensor = tensor.float()
        tensor = tensor.numpy()
    array = np.asarray(tensor)
    if array.dtype.kind not in 'fu' or (array.dtype.kind == 'u' and array.dtype != np.uint8):
        raise CodecError(f'expected float features or uint8 images, got dtype {array.dtype}')
    if array.size == 0 or array.ndim == 0:
        raise CodecError(f'expected a non-empty array, got shape {array.shape}')
    if array.size > MAX_ELEMENTS:
        raise CodecError(f'{array.size} elements, over the cap {MAX_ELEMENTS}')
    return array


def _encode_feature(array: np.ndarray, codec: str, options: dict) -> tuple[bytes, dict]:
    if not 1 <= array.ndim <= 4:
        raise CodecError(f'features must have 1 to 4 dimensions, got shape {array.shape}')
    if not np.isfinite(array).all():
        raise CodecError('features contain NaN or infinity')
    shape = tuple(int(d) for d in array.shape)
    if codec in ('raw', 'lossless'):
        dtype = options.pop('dtype', 'float32')
        if dtype not in FLOAT_DTYPES:
            raise CodecError(f'dtype must be one of {FLOAT_DTYPES}, got {dtype!r}')
        if dtype == 'float16':  # torch's conversion is ~10x faster than numpy's
            half = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).half()
            values = half.numpy().view(_LE[dtype])
            if not _finite(values):
                raise CodecError('features overflow float16')
        else:
            values = np.ascontiguousarray(array, dtype=_LE[dtype])
        meta = {'shape': shape, 'dtype': dtype}
        if codec == 'raw':
            return values.tobytes(), meta
        level = options.pop('level', DEFAULT_LEVEL)
        payload, meta['layout'] = _sparse_pack(values.view(_BITS[dtype]).ravel(), level)
        return payload, meta
    q, scale, zp = quantize8(array)
    meta = {'shape': shape, 'dtype': 'float32', 'scale': scale, 'zp': zp}
    if codec == 'q8':
        level = options.pop('level', DEFAULT_LEVEL)
        return _zstd(level).compress(q.tobytes()), meta
    quality = check_quality(options.pop('quality', DEFAULT_QUALITY))
    align = options.pop('align', 1)
    if align not in (1, TILE_ALIGN):
        raise CodecError(f'align must be 1 or {TILE_ALIGN}, got {align!r}')
    mosaic, grid, tile = tile_mosaic(q.reshape(chw(shape)), zp, align)
    meta.update(quality=quality, grid=grid, tile=tile)
    return _jpeg_encode(mosaic, quality), meta


def quantize8(array: np.ndarray) -> tuple[np.ndarray, float, int]:
    """
    Quantize to uint8 with a per-tensor scale and zero point; return ``(q, scale, zp)``.

    The range always includes 0, so exact zeros (ReLU) stay exact: ``zp`` is
    the code of 0 and ``x ~ (q - zp) * scale`` with ``|error| <= scale / 2``
    inside the range.
    """
    a = np.asarray(array, dtype=np.float32)
    lo, hi = min(float(a.min()), 0.0), max(float(a.max()), 0.0)
    if hi == lo:
        return np.zeros(a.shape, np.uint8), 1.0, 0
    scale = float(np.float32((hi - lo) / 255.0))
    if not scale > 0 or not math.isfinite(scale):
        raise CodecError(f'cannot quantize values in [{lo}, {hi}]')
    zp = int(min(255, max(0, round(-lo / scale))))
    q = np.rint(a * np.float32(1.0 / scale))
    q += zp
    np.clip(q, 0, 255, out=q)
    return q.astype(np.uint8), scale, zp


def dequantize8(q: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """Invert :func:`quantize8` (up to its rounding): float32 ``(q - zp) * scale``."""
    out = q.astype(np.float32)
    if zp:
        out -= np.float32(zp)
    out *= np.float32(scale)
    return out


def tile_mosaic(q: np.ndarray, fill: int = 0, align: int = 1,
                ) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """
    Tile ``C x H x W`` uint8 channels into one 2-D mosaic; return ``(mosaic, grid, tile)``.

    The grid has ``ceil(sqrt(C))`` columns; unused tiles are filled with
    ``fill`` (the zero point). With ``align=8`` each tile is padded to a
    multiple of 8 by repeating its edge, so JPEG's 8x8 blocks never straddle
    two channels; measured on the default model's cuts, the unpadded mosaic
    (``align=1``, the default) gives 10-15 % smaller payloads at the same
    accuracy.
    """
    c, h, w = q.shape
    cols = math.ceil(math.sqrt(c))
    rows = math.ceil(c / cols)
    th, tw = -(-h // align) * align, -(-w // align) * align
    if (th, tw) != (h, w):
        q = np.pad(q, ((0, 0), (0, th - h), (0, tw - w)), mode='edge')
    if rows * cols != c:
        q = np.concatenate([q, np.full((rows * cols - c, th, tw), fill, np.uint8)])
    mosaic = q.reshape(rows, cols, th, tw).transpose(0, 2, 1, 3).reshape(rows * th, cols * tw)
    return np.ascontiguousarray(mosaic), (rows, cols), (th, tw)


def untile_mosaic(mosaic: np.ndarray, c: int, h: int, w: int, grid, tile) -> np.ndarray:
    """Invert :func:`tile_mosaic`: the ``C x H x W`` channels of a mosaic."""
    rows, cols = grid
    th, tw = tile
    tiles = mosaic.reshape(rows, th, cols, tw).transpose(0, 2, 1, 3).reshape(rows * cols, th, tw)
    return tiles[:c, :h, :w]


def _encode_image(array: np.ndarray, codec: str, options: dict) -> tuple[bytes, dict]:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise CodecError(f'an image must be HxW or HxWx3 uint8, got shape {array.shape}')
    array = np.ascontiguousarray(array)
    meta = {'shape': tuple(int(d) for d in array.shape), 'dtype': 'uint8'}
    if codec == 'raw':  # the frame's bytes as they are (host-only, uncompressed)
        return array.tobytes(), meta
    if max(array.shape[:2]) > 65535:
        raise CodecError(f'image {array.shape} is larger than JPEG allows')
    if codec == 'jpeg':
        quality = check_quality(options.pop('quality', DEFAULT_QUALITY))
        meta['quality'] = quality
        return _jpeg_encode(array, quality), meta
    table = options.pop('qtable', None)
    if table is None:
        table = default_table()
    table = check_qtable(table)
    meta['table'] = qtable_id(table)
    return _jpeg_encode_table(array, table), meta


def check_qtable(table) -> np.ndarray:
    """Return a JPEG quantization table as 64 ints in [1, 255] (row-major 8x8)."""
    try:
        t = np.asarray(table, dtype=np.float64).reshape(64)
    except (TypeError, ValueError):
        raise CodecError('a quantization table must have 64 numbers') from None
    if not np.isfinite(t).all() or (t != np.round(t)).any() or t.min() < 1 or t.max() > 255:
        raise CodecError('quantization table entries must be integers in [1, 255]')
    return t.astype(np.int64)


def qtable_id(table) -> str:
    """Return a short id (8 hex digits) of a quantization table."""
    return f'{zlib.crc32(check_qtable(table).astype(np.uint8).tobytes()):08x}'


def table_path() -> Path:
    """Path of the shipped DeepN-JPEG table (``weights/deepn_jpeg_table.json``)."""
    return weights_path(TABLE_FILE)


def table_record(path: str | Path | None = None) -> dict:
    """Read a table file's record: ``table`` (as used), ``plm_table``, ``scale``, ..."""
    path = Path(path) if path else table_path()
    if not path.is_file():
        raise CodecError(f'DeepN-JPEG table not found: {path}; make it with '
                         f'`edge-denoise train deepn-jpeg-table`')
    try:
        record = json.loads(path.read_text())
        record['table'] = check_qtable(record['table']).tolist()
    except (ValueError, KeyError, TypeError) as exc:
        raise CodecError(f'{path}: not a DeepN-JPEG table file ({exc})') from None
    if not isinstance(record, dict):
        raise CodecError(f'{path}: not a DeepN-JPEG table file')
    return record


def load_table(path: str | Path | None = None) -> np.ndarray:
    """Load a DeepN-JPEG table file's table (64 ints, row-major) as the codec uses it."""
    return np.asarray(table_record(path)['table'], dtype=np.int64)


_DEFAULT_TABLES: dict[str, np.ndarray] = {}


def default_table() -> np.ndarray:
    """Return the shipped DeepN-JPEG table (cached; :func:`forget_default_table` drops it)."""
    key = str(table_path())
    if key not in _DEFAULT_TABLES:
        _DEFAULT_TABLES[key] = load_table()
    return _DEFAULT_TABLES[key]


def forget_default_table() -> None:
    """Drop the cached default table (after writing a new table file)."""
    _DEFAULT_TABLES.clear()


def codec_quality(codec: str, quality: int | None) -> int | None:
    """
    Return the JPEG quality ``codec`` takes: ``quality`` checked for ``jpeg``, else None.

    The one place of the rule that only ``jpeg`` takes a quality (``deepn_jpeg``
    has its table); a bad quality raises CodecError (:func:`.wire.check_quality`).
    """
    return check_quality(quality) if codec == 'jpeg' and quality is not None else None


def jpeg_options(codec: str, quality: int | None) -> dict:
    """Return the encode options that give ``codec`` the JPEG ``quality`` (none for the others)."""
    q = codec_quality(codec, quality)
    return {} if q is None else {'quality': q}


# ----------------------------------------------------------------------------- stages

_local = threading.local()


def _zstd(level: int):
    if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 22:
        raise CodecError(f'zstd level must be an integer in [1, 22], got {level!r}')
    cache = getattr(_local, 'cctx', None)
    if cache is None:
        cache = _local.cctx = {}
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True,
                                                write_checksum=False)
    return cache[level]


def _unzstd(payload: bytes, lo: int, hi: int, codec: str) -> bytes:
    """
    Decompress one zstd frame of ``lo`` to ``hi`` bytes, checking its header first.

    The payload must be a zstd frame (magic bytes) that states its content size
    (this package's encoder always writes it), and that size must lie in the
    range the declared shape allows: nothing is decompressed beyond it.
    """
    if not payload.startswith(ZSTD_MAGIC):
        raise CodecError(f'payload declared {codec} is {sniff(payload) or "of no known format"}'
                         f', not a zstd frame')
    try:
        size = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise CodecError(f'corrupt {codec} payload: {exc}') from None
    if size < 0:
        raise CodecError(f'{codec} payload does not state its content size')
    if not lo <= size <= hi:
        raise CodecError(f'{codec} payload claims {size} bytes, the shape allows {lo} to {hi}')
    dctx = getattr(_local, 'dctx', None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    try:
        body = dctx.decompress(payload, max_output_size=hi)
    except zstandard.ZstdError as exc:
        raise CodecError(f'corrupt {codec} payload: {exc}') from None
    if len(body) != size:
        raise CodecError(f'corrupt {codec} payload: {len(body)} bytes, the frame states {size}')
    return body


REPEAT_FRACTION = 0.03  # above it, whole words: zstd's matches find repeated values


def _sparse_pack(bits: np.ndarray, level: int) -> tuple[bytes, str]:
    """
    Compress (zstd) the bitmap of the non-zero words, then the non-zero words; and the layout.

    The words go as byte planes (``planes``: all low bytes, ..., all sign and
    exponent bytes), which suits the varied values deep layers make, or whole
    (``words``) when many equal values follow each other (the stem's constant
    background), which zstd's matches catch; measured on the default model,
    the choice by that fraction is within 1 % of the better of the two.
    """
    mask = bits != 0
    nz = bits[mask]
    repeats = np.count_nonzero(nz[1:] == nz[:-1]) if len(nz) > 1 else 0
    layout = 'words' if repeats > REPEAT_FRACTION * len(nz) else 'planes'
    raw = nz.view(np.uint8)
    if layout == 'planes':
        raw = raw.reshape(-1, bits.itemsize).T.ravel()
    body = np.concatenate([np.packbits(mask), raw])
    return _zstd(level).compress(body.data), layout


def _sparse_unpack(payload: bytes, n: int, word: np.dtype, layout: str) -> np.ndarray:
    nb = (n + 7) // 8
    body = _unzstd(payload, nb, nb + n * word.itemsize, 'lossless')
    if len(body) < nb:
        raise CodecError(f'lossless payload holds {len(body)} bytes, less than the {nb}-byte '
                         f'bitmap of {n} values')
    raw = np.frombuffer(body, np.uint8)
    mask = np.unpackbits(raw[:nb], count=n).view(bool)
    nnz = int(np.count_nonzero(mask))
    if len(body) != nb + nnz * word.itemsize:
        raise CodecError(f'lossless payload holds {len(body) - nb} value bytes for {nnz} '
                         f'non-zero values of {word.itemsize} bytes')
    values = raw[nb:]
    if layout == 'planes':
        values = np.ascontiguousarray(values.reshape(word.itemsize, nnz).T)
    out = np.zeros(n, word)
    out[mask] = values.view(word).ravel()
    return out


def _jpeg_encode(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, int(quality),
                                           cv2.IMWRITE_JPEG_OPTIMIZE, 1])
    if not ok:
        raise CodecError(f'the JPEG encoder failed on a {image.shape} image')
    return strip_jpeg_metadata(buf.tobytes())


def _jpeg_encode_table(image: np.ndarray, table: np.ndarray) -> bytes:
    buf = io.BytesIO()
    pil = Image.fromarray(image if image.ndim == 2 else image[:, :, ::-1].copy())
    tables = [table.tolist()] * (1 if image.ndim == 2 else 2)
    pil.save(buf, 'JPEG', qtables=tables, optimize=True, subsampling=0)
    return strip_jpeg_metadata(buf.getvalue())


def strip_jpeg_metadata(jpeg: bytes) -> bytes:
    """Drop the APPn/COM segments (JFIF, EXIF, comments): the rest is still a valid JPEG."""
    out, i = [jpeg[:2]], 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF:
        marker = jpeg[i + 1]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data
            break
        seg = 2 + int.from_bytes(jpeg[i + 2:i + 4], 'big')
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            out.append(jpeg[i:i + seg])
        i += seg
    out.append(jpeg[i:])
    return b''.join(out)


def _jpeg_decode(payload: bytes, h: int, w: int, comps: int) -> np.ndarray:
    """
    Decode a JPEG whose frame header must say ``h x w`` with ``comps`` components.

    The header is read first (:func:`.imageheaders.check_image`: a JPEG, 8
    bits, no more pixels than declared, bytes enough for them); a decode the
    library had to patch up (its warnings, caught off stderr) is refused.
    """
    try:
        header = check_image(payload, 'jpeg', h * w, require_eoi=True)
    except ImageHeaderError as exc:
        raise CodecError(str(exc)) from None
    got = (header.height, header.width, header.channels)
    if got != (h, w, comps):
        raise CodecError(f'JPEG is {got[0]}x{got[1]} with {got[2]} components, the meta data '
                         f'says {h}x{w} with {comps}')
    flag = cv2.IMREAD_GRAYSCALE if comps == 1 else cv2.IMREAD_COLOR
    with library_warnings() as caught:
        try:
            image = cv2.imdecode(np.frombuffer(payload, np.uint8), flag)
        except cv2.error as exc:
            raise CodecError(f'corrupt JPEG: {str(exc).strip().splitlines()[-1][:120]}') \
                from None
    if caught.lines:
        raise CodecError(f'corrupt JPEG: {caught.first}')
    want = (h, w) if comps == 1 else (h, w, 3)
    if image is None or image.shape != want or image.dtype != np.uint8:
        raise CodecError('corrupt JPEG: the decoder rejected it')
    return image


# ----------------------------------------------------------------------------- decode

def decode(payload, meta, max_bytes: int | None = None):
    """
    Decode ``payload`` with ``meta`` (a dict from :func:`encode` or a format string).

    Returns a float ``torch.Tensor`` of the meta data's shape for the feature
    codecs (float32, or the ``dtype`` sent for raw/lossless), a uint8 numpy
    image for the image codecs. Raises :class:`CodecError` (one-line reason)
    on anything malformed; ``max_bytes`` caps the payload (default
    ``MAX_PAYLOAD_BYTES``).
    """
    try:
        return _decode(payload, meta, max_bytes)
    except CodecError:
        raise
    except MemoryError:
        raise CodecError('out of memory while decoding') from None
    except Exception as exc:  # a safety net: a decoder's own exception is a corrupt payload
        raise CodecError(f'corrupt payload: {type(exc).__name__}: {exc}'[:200]) from None


def _decode(payload, meta, max_bytes):
    meta = parse_format(meta) if isinstance(meta, (str, bytes, bytearray)) else check_meta(meta)
    cap = MAX_PAYLOAD_BYTES if max_bytes is None else max_bytes
    payload = _as_bytes(payload, cap)
    if meta['size'] != len(payload):
        raise CodecError(f'payload has {len(payload)} bytes, the meta data says {meta["size"]}')
    if f'{zlib.crc32(payload):08x}' != meta['crc32']:
        raise CodecError('payload checksum mismatch (crc32): corrupt or truncated')
    codec, shape, dtype = meta['codec'], meta['shape'], meta['dtype']
    n = math.prod(shape)
    if dtype == 'uint8':
        if codec == 'raw':
            if len(payload) != n:
                raise CodecError(f'raw image payload has {len(payload)} bytes, shape '
                                 f'{dims_text(shape)} needs {n}')
            return np.frombuffer(payload, np.uint8).reshape(shape).copy()
        h, w = shape[:2]
        comps = 1 if len(shape) == 2 or shape[2] == 1 else 3
        image = _jpeg_decode(payload, h, w, comps)
        return image.reshape(shape)
    if codec == 'raw':
        want = n * _LE[dtype].itemsize
        if len(payload) != want:
            raise CodecError(f'raw payload has {len(payload)} bytes, shape {dims_text(shape)} '
                             f'{dtype} needs {want}')
        values = np.frombuffer(payload, _LE[dtype]).copy()
    elif codec == 'lossless':
        values = _sparse_unpack(payload, n, _BITS[dtype], meta['layout']).view(_LE[dtype])
    elif codec == 'q8':
        body = _unzstd(payload, n, n, 'q8')
        values = dequantize8(np.frombuffer(body, np.uint8), meta['scale'], meta['zp'])
    else:  # jpeg features
        c, h, w = chw(shape)
        (rows, cols), (th, tw) = meta['grid'], meta['tile']
        mosaic = _jpeg_decode(payload, rows * th, cols * tw, 1)
        q = untile_mosaic(mosaic, c, h, w, meta['grid'], meta['tile'])
        values = dequantize8(q, meta['scale'], meta['zp'])
    if not _finite(values):
        raise CodecError('decoded features contain NaN or infinity')
    values = values.reshape(shape)
    if values.dtype.byteorder == '>':
        values = values.astype(values.dtype.newbyteorder('='))
    return torch.from_numpy(np.ascontiguousarray(values))


def _finite(values: np.ndarray) -> bool:
    """Return whether no value is NaN or infinite (float16 by its exponent bits: fast)."""
    if values.dtype.itemsize == 2:
        return not ((values.view(np.uint16) & 0x7C00) == 0x7C00).any()
    return bool(np.isfinite(values).all())


def _as_bytes(payload, cap: int) -> bytes:
    if isinstance(payload, np.ndarray):
        if payload.dtype != np.uint8:
            raise CodecError(f'payload must be bytes, got a {payload.dtype} array')
        nbytes = payload.nbytes
    elif isinstance(payload, (bytes, bytearray, memoryview)):
        nbytes = memoryview(payload).nbytes
    elif hasattr(payload, 'tobytes') and hasattr(payload, 'typecode'):  # array.array
        if payload.typecode not in 'bB':
            raise CodecError(f'payload must be bytes, got an array of {payload.typecode!r}')
        nbytes = len(payload)
    elif isinstance(payload, (list, tuple)):  # a ROS sequence<uint8> may come as a list
        nbytes = len(payload)
        if nbytes > cap:
            raise CodecError(f'payload of {nbytes} bytes is over the cap {cap}')
        try:
            return bytes(payload)
        except (TypeError, ValueError):
            raise CodecError('payload list is not a list of bytes') from None
    else:
        raise CodecError(f'payload must be bytes, got {type(payload).__name__}')
    if nbytes > cap:
        raise CodecError(f'payload of {nbytes} bytes is over the cap {cap}')
    if nbytes == 0:
        raise CodecError('empty payload')
    return payload.tobytes() if hasattr(payload, 'tobytes') else bytes(payload)


# ----------------------------------------------------------------------------- measuring

def huffman_nbytes(data) -> int:
    """
    Bytes of ``data`` under its own order-0 Huffman code over byte values (Ko et al.).

    Exact code lengths (canonical code) plus a JPEG-style table of 16 + (symbols
    used) bytes; what a plain Huffman coder would send, to compare with zstd.
    """
    counts = np.bincount(np.frombuffer(bytes(data), np.uint8), minlength=256)
    used = [(int(c), i) for i, c in enumerate(counts) if c]
    if not used:
        return 16
    if len(used) == 1:
        return 16 + 1 + (used[0][0] + 7) // 8
    lengths = np.zeros(256, np.int64)
    heap = [(c, i, (i,)) for c, i in used]
    heapq.heapify(heap)
    while len(heap) > 1:
        c1, k1, s1 = heapq.heappop(heap)
        c2, k2, s2 = heapq.heappop(heap)
        lengths[list(s1 + s2)] += 1
        heapq.heappush(heap, (c1 + c2, min(k1, k2), s1 + s2))
    return 16 + len(used) + (int((counts * lengths).sum()) + 7) // 8


def sparse_streams(values: np.ndarray, dtype: str = 'float32') -> list[bytes]:
    """Return the streams ``lossless`` entropy-codes: bitmap, then one per byte plane."""
    bits = np.ascontiguousarray(values, dtype=_LE[dtype]).view(_BITS[dtype]).ravel()
    mask = bits != 0
    planes = bits[mask].view(np.uint8).reshape(-1, bits.itemsize).T
    return [np.packbits(mask).tobytes()] + [p.tobytes() for p in planes]


def roundtrip(features, codec: str, **options) -> tuple[np.ndarray, np.ndarray, float, float]:
    """
    Encode and decode every sample of a batch ``(N, ...)``, one message each.

    Returns ``(decoded float32 (N, ...), payload bytes (N,), encode seconds,
    decode seconds)``; the times are wall-clock over the whole batch.
    """
    batch = features.detach().cpu() if hasattr(features, 'detach') else np.asarray(features)
    n = len(batch)
    payloads, metas = [None] * n, [None] * n
    start = time.perf_counter()
    for i in range(n):
        payloads[i], metas[i] = encode(batch[i], codec, **options)
    enc = time.perf_counter() - start
    out = [None] * n
    start = time.perf_counter()
    for i in range(n):
        out[i] = decode(payloads[i], metas[i])
    dec = time.perf_counter() - start
    decoded = np.stack([o.numpy() if hasattr(o, 'numpy') else o for o in out])
    sizes = np.array([len(p) for p in payloads], np.int64)
    return decoded.astype(np.float32, copy=False), sizes, enc, dec
