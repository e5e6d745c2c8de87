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
The demo bag of any target: labelled frames, half of them PGD-adversarial against it.

:func:`make_bundle_bag` takes labelled frames (:mod:`.labelled_frames`: an
ImageFolder, a bag with ground truth, or a bundle's own test data), makes
each a ``bgr8`` camera frame at its natural size, attacks a seeded share of
them with the evaluation's PGD (:func:`~..core.evaluation.eval_attacks`) on
the target's model input as a node prepares it, and writes them in the demo
bag's layout (:func:`.demo_bag.write_camera_bag`). An attacked frame whose
size is the model's is the attacked input itself; a larger one (``stretch``
preparation) carries the perturbation resized to it; with ``crop`` or
``letterbox`` preparation an attacked frame is published at the model's size.
:func:`ensure_bundle_bag` caches the bag under ``out/demo_bags``, keyed by the
target's hash, the frames' source and the settings; the cache keeps the
``KEEP_CACHED`` bags used last (:func:`prune_cache`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .demo_bag import (demo_metadata, demo_truth, DemoBagConfig, frame_header,
                       prepare_output, write_camera_bag)
from .labelled_frames import load_source, source_identity
from ..core import evaluation, pipeline
from ..core.frames import parse_size
from ..ros import conversions
from ..ros.bag import absolute, Progress

DEMO_BAGS = 'out/demo_bags'
KEEP_CACHED = 4                 # demo bags kept in DEMO_BAGS: the ones used last
CACHED_NAME = re.compile(r'[0-9a-f]{12}-[0-9a-f]{16}')      # <target hash>-<key>
FORMAT = 1                      # bump when the bag's content changes for the same key


@dataclass
class BundleBagConfig:
    """Settings of a target's demo bag (every one recorded in the bag's custom data)."""

    eps: float                                   # PGD L-inf budget (pixels in [0, 1])
    frames: int = DemoBagConfig.frames
    adversarial_fraction: float = DemoBagConfig.adversarial_fraction
    rate_hz: float = DemoBagConfig.rate_hz
    seed: int = DemoBagConfig.seed
    storage: str = DemoBagConfig.storage
    camera_topic: str = DemoBagConfig.camera_topic
    truth_topic: str = DemoBagConfig.truth_topic
    frame_id: str = DemoBagConfig.frame_id
    start_ns: int = DemoBagConfig.start_ns
    camera_size: str = ''        # WIDTHxHEIGHT: frames scaled (linear) to a camera's size first

    def check(self) -> None:
        """Raise ``ValueError`` for a bad setting."""
        if self.frames < 1:
            raise ValueError(f'frames must be >= 1, got {self.frames}')
        if not 0 < self.eps <= 1:
            raise ValueError(f'eps must be in (0, 1], got {self.eps}')
        if not 0 <= self.adversarial_fraction <= 1:
            raise ValueError(f'adversarial fraction must be in [0, 1], got '
                             f'{self.adversarial_fraction}')
        if not self.rate_hz > 0:
            raise ValueError(f'rate must be > 0 Hz, got {self.rate_hz}')


def bgr_frame(img: np.ndarray) -> np.ndarray:
    """Return an OpenCV image (gray or BGR) as a ``bgr8`` camera frame."""
    return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img)


def at_camera_size(images: list[np.ndarray], camera_size: str = '') -> list[np.ndarray]:
    """
    Return OpenCV images as ``bgr8`` camera frames, scaled (linear) to ``camera_size``.

    ``camera_size`` ``WIDTHxHEIGHT`` is a real camera's resolution (the scene seen
    at it); ``''`` keeps each image's own size.
    """
    frames_out = [bgr_frame(img) for img in images]
    if not camera_size:
        return frames_out
    w, h = parse_size(camera_size)
    return [cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR) for img in frames_out]


def _bgr(hwc: np.ndarray, target: pipeline.Target) -> np.ndarray:
    """Return ``(H, W, C)`` values in the model's channel order as BGR (gray repeated)."""
    if hwc.shape[2] == 1:
        return np.repeat(hwc, 3, axis=2)
    return hwc[:, :, ::-1] if target.preparation.channel_order == 'rgb' else hwc


