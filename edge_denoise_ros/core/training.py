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

import copy
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import attacks
from .models import eval_mode

Progress = Callable[[int, int, dict], None]


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG and return a dedicated generator for shuffling."""
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def as_pixels(x: torch.Tensor) -> torch.Tensor:
    """Return images as floats in [0, 1]: uint8 images are divided by 255, floats kept."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def augment(x: torch.Tensor, g: torch.Generator, pad: int | None = None) -> torch.Tensor:
    """
    Random translation by up to ``pad`` pixels and random horizontal flips.

    ``pad`` defaults to a 14th of the image side (2 at 28x28); any channel count.
    """
    x = as_pixels(x)
    b, c, h, w = x.shape
    pad = max(1, round(h / 14)) if pad is None else pad
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None, :])                      # (B, H)
    cols = (dx[:, None] + torch.arange(w)[None, :])                      # (B, W)
    idx = torch.arange(b)[:, None, None, None]
    chans = torch.arange(c)[None, :, None, None]
    out = padded[idx, chans, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)
    flip = torch.rand(b, generator=g) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


@dataclass
class Checkpoint:
    """
    Where a run saves its state after every epoch, so that it can resume.

    The file holds the module, the optimizer, the schedule and the shuffling
    generator; it is loaded with ``weights_only=True``. A run resumed from
    epoch ``k`` gives the same weights as one that never stopped. It also
    holds the seconds of training behind it, so that a resumed run's card
    counts the earlier processes' time (``earlier_s``, set when it resumes).
    """

    path: Path
    earlier_s: float = 0.0

    def load(self) -> dict | None:
        """Return the saved state, or None when there is none yet."""
        if not self.path.is_file():
            return None
        return torch.load(self.path, map_location='cpu', weights_only=True)

    def seconds_since(self, start: float) -> float:
        """Return the run's training seconds: since ``start`` here, and in earlier processes."""
        return time.monotonic() - start + self.earlier_s

    def save(self, state: dict) -> None:
        """Write the state atomically (a stopped run never leaves half a file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix('.tmp')
        torch.save(state, tmp)
        tmp.replace(self.path)


def fit(module: nn.Module, n: int, cfg: Schedule, g: torch.Generator, opt: torch.optim.Optimizer,
        make_sched: Callable[[torch.optim.Optimizer, int], object],
        batch_loss: Callable[[torch.Tensor], torch.Tensor],
        progress: Progress | None = None, checkpoint: Checkpoint | None = None) -> nn.Module:
    """
    Run the loop every trainer here shares; return ``module`` in eval mode.

    Each of ``cfg.epochs`` epochs draws a permutation of the ``n`` samples
    from ``g`` and takes one step per whole batch of ``cfg.batch_size`` (at
    least one): ``batch_loss(indices)``, backward, ``opt`` and the schedule
    ``make_sched(opt, total_steps)``; ``module`` trains in train mode.
    With a ``checkpoint``, the state is saved after every epoch and a run
    starts from the saved epoch (a batch's randomness comes from ``g`` only,
    so resuming changes nothing).
    """
    steps_per_epoch = max(1, n // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = make_sched(opt, total)
    first_epoch = 0
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None:
        if state['total'] != total:
            raise ValueError(f'{checkpoint.path}: made for {state["total"]} steps, this run has '
                             f'{total}; delete it or use the same settings')
        module.load_state_dict(state['module'])
        opt.load_state_dict(state['opt'])
        sched.load_state_dict(state['sched'])
        g.set_state(state['generator'])
        first_epoch = int(state['epoch'])
        checkpoint.earlier_s = float(state.get('seconds', 0.0))
    began = time.monotonic()
    step = first_epoch * steps_per_epoch
    for epoch in range(first_epoch, cfg.epochs):
        module.train()
        order = torch.randperm(n, generator=g)
        for i in range(steps_per_epoch):
            loss = batch_loss(order[i * cfg.batch_size:(i + 1) * cfg.batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if progress is not None:
                progress(step, total, {'epoch': epoch + 1, 'loss': loss.item()})
        if checkpoint is not None:
            checkpoint.save({'module': module.state_dict(), 'opt': opt.state_dict(),
                             'sched': sched.state_dict(), 'generator': g.get_state(),
                             'epoch': epoch + 1, 'total': total,
                             'seconds': checkpoint.seconds_since(began)})
    return module.eval()


def _cosine(opt: torch.optim.Optimizer, total: int):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)


@dataclass(frozen=True)
class Schedule:
    """What every trainer here takes: epochs, batch size, (peak) learning rate, seed."""

    epochs: int
    batch_size: int
    lr: float
    seed: int = 0

    def __post_init__(self):
        if self.epochs <= 0 or self.batch_size <= 0 or self.lr <= 0:
            raise ValueError(f'epochs, batch_size and lr must be positive, got {self}')


@dataclass(frozen=True)
class SGDSchedule(Schedule):
    """A schedule run with SGD (Nesterov momentum, weight decay)."""

    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer_name: str = 'sgd'     # or 'adamw' (AdamW; weight_decay decoupled)

    def optimizer(self, params) -> torch.optim.Optimizer:
        """Return the optimizer of ``params``: SGD (Nesterov) or AdamW with these settings."""
        if self.optimizer_name == 'adamw':
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer_name != 'sgd':
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer_name!r}")
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum,
                               weight_decay=self.weight_decay, nesterov=True)


@dataclass(frozen=True)
class Layout:
    """The memory layout a trainer of image models runs in (first among a config's bases)."""

    channels_last: bool = False     # train in torch.channels_last (faster on many CPUs)

    @property
    def memory_format(self) -> torch.memory_format:
        """Return the memory format the modules and batches train in."""
        return torch.channels_last if self.channels_last else torch.contiguous_format


@dataclass(frozen=True)
class TargetTrainConfig(Layout, SGDSchedule):
    """Settings of the target classifier's training (SGD + one-cycle schedule)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    label_smoothing: float = 0.0


def train_target(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 cfg: TargetTrainConfig = TargetTrainConfig(),
                 progress: Progress | None = None,
                 checkpoint: Checkpoint | None = None) -> nn.Module:
    """
    Train a classifier on ``(x, y)`` (pixels in [0, 1], or uint8) with augmentation.

    Returns the model in eval mode, in the default memory format. Deterministic
    for a given seed, thread count and ``cfg.channels_last`` on the CPU.
    """
    g = seed_everything(cfg.seed)
    fmt = cfg.memory_format
    model.to(memory_format=fmt)
    opt = cfg.optimizer(model.parameters())

    def batch_loss(idx):
        xb = augment(x[idx], g).contiguous(memory_format=fmt)
        return F.cross_entropy(model(xb), y[idx], label_smoothing=cfg.label_smoothing)

    fit(model, len(x), cfg, g, opt, lambda o, total: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=cfg.lr, total_steps=total, pct_start=0.15), batch_loss, progress, checkpoint)
    return model.to(memory_format=torch.contiguous_format).eval()


# --- HGD guided denoiser training (helper A, issue 3) ----------------------------------------

DENOISER_LOSSES = ('lgd', 'fgd')


@dataclass(frozen=True)
class AdversarialMix:
    """
    How each training image of HGD's set is made from a clean one.

    Every image is kept clean, attacked by FGSM or by PGD with the probabilities
    below (normalised), with ``eps`` drawn uniformly from ``eps``; PGD takes
    ``pgd_steps`` steps of ``pgd_step_factor * eps / pgd_steps`` from a random start.
    """

    clean: float = 0.3
    fgsm: float = 0.28
    pgd: float = 0.42
    eps: tuple[float, ...] = (0.03, 0.06, 0.08, 0.1, 0.12)
    pgd_steps: int = 10
    pgd_step_factor: float = 2.5

    def __post_init__(self):
        probs = (self.clean, self.fgsm, self.pgd)
        if min(probs) < 0 or sum(probs) <= 0:
            raise ValueError(f'attack probabilities must be >= 0 with a positive sum, got {self}')
        if not self.eps or min(self.eps) <= 0:
            raise ValueError(f'eps must be a non-empty tuple of positive budgets, got {self.eps}')
        if self.pgd_steps < 1 or self.pgd_step_factor <= 0:
            raise ValueError(f'pgd_steps >= 1 and pgd_step_factor > 0 expected, got {self}')


ATTACK_KINDS = ('clean', 'fgsm', 'pgd')


def make_adversarial_set(target: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         mix: AdversarialMix, generator: torch.Generator,
                         batch_size: int = 500, progress: Progress | None = None,
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Attack a frozen target to build HGD's training set: ``(x_adv, kind, eps)``.

    ``kind[i]`` indexes ``ATTACK_KINDS``; ``eps[i]`` is 0 for clean images.
    Deterministic for a given generator state.
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f'need matching, non-empty x and y, got {len(x)} and {len(y)}')
    eval_mode(target)
    probs = torch.tensor([mix.clean, mix.fgsm, mix.pgd], dtype=torch.float64)
    kind = torch.multinomial(probs / probs.sum(), len(x), replacement=True, generator=generator)
    budgets = torch.tensor(mix.eps, dtype=x.dtype)
    eps = budgets[torch.randint(len(budgets), (len(x),), generator=generator)]
    eps[kind == 0] = 0.0
    x_adv = x.clone()
    total = (len(x) + batch_size - 1) // batch_size
    for step, i in enumerate(range(0, len(x), batch_size), 1):
        sl = slice(i, i + batch_size)
        xb, yb, kb, eb = x[sl], y[sl], kind[sl], eps[sl].view(-1, 1, 1, 1)
        m = kb == 1
        if m.any():
            x_adv[sl][m] = attacks.fgsm(target, xb[m], yb[m], eb[m])
        m = kb == 2
        if m.any():
            step_size = mix.pgd_step_factor * eb[m] / mix.pgd_steps
            x_adv[sl][m] = attacks.pgd(target, xb[m], yb[m], eb[m], mix.pgd_steps, step_size,
                                       random_start=True, generator=generator)
        if progress is not None:
            progress(step, total, {'stage': 'attack'})
    return x_adv, kind, eps


def feature_extractor(target: nn.Module, example: torch.Tensor, layer: str | None = None,
                      ) -> Callable[[torch.Tensor], torch.Tensor]:
    """
    Return ``f(x)``: the target's activation at ``layer`` (HGD's FGD guide).

    ``layer=None`` takes the last top-level child of the target whose output
    on ``example`` is a 4-D map larger than 1x1: the topmost convolutional
    features, before global pooling (``layer3`` of the default small ResNet).
    """
    modules = dict(target.named_modules())
    if layer is None:
        shapes = {}
        hooks = [m.register_forward_hook(
            lambda mod, inp, out, n=n: shapes.__setitem__(n, tuple(getattr(out, 'shape', ()))))
            for n, m in target.named_children()]
        try:
            with torch.no_grad():
                target(example)
        finally:
            for h in hooks:
                h.remove()
        maps = [n for n, shape in shapes.items() if len(shape) == 4 and min(shape[2:]) > 1]
        if not maps:
            raise ValueError('the target has no top-level child with a 4-D output; name a layer')
        layer = maps[-1]
    if layer not in modules:
        raise ValueError(f'unknown target layer {layer!r}')
    module = modules[layer]

    def features(x: torch.Tensor) -> torch.Tensor:
        store = []
        handle = module.register_forward_hook(lambda mod, inp, out: store.append(out))
        try:
            target(x)
        finally:
            handle.remove()
        return store[-1]

    return features


@dataclass(frozen=True)
class DenoiserTrainConfig(Layout, Schedule):
    """
    Settings of HGD's guided denoiser training (Adam + cosine decay).

    ``loss``: ``lgd`` (L1 between the target's logits on the denoised image and
    on the clean image) or ``fgd`` (the same on ``feature_layer``'s activation).
    """

    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = 'lgd'
    feature_layer: str | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.loss not in DENOISER_LOSSES:
            raise ValueError(f'loss must be one of {DENOISER_LOSSES}, got {self.loss!r}')


REFERENCE_CACHE_BYTES = 1 << 30


def _guide_clean(guide: Callable[[torch.Tensor], torch.Tensor], x_clean: torch.Tensor,
                 memory_format: torch.memory_format) -> torch.Tensor:
    """Return the frozen guide's output on clean images (the guided loss's reference)."""
    with torch.no_grad():
        return guide(x_clean.contiguous(memory_format=memory_format))


def guide_references(guide: Callable[[torch.Tensor], torch.Tensor], x_clean: torch.Tensor,
                     batch_size: int, memory_format: torch.memory_format,
                     limit: int = REFERENCE_CACHE_BYTES) -> torch.Tensor | None:
    """
    Return ``guide(x_clean)`` for every clean image, once (the guide is frozen), or None.

    The guided loss compares the guide's output on a denoised batch with its
    output on the same batch's clean images, which do not change while the
    denoiser trains: computed once, in batches of ``batch_size``, they spare
    a forward pass of the target every step. None when they would take more
    than ``limit`` bytes (large feature maps): then each step computes its own.
    The first batch's output sizes them (it is kept, not computed twice).
    """
    first = _guide_clean(guide, x_clean[:batch_size], memory_format)
    per_image = first.element_size() * first[:1].numel()
    if per_image * len(x_clean) > limit:
        return None
    return torch.cat([first] + [_guide_clean(guide, x_clean[i:i + batch_size], memory_format)
                                for i in range(batch_size, len(x_clean), batch_size)]).contiguous()


def guided_loss(guide: Callable[[torch.Tensor], torch.Tensor], denoised: torch.Tensor,
                reference: torch.Tensor) -> torch.Tensor:
    """Compute the guided loss of HGD: mean L1 between ``guide(denoised)`` and the reference."""
    return (guide(denoised) - reference).abs().mean()


def train_denoiser(denoiser: nn.Module, target: nn.Module, x_adv: torch.Tensor,
                   x_clean: torch.Tensor, cfg: DenoiserTrainConfig = DenoiserTrainConfig(),
                   progress: Progress | None = None,
                   checkpoint: Checkpoint | None = None) -> nn.Module:
    """
    Train a denoiser with HGD's LGD (or FGD) loss against a frozen target.

    ``x_adv[i]`` is the (possibly attacked) version of ``x_clean[i]``. The
    target stays in eval mode and its parameters are not updated (their
    ``requires_grad`` flags are restored afterwards; with ``cfg.channels_last``
    both train in that layout and come back in the default one). Returns the
    denoiser in eval mode. Deterministic for
    a given seed, thread count and ``cfg.channels_last`` on the CPU.
    DUNET_D's post-hoc fine-tuning is this loop run on the decomposed network.
    """
    if x_adv.shape != x_clean.shape or len(x_adv) == 0:
        raise ValueError(f'x_adv and x_clean must match and be non-empty, got '
                         f'{tuple(x_adv.shape)} and {tuple(x_clean.shape)}')
    g = torch.Generator()
    g.manual_seed(cfg.seed)
    eval_mode(target)
    flags = [p.requires_grad for p in target.parameters()]
    for p in target.parameters():
        p.requires_grad_(False)
    if cfg.loss == 'lgd':
        guide = target
    else:
        guide = feature_extractor(target, x_clean[:1], cfg.feature_layer)
    fmt = cfg.memory_format
    if cfg.channels_last:
        denoiser.to(memory_format=fmt)
        target.to(memory_format=fmt)
    opt = torch.optim.Adam(denoiser.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    references = guide_references(guide, x_clean, cfg.batch_size, fmt)

    def batch_loss(idx):
        if references is not None:
            reference = references[idx]
        else:
            reference = _guide_clean(guide, x_clean[idx], fmt)
        return guided_loss(guide, denoiser(x_adv[idx].contiguous(memory_format=fmt)), reference)

    try:
        fit(denoiser, len(x_adv), cfg, g, opt, _cosine, batch_loss, progress, checkpoint)
    finally:
        if cfg.channels_last:
            target.to(memory_format=torch.contiguous_format)
        for p, flag in zip(target.parameters(), flags):
            p.requires_grad_(flag)
    return denoiser.to(memory_format=torch.contiguous_format).eval()


LAYOUTS = {'nchw': torch.contiguous_format, 'channels_last': torch.channels_last}


class GuidedStep:
    """
    One step of :func:`train_denoiser`'s loss and backward (no update), on copies.

    The denoiser and the target are copied in ``dtype`` and ``memory_format``
    (the caller's modules stay as they are); the denoiser trains, the target
    is frozen. Calling it returns every denoiser parameter's gradient; the
    same batch gives the same gradients each call (batch-norm uses the batch's
    statistics in training).
    """

    def __init__(self, denoiser: nn.Module, target: nn.Module, x_adv: torch.Tensor,
                 x_clean: torch.Tensor, memory_format: torch.memory_format,
                 dtype: torch.dtype = torch.float32):
        self.denoiser = copy.deepcopy(denoiser).to(dtype=dtype, memory_format=memory_format)
        self.target = eval_mode(copy.deepcopy(target).to(dtype=dtype,
                                                         memory_format=memory_format))
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.x_adv = x_adv.to(dtype).contiguous(memory_format=memory_format)
        self.x_clean = x_clean.to(dtype).contiguous(memory_format=memory_format)

    def __call__(self, signs: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """
        Run the step; return ``{parameter name: gradient}``.

        The loss is :func:`guided_loss` (LGD: mean L1 of the logits' residual),
        written as ``mean(residual * sign)``: its gradient is L1's. With
        ``signs`` (another step's ``self.signs``), the residual's signs are
        that step's, so two steps differ by their arithmetic alone, not by a
        residual near zero that rounding tips to the other side.
        """
        self.denoiser.train()
        self.denoiser.zero_grad(set_to_none=True)
        with torch.no_grad():
            reference = self.target(self.x_clean)
        residual = self.target(self.denoiser(self.x_adv)) - reference
        self.signs = residual.detach().sign()
        chosen = self.signs if signs is None else signs.to(residual.dtype)
        (residual * chosen).mean().backward()
        return {n: p.grad for n, p in self.denoiser.named_parameters() if p.grad is not None}


def gradient_error(grads: dict[str, torch.Tensor], exact: dict[str, torch.Tensor],
                   ) -> dict:
    """
    Return how far ``grads`` are from ``exact``: overall and for the worst parameter.

    ``overall``: ``|g - exact| / |exact|`` over all parameters together;
    ``worst``: the largest such ratio of one parameter (``worst_param``).
    """
    diff, ref, worst, worst_name = 0.0, 0.0, 0.0, None
    for name, want in exact.items():
        want = want.double()
        d2, r2 = float((grads[name].double() - want).square().sum()), float(want.square().sum())
        diff, ref = diff + d2, ref + r2
        ratio = (d2 / r2) ** 0.5 if r2 > 0 else 0.0
        if ratio > worst:
            worst, worst_name = ratio, name
    return {'overall': (diff / ref) ** 0.5 if ref > 0 else 0.0, 'worst': worst,
            'worst_param': worst_name}


def compare_layouts(denoiser: nn.Module, target: nn.Module, x_adv: torch.Tensor,
                    x_clean: torch.Tensor, repeats: int = 5) -> dict[str, dict]:
    """
    Time a guided-denoiser training step in each layout and check its gradients.

    For every layout of :data:`LAYOUTS`: the median and the fastest seconds of
    one step (forward, loss, backward) over ``repeats`` runs, the layouts
    interleaved run by run after a warm-up; and how far its gradients are
    from the same step in float64 (NCHW, with the float64 step's residual
    signs): ``grad_error`` over all parameters, ``worst_param_error`` for the
    worst one (:func:`gradient_error`). A faster layout
    whose gradients are much further from exact trains another, not
    necessarily as good, network.
    """
    reference = GuidedStep(denoiser, target, x_adv, x_clean, torch.contiguous_format,
                           torch.float64)
    exact = reference()
    steps = {name: GuidedStep(denoiser, target, x_adv, x_clean, fmt)
             for name, fmt in LAYOUTS.items()}
    errors = {name: gradient_error(step(reference.signs), exact)       # and a warm-up
              for name, step in steps.items()}
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            began = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - began)
    return {name: {'step_s': statistics.median(times[name]), 'min_step_s': min(times[name]),
                   'grad_error': errors[name]['overall'],
                   'worst_param_error': errors[name]['worst'],
                   'worst_param': errors[name]['worst_param']} for name in steps}


# ----------------------------------------------------------------------------- host fine-tuning

@dataclass(frozen=True)
class HostFinetuneConfig(SGDSchedule):
    """Settings of the host tail's fine-tuning on decoded features (Ko et al.)."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 0.01
    augment: bool = True
    tune: tuple[str, ...] = ()      # modules of the tail that train (names); () = all of it


def _within(name: str, modules: tuple[str, ...]) -> bool:
    """Whether a parameter, buffer or module name lies in one of ``modules`` (or is one)."""
    return any(name == m or name.startswith(m + '.') for m in modules)


def tuned_params(tail: nn.Module, tune: tuple[str, ...]) -> list[nn.Parameter]:
    """
    Return the parameters of ``tail`` that fine-tuning trains: all, or those in ``tune``.

    Raises ValueError, naming the tail's top-level modules, when ``tune`` names
    modules that hold no parameter of the tail (say, a module before the cut).
    """
    named = list(tail.named_parameters())
    if not tune:
        return [p for _, p in named]
    missing = [m for m in tune if not any(_within(n, (m,)) for n, _ in named)]
    if missing:
        children = sorted({n.split('.')[0] for n, _ in named})
        raise ValueError(f'no parameter of the tail lies in {", ".join(missing)}; the tail\'s '
                         f'parameters are under {", ".join(children)} (names as in the model)')
    return [p for n, p in named if _within(n, tune)]


def tuned_state(tail: nn.Module, plain: nn.Module, tune: tuple[str, ...]) -> dict:
    """
    Return what a fine-tuned tail file holds: its whole state, or only the ``tune`` modules'.

    :func:`models.save_state` writes it (on the CPU, contiguous). The rest of
    ``tail`` must equal ``plain`` (the target's own tail), since the host takes
    it from the target; a difference raises RuntimeError.
    """
    state = tail.state_dict()
    if not tune:
        return state
    plain_state = plain.state_dict()
    changed = [k for k, v in state.items()
               if not _within(k, tune) and not torch.equal(v, plain_state[k])]
    if changed:
        raise RuntimeError(f'fine-tuning changed {len(changed)} entries outside {tune} '
                           f'(first: {changed[0]})')
    return {k: v for k, v in state.items() if _within(k, tune)}


def finetune_host_tail(head: nn.Module, tail: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       channel: Callable[[torch.Tensor], torch.Tensor],
                       cfg: HostFinetuneConfig = HostFinetuneConfig(),
                       progress: Progress | None = None,
                       checkpoint: Checkpoint | None = None) -> nn.Module:
    """
    Fine-tune ``tail`` on what the host receives: ``tail(channel(head(x)))``.

    The head stays frozen (eval mode, no gradients); ``channel`` is the link,
    encode then decode of every sample (e.g. JPEG at a quality). ``tail``
    must own its parameters (a deep copy of a split tail, not the model's).
    Images are augmented as in :func:`train_target` and go through the head
    and the codec afresh each epoch. SGD with a cosine schedule; returns the
    tail in eval mode. Deterministic for a given seed and thread count.
    With ``cfg.tune``, only those modules of the tail train; the others keep
    the target's weights and batch-norm statistics (they run in eval mode), so
    :func:`tuned_state` can store the tuned modules alone.
    """
    if len(x) != len(y) or len(x) < cfg.batch_size:
        raise ValueError(f'need matching x and y with at least one batch, got {len(x)} and '
                         f'{len(y)}')
    params = tuned_params(tail, cfg.tune)
    g = seed_everything(cfg.seed)
    head.eval()
    frozen = [m for n, m in tail.named_modules()
              if cfg.tune and n and not list(m.children()) and not _within(n, cfg.tune)]
    trained = {id(p) for p in params}
    for p in tail.parameters():
        p.requires_grad_(id(p) in trained)
    opt = cfg.optimizer(params)

    def batch_loss(idx):
        for m in frozen:
            m.eval()
        xb = augment(x[idx], g) if cfg.augment else as_pixels(x[idx])
        with torch.no_grad():
            received = channel(head(xb))
        return F.cross_entropy(tail(received), y[idx])

    return fit(tail, len(x), cfg, g, opt, _cosine, batch_loss, progress, checkpoint)
