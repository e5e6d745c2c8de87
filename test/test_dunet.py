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

"""DUNET (HGD) and DUNET_D (eDenoizer): structure, MACs, decomposition, HGD training."""

import json
import subprocess
import sys

import pytest
import torch

from edge_denoise_ros.core import data, dunet, models, training, tucker

TINY = dunet.DUNetConfig(in_channels=1, input_size=28, fwd_out=(4, 8, 8, 8, 8),
                         back_out=(4, 8, 8, 8), rank_rule='vbmf')


pytestmark = pytest.mark.usefixtures('one_thread')


def test_full_dunet_matches_hgd_and_the_seed_mac_count():
    net = dunet.build_dunet('full')
    rows = {r.name: r for r in tucker.conv_rows(net, (3, 299, 299))}
    total = sum(r.macs for r in rows.values())
    assert abs(total - 69_699_402_624) <= 0.005 * 69_699_402_624
    assert total == 69_699_402_624
    assert [rows[f'fwd{i}.0.conv'].out_hw[0] for i in range(5)] == [299, 150, 75, 38, 19]
    concat = net.concat_convs()
    assert [(rows[n].ci, rows[n].co, rows[n].out_hw[0]) for n in concat] == [
        (512, 256, 38), (512, 256, 75), (384, 128, 150), (192, 64, 299)]
    assert sum(rows[n].macs for n in concat) / total >= 0.40
    assert rows['back3.0.conv'].macs == 1_703_411_712
    # 3x3 conv + BN + ReLU everywhere, strided first convs, a final 1x1.
    assert net.fwd1[0].conv.stride == (2, 2) and net.fwd0[0].conv.stride == (1, 1)
    assert isinstance(net.back3[0].bn, torch.nn.BatchNorm2d)
    assert rows['final'].kernel == (1, 1) and rows['final'].co == 3


def test_full_dunet_d_cuts_macs_beyond_the_paper():
    net = dunet.build_dunet('full')
    ranks = dunet.default_ranks(net, 'paper')
    assert ranks['back3.0.conv'] == (152, 131)
    approx = dunet.build_dunet_d('full', ranks)
    rows = tucker.conv_rows(approx, (3, 299, 299))
    back3 = sum(r.macs for r in rows if r.name.startswith('back3.0.conv.'))
    assert back3 == 419_580_192
    ratio = sum(r.macs for r in rows) / 69_699_402_624
    assert ratio <= 0.7459                      # eDenoizer: -25.41 %
    assert dunet.tucker_ranks(approx) == ranks


def test_small_dunet_is_a_residual_denoiser():
    torch.manual_seed(0)
    net = dunet.build_dunet('small').eval()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(net(x), x)          # the residual starts at zero
        assert dunet.mean_change(net, x) == 0.0 < dunet.IDLE_LEVELS      # an idle denoiser
        torch.nn.init.normal_(net.final.weight)
        out = net(x)
        assert out.shape == x.shape and not torch.allclose(out, x)
        assert torch.allclose(out, x + net.residual(x))
        change = dunet.mean_change(net, x, batch_size=2)                 # in 8-bit levels
        assert change > dunet.IDLE_LEVELS
        assert abs(change - 255 * float((out - x).abs().mean())) < 1e-3 * change
    sizes = [r.out_hw[0] for r in tucker.conv_rows(net, (1, 28, 28)) if r.name.endswith('.0.conv')
             and r.name.startswith('fwd')]
    assert sizes == [28, 14, 7, 4, 2]


def test_decompose_with_full_ranks_keeps_the_output():
    torch.manual_seed(1)
    net = dunet.build_dunet(TINY).eval()
    torch.nn.init.normal_(net.final.weight)   # a non-trivial residual
    full = {n: (net.get_submodule(n).in_channels, net.get_submodule(n).out_channels)
            for n in net.concat_convs()}
    approx = dunet.decompose(net, full)
    assert set(dunet.tucker_ranks(approx)) == set(net.concat_convs())
    assert not approx.training
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert not torch.allclose(net(x), x, atol=1e-2)
        assert torch.allclose(approx(x), net(x), atol=1e-5)
    # The original is untouched.
    assert isinstance(net.back0[0].conv, torch.nn.Conv2d)
    with pytest.raises(ValueError, match='concat convs'):
        dunet.decompose(net, {'fwd0.0.conv': (1, 1)})
    with pytest.raises(ValueError, match='unknown DUNET config'):
        dunet.build_dunet('medium')


def _tiny_training(loss, channels_last=False):
    target = models.build_model()
    x, y = data.load_split_tensors('train', limit=96)
    g = training.seed_everything(0)
    mix = training.AdversarialMix(pgd_steps=2)
    x_adv, kind, eps = training.make_adversarial_set(target, x, y, mix, g, batch_size=48)
    training.seed_everything(0)
    net = dunet.build_dunet(TINY)
    cfg = training.DenoiserTrainConfig(epochs=1, batch_size=32, loss=loss,
                                       channels_last=channels_last)
    before = models.state_hash(target)
    training.train_denoiser(net, target, x_adv, x, cfg)
    assert models.state_hash(target) == before
    assert all(p.requires_grad for p in target.parameters())
    for module in (target, net):        # both handed back in the layout they came in
        assert all(p.is_contiguous() for p in module.parameters() if p.dim() == 4)
    return net, x_adv, x, kind, eps


