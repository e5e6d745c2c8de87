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

"""The target model registry and the shipped default classifier."""

import json

import pytest
import torch

from edge_denoise_ros.core import data, evaluation, models, training


def test_small_resnet_shapes_and_stages():
    model = models.SmallResNet().eval()
    out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10)
    assert [len(getattr(model, f'layer{i}')) for i in (1, 2, 3)] == [2, 2, 2]


def test_shipped_weights_are_small_and_documented():
    path = models.weights_path(models.DEFAULT_WEIGHTS)
    assert path.is_file() and path.stat().st_size < 3_000_000
    meta = json.loads(path.with_suffix('.json').read_text())
    assert meta['command'].startswith('edge-denoise train target')
    assert meta['seed'] == 0
    assert meta['hash'] == models.state_hash(models.build_model())


def test_all_shipped_weights_together_fit_in_30_mb():
    # What the package installs on a robot: every bundle's target, denoisers and tails, and
    # the 1x28x28 profile's files (training checkpoints are not shipped).
    files = [p for p in models.weights_dir().rglob('*')
             if p.is_file() and 'checkpoints' not in p.parts]
    assert any(p.name == 'target.pt' for p in files) and any(p.suffix == '.pt' for p in files)
    total = sum(p.stat().st_size for p in files)
    assert total <= 30_000_000, f'shipped weights are {total / 1e6:.1f} MB together'


def test_shipped_model_accuracy_at_least_92_percent():
    model = models.build_model()
    x, y = data.load_split_tensors('test')
    acc = evaluation.accuracy(model, x, y)
    assert len(y) == 10000
    assert acc >= 0.92, f'test accuracy {acc:.4f} < 0.92'


def test_weights_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / 'evil.pt'
    torch.save({'w': torch.zeros(1), 'obj': models.ResNetConfig()}, path)
    with pytest.raises(Exception):
        models.load_state_dict(path)


@pytest.mark.parametrize('name', ['resnet50', 'mobilenet_v2', 'vgg19', 'inception_v3'])
def test_torchvision_models_build_without_download(name, monkeypatch):
    import torch.hub
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url',
                        lambda *a, **k: pytest.fail('tried to download'))
    model = models.build_model(name)
    c, h, w = models.input_shape(name)
    assert c == 3 and h == w
    assert not model.training


def test_pretrained_torchvision_without_file_is_a_clear_error():
    with pytest.raises(ValueError, match='local weights file'):
        models.build_model('resnet50', pretrained=True)


def test_unknown_model_name():
    with pytest.raises(ValueError, match='unknown model'):
        models.build_model('no_such_net')


def test_local_torchvision_weights_and_export_roundtrip(tmp_path):
    net = models.build_model('mobilenet_v3_small', num_classes=5)
    path = models.save_state_dict(net, tmp_path / 'm.pt')
    again = models.build_model('mobilenet_v3_small', weights=path, num_classes=5)
    assert models.state_hash(again) == models.state_hash(net)
    small = models.build_model()
    x = torch.rand(2, 1, 28, 28)
    exported = torch.export.export(small, (x,))
    torch.export.save(exported, tmp_path / 'target.pt2')
    loaded = models.build_model(str(tmp_path / 'target.pt2'))
    assert torch.allclose(loaded(x), small(x), atol=1e-6)


def test_training_is_seeded():
    x, y = data.load_split_tensors('train', limit=256)
    cfg = training.TargetTrainConfig(epochs=1, batch_size=64, seed=3)
    runs = []
    for _ in range(2):
        training.seed_everything(cfg.seed)
        runs.append(training.train_target(models.SmallResNet(), x, y, cfg))
    a, b = runs
    assert models.state_hash(a) == models.state_hash(b)
