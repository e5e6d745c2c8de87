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
Target classifiers: the default small ResNet, torchvision by name, torch.export files.

Nothing here downloads: torchvision models are built without weights unless a
local weights file is given, and the default model's weights ship in
``weights/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import torch
from torch import nn

from . import data, frames

DEFAULT_MODEL = 'small_resnet'
DEFAULT_WEIGHTS = 'target_small_resnet.pt'


def set_torch_threads(n: int | None) -> None:
    """Set torch's intra-op threads of this process; ``None`` or 0 keeps torch's setting."""
    if n:
        torch.set_num_threads(int(n))


@contextlib.contextmanager
def compute_threads(n: int, opencv: bool = False) -> Iterator[None]:
    """
    Run the block on ``n`` torch threads (and OpenCV threads with ``opencv``), then restore.

    Batch-1 inference is fastest, and CPU time is a latency, on one thread.
    """
    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(n)
    if opencv:
        cv2.setNumThreads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        if opencv:
            cv2.setNumThreads(before[1])


def weights_dir() -> Path:
    """
    Return the folder of the shipped weights.

    ``EDGE_DENOISE_WEIGHTS`` wins; then ``weights/`` beside the package (a source
    checkout or an editable install); then the ament share folder of a colcon
    install (``share/edge_denoise_ros/weights``).
    """
    env = os.environ.get('EDGE_DENOISE_WEIGHTS')
    if env:
        return Path(env)
    source = Path(__file__).resolve().parents[2] / 'weights'
    if source.is_dir():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory  # ROS installs
        return Path(get_package_share_directory('edge_denoise_ros')) / 'weights'
    except (ImportError, LookupError, ValueError):
        return source


def weights_path(name: str) -> Path:
    """Return the path of a shipped weights file by file name."""
    return weights_dir() / name


def load_state_dict(path: str | os.PathLike) -> dict:
    """Load a state dict saved with ``torch.save`` safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'weights file not found: {path}')
    state = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f'{path}: expected a state dict, got {type(state).__name__}')
    return state


def save_state_dict(module: nn.Module, path: str | os.PathLike) -> Path:
    """Save a module's state dict (tensors only, contiguous, on the CPU)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    torch.save(state, path)
    return path


