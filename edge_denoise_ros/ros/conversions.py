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
Message conversions: camera images and encoded features <-> numpy / torch.

- ``sensor_msgs/Image`` <-> ``ndarray`` through cv_bridge, for the encodings
  the pipeline takes (``bgr8``, ``rgb8``, ``mono8``). Every message is checked
  first (encoding, size, ``step`` against ``width`` and the data length), so a
  bad frame is a ``ValueError`` saying what is wrong, never a crash or a
  misread image inside cv_bridge. Rows padded beyond ``width * channels`` (a
  legal ``step``) are read correctly.
- ``sensor_msgs/CompressedImage`` <-> ``ndarray`` as image_transport's
  ``compressed`` transport writes and reads it: ``format`` is
  ``"<encoding>; jpeg compressed bgr8"`` (or ``png``, ``mono8`` for gray),
  and the older plain ``"jpeg"`` / ``"png"`` is read too.
- Encoded features <-> ``sensor_msgs/CompressedImage`` in the wire format of
  ``core.wire``: ``format`` = ``wire.format_string(meta)`` (starts with
  ``edge_denoise/1``), ``data`` = the codec payload alone, ``header`` = the
  camera frame's header.
"""

from __future__ import annotations

import cv2
from cv_bridge import CvBridge
import numpy as np
from sensor_msgs.msg import CompressedImage

from ..core import codecs, wire
from ..core.data import CHANNELS, check_frame, ENCODINGS
from ..core.imageheaders import check_image
from ..core.libwarnings import library_warnings
from ..core.pipeline import MAX_FRAME_PIXELS

# image_transport's compressed formats, and the names OpenCV writes them under.
COMPRESSED_FORMATS = ('jpeg', 'png')
_EXTENSIONS = {'jpeg': '.jpg', 'jpg': '.jpg', 'png': '.png'}

_BRIDGE = None


def bridge():
    """Return the process-wide ``cv_bridge.CvBridge`` (built on first use)."""
    global _BRIDGE
    if _BRIDGE is None:
        _BRIDGE = CvBridge()
    return _BRIDGE


def _set_header(msg, header):
    if header is not None:
        msg.header = header
    return msg


def check_image_msg(msg, max_pixels: int = MAX_FRAME_PIXELS) -> None:
    """
    Raise ``ValueError`` unless ``msg`` is an Image this package can read safely.

    Checked: the encoding is one of ``bgr8``/``rgb8``/``mono8``; height and
    width are positive and at most ``max_pixels`` pixels; ``step >= width *
    channels``; ``len(data) == step * height``.
    """
    encoding = msg.encoding
    if encoding not in CHANNELS:
        raise ValueError(f'unsupported image encoding {encoding[:40]!r}; expected one of '
                         f'{ENCODINGS}')
    if msg.height == 0 or msg.width == 0:
        raise ValueError(f'zero-size image: {msg.width}x{msg.height} {encoding}')
    if msg.height * msg.width > max_pixels:
        raise ValueError(f'image of {msg.width}x{msg.height} pixels is over the cap of '
                         f'{max_pixels} pixels')
    row = msg.width * CHANNELS[encoding]
    if msg.step < row:
        raise ValueError(f'step {msg.step} is shorter than a row of {msg.width} {encoding} '
                         f'pixels ({row} bytes)')
    if len(msg.data) != msg.step * msg.height:
        raise ValueError(f'data has {len(msg.data)} bytes, expected step {msg.step} x '
                         f'height {msg.height} = {msg.step * msg.height}')


def image_to_msg(frame: np.ndarray, encoding: str = 'bgr8', header=None):
    """Convert a uint8 frame to a ``sensor_msgs/Image`` (cv_bridge), with ``header`` if given."""
    frame = np.ascontiguousarray(check_frame(frame, encoding))
    return _set_header(bridge().cv2_to_imgmsg(frame, encoding=encoding), header)


def msg_to_image(msg, max_pixels: int = MAX_FRAME_PIXELS) -> tuple[np.ndarray, str]:
    """
    Convert a ``sensor_msgs/Image`` (or a :class:`.cdr.ImageView`) to ``(frame, encoding)``.

    The frame is ``(H, W)`` for ``mono8`` and ``(H, W, 3)`` otherwise, in the
    message's own channel order; it shares memory with ``msg.data`` (rows padded
    to ``step`` bytes are read correctly). Bad messages raise ``ValueError``
    (see ``check_image_msg``).
    """
    check_image_msg(msg, max_pixels)
    channels = CHANNELS[msg.encoding]
    row = msg.width * channels
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    frame = rows[:, :row].reshape(msg.height, msg.width, channels)
    if channels == 1:
        frame = frame[:, :, 0]
    return frame, msg.encoding


def compressed_format(encoding: str, fmt: str = 'jpeg') -> str:
    """Return image_transport's ``format`` string, e.g. ``'rgb8; jpeg compressed bgr8'``."""
    if encoding not in CHANNELS:
        raise ValueError(f'unsupported image encoding {encoding!r}; expected one of {ENCODINGS}')
    if fmt not in COMPRESSED_FORMATS:
        raise ValueError(f'unsupported compressed format {fmt!r}; expected one of '
                         f'{COMPRESSED_FORMATS}')
    return f'{encoding}; {fmt} compressed {"mono8" if encoding == "mono8" else "bgr8"}'


