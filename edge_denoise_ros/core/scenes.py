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
Camera-like scenes: Fashion-MNIST items as a robot camera would see them.

Each scene is an RGB uint8 ``(S, S, 3)`` frame: a random crop of a real
photograph (the ones scikit-image's wheel ships) under random lighting, with
one Fashion-MNIST item on it at a random scale, position and rotation, in a
random colour, then global gain, gamma, blur and sensor noise. Train scenes
come from Fashion-MNIST's train split and test scenes from its test split;
every scene is a pure function of ``(split, index, seed)``, so a folder can
be remade bit for bit. The photographs are read with OpenCV from the
scikit-image package folder; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import data
from .libwarnings import library_warnings

# scikit-image's real photographs (its synthetic test patterns are left out).
PHOTOS = (
    'astronaut.png', 'brick.png', 'camera.png', 'cell.png', 'chelsea.png', 'clock_motion.png',
    'coffee.png', 'coins.png', 'grass.png', 'gravel.png', 'hubble_deep_field.jpg', 'ihc.png',
    'moon.png', 'motorcycle_left.png', 'motorcycle_right.png', 'page.png', 'retina.jpg',
    'rocket.jpg', 'text.png',
)
SPLIT_SEED = {'train': 0, 'test': 1}


def photo_dir() -> Path:
    """Return scikit-image's data folder (found without importing scikit-image)."""
    spec = importlib.util.find_spec('skimage')
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError('scikit-image is not installed: its photographs are the scene '
                                'backgrounds (pip install scikit-image)')
    return Path(list(spec.submodule_search_locations)[0]) / 'data'


def load_photos(folder: Path | None = None) -> list[np.ndarray]:
    """Return the background photographs as RGB uint8 arrays."""
    folder = folder or photo_dir()
    photos = []
    for name in PHOTOS:
        # libpng says some of these carry an odd ICC profile ("iCCP: known incorrect sRGB
        # profile"): harmless for a background, and not for a user's terminal.
        with library_warnings():
            img = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if img is not None:
            photos.append(np.ascontiguousarray(img[:, :, ::-1]))
    if len(photos) < 5:
        raise FileNotFoundError(f'{folder}: found {len(photos)} of the {len(PHOTOS)} '
                                f'background photographs')
    return photos


@dataclass(frozen=True)
class SceneConfig:
    """Ranges every scene draws from (sizes in pixels of an ``size`` x ``size`` frame)."""

    size: int = 96
    item_scale: tuple[float, float] = (0.45, 0.85)   # item side / frame side
    rotation_deg: float = 25.0
    crop_scale: tuple[float, float] = (0.25, 1.0)     # background crop side / photo's short side
    light: tuple[float, float] = (0.55, 1.35)         # global gain
    gamma: tuple[float, float] = (0.75, 1.35)
    noise_std: tuple[float, float] = (0.0, 6.0)       # sensor noise, in 8-bit levels
    blur_p: float = 0.3

    def __post_init__(self):
        if self.size < 32:
            raise ValueError(f'scene size must be >= 32, got {self.size}')


def _background(photo: np.ndarray, cfg: SceneConfig, rng: np.random.Generator) -> np.ndarray:
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(*cfg.crop_scale))
    side = max(side, 16)
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    crop = photo[y0:y0 + side, x0:x0 + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    bg = cv2.resize(np.ascontiguousarray(crop), (cfg.size, cfg.size),
                    interpolation=cv2.INTER_AREA).astype(np.float32)
    tint = rng.uniform(0.8, 1.2, 3).astype(np.float32)          # white balance
    return bg * tint * rng.uniform(0.6, 1.1)                     # background exposure


def render(item: np.ndarray, photo: np.ndarray, cfg: SceneConfig,
           rng: np.random.Generator) -> np.ndarray:
    """Compose one scene from a 28x28 item and a background photo; RGB uint8."""
    s = cfg.size
    bg = _background(photo, cfg, rng)
    side = s * rng.uniform(*cfg.item_scale)
    angle = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)
    scale = side / item.shape[0]
    cx = rng.uniform(side / 2 - 0.1 * side, s - side / 2 + 0.1 * side)
    cy = rng.uniform(side / 2 - 0.1 * side, s - side / 2 + 0.1 * side)
    m = cv2.getRotationMatrix2D((item.shape[1] / 2, item.shape[0] / 2), angle, scale)
    m[0, 2] += cx - item.shape[1] / 2
    m[1, 2] += cy - item.shape[0] / 2
    texture = cv2.warpAffine(item.astype(np.float32) / 255.0, m, (s, s), flags=cv2.INTER_LINEAR,
                             borderValue=0.0)
    alpha = np.clip(texture * 2.5, 0.0, 1.0)[:, :, None]
    colour = rng.uniform(40, 255, 3).astype(np.float32)
    shade = 0.35 + 0.65 * texture[:, :, None]
    out = bg * (1 - alpha) + colour * shade * alpha
    # Lighting: a linear gradient across the frame, then gain and gamma.
    gx, gy = rng.uniform(-0.3, 0.3, 2)
    ramp = 1 + gx * np.linspace(-1, 1, s)[None, :] + gy * np.linspace(-1, 1, s)[:, None]
    out = out * ramp[:, :, None].astype(np.float32) * rng.uniform(*cfg.light)
    out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** rng.uniform(*cfg.gamma)
    if rng.random() < cfg.blur_p:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.2))
    out = out + rng.normal(0.0, rng.uniform(*cfg.noise_std), out.shape)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def make_scenes(split: str, count: int, cfg: SceneConfig = SceneConfig(), seed: int = 0,
                start: int = 0, photos: list[np.ndarray] | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """
    Return ``count`` scenes of ``split`` from ``start``: RGB uint8 ``(N, S, S, 3)``, labels.

    Scene ``i`` uses Fashion-MNIST item ``i`` of the split (cycling) and a
    generator seeded by ``(seed, split, i)``: any slice can be made alone.
    """
    if split not in SPLIT_SEED:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if count <= 0 or start < 0:
        raise ValueError(f'count must be positive and start >= 0, got {count}, {start}')
    images, labels = data.load_fashion_mnist(split)
    photos = photos or load_photos()
    out = np.empty((count, cfg.size, cfg.size, 3), np.uint8)
    ys = np.empty(count, np.int64)
    for j in range(count):
        i = start + j
        rng = np.random.default_rng((seed, SPLIT_SEED[split], i))
        k = i % len(images)
        photo = photos[int(rng.integers(len(photos)))]
        out[j] = render(images[k], photo, cfg, rng)
        ys[j] = labels[k]
    return out, ys


def make_items(split: str, count: int, seed: int = 0, start: int = 0,
               ) -> tuple[np.ndarray, np.ndarray]:
    """
    Return ``count`` items of ``split`` from ``start`` alone: RGB uint8 ``(N, 28, 28, 3)``, labels.

    Item ``i`` is Fashion-MNIST item ``i`` of the split (cycling), whole and
    upright on black, in a colour drawn as the scenes draw theirs from a
    generator seeded by ``(seed, split, i)``: the scenes without their
    clutter, a first stage for a classifier that learns the scenes next
    (it learns the items' shapes in minutes; from scratch the scenes take
    epochs before the loss moves).
    """
    if split not in SPLIT_SEED:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if count <= 0 or start < 0:
        raise ValueError(f'count must be positive and start >= 0, got {count}, {start}')
    images, labels = data.load_fashion_mnist(split)
    k = (start + np.arange(count)) % len(images)
    colours = np.stack([np.random.default_rng((seed, SPLIT_SEED[split], start + j))
                        .uniform(40, 255, 3) for j in range(count)]).astype(np.float32)
    rgb = images[k][:, :, :, None].astype(np.float32) / 255.0 * colours[:, None, None, :]
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8), labels[k].astype(np.int64)


def remake(record: dict, split: str, count: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Make scenes again from a ``data scenes`` record (``scenes.json``, a card's generator)."""
    try:
        cfg = SceneConfig(size=int(record['size']))
        seed = int(record['seed'])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f'not a scenes record: {record!r}') from None
    return make_scenes(split, count, cfg, seed=seed, start=start)
