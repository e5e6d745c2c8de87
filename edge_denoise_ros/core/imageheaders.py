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
What a payload is, read from its first bytes and its header before any decoder runs.

A decoder allocates and works in proportion to the size an image *declares*,
not to the bytes it has, and OpenCV decodes whatever format it recognises,
whatever the message said. So every image payload is checked here first:

- :func:`sniff` names the format from the magic bytes (JPEG, PNG, zstd and the
  formats OpenCV would also open: BMP, TIFF, PNM, PFM, WebP, GIF, JPEG 2000,
  OpenEXR, Radiance HDR, Sun raster);
- :func:`jpeg_header` / :func:`png_header` read the dimensions, channels and
  bit depth from the header alone (JPEG: the frame header; PNG: ``IHDR``, and
  every chunk's length and CRC);
- :func:`check_image` matches the sniffed format against the declared one and
  refuses, before decoding: other formats, more than 8 bits per sample, more
  pixels than the caller's cap, and payloads too short to hold the pixels they
  declare (a JPEG codes at least one bit per 8x8 block per scan; deflate
  expands at most 1032 times), which is how a few hundred bytes could claim
  gigapixels.

Errors are :class:`ImageHeaderError` (a ``ValueError``) with a one-line reason.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

JPEG_MAGIC = b'\xff\xd8\xff'
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
DEFLATE_MAX_RATIO = 1032            # the most deflate (zlib) can expand its input
JPEG_MIN_BITS_PER_BLOCK = 1         # a scan codes at least one Huffman symbol per 8x8 block

# First bytes -> format name; order matters only where one prefix extends another.
_SIGNATURES = (
    (JPEG_MAGIC, 'jpeg'), (PNG_MAGIC, 'png'), (ZSTD_MAGIC, 'zstd'),
    (b'BM', 'bmp'), (b'II*\x00', 'tiff'), (b'MM\x00*', 'tiff'), (b'GIF87a', 'gif'),
    (b'GIF89a', 'gif'), (b'\x00\x00\x00\x0cjP  \r\n\x87\n', 'jpeg2000'),
    (b'\xff\x4f\xff\x51', 'jpeg2000'), (b'v/1\x01', 'openexr'), (b'#?RADIANCE', 'hdr'),
    (b'#?RGBE', 'hdr'), (b'\x59\xa6\x6a\x95', 'sunraster'), (b'\xff\x0a', 'jpegxl'),
    (b'\x00\x00\x00\x0cJXL \r\n\x87\n', 'jpegxl'),
)
_SOF_SUPPORTED = (0xC0, 0xC1, 0xC2)  # baseline, extended, progressive; Huffman, 8 bits
_SOF_ANY = tuple(m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC))
# PNG colour type -> (channels, allowed bit depths)
_PNG_COLOR = {0: (1, (1, 2, 4, 8, 16)), 2: (3, (8, 16)), 3: (3, (1, 2, 4, 8)),
              4: (2, (8, 16)), 6: (4, (8, 16))}


class ImageHeaderError(ValueError):
    """A payload whose magic bytes or header refuse it; the reason is one line."""

    def __init__(self, reason: str):
        super().__init__(' '.join(str(reason).split()) or 'bad image header')


@dataclass(frozen=True)
class ImageHeader:
    """An image's format and geometry as its header declares them."""

    format: str
    height: int
    width: int
    channels: int        # components in the file (JPEG: 1 or 3; PNG: 1 to 4)
    bits: int            # bits per sample
    data_bytes: int      # bytes of coded image data (JPEG: after the first SOS; PNG: IDAT)

    @property
    def pixels(self) -> int:
        """Return ``height * width``."""
        return self.height * self.width


def sniff(data) -> str | None:
    """Return the format the first bytes of ``data`` name, or None if none is known."""
    head = bytes(memoryview(data)[:16])
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return name
    if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
        return 'webp'
    if len(head) >= 3 and head[0:1] == b'P' and head[1:2] in b'1234567' and \
            head[2:3] in b' \t\r\n#':
        return 'pnm'
    if head[:3] in (b'PF\n', b'Pf\n', b'PF\r', b'Pf\r', b'PF ', b'Pf '):
        return 'pfm'
    return None


def jpeg_header(data, require_eoi: bool = True) -> ImageHeader:
    """Read a JPEG's frame header (SOF) without decoding; check its structure up to the scan."""
    b = memoryview(data)
    n = len(b)
    if n < 4 or bytes(b[:3]) != JPEG_MAGIC:
        raise ImageHeaderError('not a JPEG (no SOI marker)')
    if require_eoi and bytes(b[-2:]) != b'\xff\xd9':
        raise ImageHeaderError('truncated JPEG (no EOI marker at the end)')
    i, frame = 2, None
    while i + 4 <= n:
        if b[i] != 0xFF:
            raise ImageHeaderError(f'corrupt JPEG: no marker at byte {i}')
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:
            raise ImageHeaderError(f'corrupt JPEG: marker 0x{marker:02x} before the scan')
        seg = int.from_bytes(b[i + 2:i + 4], 'big')
        if seg < 2 or i + 2 + seg > n:
            raise ImageHeaderError(f'corrupt JPEG: segment 0x{marker:02x} of length {seg} '
                                   f'at byte {i}')
        if marker in _SOF_ANY:
            if frame is not None:
                raise ImageHeaderError('corrupt JPEG: two frame headers')
            if marker not in _SOF_SUPPORTED:
                raise ImageHeaderError(f'unsupported JPEG process (SOF 0x{marker:02x}: '
                                       f'lossless, hierarchical or arithmetic)')
            if seg < 8:
                raise ImageHeaderError('corrupt JPEG: short frame header')
            bits, h, w, comps = struct.unpack('>BHHB', b[i + 4:i + 10])
            if bits != 8:
                raise ImageHeaderError(f'unsupported JPEG: {bits} bits per sample (8 expected)')
            if comps not in (1, 3) or seg != 8 + 3 * comps:
                raise ImageHeaderError(f'unsupported JPEG: {comps} components (1 or 3 '
                                       f'expected)')
            if h == 0 or w == 0:
                raise ImageHeaderError(f'unsupported JPEG: declared size {w}x{h}')
            for c in range(comps):
                sampling = b[i + 11 + 3 * c]
                if not (1 <= sampling >> 4 <= 4 and 1 <= sampling & 15 <= 4):
                    raise ImageHeaderError('corrupt JPEG: bad sampling factors')
            frame = (h, w, comps)
        elif marker == 0xDA:
            if frame is None:
                raise ImageHeaderError('corrupt JPEG: scan before the frame header')
            h, w, comps = frame
            return ImageHeader('jpeg', h, w, comps, 8, n - (i + 2 + seg))
        i += 2 + seg
    raise ImageHeaderError('corrupt JPEG: no scan after the header')


