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
DUNET, the denoising U-net of HGD (Liao et al., CVPR 2018), and DUNET_D.

DUNET (lfz/Guided-Denoise ``Denoise``): five encoder blocks ``fwd0..fwd4`` and
four decoder blocks ``back0..back3`` of 3x3 conv + BN + ReLU; the first conv of
``fwd1..fwd4`` has stride 2; decoder block ``i`` takes the deeper map,
bilinearly upsampled to the size of encoder block ``i``'s output, concatenated
with that output; a final 1x1 conv predicts a residual and the denoised image
is ``x + residual``. At 3x299x299 the maps are 299 -> 150 -> 75 -> 38 -> 19.

DUNET_D (eDenoizer, Kim & Joo 2022) replaces the first conv of every decoder
block -- the four "concat convs", 40 % of DUNET's MACs -- by its Tucker-2
decomposition (``core.tucker.tucker2``), then is fine-tuned post hoc.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import tucker
from .models import load_state_dict, weights_path

KINDS = ('dunet', 'dunet_d')
# eDenoizer's ranks for back3.0 (512 -> 152 -> 131 -> 256) as fractions of (ci, co).
PAPER_RATIOS = (152 / 512, 131 / 256)


@dataclass(frozen=True)
class DUNetConfig:
    """
    Settings of a DUNET: input, encoder/decoder widths and depths, DUNET_D rank rule.

    ``rank_rule`` says how ``decompose`` picks the Tucker-2 ranks when none are
    given: ``paper`` scales eDenoizer's (152, 131) of a 512 -> 256 conv to each
    concat conv, ``(round(ci*152/512), round(co*131/256))``; ``vbmf`` runs EVBMF
    on the trained kernels (Kim et al., ICLR 2016); ``energy`` keeps
    ``rank_energy`` of each unfolding's energy.
    """

    in_channels: int = 3
    input_size: int = 299
    fwd_out: tuple[int, ...] = (64, 128, 256, 256, 256)
    num_fwd: tuple[int, ...] = (2, 3, 3, 3, 3)
    back_out: tuple[int, ...] = (64, 128, 256, 256)
    num_back: tuple[int, ...] = (2, 3, 3, 3)
    rank_rule: str = 'paper'
    rank_energy: float = 0.9

    def __post_init__(self):
        if len(self.fwd_out) != len(self.num_fwd) or len(self.back_out) != len(self.num_back):
            raise ValueError(f'one width per block expected, got {self}')
        if len(self.num_back) != len(self.num_fwd) - 1 or len(self.num_fwd) < 2:
            raise ValueError(f'need n >= 2 encoder and n - 1 decoder blocks, got {self}')
        if min(self.num_fwd + self.num_back + self.fwd_out + self.back_out) < 1:
            raise ValueError(f'widths and depths must be positive, got {self}')
        if self.rank_rule not in ('paper',) + tucker.RANK_METHODS:
            raise ValueError(f"rank_rule must be 'paper', 'vbmf' or 'energy', got "
                             f'{self.rank_rule!r}')

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Return the natural ``(C, H, W)`` input."""
        return (self.in_channels, self.input_size, self.input_size)

    @classmethod
    def scaled(cls, in_channels: int, input_size: int, width: float,
               rank_rule: str = 'paper') -> 'DUNetConfig':
        """
        Return HGD's DUNET topology with every width times ``width`` (1.0: HGD's full widths).

        Any channel count and input size (the network is fully convolutional;
        ``input_size`` is the side MACs are counted at).
        """
        if not 0 < width <= 1:
            raise ValueError(f'width must be in (0, 1] (1 is HGD\'s full DUNET), got {width}')
        full = cls()

        def w(c):
            return max(4, round(c * width))

        return cls(in_channels=in_channels, input_size=input_size,
                   fwd_out=tuple(w(c) for c in full.fwd_out), num_fwd=full.num_fwd,
                   back_out=tuple(w(c) for c in full.back_out), num_back=full.num_back,
                   rank_rule=rank_rule)

    def as_dict(self) -> dict:
        """Return the config as a JSON-able dict (a bundle card's ``config``)."""
        return {'in_channels': self.in_channels, 'input_size': self.input_size,
                'fwd_out': list(self.fwd_out), 'num_fwd': list(self.num_fwd),
                'back_out': list(self.back_out), 'num_back': list(self.num_back),
                'rank_rule': self.rank_rule, 'rank_energy': self.rank_energy}

    @classmethod
    def from_dict(cls, d: dict) -> 'DUNetConfig':
        """Build a config from :meth:`as_dict`'s output."""
        known = set(cls().as_dict())
        unknown = set(d) - known
        if unknown:
            raise ValueError(f'unknown DUNET config keys {sorted(unknown)}')
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


CONFIGS = {
    # HGD's DUNET for Inception-v3 inputs.
    'full': DUNetConfig(),
    # Same topology, narrower, for the default 1x28x28 pipeline (28 -> 14 -> 7 -> 4 -> 2).
    'small': DUNetConfig(in_channels=1, input_size=28, fwd_out=(16, 32, 64, 64, 64),
                         back_out=(16, 32, 64, 64)),
}
DEFAULT_CONFIG = 'small'


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """Build the ``Conv`` block of HGD: 3x3 conv (no bias) + BatchNorm + ReLU."""
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        bn=nn.BatchNorm2d(c_out),
        relu=nn.ReLU(inplace=True)))


