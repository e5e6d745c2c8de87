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

"""Round trips of ros/conversions.py: Image, CompressedImage and feature messages."""

import zlib

import numpy as np
import pytest
from std_msgs.msg import Header
import torch

from edge_denoise_ros.core import codecs, data, wire
from edge_denoise_ros.ros import conversions as conv

ENCODINGS = ('bgr8', 'rgb8', 'mono8')


def seeded_frame(encoding: str, height: int = 37, width: int = 53, seed: int = 0):
    shape = (height, width) if encoding == 'mono8' else (height, width, 3)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def smooth_frame(encoding: str, height: int = 48, width: int = 64):
    """Return a smooth color gradient: JPEG keeps it close."""
    y, x = np.mgrid[0:height, 0:width]
    planes = [(x * 255 // (width - 1)), (y * 255 // (height - 1)), ((x + y) * 2) % 256]
    frame = np.stack(planes, axis=2).astype(np.uint8)
    return frame[:, :, 0].copy() if encoding == 'mono8' else frame


def header(sec: int = 12, nanosec: int = 345, frame_id: str = 'camera') -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


# --- sensor_msgs/Image -------------------------------------------------------------------------

@pytest.mark.parametrize('encoding', ENCODINGS)
def test_image_round_trip_is_exact(encoding):
    frame = seeded_frame(encoding)
    msg = conv.image_to_msg(frame, encoding, header=header())
    channels = 1 if encoding == 'mono8' else 3
    assert (msg.height, msg.width, msg.encoding) == (37, 53, encoding)
    assert msg.step == 53 * channels and len(msg.data) == msg.step * msg.height
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == \
        (12, 345, 'camera')
    back, enc = conv.msg_to_image(msg)
    assert enc == encoding and back.dtype == np.uint8 and back.shape == frame.shape
    assert np.array_equal(back, frame)


def test_mono8_takes_a_single_channel_axis():
    frame = seeded_frame('mono8')
    back, _ = conv.msg_to_image(conv.image_to_msg(frame[:, :, None], 'mono8'))
    assert np.array_equal(back, frame)


@pytest.mark.parametrize('encoding', ('bgr8', 'mono8'))
def test_padded_rows_are_read_without_the_padding(encoding):
    """A step longer than a row is legal: the padding must not leak into the pixels."""
    frame = seeded_frame(encoding, 9, 11, seed=3)
    msg = conv.image_to_msg(frame, encoding)
    row = msg.step
    padded = np.full((msg.height, row + 5), 0xAB, np.uint8)
    padded[:, :row] = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, row)
    msg.step, msg.data = row + 5, padded.tobytes()
    back, _ = conv.msg_to_image(msg)
    assert np.array_equal(back, frame)


def _bad(msg, **fields):
    for key, value in fields.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize('change, reason', [
    (dict(encoding='16UC1'), 'unsupported image encoding'),
    (dict(encoding='bgra8'), 'unsupported image encoding'),
    (dict(height=0, data=b''), 'zero-size'),
    (dict(width=0), 'zero-size'),
    (dict(step=10), 'shorter than a row'),
    (dict(data=bytes(6 * 8 * 3 - 1)), 'data has 143 bytes'),
    (dict(data=bytes(6 * 8 * 3 + 24)), 'data has 168 bytes'),
    (dict(height=7), 'expected step 24 x height 7'),
])
def test_bad_images_are_refused_with_a_reason(change, reason):
    msg = conv.image_to_msg(seeded_frame('bgr8', 6, 8), 'bgr8')
    with pytest.raises(ValueError, match=reason):
        conv.msg_to_image(_bad(msg, **change))


@pytest.mark.parametrize('frame, encoding, reason', [
    (np.zeros((4, 4, 3), np.float32), 'bgr8', 'uint8'),
    (np.zeros((4, 4), np.uint8), 'bgr8', r'\(H, W, 3\)'),
    (np.zeros((4, 4, 3), np.uint8), 'mono8', r'\(H, W\)'),
    (np.zeros((0, 4, 3), np.uint8), 'rgb8', 'zero-size'),
    (np.zeros((4, 4, 3), np.uint8), 'yuv422', 'unsupported image encoding'),
])
def test_bad_frames_are_refused(frame, encoding, reason):
    with pytest.raises(ValueError, match=reason):
        conv.image_to_msg(frame, encoding)


def test_camera_frame_gives_back_the_sample_exactly():
    """A 28x28 sample blown up x8 survives Image and lossless CompressedImage to the model."""
    images, _ = data.load_fashion_mnist('test')
    sample = images[7]
    for encoding in ENCODINGS:
        frame = data.sample_to_frame(sample, 224, encoding)
        for msg in (conv.image_to_msg(frame, encoding),
                    conv.image_to_compressed_msg(frame, encoding, 'png')):
            back, enc = conv.camera_msg_to_image(msg)
            x = data.preprocess_frame(back, enc)
            assert x.shape == (1, 1, 28, 28)
            assert torch.equal((x[0, 0] * 255).round().to(torch.uint8),
                               torch.from_numpy(sample.copy()))


# --- sensor_msgs/CompressedImage ---------------------------------------------------------------

@pytest.mark.parametrize('encoding, fmt', [
    ('bgr8', 'bgr8; png compressed bgr8'),
    ('rgb8', 'rgb8; png compressed bgr8'),
    ('mono8', 'mono8; png compressed mono8'),
])
def test_png_round_trip_is_exact_in_image_transport_format(encoding, fmt):
    frame = seeded_frame(encoding)
    msg = conv.image_to_compressed_msg(frame, encoding, 'png', header=header(frame_id='cam'))
    assert msg.format == fmt and msg.header.frame_id == 'cam'
    assert bytes(msg.data[:8]) == b'\x89PNG\r\n\x1a\n'
    back, enc = conv.compressed_msg_to_image(msg)
    assert enc == encoding and np.array_equal(back, frame)


@pytest.mark.parametrize('encoding, fmt', [
    ('bgr8', 'bgr8; jpeg compressed bgr8'),
    ('rgb8', 'rgb8; jpeg compressed bgr8'),
    ('mono8', 'mono8; jpeg compressed mono8'),
])
def test_jpeg_round_trip_is_close_and_keeps_channel_order(encoding, fmt):
    frame = smooth_frame(encoding)
    msg = conv.image_to_compressed_msg(frame, encoding, 'jpeg', quality=95)
    assert msg.format == fmt and bytes(msg.data[:2]) == b'\xff\xd8'
    back, enc = conv.compressed_msg_to_image(msg)
    assert enc == encoding and back.shape == frame.shape
    err = np.abs(back.astype(np.int16) - frame).mean(axis=(0, 1))
    assert np.all(err < 3.0), err  # per channel: a swapped R/B would be far off


def test_plain_format_of_older_publishers_is_read():
    """``format: jpeg`` (no encoding) decodes to bgr8 for color, mono8 for gray."""
    color = conv.image_to_compressed_msg(smooth_frame('bgr8'), 'bgr8', 'png')
    color.format = 'png'
    back, enc = conv.compressed_msg_to_image(color)
    assert enc == 'bgr8' and np.array_equal(back, smooth_frame('bgr8'))
    gray = conv.bridge().cv2_to_compressed_imgmsg(smooth_frame('mono8'), 'jpeg')
    assert gray.format == 'jpeg'
    back, enc = conv.compressed_msg_to_image(gray)
    assert enc == 'mono8' and back.shape == (48, 64)


@pytest.mark.parametrize('fmt, payload, reason', [
    ('bgr8; jpeg compressed bgr8', b'', 'empty'),
    ('bgr8; jpeg compressed bgr8', b'\xff\xd8 not really a jpeg', 'no known image format'),
    ('bgr8; jpeg compressed bgr8', b'\x89PNG\r\n\x1a\n', 'is png'),
    ('16UC1; compressedDepth png', b'x', 'unsupported compressed image format'),
    ('tiff', b'x', 'unsupported compressed image format'),
    ('bgra8; png compressed bgr8', b'x', 'unsupported image encoding'),
])
def test_bad_compressed_images_are_refused(fmt, payload, reason):
    msg = conv.image_to_compressed_msg(seeded_frame('bgr8'), 'bgr8', 'png')
    msg.format, msg.data = fmt, payload
    with pytest.raises(ValueError, match=reason):
        conv.compressed_msg_to_image(msg)


def test_truncated_png_is_refused():
    msg = conv.image_to_compressed_msg(seeded_frame('bgr8'), 'bgr8', 'png')
    msg.data = bytes(msg.data[:len(msg.data) // 2])
    with pytest.raises(ValueError, match='truncated PNG'):
        conv.compressed_msg_to_image(msg)


# --- features <-> CompressedImage --------------------------------------------------------------

def seeded_features():
    g = torch.Generator().manual_seed(0)
    return torch.relu(torch.randn(16, 28, 28, generator=g))  # (C, H, W), sparse like ReLU output


@pytest.mark.parametrize('codec', ('raw', 'lossless', 'q8', 'jpeg'))
def test_features_round_trip_through_the_wire_format(codec):
    x = seeded_features()
    msg, meta = conv.features_to_msg(x, codec, header=header(), cut='layer1', model='0123abcd')
    assert msg.format.startswith('edge_denoise/1 ') and msg.format == wire.format_string(meta)
    assert msg.header.stamp.sec == 12 and msg.header.frame_id == 'camera'
    if codec == 'jpeg':
        assert bytes(msg.data[:2]) == b'\xff\xd8'  # a plain JPEG any viewer opens
    y, got = conv.msg_to_features(msg)
    assert got['codec'] == codec and got['cut'] == 'layer1' and got['model'] == '0123abcd'
    assert tuple(y.shape) == (16, 28, 28) and y.dtype == torch.float32
    # The message adds nothing to the codec's own error: same tensor as decoding directly.
    assert torch.equal(y, codecs.decode(bytes(msg.data), meta))
    err = (y - x).abs().max().item()
    if codec in ('raw', 'lossless'):
        assert err == 0.0
    elif codec == 'q8':
        assert err <= meta['scale'] / 2 + 1e-6


def test_payload_to_msg_carries_the_payload_alone():
    payload, meta = codecs.encode(seeded_features(), 'lossless')
    msg = conv.payload_to_msg(payload, meta)
    assert bytes(msg.data) == payload and len(msg.data) == meta['size']


@pytest.mark.parametrize('damage, reason', [
    ('truncate', 'bytes'),
    ('flip', 'checksum'),
    ('foreign', 'not an edge_denoise message'),
    ('nan', 'NaN'),
])
def test_damaged_feature_messages_raise_codec_errors(damage, reason):
    msg, meta = conv.features_to_msg(seeded_features(), 'raw')
    if damage == 'truncate':
        msg.data = bytes(msg.data[:-7])
    elif damage == 'flip':
        raw = bytearray(msg.data)
        raw[100] ^= 0xFF
        msg.data = bytes(raw)
    elif damage == 'foreign':
        msg.format = 'bgr8; jpeg compressed bgr8'
    else:
        bad = np.zeros((16, 28, 28), np.float32)
        bad[3, 4, 5] = np.nan
        payload = bad.tobytes()
        msg = conv.payload_to_msg(payload, {'codec': 'raw', 'shape': (16, 28, 28),
                                            'dtype': 'float32', 'size': len(payload),
                                            'crc32': f'{zlib.crc32(payload):08x}'})
    with pytest.raises(wire.CodecError, match=reason):
        conv.msg_to_features(msg)