def png_header(data) -> ImageHeader:
    """Read a PNG's IHDR and walk its chunks (lengths, CRCs) without inflating anything."""
    b = memoryview(data)
    n = len(b)
    if bytes(b[:8]) != PNG_MAGIC:
        raise ImageHeaderError('not a PNG (bad signature)')
    i, header, idat, ended = 8, None, 0, False
    while i + 12 <= n:
        length = int.from_bytes(b[i:i + 4], 'big')
        kind = bytes(b[i + 4:i + 8])
        end = i + 12 + length
        if length > (1 << 31) - 1 or end > n:
            raise ImageHeaderError(f'truncated PNG: chunk {kind!r} of {length} bytes at {i}')
        if zlib.crc32(b[i + 4:i + 8 + length]) != int.from_bytes(b[end - 4:end], 'big'):
            raise ImageHeaderError(f'corrupt PNG: CRC of chunk {kind!r} at byte {i}')
        if header is None:
            if kind != b'IHDR' or length != 13:
                raise ImageHeaderError('corrupt PNG: IHDR is not the first chunk')
            w, h, bits, color, comp, filt, interlace = struct.unpack('>IIBBBBB',
                                                                     b[i + 8:i + 21])
            if w == 0 or h == 0 or w > (1 << 31) - 1 or h > (1 << 31) - 1:
                raise ImageHeaderError(f'corrupt PNG: declared size {w}x{h}')
            if color not in _PNG_COLOR or bits not in _PNG_COLOR[color][1] or comp or filt \
                    or interlace > 1:
                raise ImageHeaderError(f'corrupt PNG: colour type {color} with {bits} bits')
            header = (h, w, _PNG_COLOR[color][0], bits)
        elif kind == b'IDAT':
            idat += length
        elif kind == b'IEND':
            ended = True
            break
        i = end
    if header is None:
        raise ImageHeaderError('truncated PNG: no IHDR')
    if not ended:
        raise ImageHeaderError('truncated PNG: no IEND chunk')
    h, w, channels, bits = header
    return ImageHeader('png', h, w, channels, bits, idat)


def read_header(data) -> ImageHeader:
    """Return the header of a JPEG or PNG payload (by its magic bytes)."""
    kind = sniff(data)
    if kind == 'jpeg':
        return jpeg_header(data, require_eoi=False)
    if kind == 'png':
        return png_header(data)
    raise ImageHeaderError(f'payload is {kind or "of no known format"}, not JPEG or PNG')


def min_data_bytes(header: ImageHeader) -> int:
    """Return the fewest coded bytes that can hold the pixels ``header`` declares."""
    if header.format == 'jpeg':
        blocks = math.ceil(header.height / 8) * math.ceil(header.width / 8)
        return math.ceil(blocks * JPEG_MIN_BITS_PER_BLOCK / 8)
    row = 1 + math.ceil(header.width * header.channels * header.bits / 8)  # filter byte
    return math.ceil(header.height * row / DEFLATE_MAX_RATIO)


def check_image(data, declared: str | tuple[str, ...], max_pixels: int,
                require_eoi: bool = False) -> ImageHeader:
    """
    Check an image payload before decoding it; return its header.

    ``declared``: the format(s) the message says it holds (``'jpeg'``,
    ``'png'``); the payload's magic bytes must name one of them. Refused: more
    than 8 bits per sample, more than ``max_pixels`` pixels, fewer coded bytes
    than the declared pixels need (:func:`min_data_bytes`).
    """
    allowed = (declared,) if isinstance(declared, str) else tuple(declared)
    kind = sniff(data)
    if kind not in allowed:
        raise ImageHeaderError(f'payload declared {"/".join(allowed)} is '
                               f'{kind or "of no known image format"}')
    header = jpeg_header(data, require_eoi) if kind == 'jpeg' else png_header(data)
    if header.bits > 8:
        raise ImageHeaderError(f'{header.bits}-bit {kind} images are not taken (8 bits per '
                               f'sample expected)')
    if header.pixels > max_pixels:
        raise ImageHeaderError(f'{kind} of {header.width}x{header.height} pixels is over the '
                               f'cap of {max_pixels} pixels')
    need = min_data_bytes(header)
    if header.data_bytes < need:
        raise ImageHeaderError(f'{kind} of {header.width}x{header.height} pixels cannot be '
                               f'coded in {header.data_bytes} bytes (at least {need} needed)')
    return header
