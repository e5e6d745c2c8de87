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

"""Image payloads judged from their magic bytes and headers, and library warnings caught."""

import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from edge_denoise_ros.core import imageheaders as ih
from edge_denoise_ros.core.libwarnings import library_warnings
from edge_denoise_ros.harness.fuzz_cases import (forge_jpeg_size, forge_jpeg_sof,
                                                 forge_png_size, other_formats)

RNG = np.random.default_rng(3)
IMAGE = cv2.GaussianBlur(RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 2)
JPEG = cv2.imencode('.jpg', IMAGE)[1].tobytes()
PNG = cv2.imencode('.png', IMAGE)[1].tobytes()


def _geometry(h: ih.ImageHeader) -> tuple:
    return h.format, h.height, h.width, h.channels, h.bits


def test_headers_give_size_channels_and_bits():
    assert _geometry(ih.check_image(JPEG, 'jpeg', 10**6)) == ('jpeg', 48, 64, 3, 8)
    assert _geometry(ih.check_image(PNG, 'png', 10**6)) == ('png', 48, 64, 3, 8)
    gray = cv2.imencode('.jpg', IMAGE[:, :, 0],
                        [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert _geometry(ih.check_image(gray, 'jpeg', 10**6)) == ('jpeg', 48, 64, 1, 8)


@pytest.mark.parametrize('name', sorted(other_formats(IMAGE)))
def test_other_formats_are_named_and_refused(name):
    payload = other_formats(IMAGE)[name]
    kind = ih.sniff(payload)
    assert kind not in (None, 'jpeg') or name == 'png16'
    for declared in ('jpeg', 'png'):
        with pytest.raises(ih.ImageHeaderError):
            ih.check_image(payload, declared, 10**6)


def test_sixteen_bit_png_is_refused_by_its_header():
    png16 = cv2.imencode('.png', IMAGE.astype(np.uint16) * 257)[1].tobytes()
    with pytest.raises(ih.ImageHeaderError, match='16-bit'):
        ih.check_image(png16, 'png', 10**6)


@pytest.mark.parametrize('side', [20000, 32000, 60000])
def test_tiny_payloads_declaring_huge_images_cost_nothing(side):
    jpeg = forge_jpeg_size(cv2.imencode('.jpg', IMAGE)[1].tobytes(), side, side)
    png = forge_png_size(PNG, side, side)
    start = time.process_time()
    for payload, kind in ((jpeg, 'jpeg'), (png, 'png')):
        with pytest.raises(ih.ImageHeaderError, match='cap'):
            ih.check_image(payload, kind, 1920 * 1200)
        with pytest.raises(ih.ImageHeaderError, match='cannot be coded'):
            ih.check_image(payload, kind, 10**12)     # no cap: the byte count still refuses
    assert time.process_time() - start < 0.05


@pytest.mark.parametrize('marker,bits', [(0xC3, None), (0xC9, None), (0xC1, 12)])
def test_unsupported_jpeg_processes_are_refused(marker, bits):
    with pytest.raises(ih.ImageHeaderError, match='unsupported'):
        ih.check_image(forge_jpeg_sof(JPEG, marker, bits), 'jpeg', 10**6)


def test_png_chunk_damage_is_found_without_inflating():
    bad = bytearray(PNG)
    bad[40] ^= 0xFF
    with pytest.raises(ih.ImageHeaderError, match='CRC|truncated'):
        ih.check_image(bytes(bad), 'png', 10**6)
    with pytest.raises(ih.ImageHeaderError, match='truncated'):
        ih.check_image(PNG[:len(PNG) // 2], 'png', 10**6)


def test_library_warnings_are_caught_and_other_lines_pass_through():
    damaged = JPEG[:len(JPEG) // 2] + b'\xff\xd9'
    with library_warnings() as caught:
        image = cv2.imdecode(np.frombuffer(damaged, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and caught.lines
    assert 'Corrupt JPEG data' in caught.first
    with library_warnings() as caught:
        cv2.imdecode(np.frombuffer(JPEG, np.uint8), cv2.IMREAD_COLOR)
    assert caught.lines == []


def test_nothing_reaches_stderr_but_other_writers_lines():
    damaged = (JPEG[:len(JPEG) // 2] + bytes([0xFF, 0xD9])).hex()
    code = (
        'import os, cv2, numpy as np\n'
        'from edge_denoise_ros.core.libwarnings import library_warnings\n'
        f'data = bytes.fromhex({damaged!r})\n'
        'with library_warnings() as caught:\n'
        '    os.write(2, b"another thread says hello\\n")\n'
        '    cv2.imdecode(np.frombuffer(data, np.uint8), 1)\n'
        'print(len(caught.lines))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=60, env={**os.environ, 'OPENCV_LOG_LEVEL': 'ERROR'})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '1'
    assert out.stderr == 'another thread says hello\n'
