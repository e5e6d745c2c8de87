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
``edge-denoise eval --bundle B``: gray-box and white-box accuracy on a bundle's held-out data.

A tiny bundle is made the way a user makes one (a 40-image 3x32x32
ImageFolder of scenes, random mobilenet_v3_small weights, ``train denoiser``
through the CLI in-process); eval reads it and never writes its card. The
white-box PGD is the gray-box one run on target(defense(x)): with no defense
it is the same attack, example for example.
"""

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn
import torchvision

from edge_denoise_ros import cli
from edge_denoise_ros.commands.heldout import DEFAULT_EPS
from edge_denoise_ros.core import attacks, data, datasets, evaluation, frames, models, pipeline
from edge_denoise_ros.core import scenes
from edge_denoise_ros.core.deepn_jpeg import JpegDefense
from edge_denoise_ros.core.dunet import build_dunet, DUNetConfig

SIZE = 32
ATTACKS = ('clean', 'fgsm', 'pgd', evaluation.WHITEBOX_PGD)


def _cli(*argv):
    """Run the CLI in-process; return its status, parsed JSON (or None) and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(list(argv))
    lines = out.getvalue().strip().splitlines()
    result = json.loads(lines[-1]) if rc == 0 and '--json' in argv else None
    return rc, result, err.getvalue()


@pytest.fixture(scope='module')
def bundle(tmp_path_factory):
    """Make a bundle with the user's commands: scenes folder, weights, train denoiser."""
    root = tmp_path_factory.mktemp('eval_bundle')
    with models.compute_threads(1):
        x, y = scenes.make_scenes('train', 40, scenes.SceneConfig(size=SIZE))
        datasets.write_image_folder(root / 'D', x, y, data.CLASSES)
        torch.manual_seed(0)
        models.save_state_dict(torchvision.models.mobilenet_v3_small(num_classes=10),
                               root / 'w.pt')
        rc, _, err = _cli('train', 'denoiser', '--model', 'mobilenet_v3_small',
                          '--weights', str(root / 'w.pt'), '--data', str(root / 'D'),
                          '--input', f'3x{SIZE}x{SIZE}', '--out', str(root / 'B'),
                          '--epochs', '1', '--n-train', '32', '--width', '0.125',
                          '--batch-size', '16', '--eval-limit', '16')
    assert rc == 0, err
    return root / 'B'


@pytest.fixture(scope='module')
def report(bundle):
    card = (bundle / 'card.json').read_bytes()
    with models.compute_threads(1):
        rc, result, err = _cli('eval', '--bundle', str(bundle), '--json', '--limit', '16')
    assert rc == 0, err
    return result, card


def test_eval_reports_every_defense_under_every_attack(report, bundle):
    result, _ = report
    acc = result['accuracy']
    assert set(acc) == {'none', 'jpeg', 'dunet'}          # no dunet_d trained: not offered
    for row in acc.values():
        assert tuple(row) == ATTACKS
        assert all(0.0 <= v <= 1.0 for v in row.values()), row
    assert result['bundle'] == str(bundle) and result['model'] == 'mobilenet_v3_small'
    assert result['n'] == 8                               # the seeded fifth of 40 held out
    assert result['eps'] == DEFAULT_EPS == result['attacks']['pgd']['eps']
    assert result['attacks'][evaluation.WHITEBOX_PGD] == result['attacks']['pgd']
    assert result['whitebox']['gradients'] == {'none': 'exact', 'dunet': 'exact',
                                               'jpeg': 'bpda'}


def test_whitebox_without_a_defense_is_the_gray_box_pgd(report):
    acc = report[0]['accuracy']['none']
    assert acc[evaluation.WHITEBOX_PGD] == acc['pgd']


def test_eval_leaves_the_bundle_card_as_it_was(report, bundle):
    assert (bundle / 'card.json').read_bytes() == report[1]