class DUNet(nn.Module):
    """DUNET: x -> x + final(decoder(encoder(x))); convs named ``fwd<i>.<j>.conv`` etc."""

    def __init__(self, cfg: DUNetConfig = CONFIGS[DEFAULT_CONFIG]):
        super().__init__()
        self.cfg = cfg
        c_in = cfg.in_channels
        for i, (width, n) in enumerate(zip(cfg.fwd_out, cfg.num_fwd)):
            self.add_module(f'fwd{i}', self._make_layer(c_in, width, n, 1 if i == 0 else 2))
            c_in = width
        for i in reversed(range(len(cfg.back_out))):
            c_in = c_in + cfg.fwd_out[i]                  # upsampled deeper map ++ skip
            self.add_module(f'back{i}', self._make_layer(c_in, cfg.back_out[i], cfg.num_back[i]))
            c_in = cfg.back_out[i]
        self.final = nn.Conv2d(c_in, cfg.in_channels, 1, bias=False)
        nn.init.zeros_(self.final.weight)       # an untrained DUNET passes images through

    @staticmethod
    def _make_layer(c_in: int, c_out: int, n: int, stride: int = 1) -> nn.Sequential:
        layers = [conv_bn_relu(c_in, c_out, stride)]
        layers += [conv_bn_relu(c_out, c_out) for _ in range(n - 1)]
        return nn.Sequential(*layers)

    def concat_convs(self) -> list[str]:
        """Return the names of the convs that read a concatenation (deepest first)."""
        return [f'back{i}.0.conv' for i in reversed(range(len(self.cfg.back_out)))]

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """Predict the residual: the denoised image minus the input."""
        skips = []
        out = x                                               # (B, C, H, W)
        for i in range(len(self.cfg.fwd_out)):
            out = getattr(self, f'fwd{i}')(out)               # (B, fwd_out[i], H/2^i, W/2^i)
            skips.append(out)
        for i in reversed(range(len(self.cfg.back_out))):
            skip = skips[i]
            out = F.interpolate(out, size=skip.shape[-2:], mode='bilinear', align_corners=False)
            out = torch.cat([out, skip], 1)                   # (B, c_deep + fwd_out[i], ...)
            out = getattr(self, f'back{i}')(out)              # (B, back_out[i], ...)
        return self.final(out)                                # (B, C, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


IDLE_LEVELS = 0.5     # a denoiser that changes images by less (of 255 levels) passes them through


def mean_change(denoiser: nn.Module, x: torch.Tensor, batch_size: int = 250) -> float:
    """Return the mean absolute change ``denoiser`` makes to the pixels ``x``, in 8-bit levels."""
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            total += float((denoiser(xb) - xb).abs().sum())
    return 255.0 * total / max(1, x.numel())


def build_dunet(config: str | DUNetConfig = DEFAULT_CONFIG) -> DUNet:
    """Build a DUNET (random weights, training mode) from a config name or object."""
    if isinstance(config, DUNetConfig):
        return DUNet(config)
    if config not in CONFIGS:
        raise ValueError(f'unknown DUNET config {config!r}; expected one of {tuple(CONFIGS)}')
    return DUNet(CONFIGS[config])


def _get(module: nn.Module, name: str) -> nn.Module:
    return module.get_submodule(name)


def _set(module: nn.Module, name: str, child: nn.Module) -> None:
    parent, _, leaf = name.rpartition('.')
    setattr(module.get_submodule(parent) if parent else module, leaf, child)


