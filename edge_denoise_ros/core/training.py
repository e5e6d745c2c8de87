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
Training loops: the target classifier (and, in later modules, the denoisers).

Every loop is seeded and reports progress through an optional callback
``progress(step, total, info)``; the core never prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Progress = Callable[[int, int, dict], None]


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG and return a dedicated generator for shuffling."""
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def augment(x: torch.Tensor, g: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels and random horizontal flips."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None, :])                      # (B, H)
    cols = (dx[:, None] + torch.arange(w)[None, :])                      # (B, W)
    idx = torch.arange(b)[:, None, None]
    out = padded[:, 0][idx, rows[:, :, None], cols[:, None, :]][:, None]  # (B, 1, H, W)
    flip = torch.rand(b, generator=g) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` in eval mode."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / max(len(x), 1)


@dataclass(frozen=True)
class TargetTrainConfig:
    """Settings of the target classifier's training (SGD + one-cycle schedule)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    seed: int = 0


def train_target(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 cfg: TargetTrainConfig = TargetTrainConfig(),
                 progress: Progress | None = None) -> nn.Module:
    """
    Train a classifier on ``(x, y)`` (pixels in [0, 1]) with augmentation.

    Returns the model in eval mode. Deterministic for a given seed and thread
    count on the CPU.
    """
    if cfg.epochs <= 0 or cfg.batch_size <= 0:
        raise ValueError(f'epochs and batch_size must be positive, got {cfg}')
    g = seed_everything(cfg.seed)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, nesterov=True)
    steps_per_epoch = len(x) // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total,
                                                pct_start=0.15)
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(x), generator=g)
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            xb = augment(x[idx], g)
            loss = F.cross_entropy(model(xb), y[idx], label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if progress is not None:
                progress(step, total, {'epoch': epoch + 1, 'loss': loss.item()})
    return model.eval()
