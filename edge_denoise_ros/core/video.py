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
H.264 camera streams: what FogROS2-style offloading sends instead of single frames.

:class:`H264Encoder` turns ``bgr8`` frames into one H.264 access unit each
(Annex B bytes) with libx264's low-latency settings: ``ultrafast`` preset,
``zerolatency`` tune (no B-frames, no look-ahead: a frame in, its packet out)
and either periodic intra refresh or a short GOP, so a lost packet spoils the
picture for at most ``gop`` frames instead of stalling the stream.
:class:`H264Decoder` turns the packets back into frames, in order, on the host.
PyAV (``av``, whose wheels ship libx264 and FFmpeg's decoder) is imported
only here, when a stream is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

CODEC = 'h264'


@dataclass(frozen=True)
class H264Config:
    """Encoder settings (libx264): low latency, bounded damage from a lost packet."""

    preset: str = 'ultrafast'
    tune: str = 'zerolatency'
    gop: int = 15                      # a key frame (or a full intra refresh) every gop frames
    intra_refresh: bool = True         # refresh macroblock columns per frame: no I-frame spikes
    crf: int = 23                      # constant quality (0 lossless .. 51 worst)
    fps: int = 30                      # nominal rate for the rate control
    threads: int = 1                   # batch-1 frames on a weak edge: one thread
    extra: dict = field(default_factory=dict)  # further libx264 options

    def check(self) -> None:
        """Raise ``ValueError`` for a bad setting."""
        if self.gop < 1 or not 0 <= self.crf <= 51 or self.fps < 1 or self.threads < 0:
            raise ValueError(f'bad H.264 settings: gop {self.gop} (>= 1), crf {self.crf} '
                             f'(0..51), fps {self.fps} (>= 1), threads {self.threads} (>= 0)')

    def options(self) -> dict:
        """Return the libx264 options of these settings."""
        params = [f'keyint={self.gop}', f'min-keyint={self.gop}', 'scenecut=0', 'bframes=0',
                  'rc-lookahead=0', 'sync-lookahead=0', 'repeat-headers=1']
        if self.intra_refresh:
            params.append('intra-refresh=1')
        return {'preset': self.preset, 'tune': self.tune, 'crf': str(self.crf),
                'x264-params': ':'.join(params), **self.extra}


class H264Encoder:
    """``bgr8`` frames ``(H, W, 3)`` -> one H.264 access unit each (Annex B bytes)."""

    def __init__(self, width: int, height: int, config: H264Config = H264Config()):
        import av

        config.check()
        if width < 2 or height < 2 or width % 2 or height % 2:
            raise ValueError(f'H.264 (yuv420p) needs an even frame size, got {width}x{height}')
        self.config = config
        self.width, self.height = width, height
        self._av = av
        self.ctx = av.CodecContext.create('libx264', 'w')
        self.ctx.width, self.ctx.height = width, height
        self.ctx.pix_fmt = 'yuv420p'
        self.ctx.time_base = Fraction(1, config.fps)
        self.ctx.framerate = Fraction(config.fps, 1)
        self.ctx.thread_count = config.threads
        self.ctx.options = config.options()
        self.ctx.open()
        self.frames = 0

    def encode(self, frame: np.ndarray) -> bytes:
        """Encode one ``bgr8`` frame; return its access unit (all its NAL units)."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f'expected a uint8 ({self.height}, {self.width}, 3) bgr8 frame, '
                             f'got {frame.dtype} {frame.shape}')
        picture = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format='bgr24')
        picture = picture.reformat(format='yuv420p')
        picture.pts = self.frames
        self.frames += 1
        return b''.join(bytes(p) for p in self.ctx.encode(picture))

    def close(self) -> bytes:
        """Flush the encoder; return what it still held (nothing with ``zerolatency``)."""
        return b''.join(bytes(p) for p in self.ctx.encode(None))


class H264Decoder:
    """H.264 access units -> ``bgr8`` frames, in stream order."""

    def __init__(self):
        import av

        self._av = av
        self.ctx = av.CodecContext.create('h264', 'r')
        self.ctx.thread_count = 1
        self.errors = 0

    def decode(self, unit: bytes) -> list[np.ndarray]:
        """Decode one access unit; return the frames it completes (usually one)."""
        try:
            frames = self.ctx.decode(self._av.Packet(bytes(unit)))
        except self._av.error.FFmpegError as exc:
            self.errors += 1
            raise ValueError(f'H.264 decode failed: {exc}') from None
        return [f.to_ndarray(format='bgr24') for f in frames]
