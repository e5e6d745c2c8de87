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
The demo camera bag: Fashion-MNIST test frames, half clean and half PGD-adversarial.

:func:`make_demo_bag` writes the frames (``sensor_msgs/Image``, or
``CompressedImage``) with the ground truth of every frame on a second topic
(``std_msgs/String`` JSON), and the settings it was made with in the bag's
custom data. Seeded: the same settings give the same messages.
:func:`ensure_bag` remakes it when it is missing or the target's weights
changed. Test and demo data, not a product node.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import json
from pathlib import Path
import shutil

import cv2
import numpy as np
from rosbags.rosbag2 import Writer
from std_msgs.msg import Header, String
import torch

from ..core import attacks, data, models
from ..ros import conversions
from ..ros.bag import (absolute, BAG_VERSION, bag_info, camera_qos_profile, canonical_cdr,
                       Progress, read_messages, reliable_qos_profile, rosbags_qos,
                       storage_plugin, typestore)

DEFAULT_DEMO_BAG = 'out/demo_bag'
DEMO_METADATA_KEY = 'edge_denoise_demo'


@dataclass
class DemoBagConfig:
    """Settings of the demo camera bag (every one recorded in the bag's custom data)."""

    frames: int = 300                  # 10 s of camera at 30 Hz
    size: int = 224                    # frame side: a multiple of 28 (nearest-neighbour x8)
    width: int = 0                     # 0: square frames; else size high, width wide (stretched)
    encoding: str = 'bgr8'
    rate_hz: float = 30.0
    adversarial_fraction: float = 0.5
    eps: float = 0.1                   # PGD: L-inf budget, steps, step size (pixels in [0, 1])
    steps: int = 10
    step_size: float = 0.025
    seed: int = 0
    storage: str = 'mcap'
    compressed: str | None = None      # None: sensor_msgs/Image; 'png' or 'jpeg': CompressedImage
    jpeg_quality: int = 95
    camera_topic: str = '/image_raw'   # '/compressed' is appended for CompressedImage frames
    truth_topic: str = '/ground_truth'
    frame_id: str = 'camera'
    start_ns: int = 1_767_225_600 * 10**9   # 2026-01-01T00:00:00Z: the same bag every time
    model: str = models.DEFAULT_MODEL

    def check(self) -> None:
        """Raise ``ValueError`` for a bad setting."""
        if self.frames < 1:
            raise ValueError(f'frames must be >= 1, got {self.frames}')
        if self.width and (min(self.width, self.size) < data.INPUT_SIZE
                           or self.width % 2 or self.size % 2):
            raise ValueError(f'width and height must be even and >= {data.INPUT_SIZE}, got '
                             f'{self.width}x{self.size}')
        if not self.width and (self.size < data.INPUT_SIZE or self.size % data.INPUT_SIZE):
            raise ValueError(f'size must be a multiple of {data.INPUT_SIZE}, got {self.size}')
        if self.encoding not in data.ENCODINGS:
            raise ValueError(f'encoding must be one of {data.ENCODINGS}, got {self.encoding!r}')
        if not self.rate_hz > 0:
            raise ValueError(f'rate must be > 0 Hz, got {self.rate_hz}')
        if not 0 <= self.adversarial_fraction <= 1:
            raise ValueError(f'adversarial fraction must be in [0, 1], got '
                             f'{self.adversarial_fraction}')
        if self.compressed not in (None, 'png', 'jpeg'):
            raise ValueError(f"compressed must be None, 'png' or 'jpeg', got {self.compressed!r}")
        storage_plugin(self.storage)

    @property
    def image_topic(self) -> str:
        """Return the camera topic the frames are written on."""
        base = absolute(self.camera_topic)
        return base + '/compressed' if self.compressed else base


