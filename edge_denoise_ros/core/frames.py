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
Camera frames -> model inputs, and example frames to profile with.

A camera frame is a uint8 array in one of :data:`data.ENCODINGS` (``bgr8``
and ``rgb8`` ``(H, W, 3)``, ``mono8`` ``(H, W)``), checked by
:func:`data.check_frame`; a model input a float tensor ``(1, C, h, w)``.
One-channel models take gray Fashion-MNIST-like inputs in [0, 1]
(:func:`data.preprocess_frame`); three-channel models RGB normalised by
ImageNet's mean and std.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from . import data


def opencv_image(frame: np.ndarray, encoding: str) -> np.ndarray:
    """Return a checked camera frame as OpenCV holds it: ``(H, W)`` gray or ``(H, W, 3)`` BGR."""
    frame = data.check_frame(frame, encoding)
    return np.ascontiguousarray(frame[:, :, ::-1] if encoding == 'rgb8' else frame)


RESIZE_POLICIES = ('stretch', 'crop', 'letterbox')
CHANNEL_ORDERS = ('rgb', 'bgr')
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preparation:
    """
    How a camera frame becomes a model input: the documented parameter set.

    ``resize``: ``stretch`` (to the model size, aspect ignored), ``crop``
    (scale the short side, cut the centre) or ``letterbox`` (scale the long
    side, pad with black); area interpolation down, linear up.
    ``channel_order``: the model's 3-channel order (frames are converted from
    their encoding); 1-channel models get BT.601 gray. Pixels go to [0, 1];
    ``mean``/``std`` (per channel, on [0, 1] pixels) are the target's first
    step, so denoisers and attacks work in pixel space.
    """

    resize: str = 'stretch'
    channel_order: str = 'rgb'
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self):
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f'resize must be one of {RESIZE_POLICIES}, got {self.resize!r}')
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f'channel_order must be one of {CHANNEL_ORDERS}, '
                             f'got {self.channel_order!r}')
        if len(self.mean) != len(self.std) or len(self.mean) not in (1, 3) \
                or min(self.std) <= 0:
            raise ValueError(f'mean and std need 1 or 3 values each, std > 0; got '
                             f'{self.mean} and {self.std}')

    @classmethod
    def from_dict(cls, d: dict) -> 'Preparation':
        """Build from a bundle card's ``preparation`` (unknown keys are an error)."""
        unknown = set(d) - {'resize', 'channel_order', 'mean', 'std'}
        if unknown:
            raise ValueError(f'unknown preparation keys {sorted(unknown)}')
        d = dict(d)
        for k in ('mean', 'std'):
            if k in d:
                d[k] = tuple(float(v) for v in d[k])
        return cls(**d)

    def as_dict(self) -> dict:
        """Return the parameter set as a JSON-able dict."""
        return {'resize': self.resize, 'channel_order': self.channel_order,
                'mean': list(self.mean), 'std': list(self.std)}

    def channels(self, c: int) -> 'Preparation':
        """Return this preparation with mean/std for a ``c``-channel model."""
        if len(self.mean) == c:
            return self
        if c == 1:
            return Preparation(self.resize, self.channel_order, (sum(self.mean) / len(self.mean),),
                               (sum(self.std) / len(self.std),))
        return Preparation(self.resize, self.channel_order, self.mean * 3, self.std * 3)


