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
Hostile messages for the host and the edge, by class of fault, seeded.

:class:`HostCases` starts from real feature messages of the host's target
(every codec, several cuts, host-only frames) and breaks them one class at a
time: damaged payloads (stale and recomputed checksums), malformed or missing
keys, keys that do not apply, declared sizes far beyond the cut or the payload
(decompression and pixel bombs), payloads of another format than declared,
non-finite values, forged accounting fields, another model or cut, oversized
messages; plus valid variants that must be classified (every JPEG quality).
:class:`EdgeCases` does the same for camera frames: raw images with bad
encodings and geometry, huge frames, and compressed images of other formats,
16 bits, unsupported JPEG processes, forged headers, truncations and bit flips.

Every case is a :class:`Case`; ``valid`` says whether a correct node classifies
it (None: it may or may not, e.g. damage no decoder can see). The driver
(:mod:`.fuzz`) adds the stream's accounting fields (``epoch``, ``seq``, ``t_rx``)
to host cases that do not forge them.
"""

from __future__ import annotations

import math
import random
import struct
import zlib
from dataclasses import dataclass, field

import cv2
import numpy as np
import zstandard

from ..core import data, pipeline, wire

OVERSIZE_BYTES = (16 << 20) + 4096      # just over the host's default payload cap


@dataclass
class Case:
    """One message to send: for the host a payload and format tokens, for the edge a frame."""

    kind: str
    valid: bool | None                                # classified by a correct node? None: either
    payload: bytes = b''
    tokens: list[str] = field(default_factory=list)   # host: key=value words after the version
    head: str = wire.VERSION                          # host: the format's first word
    accounting: bool = True                           # host: the driver adds epoch/seq/t_rx
    image: dict | None = None                         # edge raw: sensor_msgs/Image fields
    compressed_format: str | None = None              # edge compressed: CompressedImage.format

    def format_text(self, extra: list[str] = ()) -> str:
        """Return the host format string, with the driver's accounting tokens."""
        return ' '.join([self.head, *self.tokens, *extra])


def _tokens(meta: dict) -> list[str]:
    return wire.format_string(meta).split(' ')[1:]


def _with(tokens: list[str], **changes) -> list[str]:
    """Replace (or add) key=value tokens; a value of None removes the key."""
    out, seen = [], set()
    for t in tokens:
        key = t.split('=', 1)[0]
        if key in changes:
            seen.add(key)
            if changes[key] is not None:
                out.append(f'{key}={changes[key]}')
        else:
            out.append(t)
    out += [f'{k}={v}' for k, v in changes.items() if k not in seen and v is not None]
    return out


def _sealed(tokens: list[str], payload: bytes) -> list[str]:
    """Return tokens with size and crc32 that match ``payload``."""
    return _with(tokens, size=len(payload), crc32=f'{zlib.crc32(payload):08x}')