def test_no_whitebox_and_a_chosen_eps_and_defenses(bundle):
    with models.compute_threads(1):
        rc, result, err = _cli('eval', '--bundle', str(bundle), '--json', '--limit', '4',
                               '--no-whitebox', '--eps', '0.01', '--defenses', 'none,jpeg')
    assert rc == 0, err
    assert result['whitebox'] is None and result['eps'] == 0.01
    assert {d: tuple(r) for d, r in result['accuracy'].items()} == {
        'none': ATTACKS[:3], 'jpeg': ATTACKS[:3]}


def test_generated_held_out_frames_are_made_again(bundle, tmp_path):
    """A card whose data folders are gone: the generator's test split, labelled by name."""
    moved = tmp_path / 'B'
    shutil.copytree(bundle, moved)
    card = json.loads((moved / 'card.json').read_text())
    card['data'].update(train=str(tmp_path / 'gone'), generator={'seed': 0, 'size': SIZE})
    (moved / 'card.json').write_text(json.dumps(card))
    with models.compute_threads(1):
        rc, result, err = _cli('eval', '--bundle', str(moved), '--json', '--limit', '6',
                               '--attacks', 'clean', '--no-whitebox', '--defenses', 'none')
        target = pipeline.Target(bundle=str(moved))
        rgb, fashion = scenes.make_scenes('test', 6, scenes.SceneConfig(size=SIZE))
        x = torch.from_numpy(np.stack([frames.prepare_pixels(
            img[:, :, ::-1].copy(), target.input_shape, target.preparation) for img in rgb]))
        y = torch.tensor([target.labels.index(datasets.safe_class_dir(data.CLASSES[k]))
                          for k in fashion])
        want = evaluation.accuracy(target.model, x, y)
    assert rc == 0, err
    assert result['n'] == 6 and result['accuracy']['none']['clean'] == want


def test_eval_of_a_folder_that_is_not_a_bundle(tmp_path):
    rc, _, err = _cli('eval', '--bundle', str(tmp_path), '--json')
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and 'not a bundle' in err, err


# --- the white-box attack itself (core) ---------------------------------------------------

@pytest.fixture
def tiny():
    """Return a seeded 3-channel classifier and images it labels itself (clean accuracy 1)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 5)).eval()
    x = torch.rand(12, 3, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def test_whitebox_through_identity_makes_the_gray_box_examples(tiny):
    model, x, y = tiny
    eps = 0.01
    with models.compute_threads(1):
        gray = evaluation.eval_attacks(eps=eps)['pgd']
        white = evaluation.whitebox_attacks(eps=eps)[evaluation.WHITEBOX_PGD]()
        other = evaluation.whitebox_attacks(seed=1, eps=eps)[evaluation.WHITEBOX_PGD]()
        composite = attacks.through(model, nn.Identity(), x)
        for i in range(0, 12, 5):       # batch after batch: the same random starts
            xb, yb = x[i:i + 5], y[i:i + 5]
            xa = gray(model, xb, yb)
            assert torch.equal(xa, white(composite, xb, yb))
            assert not torch.equal(xa, other(composite, xb, yb))   # the check has teeth
        acc = evaluation.evaluate(model, x, y, {'none': nn.Identity()},
                                  evaluation.eval_attacks(eps=eps), batch_size=5,
                                  whitebox=evaluation.whitebox_attacks(eps=eps))['none']
    assert 0 < acc['pgd'] < 1 and acc[evaluation.WHITEBOX_PGD] == acc['pgd']


def test_bpda_through_jpeg_is_the_targets_gradient_at_the_defended_image(tiny):
    model, x, y = tiny
    jpeg = JpegDefense()
    assert not attacks.passes_gradient(jpeg, x)
    assert attacks.passes_gradient(nn.Identity(), x)
    assert attacks.passes_gradient(build_dunet(DUNetConfig.scaled(3, 8, 0.125)).eval(), x)
    composite = attacks.through(model, jpeg, x)
    assert isinstance(composite[0], attacks.Bpda)
    got = attacks.input_gradient(composite, x, y)
    want = attacks.input_gradient(model, jpeg(x), y)
    assert got.abs().sum() > 0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