def state_hash(module: nn.Module) -> str:
    """Return a short, stable hash of a module's parameters and buffers."""
    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``; lets the model take pixels in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer('std', torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Prepared(nn.Module):
    """A user's model behind its input normalisation: takes pixels in [0, 1] (``net`` is theirs)."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BatchNorm follows)."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs and an identity (or 1x1) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=False)
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


@dataclass(frozen=True)
class ResNetConfig:
    """Settings of the default target: a small ResNet for 1x28x28 inputs."""

    in_channels: int = 1
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: tuple[int, ...] = (2, 2, 2)
    num_classes: int = 10
    mean: float = data.MEAN
    std: float = data.STD


class SmallResNet(nn.Module):
    """
    Stem + three residual stages + global pool + linear; takes pixels in [0, 1].

    Every stage has two blocks, so valid cut points lie both between stages
    and inside them (between the blocks of a stage).
    """

    def __init__(self, cfg: ResNetConfig = ResNetConfig()):
        super().__init__()
        if len(cfg.widths) != len(cfg.blocks) or len(cfg.widths) < 3:
            raise ValueError(f'need >= 3 stages with one width each, got {cfg}')
        self.cfg = cfg
        self.normalize = Normalize((cfg.mean,) * cfg.in_channels, (cfg.std,) * cfg.in_channels)
        w0 = cfg.widths[0]
        self.stem = nn.Sequential(conv3x3(cfg.in_channels, w0), nn.BatchNorm2d(w0), nn.ReLU())
        c_in = w0
        for i, (width, n) in enumerate(zip(cfg.widths, cfg.blocks)):
            self.add_module(f'layer{i + 1}', self._make_layer(c_in, width, n, 1 if i == 0 else 2))
            c_in = width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(c_in, cfg.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

    @staticmethod
    def _make_layer(c_in: int, c_out: int, n: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(c_in, c_out, stride)]
        layers += [BasicBlock(c_out, c_out) for _ in range(n - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)                      # (B, 1, 28, 28)
        x = self.stem(x)                           # (B, 16, 28, 28)
        for i in range(len(self.cfg.widths)):
            x = getattr(self, f'layer{i + 1}')(x)  # (B, 16|32|64, 28|14|7, ...)
        x = self.flatten(self.pool(x))             # (B, 64)
        return self.fc(x)                          # (B, 10)


def torchvision_names() -> list[str]:
    """Return the names of torchvision's classification models."""
    import torchvision  # optional heavy dependency (~2 s: torch._dynamo); torchvision targets
    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_model(name: str = DEFAULT_MODEL, weights: str | os.PathLike | None = None,
                pretrained: bool | None = None, num_classes: int | None = None) -> nn.Module:
    """
    Build a target model in eval mode; nothing is ever downloaded.

    ``name`` is ``small_resnet`` (the default target: its shipped weights are
    loaded unless ``pretrained=False``), a torchvision classification model
    (random weights unless ``weights`` names a local state-dict file; asking
    for ``pretrained=True`` without one is an error), or the path of a
    ``torch.export`` file (``.pt2``).
    """
    if str(name).endswith('.pt2'):
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f'exported program not found: {path}')
        return torch.export.load(str(path)).module()
    if name == DEFAULT_MODEL:
        model = SmallResNet(ResNetConfig(num_classes=num_classes or 10))
        path = Path(weights) if weights else (
            None if pretrained is False else weights_path(DEFAULT_WEIGHTS))
        if path is not None:
            model.load_state_dict(load_state_dict(path))
        return model.eval()
    names = torchvision_names()
    if name not in names:
        raise ValueError(f'unknown model {name!r}: expected {DEFAULT_MODEL!r}, a .pt2 file, '
                         f'or a torchvision classification model (e.g. resnet50)')
    if pretrained and not weights:
        raise ValueError(f'pretrained {name} needs a local weights file (weights=...); '
                         f'nothing is downloaded')
    import torchvision  # optional heavy dependency, as in torchvision_names()
    kwargs = {'weights': None}
    if num_classes is not None:
        kwargs['num_classes'] = num_classes
    if name in ('inception_v3', 'googlenet'):
        kwargs['aux_logits'] = False
        kwargs['init_weights'] = False
    model = torchvision.models.get_model(name, **kwargs)
    if weights:
        model.load_state_dict(load_state_dict(weights))
    return model.eval()


def has_own_normalize(name: str) -> bool:
    """Return whether a model normalises its input itself (the default target does)."""
    return name == DEFAULT_MODEL


def build_target(name: str = DEFAULT_MODEL, weights: str | os.PathLike | None = None,
                 num_classes: int | None = None, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None,
                 pretrained: bool | None = None) -> nn.Module:
    """
    Build a target that takes pixels in [0, 1]: the model behind ``mean``/``std``.

    The default target normalises itself and is returned as built; any other
    model is wrapped in :class:`Prepared` (its weights live in ``.net``);
    ``mean``/``std`` default to ImageNet's (:class:`frames.Preparation`).
    """
    model = build_model(name, weights, pretrained=pretrained, num_classes=num_classes)
    if has_own_normalize(name):
        return model
    prep = frames.Preparation()
    return Prepared(model, mean or prep.mean, std or prep.std).eval()


def user_module(target: nn.Module) -> nn.Module:
    """Return the user's model inside a target (the part whose weights a bundle stores)."""
    return target.net if isinstance(target, Prepared) else target


def input_shape(name: str) -> tuple[int, int, int]:
    """Return the natural ``(C, H, W)`` input of a model name."""
    if name == DEFAULT_MODEL:
        return (1, data.INPUT_SIZE, data.INPUT_SIZE)
    if name == 'inception_v3':
        return (3, 299, 299)
    return (3, 224, 224)
