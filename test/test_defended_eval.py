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
The shipped denoisers defend the shipped target (issue 3's floors).

Gray-box, as HGD evaluates: FGSM and PGD attack the target alone, every
defense sees the same examples. A fixed subset of the test split (the first
N images) keeps this fast; ``edge-denoise eval --json`` runs the same code on
more images.
"""

import pytest

from edge_denoise_ros.core import data, defenses, evaluation, models

N_IMAGES = 1000
pytestmark = pytest.mark.slow       # PGD-10 on 1000 images: ~30-70 s on 2 shared cores


@pytest.fixture(scope='module')
def accuracy():
    model = models.build_model()
    x, y = data.load_split_tensors('test', N_IMAGES)
    built = {d: defenses.build_defense(d) for d in ('none', 'dunet', 'dunet_d')}
    with models.compute_threads(1):  # one thread is steadier than two on shared cores
        return evaluation.evaluate(model, x, y, built, evaluation.eval_attacks())


def test_attacks_break_the_undefended_target(accuracy):
    assert accuracy['none']['clean'] >= 0.90
    assert accuracy['none']['fgsm'] <= 0.40
    assert accuracy['none']['pgd'] <= 0.10


def test_dunet_defends_against_pgd(accuracy):
    assert accuracy['dunet']['pgd'] >= 0.60
    assert accuracy['dunet']['pgd'] >= accuracy['none']['pgd'] + 0.40
    assert accuracy['dunet']['fgsm'] >= accuracy['none']['fgsm'] + 0.20


@pytest.mark.parametrize('defense', ['dunet', 'dunet_d'])
def test_defense_costs_at_most_1_5_points_of_clean_accuracy(accuracy, defense):
    assert accuracy[defense]['clean'] >= accuracy['none']['clean'] - 0.015


@pytest.mark.parametrize('attack', ['clean', 'fgsm', 'pgd'])
def test_dunet_d_within_1_78_points_of_dunet(accuracy, attack):
    assert abs(accuracy['dunet_d'][attack] - accuracy['dunet'][attack]) <= 0.0178