def default_ranks(dunet: DUNet, rule: str | None = None) -> dict[str, tuple[int, int]]:
    """Return ``{conv name: (r_in, r_out)}`` for the concat convs under a rank rule."""
    rule = rule or dunet.cfg.rank_rule
    ranks = {}
    for name in dunet.concat_convs():
        conv = _get(dunet, name)
        if rule == 'paper':
            ranks[name] = tucker.scaled_ranks(conv, PAPER_RATIOS)
        elif rule in tucker.RANK_METHODS:
            ranks[name] = tucker.select_ranks(conv, rule, energy=dunet.cfg.rank_energy)
        else:
            raise ValueError(f"rank rule must be 'paper', 'vbmf' or 'energy', got {rule!r}")
    return ranks


def decompose(dunet: DUNet, ranks: dict[str, tuple[int, int]] | str | None = None) -> DUNet:
    """
    Return DUNET_D: a copy of ``dunet`` with its four concat convs Tucker-2 decomposed.

    ``ranks``: ``{name: (r_in, r_out)}`` for some or all concat convs (the
    others follow the config's rule), a rule name (``paper``, ``vbmf``,
    ``energy``) or ``None`` for the config's ``rank_rule``.
    """
    given = ranks if isinstance(ranks, dict) else {}
    unknown = set(given) - set(dunet.concat_convs())
    if unknown:
        raise ValueError(f'ranks given for {sorted(unknown)}; the concat convs are '
                         f'{dunet.concat_convs()}')
    chosen = default_ranks(dunet, ranks if isinstance(ranks, str) else None)
    chosen.update({k: tuple(v) for k, v in given.items()})
    out = copy.deepcopy(dunet)
    for name, r in chosen.items():
        _set(out, name, tucker.tucker2(_get(out, name), r))
    out.train(dunet.training)
    return out


def tucker_ranks(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Return ``{name: (r_in, r_out)}`` of the Tucker-2 decomposed convs of a DUNET_D."""
    ranks = {}
    for name, module in model.named_modules():
        if tucker.is_tucker2(module):
            ranks[name] = (module[0].out_channels, module[1].out_channels)
    return ranks


def build_dunet_d(config: str | DUNetConfig, ranks: dict[str, tuple[int, int]]) -> DUNet:
    """
    Build an untrained DUNET_D with the given ranks, without decomposing anything.

    The structure alone: for loading DUNET_D weights, counting MACs or timing.
    """
    model = build_dunet(config)
    unknown = set(ranks) - set(model.concat_convs())
    if unknown:
        raise ValueError(f'ranks given for {sorted(unknown)}; the concat convs are '
                         f'{model.concat_convs()}')
    for name, r in ranks.items():
        _set(model, name, tucker.tucker2_shell(_get(model, name), r))
    return model


def default_weights(kind: str, config: str = DEFAULT_CONFIG) -> Path:
    """Return the path of the shipped weights of ``kind`` for a config."""
    if kind not in KINDS:
        raise ValueError(f'unknown denoiser {kind!r}; expected one of {KINDS}')
    return weights_path(f'{kind}_{config}.pt')


def load_denoiser(kind: str = 'dunet', config: str | DUNetConfig = DEFAULT_CONFIG,
                  weights: str | os.PathLike | None = None) -> nn.Module:
    """
    Load a trained DUNET or DUNET_D in eval mode (the shipped weights by default).

    ``config`` is a config name or a :class:`DUNetConfig` (then ``weights``
    is required). DUNET_D's ranks are read from the shapes in its state dict.
    """
    if kind not in KINDS:
        raise ValueError(f'unknown denoiser {kind!r}; expected one of {KINDS}')
    if isinstance(config, DUNetConfig):
        if not weights:
            raise ValueError('a DUNET config object needs its weights file')
        cfg, path = config, Path(weights)
    elif config not in CONFIGS:
        raise ValueError(f'unknown DUNET config {config!r}; expected one of {tuple(CONFIGS)}')
    else:
        cfg = CONFIGS[config]
        path = Path(weights) if weights else default_weights(kind, config)
    state = load_state_dict(path)
    if kind == 'dunet':
        model = DUNet(cfg)
    else:
        ranks = {}
        for name in DUNet(cfg).concat_convs():
            first, middle = state.get(f'{name}.0.weight'), state.get(f'{name}.1.weight')
            if first is None or middle is None:
                raise ValueError(f'{path}: not a DUNET_D state dict ({name} is not decomposed)')
            ranks[name] = (first.shape[0], middle.shape[0])
        model = build_dunet_d(cfg, ranks)
    model.load_state_dict(state)
    return model.eval()