def _jpeg(image: np.ndarray, quality: int = 90, progressive: bool = False) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    if progressive:
        params += [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    return cv2.imencode('.jpg', image, params)[1].tobytes()


def forge_jpeg_size(jpeg: bytes, height: int, width: int) -> bytes:
    """Return ``jpeg`` with its frame header declaring ``height x width``."""
    i = jpeg.index(b'\xff\xc0') if b'\xff\xc0' in jpeg else jpeg.index(b'\xff\xc2')
    b = bytearray(jpeg)
    b[i + 5:i + 9] = struct.pack('>HH', height, width)
    return bytes(b)


def forge_jpeg_sof(jpeg: bytes, marker: int, bits: int | None = None) -> bytes:
    """Return ``jpeg`` with another SOF marker (process) and optionally sample precision."""
    i = jpeg.index(b'\xff\xc0')
    b = bytearray(jpeg)
    b[i + 1] = marker
    if bits is not None:
        b[i + 4] = bits
    return bytes(b)


def forge_png_size(png: bytes, height: int, width: int) -> bytes:
    """Return ``png`` with IHDR declaring ``width x height`` (CRC recomputed)."""
    b = bytearray(png)
    b[16:24] = struct.pack('>II', width, height)
    b[29:33] = struct.pack('>I', zlib.crc32(bytes(b[12:29])))
    return bytes(b)


def other_formats(image: np.ndarray) -> dict[str, bytes]:
    """Return ``image`` in every format OpenCV writes besides JPEG and 8-bit PNG."""
    out = {}
    f32 = image.astype(np.float32) / 255.0
    for name, ext, img in (('bmp', '.bmp', image), ('tiff', '.tiff', image),
                           ('ppm', '.ppm', image), ('webp', '.webp', image),
                           ('jp2', '.jp2', image), ('ras', '.ras', image),
                           ('pfm', '.pfm', f32), ('hdr', '.hdr', f32),
                           ('png16', '.png', image.astype(np.uint16) * 257)):
        try:
            ok, buf = cv2.imencode(ext, img)
        except cv2.error:
            continue
        if ok:
            out[name] = buf.tobytes()
    nan = np.full(image.shape, np.nan, np.float32)
    out['pfm_nan'] = cv2.imencode('.pfm', nan)[1].tobytes()
    return out


def _flip(payload: bytes, rng: random.Random, n: int = 3) -> bytes:
    b = bytearray(payload)
    for _ in range(n):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def _damage(payload: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return payload[:rng.randrange(1, max(2, len(payload)))]
    if kind == 1:
        return _flip(payload, rng, rng.randint(1, 8))
    if kind == 2:
        i = rng.randrange(len(payload))
        return payload[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))) \
            + payload[i:]
    if kind == 3:
        i, j = sorted(rng.randrange(len(payload)) for _ in range(2))
        return payload[:i] + payload[j:]
    return payload + payload[:rng.randrange(1, max(2, len(payload)))]


def sample_frames(n: int = 8, size: int = 224, seed: int = 0) -> list[np.ndarray]:
    """Return ``n`` bgr8 camera frames made from Fashion-MNIST test images."""
    images, _ = data.load_fashion_mnist('test')
    rng = np.random.default_rng(seed)
    return [data.sample_to_frame(images[i], size, 'bgr8')
            for i in rng.choice(len(images), n, replace=False)]


# ------------------------------------------------------------------------------ host

HOST_SETTINGS = (   # (cut, codec, quality): what honest edges send
    ('layer1', 'jpeg', 5), ('layer1', 'lossless', None), ('layer1', 'q8', None),
    ('layer1', 'raw', None), ('layer2', 'jpeg', 50), ('layer3', 'lossless', None),
    ('input', 'q8', None), ('flatten', 'raw', None), ('output', 'raw', None),
    ('frame', 'jpeg', 90), ('frame', 'raw', None), ('frame', 'deepn_jpeg', None),
)


