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
Fashion-MNIST loading and camera-frame preprocessing.

The data come from Debian's ``dataset-fashion-mnist`` package
(``/usr/share/datasets/fashion-mnist/*.gz``), or from the folder named by the
``FASHION_MNIST_DIR`` environment variable. The idx files are parsed with
numpy; nothing is downloaded.

Every model of the default pipeline takes a ``(B, 1, 28, 28)`` float tensor
with pixel values in ``[0, 1]``; mean/std normalisation is the first layer of
the target model, so attacks and the denoiser work in pixel space.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import cv2
import numpy as np
import torch

DEFAULT_DIR = Path('/usr/share/datasets/fashion-mnist')
DEBIAN_PACKAGE = 'dataset-fashion-mnist'
CLASSES = (
    'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
    'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
)
# Channel statistics of the Fashion-MNIST train split, pixel values in [0, 1].
MEAN = 0.2860
STD = 0.3530
INPUT_SIZE = 28
# Camera frame encodings the pipeline takes, and their channels (all 8 bits per channel).
CHANNELS = {'bgr8': 3, 'rgb8': 3, 'mono8': 1}
ENCODINGS = tuple(CHANNELS)

_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
_IDX_DTYPE = {0x08: np.uint8}


class DatasetMissingError(FileNotFoundError):
    """Raised when the Fashion-MNIST files are not where they should be."""


def dataset_dir() -> Path:
    """Return the folder holding the Fashion-MNIST idx.gz files."""
    return Path(os.environ.get('FASHION_MNIST_DIR', DEFAULT_DIR))


def read_idx(path: Path) -> np.ndarray:
    """Parse one gzip-compressed idx file (unsigned bytes) into an array."""
    with gzip.open(path, 'rb') as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f'{path}: not an idx file (bad magic number)')
    dtype = _IDX_DTYPE.get(raw[2])
    if dtype is None:
        raise ValueError(f'{path}: unsupported idx element type 0x{raw[2]:02x}')
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype='>u4'))
    data = np.frombuffer(raw, dtype=dtype, offset=header)
    if data.size != int(np.prod(shape)):
        raise ValueError(f'{path}: {data.size} elements for shape {shape}')
    return data.reshape(shape)


def load_fashion_mnist(split: str = 'train',
                       root: str | os.PathLike | None = None,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)``: uint8 ``(N, 28, 28)`` and int64 ``(N,)``."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(root) if root is not None else dataset_dir()
    paths = [folder / name for name in _FILES[split]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetMissingError(
            f'Fashion-MNIST not found: {missing[0]} is missing; install the Debian '
            f'package {DEBIAN_PACKAGE} (apt-get install {DEBIAN_PACKAGE}) or set '
            f'FASHION_MNIST_DIR')
    images = read_idx(paths[0])
    labels = read_idx(paths[1]).astype(np.int64)
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(f'{folder}: images {images.shape} do not match labels {labels.shape}')
    return images, labels


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """Turn uint8 images ``(N, H, W)`` into a float tensor ``(N, 1, H, W)`` in [0, 1]."""
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f'expected uint8 (N, H, W) images, got {images.dtype} {images.shape}')
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def load_split_tensors(split: str = 'test', limit: int | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x, y)`` tensors of a split, the first ``limit`` samples if given."""
    images, labels = load_fashion_mnist(split)
    if limit is not None:
        if limit <= 0:
            raise ValueError(f'limit must be positive, got {limit}')
        images, labels = images[:limit], labels[:limit]
    return to_tensor(images), torch.from_numpy(labels)


def check_frame(frame: np.ndarray, encoding: str) -> np.ndarray:
    """
    Check a camera frame against its encoding; return it as ``(H, W)`` or ``(H, W, 3)``.

    ``mono8`` takes ``(H, W)`` or ``(H, W, 1)``; ``bgr8``/``rgb8`` take
    ``(H, W, 3)``; always uint8 and not empty. Raises ValueError saying what is wrong.
    """
    if encoding not in CHANNELS:
        raise ValueError(f'unsupported image encoding {encoding!r}; expected one of {ENCODINGS}')
    if not isinstance(frame, np.ndarray):
        raise ValueError(f'expected a numpy array, got {type(frame).__name__}')
    if frame.dtype != np.uint8:
        raise ValueError(f'{encoding} needs a uint8 frame, got {frame.dtype}')
    if frame.size == 0:
        raise ValueError(f'zero-size frame of shape {frame.shape}')
    if encoding == 'mono8':
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        if frame.ndim != 2:
            raise ValueError(f'mono8 frame must be (H, W) or (H, W, 1), got {frame.shape}')
    elif frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f'{encoding} frame must be (H, W, 3), got {frame.shape}')
    return frame


def frame_to_gray(frame: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a ``bgr8``/``rgb8``/``mono8`` frame to a 2-D uint8 gray image."""
    frame = check_frame(frame, encoding)
    if encoding == 'mono8':
        return frame
    code = cv2.COLOR_BGR2GRAY if encoding == 'bgr8' else cv2.COLOR_RGB2GRAY
    return cv2.cvtColor(np.ascontiguousarray(frame), code)


def preprocess_frame(frame: np.ndarray, encoding: str,
                     size: int = INPUT_SIZE) -> torch.Tensor:
    """
    Turn one camera frame of any size into the model input ``(1, 1, size, size)``.

    The frame is converted to gray (OpenCV's BT.601 weights, which map a gray
    pixel (v, v, v) to v exactly), resized with area interpolation (an integer
    down-scale averages whole blocks, so a nearest-neighbour up-scaled sample
    comes back exactly) and scaled to [0, 1].
    """
    gray = frame_to_gray(frame, encoding)
    if gray.shape != (size, size):
        gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(gray.astype(np.float32) / 255.0)[None, None]


def sample_to_frame(image: np.ndarray, size: int = 224, encoding: str = 'bgr8') -> np.ndarray:
    """Up-scale a uint8 ``(28, 28)`` sample by nearest neighbour into a camera frame."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f'expected a uint8 (H, W) sample, got {image.dtype} {image.shape}')
    if size % image.shape[0] or size % image.shape[1]:
        raise ValueError(f'frame size {size} is not a multiple of the sample {image.shape}')
    if encoding not in CHANNELS:
        raise ValueError(f'unsupported image encoding {encoding!r}; expected one of {ENCODINGS}')
    big = cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST)
    return big if CHANNELS[encoding] == 1 else np.repeat(big[:, :, None], 3, axis=2)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Round a ``(N, 1, H, W)`` tensor in [0, 1] to uint8 images ``(N, H, W)``."""
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8)[:, 0].numpy()
