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
A user's labelled images: ImageFolder trees, read into model-sized uint8 tensors.

An ImageFolder is what torchvision calls one: ``ROOT/<class>/<image>``, the
classes in sorted folder order (so labels match ``torchvision.datasets.ImageFolder``).
Images are read with OpenCV (PNG, JPEG, BMP, ...) and prepared for the model
by :func:`frames.prepare_pixels`; they stay uint8 ``(N, C, H, W)`` in memory
(a 60,000-image 3x96x96 set takes 1.7 GB) and become floats one batch at a time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.pgm', '.tif', '.tiff', '.webp')


def parse_input(text: str | Sequence[int]) -> tuple[int, int, int]:
    """Parse an input shape ``CxHxW`` (or a sequence): 1 or 3 channels, sides >= 8."""
    if isinstance(text, str):
        try:
            dims = tuple(int(d) for d in text.lower().split('x'))
        except ValueError:
            raise ValueError(f'input shape must look like 3x96x96, got {text!r}') from None
    else:
        dims = tuple(int(d) for d in text)
    if len(dims) != 3 or dims[0] not in (1, 3) or min(dims[1:]) < 8:
        raise ValueError(f'input shape must be CxHxW with C in (1, 3) and H, W >= 8, got {text!r}')
    return dims


@dataclass
class ImageSet:
    """Images ``x`` uint8 ``(N, C, H, W)``, labels ``y`` int64 ``(N,)``, and class names."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.y)

    def floats(self, idx=slice(None)) -> torch.Tensor:
        """Return images ``idx`` as floats in [0, 1]."""
        return self.x[idx].float().div_(255.0)


def subset(images: ImageSet, n: int, seed: int = 0) -> ImageSet:
    """Return a seeded random subset of ``n`` images (in their original order)."""
    idx = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(len(images), n,
                                                                      replace=False)))
    return ImageSet(images.x[idx], images.y[idx], images.classes)


def split_holdout(images: ImageSet, fraction: float, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Split a set into ``(train, held_out)``: a seeded ``fraction`` held out (at least one)."""
    if len(images) < 2:
        raise ValueError(f'need at least 2 images to hold some out, got {len(images)}')
    n_out = min(len(images) - 1, max(1, round(len(images) * fraction)))
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(images)))
    out, keep = order[:n_out].sort().values, order[n_out:].sort().values
    return (ImageSet(images.x[keep], images.y[keep], images.classes),
            ImageSet(images.x[out], images.y[out], images.classes))


def folder_classes(root: Path) -> list[str]:
    """Return the class folders of an ImageFolder root, sorted."""
    if not root.is_dir():
        raise FileNotFoundError(f'image folder not found: {root}')
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith('.'))
    if not classes:
        raise ValueError(f'{root}: no class folders (expected ROOT/<class>/<image>)')
    return classes


def list_image_folder(root: str | os.PathLike) -> tuple[list[Path], list[int], list[str]]:
    """Return the image paths, their labels and the class names of an ImageFolder."""
    root = Path(root)
    classes = folder_classes(root)
    paths, labels = [], []
    for label, name in enumerate(classes):
        for p in sorted((root / name).iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                paths.append(p)
                labels.append(label)
    if not paths:
        raise ValueError(f'{root}: no images with suffixes {IMAGE_SUFFIXES}')
    return paths, labels, classes


def load_image_folder(root: str | os.PathLike, input_shape: Sequence[int], prepare,
                      limit: int | None = None, seed: int = 0) -> ImageSet:
    """
    Read an ImageFolder, each image prepared to ``input_shape`` by ``prepare(bgr, shape)``.

    ``prepare`` maps an OpenCV image (``(H, W)`` gray or ``(H, W, 3)`` BGR)
    to uint8 ``(C, H, W)`` in the model's channel order. ``limit`` keeps a
    seeded random subset of that many images (all classes stay named).
    """
    paths, labels, classes = list_image_folder(root)
    order = np.arange(len(paths))
    if limit is not None and limit < len(paths):
        order = np.sort(np.random.default_rng(seed).choice(len(paths), limit, replace=False))
    c, h, w = parse_input(input_shape)
    x = torch.empty((len(order), c, h, w), dtype=torch.uint8)
    for j, i in enumerate(order):
        img = cv2.imread(str(paths[i]), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f'{paths[i]}: not an image OpenCV can read')
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, :3]
        if img.dtype != np.uint8:
            raise ValueError(f'{paths[i]}: 8-bit images only, got {img.dtype}')
        x[j] = torch.from_numpy(prepare(img, (c, h, w)))
    y = torch.tensor([labels[i] for i in order], dtype=torch.int64)
    return ImageSet(x, y, classes)


def write_image_folder(root: str | os.PathLike, images_rgb: np.ndarray, labels: np.ndarray,
                       classes: Sequence[str], start: int = 0) -> int:
    """Write RGB uint8 images ``(N, H, W, 3)`` as PNGs ``ROOT/<class>/<start+i>.png``."""
    root = Path(root)
    names = [safe_class_dir(c) for c in classes]
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(images_rgb, labels)):
        path = root / names[int(label)] / f'{start + i:06d}.png'
        if not cv2.imwrite(str(path), np.ascontiguousarray(img[:, :, ::-1])):
            raise OSError(f'could not write {path}')
    return len(labels)


def safe_class_dir(name: str) -> str:
    """Return a class name as a folder name (``/`` becomes ``-``); order-preserving per list."""
    return name.replace('/', '-').replace(os.sep, '-')


# What ``data scenes`` and ``data items`` write beside ``train``/``test``: how they were made.
MADE_RECORDS = ('scenes.json', 'items.json')


def _made(folder: str | os.PathLike, name: str) -> dict | None:
    path = Path(folder).parent / name
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def generator_record(folder: str | os.PathLike) -> dict | None:
    """Return how a generated scenes set was made (``scenes.json``): it can be made again."""
    return _made(folder, 'scenes.json')


def made_record(folder: str | os.PathLike) -> dict | None:
    """Return how any generated data set was made (scenes or items), or None for a user's."""
    return next((r for r in (_made(folder, n) for n in MADE_RECORDS) if r is not None), None)


def read_labels(path: str | os.PathLike) -> list[str]:
    """Read a labels file: one label per line, blank lines and ``#`` comments skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'labels file not found: {path}')
    labels = [line.strip() for line in path.read_text(encoding='utf-8').splitlines()]
    labels = [s for s in labels if s and not s.startswith('#')]
    if not labels:
        raise ValueError(f'{path}: no labels (one label per line)')
    return labels


def write_labels(path: str | os.PathLike, labels: Sequence[str]) -> Path:
    """Write a labels file, one label per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(f'{s}\n' for s in labels), encoding='utf-8')
    return path
