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
Labelled frames without ROS: the set itself, class names to indices, generated test scenes.

What reading a bundle's held-out data needs (``eval``) without the bag reader
(:mod:`.labelled_frames`, which adds ImageFolders' and bags' frames).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core import data, datasets, scenes

BAG_SUFFIXES = ('.mcap', '.db3')


@dataclass
class LabelledFrames:
    """OpenCV images (``(H, W, 3)`` BGR or ``(H, W)`` gray, any size), labels, class names."""

    images: list[np.ndarray]
    labels: np.ndarray       # int64 (N,): indices into ``classes``
    classes: list[str]
    names: list[str]         # where each frame came from (a file, a bag stamp, a scene index)

    def __len__(self) -> int:
        return len(self.images)

    def take(self, idx: Sequence[int]) -> 'LabelledFrames':
        """Return the frames at ``idx`` (in that order)."""
        return LabelledFrames([self.images[i] for i in idx], self.labels[list(idx)],
                              self.classes, [self.names[i] for i in idx])


def is_bag(path: str | os.PathLike) -> bool:
    """Return whether ``path`` is a rosbag2: a folder with metadata.yaml, or a .mcap/.db3 file."""
    p = Path(path)
    return (p.is_dir() and (p / 'metadata.yaml').is_file()) or \
        (p.is_file() and p.suffix in BAG_SUFFIXES)


def class_index(names: Sequence[str], classes: Sequence[str] | None,
                where: str) -> np.ndarray:
    """
    Return the index in ``classes`` of each class name (compared as folder names).

    ``classes`` None: the names are the classes (their index in ``names``' sorted set).
    """
    if classes is None:
        order = sorted(set(names))
        return np.array([order.index(n) for n in names], dtype=np.int64)
    index = {datasets.safe_class_dir(c): i for i, c in enumerate(classes)}
    try:
        return np.array([index[datasets.safe_class_dir(n)] for n in names], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f'{where}: class {exc} is not one of the target\'s classes '
                         f'{list(classes)}') from None


def choose(n: int, count: int, seed: int) -> np.ndarray:
    """Return ``count`` seeded indices of ``n`` in ascending order (all of them if fewer)."""
    if count >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))


def generated_frames(record: dict, classes: Sequence[str] | None, count: int) -> LabelledFrames:
    """Make a ``data scenes`` record's first ``count`` test scenes again (BGR)."""
    rgb, fashion = scenes.remake(record, 'test', count)
    names = [data.CLASSES[int(k)] for k in fashion]
    y = class_index(names, classes, 'the generated scenes') if classes else \
        np.asarray(fashion, dtype=np.int64)
    return LabelledFrames([np.ascontiguousarray(img[:, :, ::-1]) for img in rgb], y,
                          list(classes or data.CLASSES), [f'scene {i}' for i in range(count)])
