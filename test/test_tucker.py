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

"""Tucker-2 decomposition of convolutions, rank selection and MAC counting."""

import numpy as np
import pytest
import torch
from torch import nn

from edge_denoise_ros.core import tucker


def seeded_conv(ci, co, k=3, seed=0, **kwargs) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(ci, co, k, padding=k // 2, **kwargs)


def low_rank_conv(ci, co, r_in, r_out, seed=0) -> nn.Conv2d:
    """Build a 3x3 conv whose kernel has exact Tucker-2 ranks (r_in, r_out)."""
    g = torch.Generator().manual_seed(seed)
    core = torch.randn(r_out, r_in, 3, 3, generator=g)
    u_out = torch.linalg.qr(torch.randn(co, r_out, generator=g))[0]
    u_in = torch.linalg.qr(torch.randn(ci, r_in, generator=g))[0]
    conv = nn.Conv2d(ci, co, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.einsum('oikl,Oo,Ii->OIkl', core, u_out, u_in))
    return conv


def test_tensorly_partial_tucker_returns_core_factors_and_errors():
    # The one shape core.tucker relies on (tensorly >= 0.8): (core, factors), rec_errors.
    from tensorly.decomposition import partial_tucker

    tensor = np.random.default_rng(0).standard_normal((6, 5, 3, 3))
    (core, factors), errors = partial_tucker(tensor, rank=[4, 3], modes=[0, 1])
    assert core.shape == (4, 3, 3, 3)
    assert [f.shape for f in factors] == [(6, 4), (5, 3)]
    assert len(errors) >= 1


def test_eDenoizer_layer_512_to_256_with_ranks_152_131_costs_419580192_macs():
    conv = low_rank_conv(512, 256, 152, 131)
    assert tucker.conv_macs(conv, (38, 38)) == 1_703_411_712
    seq = tucker.tucker2(conv, (152, 131))
    rows = tucker.conv_rows(seq, (512, 38, 38))
    assert [(r.ci, r.co, r.kernel) for r in rows] == [
        (512, 152, (1, 1)), (152, 131, (3, 3)), (131, 256, (1, 1))]
    assert sum(r.macs for r in rows) == 419_580_192
    # The kernel has exactly these ranks, so the decomposition is lossless.
    x = torch.rand(1, 512, 38, 38)
    with torch.no_grad():
        assert torch.allclose(seq(x), conv(x), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize('stride,bias', [(1, True), (2, False)])
def test_shapes_and_conv_settings_are_kept(stride, bias):
    conv = seeded_conv(24, 16, stride=stride, bias=bias)
    seq = tucker.tucker2(conv, (7, 5))
    first, core, last = seq
    assert first.weight.shape == (7, 24, 1, 1)
    assert core.weight.shape == (5, 7, 3, 3)
    assert last.weight.shape == (16, 5, 1, 1)
    assert core.stride == conv.stride and core.padding == conv.padding
    assert (last.bias is not None) == bias
    if bias:
        assert torch.equal(last.bias, conv.bias)
    x = torch.rand(2, 24, 15, 15)
    assert seq(x).shape == conv(x).shape
    assert tucker.is_tucker2(seq) and not tucker.is_tucker2(nn.Sequential(conv))


@pytest.mark.parametrize('stride', [1, 2])
def test_full_ranks_reproduce_the_convolution(stride):
    conv = seeded_conv(12, 10, stride=stride, dilation=1, bias=True)
    seq = tucker.tucker2(conv, (12, 10))
    x = torch.rand(3, 12, 17, 17)
    with torch.no_grad():
        assert torch.allclose(seq(x), conv(x), atol=1e-5, rtol=1e-4)


def test_reconstruction_error_falls_as_ranks_grow():
    conv = seeded_conv(32, 24, seed=1)
    errors = [tucker.relative_error(conv, (r, r)) for r in (2, 6, 12, 24)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[0] > 0.5 and errors[-1] < errors[0] / 2
    assert tucker.relative_error(conv, (32, 24)) < 1e-5


def test_decomposition_is_deterministic():
    conv = seeded_conv(20, 18, seed=2)
    a, b = tucker.tucker2(conv, (6, 5)), tucker.tucker2(conv, (6, 5))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match='ungrouped'):
        tucker.tucker2(nn.Conv2d(8, 8, 3, groups=2), (2, 2))
    with pytest.raises(ValueError, match=r'\[1, 8\] x \[1, 4\]'):
        tucker.tucker2(nn.Conv2d(8, 4, 3), (9, 2))
    with pytest.raises(ValueError, match='must lie'):
        tucker.tucker2(nn.Conv2d(8, 4, 3), (2, 0))
    with pytest.raises(ValueError, match='nn.Conv2d'):
        tucker.tucker2(nn.Linear(4, 4), (2, 2))
    with pytest.raises(ValueError, match='rank method'):
        tucker.select_ranks(nn.Conv2d(8, 4, 3), 'guess')


def test_vbmf_finds_the_rank_of_a_noisy_low_rank_matrix():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((60, 7)) @ rng.standard_normal((7, 300)) * 3
    noisy = signal + rng.standard_normal(signal.shape) * 0.5
    assert tucker.evbmf_rank(noisy) == 7
    assert tucker.evbmf_rank(noisy.T) == 7
    # Pure noise carries no structure worth keeping.
    assert tucker.evbmf_rank(rng.standard_normal((60, 300))) <= 2


def test_energy_rank_and_select_ranks():
    m = np.diag([4.0, 2.0, 1.0, 1.0])          # energies 16, 4, 1, 1 of 22
    assert tucker.energy_rank(m, 0.7) == 1
    assert tucker.energy_rank(m, 0.9) == 2
    assert tucker.energy_rank(m, 1.0) == 4
    with pytest.raises(ValueError):
        tucker.energy_rank(m, 0)
    conv = low_rank_conv(40, 30, 9, 6, seed=3)
    assert tucker.select_ranks(conv, 'vbmf') == (9, 6)
    assert tucker.select_ranks(conv, 'energy', energy=0.999999) == (9, 6)
    r_in, r_out = tucker.select_ranks(seeded_conv(40, 30), 'energy', energy=0.5)
    assert 1 <= r_in < 40 and 1 <= r_out < 30


def test_mac_formula_and_rows():
    conv = nn.Conv2d(64, 32, 3, stride=2, padding=1)
    assert tucker.conv_macs(conv, (14, 14)) == 3 * 3 * 64 * 32 * 14 * 14
    net = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(32, 8, 1))
    rows = tucker.conv_rows(net, (64, 28, 28))
    assert [r.out_hw for r in rows] == [(14, 14), (14, 14)]
    assert tucker.total_macs(net, (64, 28, 28)) == 9 * 64 * 32 * 196 + 32 * 8 * 196
    # Counting runs on the meta device: the model itself is untouched.
    assert conv.weight.device.type == 'cpu'