def test_hgd_training_is_seeded_and_attacks_follow_the_mix():
    a, x_adv, x, kind, eps = _tiny_training('lgd')
    b = _tiny_training('lgd')[0]
    assert models.state_hash(a) == models.state_hash(b)
    assert not a.training
    dist = (x_adv - x).abs().flatten(1).max(1).values
    assert torch.all(dist <= eps + 1e-6)
    assert torch.all(dist[kind == 0] == 0) and torch.all(eps[kind == 0] == 0)
    assert set(kind.tolist()) == {0, 1, 2}
    assert set(eps[kind > 0].tolist()) <= set(torch.tensor(training.AdversarialMix().eps).tolist())
    fgd = _tiny_training('fgd')[0]
    assert models.state_hash(fgd) != models.state_hash(a)


def test_channels_last_training_is_seeded_and_learns_the_same_denoiser():
    net, x_adv, x, _, _ = _tiny_training('lgd', channels_last=True)
    again = _tiny_training('lgd', channels_last=True)[0]
    assert models.state_hash(net) == models.state_hash(again)
    plain = _tiny_training('lgd')[0]
    assert net.final.weight.abs().sum() > 0                    # it trained
    with torch.no_grad():        # other rounding, the same training: the same denoised images
        assert torch.allclose(net(x_adv), plain(x_adv), atol=1e-3)


def test_the_layout_bench_times_both_layouts_and_measures_how_exact_their_gradients_are():
    net, x_adv, x, _, _ = _tiny_training('lgd')      # trained: its gradients reach every layer
    target, before = models.build_model(), models.state_hash(net)
    found = training.compare_layouts(net, target, x_adv[:16], x[:16], repeats=1)
    assert set(found) == set(training.LAYOUTS) and all(r['step_s'] > 0 for r in found.values())
    # float32 in NCHW is close to float64 but not equal to it; bfloat16 is much further off.
    assert 0 < found['nchw']['grad_error'] < 1e-4
    exact_step = training.GuidedStep(net, target, x_adv[:16], x[:16], torch.contiguous_format,
                                     torch.float64)
    exact = exact_step()
    coarse = training.GuidedStep(net, target, x_adv[:16], x[:16], torch.contiguous_format,
                                 torch.bfloat16)(exact_step.signs)
    assert training.gradient_error(coarse, exact)['overall'] > 100 * found['nchw']['grad_error']
    assert models.state_hash(net) == before and not net.training     # the caller's net as it was


def test_the_clean_references_are_the_guides_output_computed_once_or_left_to_each_step():
    target = models.build_model().eval()
    x = torch.rand(10, 1, 28, 28)
    refs = training.guide_references(target, x, 4, torch.contiguous_format)
    with torch.no_grad():
        want = target(x)
    assert refs.shape == want.shape and torch.allclose(refs, want, atol=1e-5)
    # over the memory limit (here: less than all ten rows of logits) each step computes its own
    assert training.guide_references(target, x, 4, torch.contiguous_format,
                                     limit=want.numel() * 4 - 1) is None


def test_fgd_guides_with_the_topmost_feature_map():
    target = models.build_model()
    x = torch.rand(2, 1, 28, 28)
    feats = training.feature_extractor(target, x[:1])(x)
    assert feats.shape == (2, 64, 7, 7)          # layer3 of the small ResNet
    with pytest.raises(ValueError, match='loss'):
        training.DenoiserTrainConfig(loss='mse')


@pytest.mark.parametrize('kind', dunet.KINDS)
def test_shipped_weights_load_and_are_documented(kind):
    path = dunet.default_weights(kind)
    assert path.is_file() and path.stat().st_size < 3_000_000
    meta = json.loads(path.with_suffix('.json').read_text())
    model = dunet.load_denoiser(kind)
    assert not model.training
    assert meta['hash'] == models.state_hash(model)
    assert meta['seed'] == 0
    command = {'dunet': 'edge-denoise train denoiser', 'dunet_d': 'edge-denoise train denoiser-d'}
    assert meta['command'].split(' --')[0] == command[kind]
    if kind == 'dunet_d':
        ranks = dunet.tucker_ranks(model)
        assert {k: list(v) for k, v in ranks.items()} == meta['ranks']
        shape = (1, 28, 28)
        base = dunet.load_denoiser('dunet')
        assert meta['dunet_hash'] == models.state_hash(base)
        assert tucker.total_macs(model, shape) / tucker.total_macs(base, shape) <= 0.7459


def test_macs_command_prints_the_tables_and_one_json_line():
    out = subprocess.run([sys.executable, '-m', 'edge_denoise_ros.cli', 'macs', '--config',
                          'full', '--json'], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result['dunet']['total'] == 69_699_402_624
    assert result['dunet_d']['total'] / result['dunet']['total'] <= 0.7459
    assert result['dunet_d']['ranks']['back3.0.conv'] == [152, 131]
    assert any(line.startswith('back3.0') and '419,580,192' in line for line in lines)
