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
Labelled camera frames at their natural size: from an ImageFolder, a bag, or a bundle's test data.

A bag with ground truth is one in the demo bag's layout (:mod:`.demo_bag`):
camera frames (``sensor_msgs/Image`` or ``CompressedImage``) and, on
``/ground_truth``, one ``std_msgs/String`` JSON per frame with the frame's
stamp and ``label`` (and ``label_name``). :func:`read_bag_frames` reads them
back; :func:`load_bag_images` prepares them for a target as an
:class:`~..core.datasets.ImageSet`, which is how a bag serves as training data.
Labels are matched to a target's classes by name (folder-safe spelling,
:func:`~..core.datasets.safe_class_dir`), else taken as indices.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from .demo_bag import read_ground_truth, stamp_ns
from .frame_sources import choose, class_index, generated_frames, is_bag, LabelledFrames
from ..core import datasets, frames
from ..core.bundle import Bundle
from ..ros import conversions
from ..ros.bag import absolute, bag_info, CAMERA_TYPES, read_messages

TRUTH_TOPIC = '/ground_truth'


def camera_topic_of(path) -> str:
    """Return a bag's camera topic (``/image_raw`` if it has it, else its one camera topic)."""
    topics = {t: v['type'] for t, v in bag_info(path)['topics'].items()
              if v['type'] in CAMERA_TYPES}
    for preferred in ('/image_raw', '/image_raw/compressed'):
        if preferred in topics:
            return preferred
    if len(topics) != 1:
        raise ValueError(f'{path}: expected one camera topic, found {sorted(topics) or "none"}')
    return next(iter(topics))


def read_bag_frames(path: str | os.PathLike, classes: Sequence[str] | None = None,
                    camera_topic: str | None = None,
                    truth_topic: str = TRUTH_TOPIC) -> LabelledFrames:
    """
    Read a bag's camera frames with their ground truth (the demo bag's layout), in bag order.

    A frame's label is its truth's ``label_name`` looked up in ``classes``
    (when both exist), else its ``label`` index. Frames without a truth
    record are skipped; a bag without any is a ValueError.
    """
    truths = read_ground_truth(path, truth_topic)
    topic = absolute(camera_topic) if camera_topic else camera_topic_of(path)
    images, names, numbers, stamps = [], [], [], []
    for _, _, _, msg in read_messages(path, [topic]):
        stamp = stamp_ns(msg.header)
        truth = truths.get(stamp)
        if truth is None:
            continue
        frame, encoding = conversions.camera_msg_to_image(msg)
        images.append(frames.opencv_image(frame, encoding))
        names.append(truth.get('label_name'))
        numbers.append(int(truth['label']))
        stamps.append(f'{Path(path).name}@{stamp}')
    if not images:
        raise ValueError(f'{path}: no frame on {topic} has a ground truth on '
                         f'{absolute(truth_topic)}')
    if classes is not None and all(n is not None for n in names):
        labels = class_index(names, classes, str(path))
    else:
        labels = np.array(numbers, dtype=np.int64)
        if classes is not None and labels.max() >= len(classes):
            raise ValueError(f'{path}: label {labels.max()} for a target with {len(classes)} '
                             f'classes')
    if classes is None:
        named = {int(k): n for k, n in zip(numbers, names) if n is not None}
        classes = [named.get(i, str(i)) for i in range(int(labels.max()) + 1)]
    return LabelledFrames(images, labels, list(classes), stamps)


def load_bag_images(path: str | os.PathLike, input_shape: Sequence[int], prepare,
                    classes: Sequence[str] | None = None, limit: int | None = None,
                    seed: int = 0) -> datasets.ImageSet:
    """
    Read a bag with ground truth as an ImageSet (what ``train ... --data BAG`` trains on).

    ``prepare(bgr, shape)`` and ``limit`` (a seeded subset, in bag order) as
    for :func:`~..core.datasets.load_image_folder`.
    """
    found = read_bag_frames(path, classes)
    if limit is not None and limit < len(found):
        found = found.take(choose(len(found), limit, seed))
    c, h, w = datasets.parse_input(input_shape)
    x = torch.empty((len(found), c, h, w), dtype=torch.uint8)
    for i, img in enumerate(found.images):
        x[i] = torch.from_numpy(prepare(img, (c, h, w)))
    return datasets.ImageSet(x, torch.from_numpy(found.labels), found.classes)


