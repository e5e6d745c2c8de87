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
A bundle's held-out data, read without changing its card (``eval``, ``bundle accuracy``).

Loads only the core and :mod:`..harness.frame_sources` (no ROS, no bag reader),
so ``edge-denoise eval`` starts without rclpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .common import CliError
from ..core import bundle, datasets, evaluation, frames, pipeline
from ..harness import frame_sources

DEFAULT_EPS = evaluation.BUNDLE_EPS   # L-inf budget of a bundle's evaluation attacks
EVAL_LIMIT = 2000           # held-out frames ``eval --bundle`` measures by default


@dataclass
class UserContext:
    """A bundle, its target, and the target's train and held-out data (uint8 images)."""

    bundle: bundle.Bundle
    target: pipeline.Target
    train: datasets.ImageSet
    test: datasets.ImageSet
    references: dict = field(default_factory=dict)   # n -> the unsplit target's accuracy
    attacked: dict = field(default_factory=dict)     # held-out frames attacked, and results
    digests: dict = field(default_factory=dict)      # the training images' sha256, once


def shuffled(images: datasets.ImageSet, seed: int = 0) -> datasets.ImageSet:
    """Return the images in a seeded random order."""
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(images)))
    return datasets.ImageSet(images.x[order], images.y[order], images.classes)


def read_context(path: str, limit: int | None = None) -> UserContext:
    """
    Load a bundle's target and its held-out data without changing the card.

    The held-out data: the card's test ImageFolder; else the seeded share of
    its train folder held out in training; else, for generated data, the same
    test frames made again (``data.generator``); else a one-line error.
    """
    b = bundle.Bundle.load(path)
    target = pipeline.Target(bundle=path)
    d = b.card.get('data', {})

    def prepare(img, shape):
        return frames.prepare_pixels(img, shape, target.preparation)

    if d.get('generator'):        # generated data: the same frames on every machine
        made = frame_sources.generated_frames(d['generator'], target.labels,
                                              limit or d.get('n_test') or EVAL_LIMIT)
        x = torch.stack([torch.from_numpy(prepare(img, target.input_shape))
                         for img in made.images])
        test = datasets.ImageSet(x, torch.from_numpy(made.labels), made.classes)
    elif any(frame_sources.is_bag(d[k]) for k in ('test', 'train') if d.get(k)):
        raise CliError(f'{path}: its held-out data are in a bag; eval reads ImageFolders and '
                       f'generated data (demo --bundle {path} --data BAG measures a bag)')
    elif d.get('test') and Path(d['test']).is_dir():
        test = datasets.load_image_folder(d['test'], target.input_shape, prepare, limit=limit)
    elif d.get('holdout') and d.get('train') and Path(d['train']).is_dir():
        full = datasets.load_image_folder(d['train'], target.input_shape, prepare)
        test = shuffled(datasets.split_holdout(full, d['holdout'], seed=0)[1], seed=0)
    else:
        raise CliError(f'{path}: its held-out data ({d.get("test") or d.get("train")}) are not '
                       f'here; pass them with --data')
    if limit is not None and limit < len(test):
        test = datasets.ImageSet(test.x[:limit], test.y[:limit], test.classes)
    empty = datasets.ImageSet(test.x[:0], test.y[:0], test.classes)
    return UserContext(b, target, empty, test)
