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
Top-1 accuracy: of a model on ``(x, y)``, and of defended targets under attack.

:func:`accuracy` is the one accuracy loop (training reports, codec and
calibration sweeps, the CLI). :func:`evaluate` gives ``accuracy[defense][attack]``;
its attacks are gray-box, as HGD evaluates: the adversarial examples are made
against the target model alone, then every defense sees the same examples.
Its white-box attacks (:func:`whitebox_attacks`) are made per defense against
``target(defense(x))`` together, the adaptive attack HGD-style defenses are
known to fail against (Athalye et al. 2018): gradients flow through DUNET and
DUNET_D; through JPEG by BPDA (:class:`attacks.Bpda`).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Mapping

import torch
from torch import nn

from .attacks import fgsm, pgd, through
from .models import eval_mode

# An attack maps (model, x, y) to adversarial x; ``None`` means the clean input.
Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None

DEFAULT_EPS = 0.1           # L-inf budget on the 1x28x28 default target
BUNDLE_EPS = 8 / 255        # L-inf budget on a bundle's target (realistic 8-bit frames)
WHITEBOX_PGD = 'pgd_whitebox'


def top1_hits(logits: torch.Tensor, y: torch.Tensor) -> int:
    """Return how many rows of ``logits`` (B, classes) rank the label ``y`` (B,) first."""
    return int((logits.argmax(1) == y).sum())


@torch.no_grad()
def accuracy(model: nn.Module, x, y: torch.Tensor, batch_size: int = 1000) -> float:
    """
    Top-1 accuracy of ``model`` (put in eval mode) on ``(x, y)``; ``x`` a tensor or array.

    uint8 images are taken as pixels (divided by 255), one batch at a time.
    """
    eval_mode(model)
    hits = 0
    for i in range(0, len(x), batch_size):
        xb = torch.as_tensor(x[i:i + batch_size])
        if xb.dtype == torch.uint8:
            xb = xb.float().div_(255.0)
        hits += top1_hits(model(xb), y[i:i + batch_size])
    return hits / max(len(x), 1)


def eval_attacks(seed: int = 0, eps: float = DEFAULT_EPS) -> dict[str, Attack]:
    """
    Return the evaluation attacks by name (``clean`` first).

    ``fgsm``: L-inf ``eps`` (0.1 on the 1x28x28 default; 8/255 on bundles);
    ``pgd``: ``eps``, 10 steps of ``eps / 4`` from a random start drawn from a
    generator seeded with ``seed`` (the same examples every run).
    """
    g = torch.Generator()
    g.manual_seed(seed)
    return {
        'clean': None,
        'fgsm': partial(fgsm, eps=eps),
        'pgd': partial(pgd, eps=eps, steps=10, step_size=eps / 4, random_start=True,
                       generator=g),
    }


def whitebox_attacks(seed: int = 0,
                     eps: float = DEFAULT_EPS) -> dict[str, Callable[[], Attack]]:
    """
    Return the white-box attacks by name, each as a maker of a fresh attack.

    ``pgd_whitebox`` is :func:`eval_attacks`' ``pgd`` itself (settings and
    seed): :func:`evaluate` makes one per defense and runs it on
    ``target(defense(x))``, so every defense's walk starts from the same random
    points as the gray-box one, and with no defense the two are the same attack.
    """
    return {WHITEBOX_PGD: lambda: eval_attacks(seed, eps)['pgd']}


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             defenses: Mapping[str, nn.Module], attacks: Mapping[str, Attack],
             batch_size: int = 250,
             progress: Callable[[int, int, dict], None] | None = None,
             whitebox: Mapping[str, Callable[[], Attack]] | None = None,
             ) -> dict[str, dict[str, float]]:
    """
    Return top-1 accuracy for every (defense, attack) pair on ``(x, y)``.

    ``attacks`` are gray-box (made against ``model``, shared by every defense);
    ``whitebox`` attacks (name -> maker, :func:`whitebox_attacks`) are made per
    defense against :func:`attacks.through` ``(model, defense)``.
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f'need matching, non-empty x and y, got {len(x)} and {len(y)}')
    whitebox = whitebox or {}
    eval_mode(model)
    for d in defenses.values():
        d.eval()
    correct = {d: {a: 0 for a in (*attacks, *whitebox)} for d in defenses}
    adaptive = {(d, a): (through(model, defense, x[:1]), make())
                for d, defense in defenses.items() for a, make in whitebox.items()}
    batches = range(0, len(x), batch_size)
    total = len(batches) * (len(attacks) + len(adaptive))
    step = 0

    def tick(info: dict) -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(step, total, info)

    for i in batches:
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        for a, attack in attacks.items():
            xa = xb if attack is None else attack(model, xb, yb).detach()
            with torch.no_grad():
                for d, defense in defenses.items():
                    correct[d][a] += top1_hits(model(defense(xa)), yb)
            tick({'attack': a})
        for (d, a), (composite, attack) in adaptive.items():
            xa = attack(composite, xb, yb).detach()
            with torch.no_grad():
                correct[d][a] += top1_hits(model(defenses[d](xa)), yb)
            tick({'attack': a, 'defense': d})
    return {d: {a: c / len(x) for a, c in row.items()} for d, row in correct.items()}