def model_pixels_to_frame(x: torch.Tensor, target: pipeline.Target) -> np.ndarray:
    """Return a model input ``(C, H, W)`` in [0, 1] as the ``bgr8`` frame that prepares to it."""
    pixels = (x.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy().transpose(1, 2, 0)
    return np.ascontiguousarray(_bgr(pixels, target))


def adversarial_frame(frame: np.ndarray, x: torch.Tensor, x_adv: torch.Tensor,
                      target: pipeline.Target) -> np.ndarray:
    """Return the camera frame that carries the attack ``x -> x_adv`` of its model input."""
    h, w = target.input_shape[1:]
    if frame.shape[:2] == (h, w) or target.preparation.resize != 'stretch':
        return model_pixels_to_frame(x_adv, target)
    delta = _bgr(((x_adv - x) * 255.0).numpy().transpose(1, 2, 0), target)   # signed levels
    delta = cv2.resize(np.ascontiguousarray(delta), (frame.shape[1], frame.shape[0]),
                       interpolation=cv2.INTER_LINEAR)
    return np.clip(frame.astype(np.float32) + delta, 0, 255).round().astype(np.uint8)


def attack_frames(frame_list: list[np.ndarray], labels: np.ndarray, adv: np.ndarray,
                  target: pipeline.Target, cfg: BundleBagConfig,
                  progress: Progress | None = None) -> list[np.ndarray]:
    """Return the frames with the ``adv`` ones replaced by their PGD-attacked versions."""
    out = list(frame_list)
    where = np.flatnonzero(adv)
    attack = evaluation.eval_attacks(cfg.seed, eps=cfg.eps)['pgd']
    batch = 50
    for start in range(0, len(where), batch):
        idx = where[start:start + batch]
        x = torch.cat([target.preprocess(frame_list[i], 'bgr8') for i in idx])
        y = torch.from_numpy(labels[idx]).to(x.device)
        x_adv = attack(target.model, x, y).cpu()
        x = x.cpu()
        for j, i in enumerate(idx):
            out[i] = adversarial_frame(frame_list[i], x[j], x_adv[j], target)
        if progress is not None:
            progress(min(start + batch, len(where)), len(where), {'stage': 'pgd'})
    return out


def make_bundle_bag(out, target: pipeline.Target, source: dict, cfg: BundleBagConfig,
                    key: str = '', overwrite: bool = False,
                    progress: Progress | None = None) -> dict:
    """
    Write a target's demo bag from a frame source; return its record (also its custom data).

    Frame ``i`` is stamped ``start_ns + i / rate_hz``; its truth's ``label``
    indexes the target's classes. The target's accuracy on the clean and
    the attacked frames is measured on the frames as stored.
    """
    cfg.check()
    labels_of = list(target.labels) if target.labels else None
    found = load_source(source, labels_of, cfg.frames, cfg.seed)
    n = len(found)
    rng = np.random.default_rng(cfg.seed)
    adv = np.zeros(n, dtype=bool)
    adv[rng.choice(n, size=int(round(n * cfg.adversarial_fraction)), replace=False)] = True
    images = at_camera_size(found.images, cfg.camera_size)
    frame_list = attack_frames(images, found.labels, adv, target, cfg, progress)
    out = prepare_output(out, overwrite)
    record = {**asdict(cfg), 'format': FORMAT, 'key': key, 'model_hash': target.hash,
              'bundle': str(target.bundle.root) if target.bundle is not None else None,
              'source': source, 'frames': n, 'requested_frames': cfg.frames,
              'clean': int((~adv).sum()), 'adversarial': int(adv.sum()), 'encoding': 'bgr8',
              'size': int(frame_list[0].shape[0]), 'width': int(frame_list[0].shape[1]),
              'frame_bytes': int(round(np.mean([f.size for f in frame_list])))}

    def messages():
        for i, frame in enumerate(frame_list):
            stamp = cfg.start_ns + int(round(i * 1e9 / cfg.rate_hz))
            label = int(found.labels[i])
            truth = demo_truth(stamp, cfg.frame_id, i, found.names[i], label, bool(adv[i]),
                               found.classes[label])
            header = frame_header(stamp, cfg.frame_id)
            yield stamp, truth, conversions.image_to_msg(frame, 'bgr8', header=header)

    write_camera_bag(out, messages(), n, record, storage=cfg.storage,
                     camera_topic=absolute(cfg.camera_topic), truth_topic=cfg.truth_topic,
                     progress=progress)
    with torch.no_grad():
        pred = np.array([int(target.model(target.preprocess(f, 'bgr8')).argmax())
                         for f in frame_list])
    correct = pred == found.labels

    def acc(mask):
        return round(float(correct[mask].mean()), 4) if mask.any() else None

    return {**record, 'bag': str(out),
            'target_accuracy': {'clean': acc(~adv), 'adversarial': acc(adv)}}


def bag_key(target: pipeline.Target, source: dict, cfg: BundleBagConfig) -> str:
    """Return the cache key of a target's demo bag: target hash, source content, settings."""
    text = json.dumps({'format': FORMAT, 'model': target.hash, 'source': source_identity(source),
                       'settings': asdict(cfg)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_bundle_bag(target: pipeline.Target, source: dict, cfg: BundleBagConfig,
                      path: str | None = None, progress: Progress | None = None
                      ) -> tuple[str, dict]:
    """
    Return ``(path, record)`` of a target's demo bag, made first if missing or made otherwise.

    ``path`` None: ``out/demo_bags/<target hash>-<key>``.
    """
    key = bag_key(target, source, cfg)
    cached = path is None
    path = path or str(Path(DEMO_BAGS) / f'{target.hash}-{key}')
    p = Path(path)
    if p.exists():
        meta = demo_metadata(p)
        if meta.get('key') == key:
            if cached:
                os.utime(p)              # used now: the last to be pruned
            return path, meta
    record = make_bundle_bag(p, target, source, cfg, key, overwrite=p.exists(),
                             progress=progress)
    if cached:
        prune_cache(p.parent, KEEP_CACHED)
    return path, record


def prune_cache(folder, keep: int = KEEP_CACHED) -> list[str]:
    """
    Remove all but the ``keep`` demo bags of ``folder`` used last; return what was removed.

    Only folders named as the cache names its bags (``<target hash>-<key>``) are
    touched: anything else a user put there stays.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    bags = [d for d in folder.iterdir()
            if d.is_dir() and not d.is_symlink() and CACHED_NAME.fullmatch(d.name)]
    bags.sort(key=lambda d: d.stat().st_mtime, reverse=True)
    removed = []
    for d in bags[max(0, keep):]:
        shutil.rmtree(d, ignore_errors=True)
        removed.append(str(d))
    return removed
