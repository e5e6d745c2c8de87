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
Tucker-2 decomposition of convolutions, rank selection and MAC counting.

A ``k x k`` convolution with kernel ``W`` of shape ``(co, ci, k, k)`` is
approximated, as in eDenoizer (Kim & Joo, 2022) after Kim et al. (ICLR 2016),
by a Tucker-2 decomposition on its output and input channel modes::

    W ~= core x_0 U_out x_1 U_in,   core: (r_out, r_in, k, k),
                                    U_out: (co, r_out), U_in: (ci, r_in)

which runs as three convolutions: a ``1x1`` (ci -> r_in), the ``k x k`` core
(r_in -> r_out, same stride/padding/dilation) and a ``1x1`` (r_out -> co,
carrying the original bias). Ranks are always written ``(r_in, r_out)``:
eDenoizer's 512 -> 256 layer with ranks ``(152, 131)`` becomes
512 -> 152 -> 131 -> 256.

MACs of a convolution follow the seed's formula ``kh*kw*ci*co*ho*wo`` (per
group for grouped convolutions); bias additions, BatchNorm, activations and
upsampling are not counted.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
import tensorly as tl
from tensorly.decomposition import partial_tucker
import torch
from torch import nn

RANK_METHODS = ('vbmf', 'energy')


def conv_macs(conv: nn.Conv2d, out_hw: tuple[int, int]) -> int:
    """Return the MACs of one convolution producing an ``(ho, wo)`` map: kh*kw*ci*co*ho*wo."""
    kh, kw = conv.kernel_size
    ho, wo = out_hw
    return kh * kw * (conv.in_channels // conv.groups) * conv.out_channels * ho * wo


def partial_tucker2(weight: torch.Tensor, ranks: tuple[int, int], n_iter_max: int = 100,
                    tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Tucker-2 of a conv kernel on its (out, in) modes with tensorly's ``partial_tucker``.

    The one place that calls tensorly: ``partial_tucker(tensor, rank, modes=...)``
    returns ``(core, factors), rec_errors`` in tensorly >= 0.8 (0.10 pinned).
    ``weight`` is ``(co, ci, kh, kw)``, ``ranks`` is ``(r_in, r_out)``; returns
    float32 ``(core (r_out, r_in, kh, kw), u_out (co, r_out), u_in (ci, r_in))``.
    Deterministic: HOOI from the SVD initialisation, computed in float64.
    """
    r_in, r_out = ranks
    tensor = weight.detach().cpu().double().numpy()
    with tl.backend_context('numpy'):
        (core, factors), _ = partial_tucker(tensor, rank=[r_out, r_in], modes=[0, 1],
                                            n_iter_max=n_iter_max, init='svd', tol=tol)
    u_out, u_in = factors
    if core.shape != (r_out, r_in) + tuple(weight.shape[2:]) or u_out.shape != (
            weight.shape[0], r_out) or u_in.shape != (weight.shape[1], r_in):
        raise RuntimeError(f'tensorly partial_tucker returned unexpected shapes: core '
                           f'{core.shape}, factors {u_out.shape} {u_in.shape}')
    return _tensor(core), _tensor(u_out), _tensor(u_in)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).float()


def _check_conv(conv: nn.Module) -> None:
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f'expected an nn.Conv2d, got {type(conv).__name__}')
    if conv.groups != 1:
        raise ValueError(f'Tucker-2 needs an ungrouped convolution, got groups={conv.groups}')
    if conv.padding_mode != 'zeros' or isinstance(conv.padding, str):
        raise ValueError('Tucker-2 supports numeric zero padding only, got '
                         f'padding={conv.padding!r}, padding_mode={conv.padding_mode!r}')


def _check_ranks(conv: nn.Conv2d, ranks: tuple[int, int]) -> tuple[int, int]:
    co, ci = conv.out_channels, conv.in_channels
    if len(ranks) != 2:
        raise ValueError(f'ranks must be (r_in, r_out), got {ranks!r}')
    r_in, r_out = (int(r) for r in ranks)
    if not (1 <= r_in <= ci and 1 <= r_out <= co):
        raise ValueError(f'ranks (r_in, r_out) must lie in [1, {ci}] x [1, {co}] for a '
                         f'{ci}->{co} convolution, got {tuple(ranks)}')
    return r_in, r_out


def tucker2_shell(conv: nn.Conv2d, ranks: tuple[int, int]) -> nn.Sequential:
    """Build the 1x1 -> k x k -> 1x1 structure of ``tucker2(conv, ranks)``, weights untouched."""
    _check_conv(conv)
    r_in, r_out = _check_ranks(conv, ranks)
    return nn.Sequential(
        nn.Conv2d(conv.in_channels, r_in, 1, bias=False),
        nn.Conv2d(r_in, r_out, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                  dilation=conv.dilation, bias=False),
        nn.Conv2d(r_out, conv.out_channels, 1, bias=conv.bias is not None),
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)


def is_tucker2(module: nn.Module) -> bool:
    """Tell whether ``module`` has the 1x1 -> k x k -> 1x1 shape that ``tucker2`` returns."""
    if not isinstance(module, nn.Sequential) or len(module) != 3:
        return False
    first, middle, last = module
    return (all(isinstance(m, nn.Conv2d) for m in module) and first.kernel_size == (1, 1)
            and last.kernel_size == (1, 1) and first.out_channels == middle.in_channels
            and middle.out_channels == last.in_channels)


def tucker2(conv: nn.Conv2d, ranks: tuple[int, int]) -> nn.Sequential:
    """
    Replace a convolution by its Tucker-2 decomposition: 1x1 -> k x k core -> 1x1.

    ``ranks = (r_in, r_out)`` with ``1 <= r_in <= ci`` and ``1 <= r_out <= co``;
    grouped convolutions are refused. Full ranks ``(ci, co)`` reproduce the
    convolution up to float error. The last 1x1 carries the original bias (or none).
    """
    seq = tucker2_shell(conv, ranks)
    first, middle, last = seq
    core, u_out, u_in = partial_tucker2(conv.weight, (first.out_channels, middle.out_channels))
    with torch.no_grad():
        first.weight.copy_(u_in.t()[:, :, None, None])        # (r_in, ci, 1, 1)
        middle.weight.copy_(core)                               # (r_out, r_in, k, k)
        last.weight.copy_(u_out[:, :, None, None])             # (co, r_out, 1, 1)
        if conv.bias is not None:
            last.bias.copy_(conv.bias.detach())
    return seq


def relative_error(conv: nn.Conv2d, ranks: tuple[int, int]) -> float:
    """Return ``||W - W_hat|| / ||W||`` of the Tucker-2 approximation at ``ranks``."""
    _check_conv(conv)
    core, u_out, u_in = partial_tucker2(conv.weight, _check_ranks(conv, ranks))
    w_hat = torch.einsum('oikl,Oo,Ii->OIkl', core, u_out, u_in)
    w = conv.weight.detach().float().cpu()
    return (torch.linalg.norm(w - w_hat) / torch.linalg.norm(w)).item()


# --- rank selection -------------------------------------------------------------------------

def _unfold(weight: torch.Tensor, mode: int) -> np.ndarray:
    """Mode-``mode`` unfolding of a kernel: ``(dim_mode, prod(other dims))`` in float64."""
    w = weight.detach().cpu().double().numpy()
    return np.moveaxis(w, mode, 0).reshape(w.shape[mode], -1)


def _evb_tau(x: np.ndarray, alpha: float) -> np.ndarray:
    return 0.5 * (x - (1 + alpha) + np.sqrt((x - (1 + alpha)) ** 2 - 4 * alpha))


def _evb_objective(sigma2: float, L: int, M: int, s: np.ndarray, residual: float,
                   xubar: float) -> float:
    # Free energy of EVBMF as a function of the noise variance (Nakajima et al., 2013).
    H = len(s)
    alpha = L / M
    x = s ** 2 / (M * sigma2)
    z1 = x[x > xubar]
    z2 = x[x <= xubar]
    tau_z1 = _evb_tau(z1, alpha)
    term1 = np.sum(z2 - np.log(z2))
    term2 = np.sum(z1 - tau_z1)
    term3 = np.sum(np.log((tau_z1 + 1) / z1))
    term4 = alpha * np.sum(np.log(tau_z1 / alpha + 1))
    return float(term1 + term2 + term3 + term4 + residual / (M * sigma2)
                 + (L - H) * np.log(sigma2))


def evbmf_rank(matrix: np.ndarray) -> int:
    """
    Return the rank that empirical variational Bayesian matrix factorisation keeps.

    EVBMF with the analytic global solution of Nakajima et al. (JMLR 2013), the
    noise variance estimated by minimising the free energy: the rank selection
    Kim et al. (ICLR 2016) apply to the mode-0 and mode-1 unfoldings of a kernel.
    """
    Y = np.asarray(matrix, dtype=np.float64)
    if Y.ndim != 2 or min(Y.shape) < 2:
        raise ValueError(f'expected a matrix with both sides >= 2, got shape {Y.shape}')
    if Y.shape[0] > Y.shape[1]:
        Y = Y.T
    L, M = Y.shape                                  # L <= M
    alpha = L / M
    tauubar = 2.5129 * math.sqrt(alpha)
    s = np.linalg.svd(Y, compute_uv=False)          # (L,) descending
    residual = 0.0                                  # H = L: every component is modelled
    xubar = (1 + tauubar) * (1 + alpha / tauubar)
    eh_ub = int(min(math.ceil(L / (1 + alpha)) - 1, L)) - 1
    upper = (np.sum(s ** 2) + residual) / (L * M)
    lower = max(s[eh_ub + 1] ** 2 / (M * xubar), np.mean(s[eh_ub + 1:] ** 2) / M)
    if not upper > lower:
        return L
    opt = minimize_scalar(_evb_objective, args=(L, M, s, residual, xubar),
                          bounds=(lower, upper), method='bounded')
    threshold = math.sqrt(M * opt.x * (1 + tauubar) * (1 + alpha / tauubar))
    return int(np.sum(s > threshold))


def energy_rank(matrix: np.ndarray, energy: float) -> int:
    """Return the smallest rank whose singular values keep ``energy`` of ``||matrix||^2``."""
    if not 0 < energy <= 1:
        raise ValueError(f'energy must lie in (0, 1], got {energy}')
    s2 = np.linalg.svd(np.asarray(matrix, dtype=np.float64), compute_uv=False) ** 2
    kept = np.cumsum(s2) / max(np.sum(s2), np.finfo(float).tiny)
    return int(min(np.searchsorted(kept, energy - 1e-12) + 1, len(s2)))


def select_ranks(conv: nn.Conv2d, method: str = 'vbmf', energy: float = 0.9,
                 ) -> tuple[int, int]:
    """
    Choose Tucker-2 ranks ``(r_in, r_out)`` for a convolution from its trained kernel.

    ``vbmf``: EVBMF on the mode-1 (input) and mode-0 (output) unfoldings, as in
    Kim et al. (ICLR 2016); ``energy``: the smallest ranks keeping ``energy`` of
    each unfolding's squared Frobenius norm. Ranks are at least 1.
    """
    _check_conv(conv)
    if method not in RANK_METHODS:
        raise ValueError(f'unknown rank method {method!r}; expected one of {RANK_METHODS}')
    ranks = []
    for mode in (1, 0):                              # (r_in, r_out)
        unfolded = _unfold(conv.weight, mode)
        if method == 'vbmf':
            r = evbmf_rank(unfolded)
        else:
            r = energy_rank(unfolded, energy)
        ranks.append(max(1, min(r, unfolded.shape[0])))
    return tuple(ranks)


def scaled_ranks(conv: nn.Conv2d, ratios: tuple[float, float]) -> tuple[int, int]:
    """Return ranks ``(round(ci * ratios[0]), round(co * ratios[1]))``, clipped to [1, c]."""
    r_in = min(conv.in_channels, max(1, round(conv.in_channels * ratios[0])))
    r_out = min(conv.out_channels, max(1, round(conv.out_channels * ratios[1])))
    return r_in, r_out


# --- MAC table --------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvRow:
    """One convolution of a network, as seen in a forward pass."""

    name: str
    ci: int
    co: int
    kernel: tuple[int, int]
    out_hw: tuple[int, int]
    macs: int


@torch.no_grad()
def conv_rows(model: nn.Module, input_shape: tuple[int, ...]) -> list[ConvRow]:
    """
    Return one row per ``nn.Conv2d`` in execution order, from a forward pass on the meta device.

    Nothing is computed: a copy of the model runs on ``meta`` tensors so only
    shapes flow, which makes a 70 GMAC network cost milliseconds.
    """
    meta = copy.deepcopy(model).to('meta').eval()
    names = {m: n for n, m in meta.named_modules()}
    rows: list[ConvRow] = []

    def hook(module, inputs, output):
        rows.append(ConvRow(names[module], module.in_channels, module.out_channels,
                            tuple(module.kernel_size), tuple(output.shape[-2:]),
                            conv_macs(module, tuple(output.shape[-2:]))))

    handles = [m.register_forward_hook(hook) for m in meta.modules()
               if isinstance(m, nn.Conv2d)]
    try:
        meta(torch.empty(1, *input_shape, device='meta'))
    finally:
        for h in handles:
            h.remove()
    return rows


def total_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Return the convolution MACs of one forward pass on a single ``input_shape`` sample."""
    return sum(r.macs for r in conv_rows(model, input_shape))