def count_images(path: str | os.PathLike) -> int:
    """Return how many labelled images an ImageFolder or a bag (its truth records) holds."""
    if is_bag(path):
        return len(read_ground_truth(path, TRUTH_TOPIC))
    return len(datasets.list_image_folder(path)[0])


def load_images(path: str | os.PathLike, input_shape: Sequence[int], prepare,
                classes: Sequence[str] | None = None, limit: int | None = None,
                seed: int = 0) -> datasets.ImageSet:
    """
    Read an ImageFolder or a bag with ground truth as an ImageSet.

    :func:`~..core.datasets.load_image_folder` or :func:`load_bag_images`
    (``classes``, the target's, name a bag's labels; a folder names its own).
    """
    if is_bag(path):
        return load_bag_images(path, input_shape, prepare, classes, limit, seed)
    return datasets.load_image_folder(path, input_shape, prepare, limit=limit, seed=seed)


def folder_frames(root: str | os.PathLike, classes: Sequence[str] | None, count: int,
                  seed: int = 0) -> LabelledFrames:
    """Read ``count`` seeded images of an ImageFolder as they are (OpenCV, natural size)."""
    paths, labels, names = datasets.list_image_folder(root)
    idx = choose(len(paths), count, seed)
    images = []
    for i in idx:
        img = cv2.imread(str(paths[i]), cv2.IMREAD_UNCHANGED)
        if img is None or img.dtype != np.uint8:
            raise ValueError(f'{paths[i]}: not an 8-bit image OpenCV can read')
        images.append(img[:, :, :3] if img.ndim == 3 else img)
    y = class_index([names[labels[i]] for i in idx], classes, str(root)) if classes \
        else np.array([labels[i] for i in idx], dtype=np.int64)
    return LabelledFrames(images, y, list(classes or names), [str(paths[i]) for i in idx])


def source_of(data_path: str | None, bundle: Bundle | None) -> dict:
    """
    Return where a demo's frames come from: ``{'kind': folder|bag|generator, ...}``.

    ``data_path`` (an ImageFolder or a bag) if given; else the bundle's own
    test data: its ``data.generator`` made again (the same frames everywhere),
    else the card's ``data.test`` ImageFolder when it is here.
    """
    if data_path:
        if is_bag(data_path):
            return {'kind': 'bag', 'path': str(data_path)}
        if not Path(data_path).is_dir():
            raise ValueError(f'--data {data_path}: neither an ImageFolder nor a rosbag2')
        return {'kind': 'folder', 'path': str(data_path)}
    if bundle is None:
        raise ValueError('frames need --data (an ImageFolder or a bag) or a --bundle')
    d = bundle.card.get('data', {})
    if d.get('generator'):          # generated data: the same frames on every machine
        return {'kind': 'generator', 'record': d['generator']}
    if d.get('test') and Path(d['test']).is_dir():
        return {'kind': 'folder', 'path': str(d['test'])}
    raise ValueError(f'{bundle.root}: its card names no test folder that is here and no '
                     f'generator of its data; pass frames with --data')


def load_source(source: dict, classes: Sequence[str] | None, count: int,
                seed: int = 0) -> LabelledFrames:
    """Return up to ``count`` labelled frames of a :func:`source_of` source."""
    if source['kind'] == 'folder':
        return folder_frames(source['path'], classes, count, seed)
    if source['kind'] == 'generator':
        return generated_frames(source['record'], classes, count)
    found = read_bag_frames(source['path'], classes)
    return found.take(choose(len(found), count, seed))


def source_identity(source: dict) -> str:
    """Return a hash that changes when a source's content may have (paths, sizes, times)."""
    h = hashlib.sha256(json.dumps(source, sort_keys=True).encode())
    if source['kind'] != 'generator':
        root = Path(source['path'])
        for p in sorted([root] if root.is_file() else root.rglob('*')):
            if p.is_file():
                st = p.stat()
                h.update(f'{p.relative_to(root.parent)}:{st.st_size}:{st.st_mtime_ns}'.encode())
    return h.hexdigest()
