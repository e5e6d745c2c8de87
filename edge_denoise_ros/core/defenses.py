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
from .dunet import load_denoiser


def _dunet(**options) -> nn.Module:
    return load_denoiser('dunet', **options)


def _dunet_d(**options) -> nn.Module:
    return load_denoiser('dunet_d', **options)


def _jpeg(**options) -> nn.Module:
    return JpegDefense(**options)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    'none': nn.Identity,
    'dunet': _dunet,
    'dunet_d': _dunet_d,
    'jpeg': _jpeg,
}


def defense_names() -> tuple[str, ...]:
    """Return the names of the known defenses."""
    return tuple(_BUILDERS)


def build_defense(name: str, **options) -> nn.Module:
    """Build a defense by name, in eval mode."""
    if name not in _BUILDERS:
        raise ValueError(f'unknown defense {name!r}; expected one of {defense_names()}')
    return _BUILDERS[name](**options).eval()
