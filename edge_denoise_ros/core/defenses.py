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
Input defenses in front of the target: a name -> module registry.

Each defense maps a batch of images in [0, 1] ``(B, C, H, W)`` to a batch of
the same shape; the edge node and ``edge-denoise eval`` build them here.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from .deepn_jpeg import JpegDefense
from .bundle import Bundle
from .dunet import DUNetConfig, load_denoiser


def _denoiser(kind: str, bundle: Bundle | None = None, **options) -> nn.Module:
    if bundle is None:
        return load_denoiser(kind, **options)
    entry = bundle.denoiser(kind)
    return load_denoiser(kind, DUNetConfig.from_dict(entry['config']),
                         bundle.check_file(entry['weights']))


def _dunet(bundle: Bundle | None = None, **options) -> nn.Module:
    return _denoiser('dunet', bundle, **options)


def _dunet_d(bundle: Bundle | None = None, **options) -> nn.Module:
    return _denoiser('dunet_d', bundle, **options)


def _jpeg(bundle: Bundle | None = None, **options) -> nn.Module:
    return JpegDefense(**options)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    'none': lambda bundle=None: nn.Identity(),
    'dunet': _dunet,
    'dunet_d': _dunet_d,
    'jpeg': _jpeg,
}


def defense_names() -> tuple[str, ...]:
    """Return the names of the known defenses."""
    return tuple(_BUILDERS)


def build_defense(name: str, bundle: Bundle | None = None, **options) -> nn.Module:
    """
    Build a defense by name, in eval mode.

    With a ``bundle``, DUNET and DUNET_D are the bundle's (trained for its
    target); without, the shipped 1x28x28 ones. ``jpeg`` works on any input.
    """
    if name not in _BUILDERS:
        raise ValueError(f'unknown defense {name!r}; expected one of {defense_names()}')
    return _BUILDERS[name](bundle=bundle, **options).eval()