def parse_compressed_format(text: str) -> tuple[str | None, str]:
    """
    Parse a CompressedImage ``format``: return ``(encoding or None, 'jpeg' | 'png')``.

    ``'bgr8; jpeg compressed bgr8'`` gives ``('bgr8', 'jpeg')``; the older
    plain ``'jpeg'``/``'jpg'``/``'png'`` gives ``(None, ...)``: the encoding is
    then whatever the decoded image holds. ``compressedDepth`` and other
    formats raise ``ValueError``.
    """
    text = (text or '').strip()
    if ';' in text:
        encoding, rest = (part.strip() for part in text.split(';', 1))
        words = rest.split()
        if len(words) < 2 or words[1] != 'compressed':
            raise ValueError(f'unsupported compressed image format {text[:80]!r}; expected '
                             f"'<encoding>; jpeg|png compressed <encoding>'")
        codec = words[0].lower()
    else:
        encoding, codec = None, text.lower()
    codec = 'jpeg' if codec == 'jpg' else codec
    if codec not in COMPRESSED_FORMATS:
        raise ValueError(f'unsupported compressed image format {text[:80]!r}; expected jpeg or '
                         f"png (e.g. 'bgr8; jpeg compressed bgr8')")
    if encoding is not None and encoding not in CHANNELS:
        raise ValueError(f'unsupported image encoding {encoding[:40]!r} in format {text[:80]!r}; '
                         f'expected one of {ENCODINGS}')
    return encoding, codec


def image_to_compressed_msg(frame: np.ndarray, encoding: str = 'bgr8', fmt: str = 'jpeg',
                            quality: int = 95, png_level: int = 3, header=None):
    """
    Compress a frame into a ``sensor_msgs/CompressedImage`` as image_transport does.

    Color frames are stored as bgr8 JPEG/PNG (an rgb8 frame is converted
    first), gray ones as mono8; ``format`` records the original encoding, so
    ``compressed_msg_to_image`` gives the frame back in it.
    """
    frame = check_frame(frame, encoding)
    text = compressed_format(encoding, fmt)
    wire.check_quality(quality)
    if not 0 <= png_level <= 9:
        raise ValueError(f'PNG compression level must be in [0, 9], got {png_level}')
    if encoding == 'rgb8':
        frame = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    params = ([cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == 'jpeg'
              else [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
    ok, buf = cv2.imencode(_EXTENSIONS[fmt], np.ascontiguousarray(frame), params)
    if not ok:
        raise ValueError(f'OpenCV could not encode a {frame.shape} frame as {fmt}')
    msg = CompressedImage()
    msg.format = text
    msg.data = buf.tobytes()
    return _set_header(msg, header)


def compressed_msg_to_image(msg, max_pixels: int = MAX_FRAME_PIXELS) -> tuple[np.ndarray, str]:
    """
    Decode a ``sensor_msgs/CompressedImage`` (or a view of one) to ``(frame, encoding)``.

    The frame comes back in the encoding named by ``format`` (plain
    ``jpeg``/``png``: ``bgr8`` for color, ``mono8`` for gray). Before decoding,
    the payload's magic bytes must be the declared format's and its header must
    declare 8 bits per sample, at most ``max_pixels`` pixels and no more than its
    bytes can hold (:func:`core.imageheaders.check_image`); a decode the library
    had to patch up (its warnings, caught off stderr) is refused. Every refusal
    is a ``ValueError`` with a one-line reason.
    """
    encoding, codec = parse_compressed_format(msg.format)
    data = msg.data if isinstance(msg.data, (bytes, memoryview)) else memoryview(msg.data)
    if len(data) == 0:
        raise ValueError(f'empty {codec} payload')
    header = check_image(data, codec, max_pixels)
    gray = encoding == 'mono8' or (encoding is None and header.channels == 1)
    flag = (cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    with library_warnings() as caught:
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if caught.lines:
        raise ValueError(f'corrupt {codec} image: {caught.first}')
    if frame is None or frame.shape[:2] != (header.height, header.width):
        raise ValueError(f'could not decode the {len(data)}-byte {codec} payload '
                         f'(format {msg.format[:80]!r})')
    if encoding is None:
        encoding = 'mono8' if gray else 'bgr8'
    if encoding == 'rgb8':
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return frame, encoding


def camera_msg_to_image(msg, max_pixels: int = MAX_FRAME_PIXELS) -> tuple[np.ndarray, str]:
    """Convert an Image or a CompressedImage (told apart by its ``format`` field)."""
    if hasattr(msg, 'format') and not hasattr(msg, 'encoding'):
        return compressed_msg_to_image(msg, max_pixels)
    return msg_to_image(msg, max_pixels)


def payload_to_msg(payload: bytes, meta: dict, header=None):
    """
    Pack an encoded payload and its meta data into a ``sensor_msgs/CompressedImage``.

    ``format`` = ``wire.format_string(meta)``, ``data`` = ``payload`` alone;
    ``header`` should be the camera frame's.
    """
    msg = CompressedImage()
    msg.format = wire.format_string(meta)
    msg.data = bytes(payload)
    return _set_header(msg, header)


def features_to_msg(features, codec: str, header=None, **options):
    """
    Encode features with ``core.codecs.encode`` into a CompressedImage; return ``(msg, meta)``.

    ``options`` are the codec's (``quality``, ``dtype``, ...) and the
    annotations ``cut`` and ``model`` the host checks.
    """
    payload, meta = codecs.encode(features, codec, **options)
    return payload_to_msg(payload, meta, header), meta


def msg_to_features(msg, max_bytes: int | None = None):
    """
    Decode a features CompressedImage; return ``(features, meta)``.

    ``meta`` is the parsed ``format`` (codec, cut, model, shape, ...). A
    message that is not in the wire format, truncated or corrupt raises
    ``core.wire.CodecError`` (a ``ValueError``) with a one-line reason.
    """
    meta = wire.parse_format(msg.format)
    return codecs.decode(msg.data, meta, max_bytes=max_bytes), meta