def fit_size(img: np.ndarray, h: int, w: int, policy: str) -> np.ndarray:
    """Resize an image to ``(h, w)`` by a policy of :data:`RESIZE_POLICIES`."""
    ih, iw = img.shape[:2]
    if (ih, iw) == (h, w):
        return img

    def resize(a, size):
        shrink = size[0] < a.shape[1] or size[1] < a.shape[0]
        return cv2.resize(a, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    if policy == 'stretch':
        return resize(img, (w, h))
    scale = (max if policy == 'crop' else min)(h / ih, w / iw)
    sh, sw = max(1, round(ih * scale)), max(1, round(iw * scale))
    scaled = resize(img, (sw, sh))
    if policy == 'crop':
        y0, x0 = (sh - h) // 2, (sw - w) // 2
        return np.ascontiguousarray(scaled[y0:y0 + h, x0:x0 + w])
    out = np.zeros((h, w) + img.shape[2:], img.dtype)
    y0, x0 = (h - sh) // 2, (w - sw) // 2
    out[y0:y0 + sh, x0:x0 + sw] = scaled
    return out


def prepare_pixels(img: np.ndarray, input_shape: Sequence[int],
                   prep: 'Preparation' = None) -> np.ndarray:
    """
    Turn an OpenCV image (``(H, W)`` gray or ``(H, W, 3)`` BGR) into uint8 ``(C, h, w)``.

    The one place frame geometry and channel order are decided (camera frames
    go through :func:`opencv_image` first; image files come as OpenCV reads them).
    """
    prep = prep or Preparation()
    img = _fit_image(img, input_shape, prep)
    if img.ndim == 2:
        return img[None]
    if prep.channel_order == 'rgb':
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def _fit_image(img: np.ndarray, input_shape: Sequence[int], prep: 'Preparation') -> np.ndarray:
    """Return an OpenCV image at the model's size and channel count, still in OpenCV's order."""
    c, h, w = (int(d) for d in input_shape[-3:])
    if c not in (1, 3):
        raise ValueError(f'expected a 1- or 3-channel input shape, got {tuple(input_shape)}')
    if c == 1 and img.ndim == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2GRAY)
    elif c == 3 and img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return fit_size(img, h, w, prep.resize)


FRAME_SCALES = ('camera', 'model')   # host-only frames: as captured, or at the model's size


def model_size_image(frame: np.ndarray, encoding: str, input_shape: Sequence[int],
                     prep: 'Preparation' = None) -> np.ndarray:
    """
    Return a camera frame as OpenCV holds it, already at the model's input size.

    What the edge sends host-only at ``frame_scale: model``: the frame's
    geometry decided here as :func:`prepare_pixels` decides it (the resize
    policy; gray for one-channel models), still uint8 and in OpenCV's order
    (``(h, w)`` gray or ``(h, w, 3)`` BGR), so the host's own preparation of it
    is the identity resize and gives the model the same pixels (up to the codec).
    """
    c, h, w = (int(d) for d in input_shape[-3:])
    prep = prep or Preparation()
    if c == 1 and h == w and prep.resize == 'stretch':   # as data.preprocess_frame does
        gray = data.frame_to_gray(frame, encoding)
        return gray if gray.shape == (h, w) else \
            cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(_fit_image(opencv_image(frame, encoding), input_shape, prep))


def sent_image(frame: np.ndarray, encoding: str, input_shape: Sequence[int], scale: str,
               prep: 'Preparation' = None) -> np.ndarray:
    """
    Return the image an edge sends host-only, as OpenCV holds it.

    ``scale`` ``model``: :func:`model_size_image`; ``camera``: the frame as
    captured, after checking that the host's preparation can use it.
    """
    if scale == 'model':
        return model_size_image(frame, encoding, input_shape, prep)
    if scale != 'camera':
        raise ValueError(f'frame_scale must be one of {FRAME_SCALES}, got {scale!r}')
    preprocess(frame, input_shape, encoding, prep)
    return opencv_image(frame, encoding)


