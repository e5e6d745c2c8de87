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
L-infinity attacks on torch autograd: FGSM (Goodfellow et al.) and PGD (Madry et al.).

:func:`through` makes ``target(defense(x))`` one module, so any attack here is
white-box against a defended target: exact gradients through a defense that
passes them (DUNET, DUNET_D), BPDA (Athalye et al. 2018: the defense on the
forward pass, the identity on the backward) through one that does not (JPEG).

Images are in pixel space ``[0, 1]`` and every result is clamped to it. ``eps``
(and PGD's ``step_size``) is a float or a tensor broadcastable to the batch,
e.g. ``(B, 1, 1, 1)`` for one budget per image. The model's mode is left as
it is (call ``model.eval()`` first) and its parameters' ``.grad`` are never
touched: gradients are taken with respect to the input only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Budget = float | torch.Tensor


def _check_budget(name: str, value: Budget) -> None:
    low = value.min().item() if isinstance(value, torch.Tensor) else value
    if low < 0:
        raise ValueError(f'{name} must be >= 0, got {value}')


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return the gradient of the cross-entropy loss of ``model(x)`` w.r.t. ``x``."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction='sum')
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Budget) -> torch.Tensor:
    """Fast gradient sign method: ``clamp(x + eps * sign(grad), 0, 1)``."""
    _check_budget('eps', eps)
    x = x.detach()
    return (x + eps * input_gradient(model, x, y).sign()).clamp(0, 1)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Budget, steps: int,
        step_size: Budget, random_start: bool = True,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """
    Projected gradient descent in the L-infinity ball of radius ``eps`` around ``x``.

    ``steps`` signed-gradient steps of ``step_size``, each followed by a
    projection onto the ball and onto ``[0, 1]``; with ``random_start`` the
    walk begins at a uniform point of the ball (drawn from ``generator``).
    """
    _check_budget('eps', eps)
    _check_budget('step_size', step_size)
    if steps < 1:
        raise ValueError(f'steps must be >= 1, got {steps}')
    x = x.detach()
    low, high = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    xa = x
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        xa = x + (2 * noise - 1) * eps
    xa = torch.max(torch.min(xa, high), low)
    for _ in range(steps):
        xa = xa + step_size * input_gradient(model, xa, y).sign()
        xa = torch.max(torch.min(xa, high), low)
    return xa.detach()


class Bpda(nn.Module):
    """
    Backward pass differentiable approximation: ``defense(x)`` forward, the identity backward.

    For a defense gradients do not flow through (JPEG re-encoding is
    quantisation, and runs outside autograd): the attacker differentiates the
    target at the defended image and takes it as the gradient w.r.t. ``x``,
    i.e. d defense(x) / dx ~ I (Athalye, Carlini & Wagner, ICML 2018).
    """

    def __init__(self, defense: nn.Module):
        super().__init__()
        self.defense = defense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.defense(x) - x).detach()


def passes_gradient(defense: nn.Module, example: torch.Tensor) -> bool:
    """Return whether ``defense``'s output on ``example`` (a batch) carries a gradient to it."""
    with torch.enable_grad():
        return bool(defense(example[:1].detach().clone().requires_grad_(True)).requires_grad)


def through(model: nn.Module, defense: nn.Module, example: torch.Tensor) -> nn.Module:
    """
    Return ``model(defense(x))`` as one module, for white-box attacks on the defended target.

    Gradients are exact where the defense passes them (tried on ``example``),
    BPDA's identity where it does not. With ``nn.Identity`` as the defense the
    composite computes exactly what ``model`` does: the same attack, the same
    examples. Modes are left as they are (exported targets refuse ``.eval()``).
    """
    first = defense if passes_gradient(defense, example) else Bpda(defense)
    return nn.Sequential(first, model)
