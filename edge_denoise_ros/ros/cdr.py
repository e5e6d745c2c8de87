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
Read a serialized ``sensor_msgs/Image`` or ``CompressedImage`` without deserializing it.

A subscription created with ``raw=True`` hands its callback the message as
serialized (CDR) bytes. :func:`read_image` and :func:`read_compressed_image`
read the header, the small fields and the *position* of ``data`` from those
bytes: ``data`` is a ``memoryview`` into them, so a frame is never copied
before it is checked, and a message whose fields are refused (an unknown
encoding, a payload over the cap) costs no more than reading its first bytes.
The views have the attribute names of the messages, so the conversions and
checks that take a message take a view too.

Classic CDR as ROS 2 middlewares write it: a 4-byte encapsulation header
(``00 01``: little-endian, ``00 00``: big-endian), then the fields, each
aligned to its size from the end of that header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from builtin_interfaces.msg import Time
from std_msgs.msg import Header

MAX_STRING = 4096          # frame_id, encoding, format: longer is not a camera's message
_ENCAPSULATION = {b'\x00\x01': '<', b'\x00\x00': '>'}


class CdrError(ValueError):
    """Serialized bytes that are not the expected message; the reason is one line."""


@dataclass(frozen=True)
class ImageView:
    """The fields of a serialized ``sensor_msgs/Image``; ``data`` a view into the bytes."""

    header: Header
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


@dataclass(frozen=True)
class CompressedImageView:
    """The fields of a serialized ``sensor_msgs/CompressedImage``; ``data`` a view."""

    header: Header
    format: str
    data: memoryview


class _Reader:
    def __init__(self, raw):
        buf = memoryview(raw).cast('B')
        if len(buf) < 4 or bytes(buf[:2]) not in _ENCAPSULATION:
            raise CdrError('not a classic CDR message (unknown encapsulation header)')
        self.order = _ENCAPSULATION[bytes(buf[:2])]
        self.buf = buf[4:]
        self.pos = 0

    def _align(self, size: int) -> None:
        self.pos += -self.pos % size

    def _unpack(self, code: str, size: int):
        self._align(size)
        end = self.pos + size
        if end > len(self.buf):
            raise CdrError('truncated message')
        value = struct.unpack_from(self.order + code, self.buf, self.pos)[0]
        self.pos = end
        return value

    def u8(self) -> int:
        return self._unpack('B', 1)

    def u32(self) -> int:
        return self._unpack('I', 4)

    def i32(self) -> int:
        return self._unpack('i', 4)

    def string(self, what: str, limit: int = MAX_STRING) -> str:
        n = self.u32()
        if n == 0 or n > limit + 1 or self.pos + n > len(self.buf):
            raise CdrError(f'{what} of {n} bytes is malformed or longer than {limit}')
        raw = bytes(self.buf[self.pos:self.pos + n - 1])
        self.pos += n
        try:
            return raw.decode('utf-8')
        except UnicodeDecodeError:
            raise CdrError(f'{what} is not UTF-8') from None

    def octets(self, what: str, limit: int) -> memoryview:
        n = self.u32()
        if n > limit:
            raise CdrError(f'{what} of {n} bytes is over the cap of {limit}')
        if self.pos + n > len(self.buf):
            raise CdrError(f'{what} declares {n} bytes, the message holds '
                           f'{len(self.buf) - self.pos}')
        view = self.buf[self.pos:self.pos + n]
        self.pos += n
        return view

    def header(self) -> Header:
        sec, nanosec = self.i32(), self.u32()
        return Header(stamp=Time(sec=sec, nanosec=nanosec),
                      frame_id=self.string('frame_id'))


def read_image(raw, max_bytes: int) -> ImageView:
    """Read a serialized ``sensor_msgs/Image`` whose data holds at most ``max_bytes``."""
    r = _Reader(raw)
    header = r.header()
    height, width = r.u32(), r.u32()
    encoding = r.string('encoding', 64)
    is_bigendian = r.u8()
    step = r.u32()
    return ImageView(header, height, width, encoding, is_bigendian, step,
                     r.octets('image data', max_bytes))


def read_compressed_image(raw, max_bytes: int) -> CompressedImageView:
    """Read a serialized ``sensor_msgs/CompressedImage`` with at most ``max_bytes`` of data."""
    r = _Reader(raw)
    header = r.header()
    fmt = r.string('format')
    return CompressedImageView(header, fmt, r.octets('data', max_bytes))