def preprocess(frame: np.ndarray, input_shape: Sequence[int],
               encoding: str = 'bgr8', prep: Preparation | None = None) -> torch.Tensor:
    """
    Turn a camera frame into a model input ``(1, C, h, w)`` of pixels in [0, 1].

    One channel: :func:`data.preprocess_frame` (BT.601 gray, area resize) for
    square inputs under the default preparation; otherwise
    :func:`prepare_pixels` with ``prep`` (default: :class:`Preparation`'s
    stretch, RGB). Mean/std are not applied here: they are the target's first
    step (:class:`models.Prepared`), so defenses and attacks see pixels.
    """
    c, h, w = (int(d) for d in input_shape[-3:])
    if c == 1 and h == w and (prep is None or prep.resize == 'stretch'):
        return data.preprocess_frame(frame, encoding, size=h)
    if c not in (1, 3):
        raise ValueError(f'expected a 1- or 3-channel input shape, got {tuple(input_shape)}')
    pixels = prepare_pixels(opencv_image(frame, encoding), (c, h, w), prep)
    return torch.from_numpy(pixels.astype(np.float32) / 255.0)[None]


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``WIDTHxHEIGHT`` (``640x480``) into ``(width, height)``."""
    w, sep, h = text.strip().lower().partition('x')
    try:
        size = int(w), int(h)
    except ValueError:
        size = None
    if not sep or size is None or min(size) < 1:
        raise ValueError(f'bad frame size {text!r}; expected WIDTHxHEIGHT like 640x480')
    return size


def read_image(path: str | Path) -> np.ndarray:
    """Return an image file as a ``bgr8`` frame; ValueError if OpenCV cannot read it."""
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise ValueError(f'{path}: not an image OpenCV can read')
    return frame


def profile_frame(spec: str, input_shape: Sequence[int]) -> np.ndarray | None:
    """
    Return the camera frame a start-up profile is measured with.

    ``spec``: ``''`` (None: :func:`frame_for` the input), an image file (a
    frame from the robot's own camera: codec sizes depend on content), or
    ``WIDTHxHEIGHT`` (an :func:`example_frame` of the camera's size).
    """
    if not spec:
        return None
    if Path(spec).is_file():
        return read_image(spec)
    try:
        width, height = parse_size(spec)
    except ValueError:
        raise ValueError(f'profile frame {spec!r}: no such image file, and not WIDTHxHEIGHT '
                         f'like 640x480') from None
    return example_frame((height, width), gray=int(input_shape[-3]) == 1)


def default_frame_size(input_shape: Sequence[int]) -> tuple[int, int]:
    """Return the camera frame ``(H, W)`` assumed for a model input: at least 224x224."""
    h, w = (int(d) for d in input_shape[-2:])
    return max(h, 224), max(w, 224)


def example_frame(size: Sequence[int] = (224, 224), seed: int = 0,
                  gray: bool = True) -> np.ndarray:
    """
    Return a ``bgr8`` camera frame ``(H, W, 3)`` to profile with.

    ``gray``: a Fashion-MNIST test image scaled up (nearest neighbour), what
    the default pipeline's camera sees (seeded noise if the data set is not
    installed). Otherwise a color image with the 1/f^1.2 amplitude spectrum
    of natural scenes (a 224x224 JPEG at quality 75 takes ~15 kB, like a
    photograph). Codec sizes depend on content: for real decisions, profile
    with a frame from the robot's camera.
    """
    h, w = (int(d) for d in size)
    if h <= 0 or w <= 0:
        raise ValueError(f'frame size must be positive, got {tuple(size)}')
    rng = np.random.default_rng(seed)
    if not gray:
        luma = _pink_noise(h, w, rng)
        planes = [luma + 0.4 * _pink_noise(h, w, rng) for _ in range(3)]
        return np.clip(128 + 45 * np.stack(planes, -1), 0, 255).astype(np.uint8)
    try:
        images, _ = data.load_fashion_mnist('test')
        small = images[seed % len(images)]
    except (FileNotFoundError, ValueError):
        small = (rng.random((28, 28)) * 255).astype(np.uint8)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    return np.repeat(big[:, :, None], 3, axis=2)


def _pink_noise(h: int, w: int, rng, alpha: float = 1.2) -> np.ndarray:
    """Return zero-mean, unit-variance noise ``(h, w)`` with a 1/f^alpha amplitude spectrum."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f ** alpha
    spectrum[0, 0] = 0.0
    img = np.fft.irfft2(spectrum, s=(h, w))
    return (img - img.mean()) / img.std()


def frame_for(input_shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Return the default example frame of a model input ``(C, H, W)``."""
    return example_frame(default_frame_size(input_shape), seed, gray=int(input_shape[-3]) == 1)