def demo_truth(stamp_ns: int, frame_id: str, seq: int, index: int | str, label: int,
               adversarial: bool, label_name: str | None = None) -> dict:
    """
    Return the ground truth record of one demo frame (the JSON of the truth topic).

    ``label`` indexes the target's classes; ``label_name`` names it (default:
    the Fashion-MNIST class of that index).
    """
    return {'stamp': {'sec': stamp_ns // 10**9, 'nanosec': stamp_ns % 10**9},
            'stamp_ns': stamp_ns, 'frame_id': frame_id, 'seq': seq, 'index': index,
            'label': label, 'label_name': data.CLASSES[label] if label_name is None
            else label_name, 'adversarial': adversarial}


def frame_header(stamp: int, frame_id: str) -> Header:
    """Return a camera header stamped ``stamp`` (ns)."""
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = stamp // 10**9, stamp % 10**9
    return header


def stamp_ns(header) -> int:
    """Return a header's stamp in nanoseconds (the key frames and truths are matched by)."""
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def read_ground_truth(path, topic: str = '/ground_truth') -> dict[int, dict]:
    """
    Return a demo bag's ground truth by frame stamp: ``{stamp_ns: demo_truth record}``.

    Reads only the truth topic, so a consumer can account for every frame
    (clean or adversarial, its label) without replaying the bag.
    """
    truths = {}
    for _, _, _, msg in read_messages(path, [topic]):
        record = json.loads(msg.data)
        truths[int(record['stamp_ns'])] = record
    if not truths:
        raise ValueError(f'no ground truth on {absolute(topic)} in bag {path}')
    return truths


def demo_metadata(path) -> dict:
    """Return the settings a demo bag was made with (its custom data), ``{}`` for other bags."""
    text = bag_info(path)['custom_data'].get(DEMO_METADATA_KEY)
    return json.loads(text) if text else {}


def demo_samples(cfg: DemoBagConfig, model=None, progress: Progress | None = None):
    """
    Choose and attack the demo's test samples; return ``(images, labels, indices, adv)``.

    ``images`` uint8 ``(N, 28, 28)``: the test images at seeded random indices,
    the ``adv`` ones (a seeded choice of ``round(N * fraction)``) replaced by
    PGD against ``model`` (default: the shipped target), quantised to uint8.
    """
    rng = np.random.default_rng(cfg.seed)
    images, labels = data.load_fashion_mnist('test')
    if cfg.frames > len(labels):
        raise ValueError(f'at most {len(labels)} frames (the test split), got {cfg.frames}')
    indices = np.sort(rng.choice(len(labels), size=cfg.frames, replace=False))
    images, labels = images[indices].copy(), labels[indices]
    n_adv = int(round(cfg.frames * cfg.adversarial_fraction))
    adv = np.zeros(cfg.frames, dtype=bool)
    adv[rng.choice(cfg.frames, size=n_adv, replace=False)] = True
    if n_adv:
        model = model if model is not None else models.build_target(cfg.model)
        models.eval_mode(model)
        generator = torch.Generator().manual_seed(cfg.seed)
        where = np.flatnonzero(adv)
        batch = 100
        for start in range(0, len(where), batch):
            idx = where[start:start + batch]
            x = data.to_tensor(images[idx])
            y = torch.from_numpy(labels[idx])
            xa = attacks.pgd(model, x, y, cfg.eps, cfg.steps, cfg.step_size,
                             random_start=True, generator=generator)
            images[idx] = data.to_uint8(xa)
            if progress is not None:
                progress(min(start + batch, len(where)), len(where), {'stage': 'pgd'})
    return images, labels, indices, adv


def demo_frame_msg(image, stamp: int, cfg: DemoBagConfig):
    """Build the camera message of one 28x28 sample (Image, or CompressedImage if asked)."""
    header = frame_header(stamp, cfg.frame_id)
    if cfg.width:   # a camera's aspect: the sample stretched by nearest neighbour
        big = cv2.resize(image, (cfg.width, cfg.size), interpolation=cv2.INTER_NEAREST)
        frame = big if cfg.encoding == 'mono8' else np.repeat(big[:, :, None], 3, axis=2)
    else:
        frame = data.sample_to_frame(image, cfg.size, cfg.encoding)
    if cfg.compressed:
        return conversions.image_to_compressed_msg(frame, cfg.encoding, cfg.compressed,
                                                   quality=cfg.jpeg_quality, header=header)
    return conversions.image_to_msg(frame, cfg.encoding, header=header)


def prepare_output(out, overwrite: bool) -> Path:
    """Clear the way for a new bag at ``out`` (replacing only a rosbag2 with ``overwrite``)."""
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise ValueError(f'{out} exists already; pass overwrite (--force) to replace it')
        if not (out / 'metadata.yaml').is_file():
            raise ValueError(f'{out} exists and is not a rosbag2 directory; not replacing it')
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def write_camera_bag(out: Path, frames, total: int, record: dict, *, storage: str,
                     camera_topic: str, truth_topic: str, compressed: bool = False,
                     progress: Progress | None = None) -> None:
    """
    Write a bag in the demo bag's layout from ``(stamp, truth, camera msg)`` triples.

    The truth (``std_msgs/String`` JSON) is written at the frame's stamp and
    the frame 1 µs later, so a player delivers the truth first; ``record``
    goes into the bag's custom data. A failed write leaves no bag behind.
    """
    camera_cls = 'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image'
    store = typestore()
    writer = Writer(out, version=BAG_VERSION, storage_plugin=storage_plugin(storage))
    writer.set_custom_data(DEMO_METADATA_KEY, json.dumps(record, sort_keys=True))
    writer.open()
    try:
        truth_conn = writer.add_connection(
            absolute(truth_topic), 'std_msgs/msg/String', typestore=store,
            offered_qos_profiles=[rosbags_qos(reliable_qos_profile())])
        image_conn = writer.add_connection(
            camera_topic, camera_cls, typestore=store,
            offered_qos_profiles=[rosbags_qos(camera_qos_profile())])
        for i, (stamp, truth, msg) in enumerate(frames):
            writer.write(truth_conn, stamp, canonical_cdr(String(data=json.dumps(truth))))
            writer.write(image_conn, stamp + 1000, canonical_cdr(msg))
            if progress is not None:
                progress(i + 1, total, {'stage': 'write'})
    except BaseException:
        writer.close()
        shutil.rmtree(out, ignore_errors=True)
        raise
    writer.close()


def make_demo_bag(out=DEFAULT_DEMO_BAG, cfg: DemoBagConfig | None = None, model=None,
                  overwrite: bool = False, progress: Progress | None = None) -> dict:
    """
    Write the demo camera bag; return a summary (counts, size, the target's accuracy on it).

    Frame ``i`` is stamped ``start_ns + i / rate_hz``; its ground truth (a
    ``std_msgs/String`` JSON, see ``demo_truth``) is written at the same bag
    time and its frame 1 µs later, so a player delivers the truth first. The
    target's accuracy on the clean and the adversarial frames is measured on
    the frames as stored (decoded and preprocessed as a node would).
    """
    cfg = cfg or DemoBagConfig()
    cfg.check()
    out = prepare_output(out, overwrite)
    model = model if model is not None else models.build_target(cfg.model)
    models.eval_mode(model)
    images, labels, indices, adv = demo_samples(cfg, model, progress)

    camera_cls = 'sensor_msgs/msg/CompressedImage' if cfg.compressed else 'sensor_msgs/msg/Image'
    inputs = []
    record = {**asdict(cfg), 'model_hash': models.state_hash(model),
              'clean': int((~adv).sum()), 'adversarial': int(adv.sum())}

    def frames():
        for i in range(cfg.frames):
            stamp = cfg.start_ns + int(round(i * 1e9 / cfg.rate_hz))
            truth = demo_truth(stamp, cfg.frame_id, i, int(indices[i]), int(labels[i]),
                               bool(adv[i]))
            msg = demo_frame_msg(images[i], stamp, cfg)
            frame, encoding = conversions.camera_msg_to_image(msg)
            inputs.append(data.preprocess_frame(frame, encoding))
            yield stamp, truth, msg

    write_camera_bag(out, frames(), cfg.frames, record, storage=cfg.storage,
                     camera_topic=cfg.image_topic, truth_topic=cfg.truth_topic,
                     compressed=bool(cfg.compressed), progress=progress)
    with torch.no_grad():
        pred = torch.cat([model(x) for x in torch.cat(inputs).split(250)]).argmax(1).numpy()
    correct = pred == labels

    def acc(mask):
        return round(float(correct[mask].mean()), 4) if mask.any() else None

    size = sum(p.stat().st_size for p in out.rglob('*') if p.is_file())
    return {'bag': str(out), 'storage': cfg.storage, 'frames': cfg.frames,
            'clean': int((~adv).sum()), 'adversarial': int(adv.sum()),
            'camera_topic': cfg.image_topic, 'camera_type': camera_cls,
            'truth_topic': absolute(cfg.truth_topic), 'size': cfg.size, 'width': cfg.width,
            'encoding': cfg.encoding, 'rate_hz': cfg.rate_hz,
            'duration_s': round((cfg.frames - 1) / cfg.rate_hz, 6), 'bytes': size,
            'target_accuracy': {'clean': acc(~adv), 'adversarial': acc(adv)},
            'model_hash': record['model_hash'], 'seed': cfg.seed}


def ensure_bag(path: str, frames: int, progress=None, width: int = 0,
               height: int = DemoBagConfig.size) -> dict:
    """
    Make the demo bag if it is missing or was made otherwise; return its metadata.

    Otherwise: with other weights, another frame count or (``width`` > 0:
    ``width`` x ``height`` frames) another frame size.
    """
    want = models.state_hash(models.build_model())
    p = Path(path)
    if p.exists():
        meta = demo_metadata(p)
        if (meta.get('model_hash') == want and meta.get('frames') == frames
                and meta.get('width', 0) == width and (not width or meta.get('size') == height)):
            return meta
    cfg = DemoBagConfig(frames=frames, width=width, size=height if width else DemoBagConfig.size)
    make_demo_bag(p, cfg, overwrite=p.exists(), progress=progress)
    return demo_metadata(p)
