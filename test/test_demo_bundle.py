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
A user's bundle through the demo: ``train denoiser`` on a 64-image ImageFolder, then ``demo``.

The bundle is made as a user makes it (the CLI, in this process): a
3x32x32 ImageFolder of camera-like scenes, a mobilenet_v3_small with random
weights, ``train denoiser``. ``demo --bundle`` then serves it through
``edge_process`` and ``host_node`` on a private localhost domain, every
frame accounted for; with the lossless codec the pipeline's classes are the
in-process model's. The demo bag keeps the folder's frames as they are (the
attacked ones within the budget), and a bag with ground truth is training
data for ``train``.
"""

import json
import os
from pathlib import Path
import shutil

import cv2
import numpy as np
import pytest
import torch
import torchvision

from edge_denoise_ros import cli
from edge_denoise_ros.core import data, datasets, frames, models, pipeline
from edge_denoise_ros.core.models import compute_threads
from edge_denoise_ros.core.scenes import make_scenes, SceneConfig
from edge_denoise_ros.harness import labelled_frames
from edge_denoise_ros.harness.bundle_bag import (BundleBagConfig, ensure_bundle_bag,
                                                 prune_cache)
from edge_denoise_ros.harness.demo_bag import read_ground_truth

pytestmark = pytest.mark.ros
FRAMES = 8
EPS_LEVELS = 8      # the demo's budget on a bundle, 8/255, in 8-bit levels
TRAIN = ['--epochs', '1', '--width', '0.125', '--batch-size', '16']


def random_mobilenet(images: np.ndarray) -> torch.nn.Module:
    """
    Return mobilenet_v3_small (10 classes) with random weights, batch norm statistics measured.

    With torchvision's initial running statistics the logits are ~1e-10 apart
    and a frame's class is rounding noise; measured on the images (as
    training would) they are ~1e-2 apart, so two processes agree on it.
    """
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(num_classes=10)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None      # a plain average over the batch
    mean = torch.tensor(frames.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(frames.IMAGENET_STD).view(1, 3, 1, 1)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    net.train()
    with torch.no_grad():
        net((x - mean) / std)
    return net.eval()


@pytest.fixture(scope='module')
def user(tmp_path_factory):
    """Make a 64-image ImageFolder, random weights, and a bundle of them (train denoiser)."""
    root = tmp_path_factory.mktemp('user')
    images, labels = make_scenes('train', 64, SceneConfig(size=32))
    datasets.write_image_folder(root / 'D', images, labels, data.CLASSES)
    models.save_state_dict(random_mobilenet(images), root / 'W.pt')
    with compute_threads(1):
        code = cli.main(['train', 'denoiser', '--model', 'mobilenet_v3_small',
                         '--weights', str(root / 'W.pt'), '--data', str(root / 'D'),
                         '--input', '3x32x32', '--out', str(root / 'B'), '--n-train', '48',
                         '--eval-limit', '16', *TRAIN])
    assert code == 0
    return root


@pytest.fixture(scope='module')
def bag(user):
    """Make the bundle's demo bag of 8 folder images (the one demo makes with these settings)."""
    with compute_threads(1):
        target = pipeline.Target(bundle=str(user / 'B'))
        source = labelled_frames.source_of(str(user / 'D'), target.bundle)
        cfg = BundleBagConfig(eps=EPS_LEVELS / 255, frames=FRAMES)
        path, record = ensure_bundle_bag(target, source, cfg, str(user / 'bag'))
    return path, record, target


def test_train_denoiser_makes_a_bundle_that_demo_serves(user, bag, capsys):
    bundle = str(user / 'B')
    code = cli.main(['demo', '--bundle', bundle, '--data', str(user / 'D'), '--frames',
                     str(FRAMES), '--cut', 'net.features.3', '--codec', 'lossless',
                     '--bag', bag[0], '--rate', '0.5', '--json'])
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, s
    assert not s['crashed'] and set(s['exit_codes'].values()) == {0}, s
    assert s['bundle'] == bundle
    assert (s['defense'], s['cut'], s['codec']) == ('dunet', 'net.features.3', 'lossless')
    assert s['played'] == FRAMES
    assert s['classified'] + s['dropped'] == s['played']
    assert sum(s['drop_reasons'].values()) == s['dropped'], s['drop_reasons']
    assert 'unaccounted' not in s['drop_reasons']
    assert s['classified'] >= 0.9 * s['played'], s
    assert s['agreement'] >= 0.99, s
    for kind in ('clean', 'adversarial'):
        assert abs(s['accuracy'][kind] - s['reference']['defended'][kind]) <= 0.01, s
    assert s['raw_bytes_per_frame'] == 32 * 32 * 3


def test_the_demo_bag_holds_the_folder_images_half_attacked(user, bag):
    path, record, target = bag
    assert (record['frames'], record['clean'], record['adversarial']) == (FRAMES, 4, 4)
    got = labelled_frames.read_bag_frames(path, target.labels)
    truths = sorted(read_ground_truth(path).values(), key=lambda t: t['seq'])
    assert got.classes == list(target.labels)
    for frame, label, truth in zip(got.images, got.labels, truths):
        source = cv2.imread(truth['index'], cv2.IMREAD_COLOR)    # the image file it came from
        assert frame.shape == source.shape == (32, 32, 3)       # the natural size
        folder = truth['index'].split('/')[-2]
        assert target.labels[label] == folder == truth['label_name']
        change = np.abs(frame.astype(int) - source).max()
        assert 0 < change <= EPS_LEVELS if truth['adversarial'] else change == 0


def test_a_bag_with_ground_truth_is_training_data(user, bag, tmp_path):
    path, _, target = bag
    images = labelled_frames.load_images(
        path, target.input_shape, lambda img, shape: frames.prepare_pixels(
            img, shape, target.preparation), target.labels)
    assert images.x.shape == (FRAMES, 3, 32, 32) and images.classes == list(target.labels)
    bundle = tmp_path / 'B'
    shutil.copytree(user / 'B', bundle, ignore=shutil.ignore_patterns('checkpoints'))
    with compute_threads(1):
        code = cli.main(['train', 'denoiser', '--data', path, '--out', str(bundle),
                         '--n-train', '6', '--eval-limit', '2', *TRAIN])
    assert code == 0
    card = json.loads((bundle / 'card.json').read_text())
    assert card['data']['train'] == path
    assert card['data']['n_train'] + card['data']['n_test'] == FRAMES


def test_the_demo_bag_cache_keeps_the_bags_used_last_and_nothing_else_is_touched(tmp_path):
    names = [f'{i:012x}-{i:016x}' for i in range(6)]
    for age, name in enumerate(names):                 # names[0] the newest ... names[5] oldest
        (tmp_path / name).mkdir()
        (tmp_path / name / 'metadata.yaml').write_text('x')
        os.utime(tmp_path / name, (1e9 - age * 60, 1e9 - age * 60))
    (tmp_path / 'my_recording').mkdir()                # a user's bag: not the cache's
    removed = prune_cache(tmp_path, keep=4)
    assert sorted(Path(r).name for r in removed) == sorted(names[4:])
    assert sorted(d.name for d in tmp_path.iterdir()) == sorted(names[:4] + ['my_recording'])
    assert prune_cache(tmp_path / 'absent') == []
