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

"""FGSM and PGD against the shipped target: budgets, clamping, strength, determinism."""

import pytest
import torch

from edge_denoise_ros.core import attacks, data, evaluation, models


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def target():
    return models.build_model()


@pytest.fixture(scope='module')
def batch():
    return data.load_split_tensors('test', limit=200)


def linf(a, b):
    return (a - b).abs().flatten(1).max(1).values


def test_fgsm_stays_in_budget_and_hurts_the_target(target, batch):
    x, y = batch
    xa = attacks.fgsm(target, x, y, 0.1)
    assert xa.shape == x.shape and not xa.requires_grad
    assert xa.min() >= 0 and xa.max() <= 1
    assert linf(xa, x).max() <= 0.1 + 1e-6
    clean, adv = evaluation.accuracy(target, x, y), evaluation.accuracy(target, xa, y)
    assert clean > 0.9 and adv < clean - 0.3
    assert torch.equal(attacks.fgsm(target, x, y, 0.0), x)


def test_pgd_is_stronger_than_fgsm_and_seeded(target, batch):
    x, y = batch
    run = [attacks.pgd(target, x[:32], y[:32], 0.1, 10, 0.025,
                       generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    assert torch.equal(run[0], run[1])
    xa = attacks.pgd(target, x, y, 0.1, 10, 0.025, generator=torch.Generator().manual_seed(1))
    assert xa.min() >= 0 and xa.max() <= 1
    assert linf(xa, x).max() <= 0.1 + 1e-6
    assert evaluation.accuracy(target, xa, y) < 0.05
    assert evaluation.accuracy(target, xa, y) < evaluation.accuracy(
        target, attacks.fgsm(target, x, y, 0.1), y)


def test_per_image_budgets(target, batch):
    x, y = batch
    x, y = x[:8], y[:8]
    eps = torch.tensor([0.0, 0.02, 0.05, 0.1] * 2).view(-1, 1, 1, 1)
    for xa in (attacks.fgsm(target, x, y, eps),
               attacks.pgd(target, x, y, eps, 5, eps / 2, generator=torch.Generator())):
        assert torch.all(linf(xa, x) <= eps.flatten() + 1e-6)
        assert torch.equal(xa[0], x[0]) and torch.equal(xa[4], x[4])


def test_attacks_leave_the_model_alone(target, batch):
    x, y = batch
    before = models.state_hash(target)
    attacks.pgd(target, x[:16], y[:16], 0.1, 2, 0.05)
    assert all(p.grad is None for p in target.parameters())
    assert not target.training
    assert models.state_hash(target) == before


def test_bad_budgets():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 1])
    with pytest.raises(ValueError, match='eps'):
        attacks.fgsm(model, x, y, -0.1)
    with pytest.raises(ValueError, match='steps'):
        attacks.pgd(model, x, y, 0.1, 0, 0.01)


def test_eval_attacks_are_the_issue_settings(target, batch):
    specs = evaluation.eval_attacks()
    assert list(specs) == ['clean', 'fgsm', 'pgd']
    assert specs['clean'] is None
    assert specs['fgsm'].keywords == {'eps': 0.1}
    kw = specs['pgd'].keywords
    assert (kw['eps'], kw['steps'], kw['step_size'], kw['random_start']) == (0.1, 10, 0.025, True)
    x, y = batch
    a = evaluation.eval_attacks()['pgd'](target, x[:20], y[:20])
    b = evaluation.eval_attacks()['pgd'](target, x[:20], y[:20])
    assert torch.equal(a, b)