class HostCases:
    """Seeded hostile feature messages for a host running ``target``."""

    def __init__(self, target: pipeline.Target, seed: int = 0, frames: int = 4):
        self.rng = random.Random(seed)
        self.target = target
        self.frames = sample_frames(frames, seed=seed)
        self.bases = []                 # (payload, meta) of honest messages
        self._stages = {}
        for cut, codec, quality in HOST_SETTINGS:
            for frame in self.frames:
                self.bases.append(self.encode(frame, cut, codec, quality))
        self.probes = [b for b in self.bases if b[1]['cut'] == 'layer1'
                       and b[1]['codec'] == 'jpeg']
        small = cv2.resize(self.frames[0], (112, 112), interpolation=cv2.INTER_AREA)
        self.others = other_formats(small)
        self.png = cv2.imencode('.png', small)[1].tobytes()
        self.zstd = zstandard.ZstdCompressor(level=19)
        self._bombs: dict[int, bytes] = {}
        self.makers = (
            (8, self.damaged_stale), (10, self.damaged_sealed), (8, self.format_mutation),
            (6, self.missing_key), (8, self.inapplicable_key), (6, self.bad_value),
            (8, self.shape_bomb), (6, self.format_mismatch), (4, self.nonfinite),
            (8, self.forged_accounting), (4, self.identity), (4, self.frame_bomb),
            (8, self.valid_variant), (1, self.oversize))
        self._weights = [w for w, _ in self.makers]

    def encode(self, frame, cut: str, codec: str, quality: int | None):
        """Return an honest ``(payload, meta)`` for one frame at these settings."""
        key = (cut, codec, quality)
        if key not in self._stages:
            s = pipeline.EdgeSettings('none', cut, codec, quality or pipeline.DEFAULT_QUALITY,
                                      quality or pipeline.DEFAULT_FRAME_QUALITY)
            self._stages[key] = pipeline.EdgeStage(self.target, s)
        out = self._stages[key].process(frame, 'bgr8')
        return out.payload, dict(out.meta)

    def probe(self, i: int) -> Case:
        """Return the i-th honest message (layer1, jpeg q5) interleaved with the cases."""
        payload, meta = self.probes[i % len(self.probes)]
        return Case('probe', True, payload, _tokens(meta))

    def case(self) -> Case:
        """Return one hostile (or valid-variant) case, drawn by weight."""
        make = self.rng.choices([m for _, m in self.makers], self._weights)[0]
        return make()

    def _base(self, pred=None):
        choices = [b for b in self.bases if pred is None or pred(b[1])]
        return self.rng.choice(choices)

    # -- damaged payloads

    def damaged_stale(self) -> Case:
        payload, meta = self._base()
        return Case('damaged_stale_crc', False, _damage(payload, self.rng), _tokens(meta))

    def damaged_sealed(self) -> Case:
        payload, meta = self._base(lambda m: m['codec'] != 'raw')
        bad = _damage(payload, self.rng)
        # Damage the decoder cannot see (a flipped bit in a value) may still be classified.
        return Case('damaged_sealed_crc', None, bad, _sealed(_tokens(meta), bad))

    # -- the format text

    def format_mutation(self) -> Case:
        payload, meta = self._base()
        tokens = _tokens(meta)
        r = self.rng.randrange(7)
        head = wire.VERSION
        if r == 0:
            tokens.append(self.rng.choice(tokens))                     # duplicate key
        elif r == 1:
            tokens.insert(self.rng.randrange(len(tokens)), 'junk')      # no '='
        elif r == 2:
            head = self.rng.choice(['edge_denoise/2', 'edge_denoise/0', 'jpeg', '', 'EDGE'])
        elif r == 3:
            tokens.append('x' * self.rng.choice([10, 3000]) + '=1')     # long
        elif r == 4:
            tokens.append('k\u00e9y=1')                                 # not ASCII
        elif r == 5:
            tokens = [t.upper() for t in tokens]
        else:
            tokens.append(f'{self.rng.choice(["robot", "foo", "seqq", "extra"])}=1')
        return Case('format_mutation', False, payload, tokens, head=head)

    def missing_key(self) -> Case:
        payload, meta = self._base()
        key = self.rng.choice([k for k in meta if k not in ('defense',)])
        return Case('missing_key', False, payload, _with(_tokens(meta), **{key: None}))

    def inapplicable_key(self) -> Case:
        payload, meta = self._base()
        extra = {'raw': ['quality=50', 'zp=3', 'scale=0.5', 'layout=planes', 'grid=2x2'],
                 'lossless': ['quality=5', 'scale=1.0', 'zp=0', 'table=00000000'],
                 'q8': ['layout=words', 'quality=50', 'tile=28x28'],
                 'jpeg': ['layout=planes', 'table=01234567'],
                 'deepn_jpeg': ['quality=90', 'scale=1.0', 'grid=1x1']}[meta['codec']]
        key, value = self.rng.choice(extra).split('=')
        tokens = _with(_tokens(meta), **{key: value})
        if meta['cut'] != 'frame' and self.rng.random() < 0.3:
            tokens = _with(tokens, defense='dunet')                    # frame cut only
        return Case('inapplicable_key', False, payload, tokens)

    def bad_value(self) -> Case:
        payload, meta = self._base(lambda m: m['codec'] in ('q8', 'jpeg'))
        key, value = self.rng.choice([
            ('zp', '256'), ('zp', '-1'), ('zp', '1e3'), ('scale', 'nan'), ('scale', 'inf'),
            ('scale', '-0.5'), ('scale', '0'), ('scale', '1e39'), ('quality', '0'),
            ('quality', '101'), ('shape', '0x28x28'), ('shape', '16x28x28x1x1'),
            ('dtype', 'float64'), ('dtype', 'int8'), ('codec', 'png'), ('size', '-1'),
            ('crc32', 'DEADBEEF'), ('crc32', '123'), ('grid', '1x1'), ('tile', '9999x9999'),
            ('layout', 'rows'), ('model', 'ä')])
        return Case('bad_value', False, payload, _with(_tokens(meta), **{key: value}))

    # -- declared sizes beyond the cut and the payload

    def _zeros_bomb(self, n: int) -> bytes:
        if n not in self._bombs:
            self._bombs[n] = self.zstd.compress(bytes(n))
        return self._bombs[n]

    def shape_bomb(self) -> Case:
        r = self.rng.randrange(5)
        model = self.target.hash
        if r < 2:   # lossless / q8 zstd bombs declaring 1x4096x4096 at a small cut
            codec = ('lossless', 'q8')[r]
            n = 4096 * 4096
            body = self._zeros_bomb((n + 7) // 8 if codec == 'lossless' else n)
            tokens = [f'codec={codec}', 'cut=layer1', f'model={model}', 'shape=1x4096x4096',
                      'dtype=float32']
            tokens += ['layout=planes'] if codec == 'lossless' else ['scale=0.1', 'zp=0']
            return Case('shape_bomb', False, body, _sealed(tokens, body))
        if r == 2:  # a zstd frame larger than the cut's tensor, with the cut's shape
            n = 16 * 28 * 28
            body = self._zeros_bomb(64 * n)
            tokens = ['codec=q8', 'cut=layer1', f'model={model}', 'shape=16x28x28',
                      'dtype=float32', 'scale=0.1', 'zp=0']
            return Case('shape_bomb', False, body, _sealed(tokens, body))
        if r == 3:  # a JPEG mosaic declaring 8192x8192
            jpeg = forge_jpeg_size(_jpeg(np.zeros((16, 16), np.uint8), 5), 8192, 8192)
            tokens = ['codec=jpeg', 'cut=layer1', f'model={model}', 'shape=1024x256x256',
                      'dtype=float32', 'scale=0.1', 'zp=0', 'quality=5', 'grid=32x32',
                      'tile=256x256']
            return Case('shape_bomb', False, jpeg, _sealed(tokens, jpeg))
        payload, meta = self._base(lambda m: m['cut'] == 'layer1' and m['codec'] == 'raw')
        return Case('shape_bomb', False, payload,                      # raw, shape too big
                    _with(_tokens(meta), shape='64x28x28'))

    def frame_bomb(self) -> Case:
        side = self.rng.choice([8192, 20000, 32000, 60000])
        jpeg = forge_jpeg_size(_jpeg(np.zeros((8, 8, 3), np.uint8), 90), side, side)
        tokens = ['codec=jpeg', 'cut=frame', f'model={self.target.hash}',
                  f'shape={side}x{side}x3', 'dtype=uint8', 'quality=90', 'defense=none']
        return Case('frame_bomb', False, jpeg, _sealed(tokens, jpeg))

    def format_mismatch(self) -> Case:
        name = self.rng.choice(sorted(self.others) + ['png'])
        body = self.png if name == 'png' else self.others[name]
        r = self.rng.randrange(3)
        if r == 0:    # features declared jpeg (a 112x112 mosaic at layer1)
            payload, meta = self._base(lambda m: m['cut'] == 'layer1' and m['codec'] == 'jpeg')
        elif r == 1:  # a host-only frame declared jpeg, 112x112x3
            payload, meta = self._base(lambda m: m['cut'] == 'frame' and m['codec'] == 'jpeg')
            meta = {**meta, 'shape': (112, 112, 3)}
        else:         # lossless / q8 whose payload is an image, not zstd
            payload, meta = self._base(lambda m: m['codec'] in ('lossless', 'q8'))
        return Case(f'format_mismatch_{name}', False, body, _sealed(_tokens(meta), body))

    def nonfinite(self) -> Case:
        payload, meta = self._base(lambda m: m['codec'] == 'raw' and m['dtype'] != 'uint8')
        values = np.frombuffer(payload, '<f4').copy()
        idx = self.rng.sample(range(len(values)), min(len(values), self.rng.randint(1, 5)))
        values[idx] = self.rng.choice([np.nan, np.inf, -np.inf])
        body = values.tobytes()
        return Case('nonfinite', False, body, _sealed(_tokens(meta), body))

    def forged_accounting(self) -> Case:
        payload, meta = self.rng.choice(self.probes)
        forged = self.rng.choice([
            ['seq=999999999999'], ['seq=-5'], ['seq=0'], ['seq=1.5'], ['seq=abc'],
            ['seq=9007199254740993'], ['t_rx=0'], ['t_rx=99999999999999999999'],
            ['t_rx=-1'], ['t_rx=abc'], ['epoch=XYZ'], ['epoch=0'], ['epoch=' + 'f' * 40],
            ['seq=1', 'seq=2'], ['replay']])
        return Case('forged_accounting', False, payload, _tokens(meta) + forged,
                    accounting=False)

    def identity(self) -> Case:
        payload, meta = self._base()
        key, value = self.rng.choice([('model', '0123456789ab'), ('cut', 'layer9'),
                                      ('cut', 'frame'), ('cut', 'output'), ('cut', None),
                                      ('model', None), ('cut', 'input')])
        if meta['cut'] == value:
            value = 'nowhere'
        return Case('identity', False, payload, _with(_tokens(meta), **{key: value}))

    def oversize(self) -> Case:
        payload, meta = self._base(lambda m: m['codec'] == 'raw')
        body = bytes(OVERSIZE_BYTES)
        return Case('oversize', False, body, _sealed(_tokens(meta), body))

    # -- valid variants: must be classified

    def valid_variant(self) -> Case:
        frame = self.rng.choice(self.frames)
        r = self.rng.randrange(3)
        if r == 0:
            payload, meta = self.encode(frame, 'layer1', 'jpeg', self.rng.randint(1, 100))
        elif r == 1:
            cut = self.rng.choice([c for c in self.target.wire_cuts() if c != 'frame'])
            codec = 'raw' if cut == 'output' else self.rng.choice(wire.FEATURE_CODECS)
            if codec == 'jpeg' and len(self.target.feature_shape(cut)) < 1:
                codec = 'raw'
            payload, meta = self.encode(frame, cut, codec, 50 if codec == 'jpeg' else None)
        else:
            payload, meta = self._base()
        return Case('valid_variant', True, payload, _tokens(meta))


# ------------------------------------------------------------------------------ edge

RAW_ENCODINGS_BAD = ('bgr16', '32FC1', 'rgba8', 'yuv422', 'bayer_rggb8', '', '16UC1', '8UC3',
                     'mono16', 'x' * 300)


def image_fields(frame: np.ndarray, encoding: str = 'bgr8') -> dict:
    """Return the fields of a sensor_msgs/Image holding ``frame``."""
    h, w = frame.shape[:2]
    channels = 1 if frame.ndim == 2 else frame.shape[2]
    return {'height': h, 'width': w, 'encoding': encoding, 'is_bigendian': 0,
            'step': w * channels, 'data': np.ascontiguousarray(frame).tobytes()}


class EdgeCases:
    """Seeded hostile camera frames for an edge with ``transport`` raw or compressed input."""

    def __init__(self, transport: str, seed: int = 0, frames: int = 4, huge: bool = True):
        if transport not in ('raw', 'compressed'):
            raise ValueError(f'transport must be raw or compressed, got {transport!r}')
        self.transport = transport
        self.rng = random.Random(seed)
        self.frames = sample_frames(frames, seed=seed)
        self.huge = huge
        self.jpegs = [_jpeg(f, 90) for f in self.frames]
        self.others = other_formats(self.frames[0])
        if transport == 'raw':
            self.makers = ((10, self.raw_bad_encoding), (12, self.raw_bad_geometry),
                           (2 if huge else 0, self.raw_huge), (8, self.raw_valid_variant))
        else:
            self.makers = ((10, self.other_format), (8, self.image_bomb),
                           (6, self.unsupported_jpeg), (12, self.damaged_image),
                           (6, self.bad_compressed_format), (8, self.compressed_valid_variant))
        self._weights = [w for w, _ in self.makers]

    def probe(self, i: int) -> Case:
        """Return the i-th honest frame interleaved with the cases."""
        frame = self.frames[i % len(self.frames)]
        if self.transport == 'raw':
            return Case('probe', True, image=image_fields(frame))
        return Case('probe', True, self.jpegs[i % len(self.jpegs)],
                    compressed_format='bgr8; jpeg compressed bgr8')

    def case(self) -> Case:
        """Return one hostile (or valid-variant) case, drawn by weight."""
        make = self.rng.choices([m for _, m in self.makers], self._weights)[0]
        return make()

    # -- raw images

    def raw_bad_encoding(self) -> Case:
        fields = image_fields(self.rng.choice(self.frames))
        fields['encoding'] = self.rng.choice(RAW_ENCODINGS_BAD)
        return Case('raw_bad_encoding', False, image=fields)

    def raw_bad_geometry(self) -> Case:
        fields = image_fields(self.rng.choice(self.frames))
        r = self.rng.randrange(6)
        if r == 0:
            fields['step'] = fields['width'] * 3 - 1
        elif r == 1:
            fields['data'] = fields['data'][:-self.rng.randint(1, 1000)]
        elif r == 2:
            fields['data'] += b'\0' * self.rng.randint(1, 1000)
        elif r == 3:
            fields[self.rng.choice(['height', 'width'])] = 0
        elif r == 4:
            fields.update(height=60000, width=60000, step=180000)
        else:
            fields['step'] = 1 << 30
        return Case('raw_bad_geometry', False, image=fields)

    def raw_huge(self) -> Case:
        h, w = 2160, 3840      # a 4K camera's frame: 24.9 MB, over the default pixel cap
        frame = np.zeros((h, w, 3), np.uint8)
        return Case('raw_huge', False, image=image_fields(frame))

    def raw_valid_variant(self) -> Case:
        r = self.rng.randrange(4)
        frame = self.rng.choice(self.frames)
        if r == 0:
            shape = self.rng.choice([(1, 1, 3), (1, 640, 3), (480, 1, 3), (28, 28, 3)])
            frame = np.full(shape, self.rng.randrange(256), np.uint8)
            return Case('raw_valid_variant', True, image=image_fields(frame))
        if r == 1:
            return Case('raw_valid_variant', True,
                        image=image_fields(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), 'mono8'))
        if r == 2:
            return Case('raw_valid_variant', True, image=image_fields(frame[:, :, ::-1], 'rgb8'))
        fields = image_fields(frame)                                 # padded rows
        pad = self.rng.randint(1, 16)
        rows = np.zeros((frame.shape[0], frame.shape[1] * 3 + pad), np.uint8)
        rows[:, :frame.shape[1] * 3] = frame.reshape(frame.shape[0], -1)
        fields.update(step=rows.shape[1], data=rows.tobytes())
        return Case('raw_valid_variant', True, image=fields)

    # -- compressed images

    def other_format(self) -> Case:
        name = self.rng.choice(sorted(self.others))
        declared = self.rng.choice(['bgr8; jpeg compressed bgr8', 'bgr8; png compressed bgr8',
                                    'jpeg', 'png'])
        return Case(f'other_format_{name}', False, self.others[name],
                    compressed_format=declared)

    def image_bomb(self) -> Case:
        side = self.rng.choice([8192, 20000, 32000, 60000])
        if self.rng.random() < 0.5:
            body = forge_jpeg_size(_jpeg(np.zeros((8, 8, 3), np.uint8), 90), side, side)
            fmt = 'bgr8; jpeg compressed bgr8'
        else:
            body = forge_png_size(cv2.imencode('.png', np.zeros((8, 8, 3), np.uint8))[1]
                                  .tobytes(), side, side)
            fmt = 'bgr8; png compressed bgr8'
        return Case('image_bomb', False, body, compressed_format=fmt)

    def unsupported_jpeg(self) -> Case:
        jpeg = self.rng.choice(self.jpegs)
        r = self.rng.randrange(4)
        if r == 0:
            body = forge_jpeg_sof(jpeg, 0xC3)            # lossless process
        elif r == 1:
            body = forge_jpeg_sof(jpeg, 0xC9)            # arithmetic coding
        elif r == 2:
            body = forge_jpeg_sof(jpeg, 0xC1, bits=12)   # 12-bit samples
        else:
            body = forge_jpeg_sof(jpeg, 0xC1, bits=16)   # 16-bit samples
        return Case('unsupported_jpeg', False, body, compressed_format='bgr8; jpeg compressed '
                                                                       'bgr8')

    def damaged_image(self) -> Case:
        png = self.rng.random() < 0.3
        frame = self.rng.choice(self.frames)
        body = cv2.imencode('.png', frame)[1].tobytes() if png else self.rng.choice(self.jpegs)
        r = self.rng.randrange(3)
        if r == 0:
            bad = body[:self.rng.randrange(1, len(body))]
        elif r == 1:
            bad = _flip(body, self.rng, self.rng.randint(1, 6))
        else:
            cut = self.rng.randrange(len(body) // 2, len(body))
            bad = body[:cut] + (b'' if png else b'\xff\xd9')
        fmt = 'bgr8; png compressed bgr8' if png else 'bgr8; jpeg compressed bgr8'
        # Some damage is harmless (a flipped bit in a DCT coefficient): valid is unknown.
        return Case('damaged_image', None, bad, compressed_format=fmt)

    def bad_compressed_format(self) -> Case:
        fmt = self.rng.choice(['compressedDepth', 'rgba8; jpeg compressed rgba8', 'tiff',
                               'bgr8; webp compressed bgr8', '', 'x' * 500, 'bgr8; jpeg',
                               '16UC1; png compressed 16UC1'])
        return Case('bad_compressed_format', False, self.rng.choice(self.jpegs),
                    compressed_format=fmt)

    def compressed_valid_variant(self) -> Case:
        frame = self.rng.choice(self.frames)
        r = self.rng.randrange(5)
        if r == 0:
            return Case('compressed_valid_variant', True, _jpeg(frame, 75, progressive=True),
                        compressed_format='bgr8; jpeg compressed bgr8')
        if r == 1:
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            return Case('compressed_valid_variant', True, _jpeg(gray, 80),
                        compressed_format='mono8; jpeg compressed mono8')
        if r == 2:
            return Case('compressed_valid_variant', True,
                        cv2.imencode('.png', frame)[1].tobytes(),
                        compressed_format='bgr8; png compressed bgr8')
        if r == 3:
            side = self.rng.choice([16, 640, 1280])
            big = cv2.resize(frame, (side, math.ceil(side * 3 / 4)))
            return Case('compressed_valid_variant', True, _jpeg(big, 90),
                        compressed_format='rgb8; jpeg compressed bgr8')
        return Case('compressed_valid_variant', True, self.rng.choice(self.jpegs),
                    compressed_format='jpeg')
