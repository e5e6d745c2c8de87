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

"""DNN surgery: valid cuts, exact splits, profiles, the cost model, the planner."""

import json
import math
import random

import pytest
import torch
from torch import nn

from edge_denoise_ros import cli
from edge_denoise_ros.core import mincut, models, planner, profiling, surgery, validation
from edge_denoise_ros.core.bundle import Bundle
from edge_denoise_ros.core.stream import PACING_HEADROOM, Stream, StreamMeter, UplinkPacer


@pytest.fixture(scope='module')
def small():
    """Return the default target (real class and shipped weights) and a batch of inputs."""
    torch.manual_seed(0)
    return models.build_model(), torch.rand(4, 1, 28, 28)


def max_error(model, head, tail, x) -> float:
    with torch.no_grad():
        return float((tail(head(x)) - model(x)).abs().max())


# ------------------------------------------------------------------------ cuts

def test_default_model_cuts_only_at_block_boundaries(small):
    model, x = small
    found = surgery.cuts(model, x)
    labels = [c.label for c in found]
    assert found[0].name == 'input' and found[0].edge_mac_share == 0
    # Stage and block boundaries are cuts; nothing inside a residual block is.
    for label in ('stem', 'layer1.0', 'layer1', 'layer2.0', 'layer2', 'layer3', 'flatten'):
        assert label in labels
    assert not any('conv' in c.name or 'bn' in c.name for c in found[4:])
    assert [c.index for c in found] == sorted(c.index for c in found)
    for c in found:
        assert c.bytes == 4 * math.prod(c.shape) and c.shape[0] == 4
    macs = [c.edge_mac_share for c in found]
    params = [c.edge_param_share for c in found]
    assert macs == sorted(macs) and params == sorted(params)
    assert 0.99 < macs[-1] <= 1.0 and params[-1] < 1.0  # the fc layer stays on the host
    layer2 = found[labels.index('layer2')]
    assert layer2.shape == (4, 32, 14, 14) and 0.5 < layer2.edge_mac_share < 0.8


def test_split_is_exact_at_every_cut_of_the_default_model(small):
    model, x = small
    traced = surgery.trace(model, x)
    assert len(traced.cuts) >= 15
    for cut in traced.cuts:
        head, tail = surgery.split_traced(traced, cut)
        with torch.no_grad():
            h = head(x)
        assert tuple(h.shape) == cut.shape
        assert max_error(model, head, tail, x) <= 1e-5, cut.name


def test_split_by_label_and_public_signature(small):
    model, x = small
    head, tail = surgery.split(model, 'layer2', x)
    other_head, _ = surgery.split(model, surgery.trace(model, x).cut('layer2').name, x)
    with torch.no_grad():
        assert torch.equal(head(x), other_head(x))
    assert max_error(model, head, tail, x) <= 1e-5
    # The halves share the model's parameters: nothing is copied.
    shared = {id(p) for p in model.parameters()}
    assert all(id(p) in shared for p in [*head.parameters(), *tail.parameters()])


def test_unknown_cut_is_a_clear_error(small):
    model, x = small
    with pytest.raises(ValueError, match='no cut named'):
        surgery.split(model, 'layer1.0.conv1', x)
    with pytest.raises(ValueError, match='example_input'):
        surgery.cuts(model, [1, 2])


def test_exported_pt2_model_has_the_same_cuts(small, tmp_path):
    model, x = small
    path = tmp_path / 'target.pt2'
    torch.export.save(torch.export.export(model, (x[:1],)), path)
    loaded = models.build_model(str(path))
    fx_cuts = surgery.cuts(model, x[:1])
    ex_cuts = surgery.cuts(loaded, x[:1])
    assert [c.shape for c in ex_cuts] == [c.shape for c in fx_cuts]
    assert [c.label for c in ex_cuts][-3:] == ['layer3', 'pool', 'flatten']
    for cut in ex_cuts[::3]:
        head, tail = surgery.split(loaded, cut.name, x[:1])
        assert max_error(model, head, tail, x[:1]) <= 1e-5


# Large models at batch 1: a seeded sample of cuts keeps this fast. A container's last
# layer is labelled by the container ('features' is vgg19's features.36).
@pytest.mark.parametrize('name,expect', [
    ('resnet50', {'layer1', 'layer2', 'layer3', 'layer4', 'maxpool'}),
    ('inception_v3', {'Mixed_5b', 'Mixed_6a', 'Mixed_7c'}),
    ('mobilenet_v2', {'features.1', 'features.7', 'features.17', 'features'}),
    ('vgg19', {'features.35', 'features', 'avgpool', 'classifier.5'}),
    ('squeezenet1_0', {'features.3'}),
    ('shufflenet_v2_x0_5', {'stage2', 'stage3'}),
])
def test_split_is_exact_on_torchvision_models(name, expect, one_thread):
    model = models.build_model(name)
    torch.manual_seed(1)
    x = torch.rand(1, *models.input_shape(name))
    traced = surgery.trace(model, x)
    labels = {c.label for c in traced.cuts}
    assert expect <= labels, sorted(labels)
    with torch.no_grad():
        ref = model(x)
    picks = {1, len(traced.cuts) // 2, len(traced.cuts) - 1}
    picks |= set(random.Random(name).sample(range(len(traced.cuts)), 1))
    for i in sorted(picks):
        head, tail = surgery.split_traced(traced, traced.cuts[i])
        with torch.no_grad():
            err = float((tail(head(x)) - ref).abs().max())
        assert err <= 1e-5, (name, traced.cuts[i].name, err)


def test_residual_blocks_are_never_cut_inside(one_thread):
    model = models.build_model('resnet50')
    found = surgery.cuts(model, torch.rand(1, 3, 224, 224))
    # 16 bottlenecks: each gives its add and its relu; plus the stem and the head.
    inside = [c for c in found if '.conv' in c.label or '.bn' in c.label]
    assert not inside
    # The last block of a stage is labelled by its stage (its output is the stage's).
    assert sum(1 for c in found if c.label.count('.') == 1) == 16 - 4
    assert {'layer1', 'layer2', 'layer3', 'layer4'} <= {c.label for c in found}
    assert len([c for c in found if c.name.startswith('add')]) == 16
    assert math.isclose(found[-1].edge_mac_share, 1.0, abs_tol=1e-3)


def test_inside_a_residual_block_mobilenet_has_no_cut(one_thread):
    model = models.build_model('mobilenet_v2')
    labels = [c.label for c in surgery.cuts(model, torch.rand(1, 3, 224, 224))]
    # features.2 has no shortcut (stride 2): cut inside; features.3 has one: boundary only.
    assert 'features.2.conv.1' in labels and 'features.2' in labels
    assert 'features.3' in labels and not any(x.startswith('features.3.') for x in labels)


class Branchy(nn.Module):
    """Two cheap branches shrink the input; two costly layers grow them back; a sum."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 8, stride=8)                # (B, 3, 64, 64) -> (B, 4, 8, 8)
        self.b = nn.AdaptiveAvgPool2d(8)                     # -> (B, 3, 8, 8)
        self.merge_a = nn.Conv2d(4, 64, 3, padding=1)        # -> (B, 64, 8, 8)
        self.merge_b = nn.Conv2d(3, 64, 3, padding=1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        y = self.merge_a(self.a(x)) + self.merge_b(self.b(x))
        return self.fc(y.mean((2, 3)))


def test_dads_min_cut_crosses_branches_when_that_is_best():
    model, x = Branchy().eval(), torch.rand(2, 3, 64, 64)
    traced = surgery.trace(model, x)
    assert [c.label for c in traced.cuts] == ['input', 'add', 'mean']
    host = {'a': 1.0, 'b': 0.1, 'merge_a': 5.0, 'merge_b': 5.0, 'add': 0.1, 'mean': 0.1,
            'fc': 0.1}
    edge = {k: 10 * v for k, v in host.items()}
    mc = mincut.min_cut(traced, edge, host, planner.Link(uplink_mbps=1, rtt_ms=0))
    # Edge: a and b (11 ms); send 2 x (4+3) x 8 x 8 floats = 3584 B (28.7 ms); host: the rest.
    assert sorted(mc.sent) == ['a', 'b'] and mc.bytes == 3584 and mc.single_cut is None
    assert mc.edge_ms == pytest.approx(11.0) and mc.host_ms == pytest.approx(10.3)
    assert mc.total_ms < 0.5 * mc.best_single_ms and mc.total_ms < 0.5 * mc.edge_only_ms
    head, tail = surgery.split_nodes(traced, mc.edge_nodes)
    with torch.no_grad():
        sent = head(x)
        assert isinstance(sent, tuple) and len(sent) == 2
        assert float((tail(*sent) - model(x)).abs().max()) <= 1e-5
    with pytest.raises(ValueError, match='not closed'):
        surgery.split_nodes(traced, ['merge_a'])


def test_dads_agrees_with_single_cuts_on_a_chain_of_blocks(small):
    model, x = small
    traced = surgery.trace(model, x[:1])
    host = profiling.node_times(traced, x[:1], repeats=2)
    edge = {k: 10 * v for k, v in host.items()}
    for up in (1.0, 1000.0):
        mc = mincut.min_cut(traced, edge, host, planner.Link(uplink_mbps=up))
        # A residual network has no better partition than its block boundaries.
        assert mc.total_ms <= mc.best_single_ms + 1e-6
        assert mc.total_ms == pytest.approx(mc.best_single_ms, rel=1e-6)
        assert mc.single_cut is not None and len(mc.sent) == 1
        head, tail = surgery.split_nodes(traced, mc.edge_nodes)
        with torch.no_grad():
            assert float((tail(*head(x[:1])) - model(x[:1])).abs().max()) <= 1e-5


# -------------------------------------------------------- cost model, planner

def fake_profile(model='toy', full_ms=10.0) -> profiling.Profile:
    """Return a hand-made profile: three cuts, one codec, a raw frame."""
    cuts = [
        {'name': 'input', 'label': 'input', 'index': 0, 'shape': [1, 3, 8, 8], 'bytes': 768,
         'edge_mac_share': 0.0, 'edge_param_share': 0.0, 'head_ms': 0.0, 'tail_ms': 10.0},
        {'name': 'a', 'label': 'a', 'index': 3, 'shape': [1, 64, 8, 8], 'bytes': 16384,
         'edge_mac_share': 0.3, 'edge_param_share': 0.1, 'head_ms': 3.0, 'tail_ms': 7.0},
        {'name': 'b', 'label': 'b', 'index': 6, 'shape': [1, 16], 'bytes': 64,
         'edge_mac_share': 0.9, 'edge_param_share': 0.5, 'head_ms': 9.0, 'tail_ms': 1.0},
    ]
    features = [{'cut': c['name'], 'codec': 'raw', 'bytes': c['bytes'], 'encode_ms': 0.1,
                 'decode_ms': 0.2} for c in cuts]
    images = [{'codec': 'raw', 'bytes': 3000, 'encode_ms': 0.0, 'decode_ms': 0.0}]
    return profiling.Profile(model=model, input_shape=[3, 8, 8], frame_shape=[20, 50, 3],
                             full_ms=full_ms, preprocess_ms=0.5, cuts=cuts, features=features,
                             images=images)


def test_cost_model_is_the_seed_transfer_model_with_measured_parts():
    cands = planner.build_candidates(fake_profile(), edge_slowdown=10, host_slowdown=0.5)
    link = planner.Link(uplink_mbps=8, downlink_mbps=100, rtt_ms=2, result_bytes=25)
    result = planner.plan(cands, link)
    a = result.row('a/raw')
    # edge: 10 x (preprocess 0.5 + head 3 + encode 0.1); host: 0.5 x (decode 0.2 + tail 7)
    assert a['edge_ms'] == pytest.approx(36.0) and a['host_ms'] == pytest.approx(3.6)
    # 16384 B at 8 Mbit/s = 16.384 ms; 25 B at 100 Mbit/s = 0.002 ms; rtt 2 ms
    assert a['transfer_ms'] == pytest.approx(16.384 + 0.002 + 2.0)
    assert a['total_ms'] == pytest.approx(36.0 + 18.386 + 3.6)
    edge_only = result.row('edge_only')
    assert edge_only['total_ms'] == pytest.approx(105.0) and edge_only['transfer_ms'] == 0
    host_raw = result.row('host_only/raw')
    assert host_raw['host_ms'] == pytest.approx(0.5 * (0.5 + 10.0))
    assert result.choice.name == min(result.rows, key=lambda r: r['total_ms'])['name']
    assert {r['kind'] for r in result.rows} == {'edge_only', 'host_only', 'split'}


def test_min_uplink_speed_is_where_a_cut_starts_beating_edge_only():
    cands = planner.build_candidates(fake_profile(), edge_slowdown=10)
    link = planner.Link(uplink_mbps=1, downlink_mbps=100, rtt_ms=1)
    row = planner.plan(cands, link).row('a/raw')
    speed = row['min_uplink_mbps']
    assert speed > 0
    for factor, wins in ((0.99, False), (1.01, True)):
        at = planner.plan(cands, planner.Link(speed * factor, 100, 1))
        assert (at.row('a/raw')['total_ms'] < at.row('edge_only')['total_ms']) is wins
    # A cut whose compute alone exceeds edge-only never beats it.
    slow = planner.build_candidates(fake_profile(full_ms=2.0), edge_slowdown=1)
    assert planner.plan(slow, link).row('b/raw')['min_uplink_mbps'] is None


def test_planner_update_has_hysteresis():
    cands = planner.build_candidates(fake_profile(), edge_slowdown=10)
    online = planner.Planner(cands, planner.Link(uplink_mbps=20), hysteresis=0.1)
    rows = online.plan().rows
    crossing = next(r for r in rows if r['name'] == 'a/raw')['min_uplink_mbps']
    first = online.choice.name
    # A noisy estimate hovering +-3 % around the speed where two candidates tie.
    names = set()
    for i in range(40):
        names.add(online.update(uplink_mbps=crossing * (1.03 if i % 2 else 0.97)).name)
    assert online.switches <= 1 and len(names) == 1
    # A real change of the link does switch: very slow link -> edge-only.
    assert online.update(uplink_mbps=0.01).name == 'edge_only'
    assert online.update(uplink_mbps=1000).name == first


def stream_candidates() -> list:
    """Return a split of least latency whose edge is slow, a model-size frame, edge-only."""
    def cand(name, kind, edge_ms, nbytes, host_ms):
        return planner.Candidate(name=name, kind=kind, cut='c' if kind == 'split' else None,
                                 codec='raw', shape=(), bytes=nbytes, edge_ms=edge_ms,
                                 host_ms=host_ms)
    return [cand('split', 'split', 25.0, 2000, 5.0),
            cand('host_only/raw@model', 'host_only', 1.0, 27648, 10.0),
            cand('edge_only', 'edge_only', 40.0, 0, 0.0)]


def test_planner_serves_the_camera_rate_before_latency():
    cands, link = stream_candidates(), planner.Link(uplink_mbps=10)
    # Without a camera rate: one frame's latency (split 25 + 1.6 + 5 ms < 1 + 22.1 + 10 ms).
    alone = planner.plan(cands, link)
    assert alone.choice.name == 'split' and 'served_fps' not in alone.rows[0]
    # 30 frames/s that cost the edge 20 ms each to take in leave it 400 ms a second:
    # the split's edge serves 16 frames/s, the model-size frame all 30 (its link: 45).
    stream = Stream(camera_fps=30, intake_ms=20)
    result = planner.plan(cands, link, stream=stream)
    assert result.choice.name == 'host_only/raw@model'
    split, frame = result.row('split'), result.row('host_only/raw@model')
    assert split['served_fps'] == pytest.approx(16.0) and split['limited_by'] == 'edge'
    assert frame['served_fps'] == pytest.approx(30.0) and frame['limited_by'] == 'camera'
    assert result.row('edge_only')['served_fps'] == pytest.approx(10.0)
    assert result.as_dict()['stream'] == {'camera_fps': 30, 'intake_ms': 20}
    # Both serve the camera's rate: latency decides again.
    assert planner.plan(cands, link, stream=Stream(30, 0)).choice.name == 'split'
    # At 2 Mbit/s the frame's link carries 9 frames/s: the split's 16 win.
    slow = planner.plan(cands, planner.Link(uplink_mbps=2), stream=stream)
    assert slow.choice.name == 'split' and slow.row('host_only/raw@model')['limited_by'] == 'link'
    # An edge whose whole second goes to intake serves nothing it computes.
    flooded = planner.plan(cands, link, stream=Stream(30, 40))
    assert flooded.row('split')['served_fps'] == 0 and flooded.choice.name == 'split'
    with pytest.raises(ValueError, match='camera_fps'):
        Stream(camera_fps=-1)


def test_stream_meter_costs_intake_and_planner_replans_with_hysteresis():
    meter = StreamMeter(share=0.25, min_frames=10)
    assert meter.sample(0.0, 0.0, 0, 0, 25.0) is None            # the first: a baseline
    # 2 s: 60 frames in, 24 served at 25 ms; the process spent 0.49 s of CPU at a
    # quarter core: 1960 ms of edge time, 600 of them serving, 1360 / 60 taking frames in.
    stream = meter.sample(2.0, 0.49, 60, 24, 25.0)
    assert stream.camera_fps == pytest.approx(30.0)
    assert stream.intake_ms == pytest.approx(1360 / 60)
    assert meter.sample(3.0, 0.5, 65, 25, 25.0) is None          # 5 frames: too few to tell
    cands, link = stream_candidates(), planner.Link(uplink_mbps=10)
    online = planner.Planner(cands, link, hysteresis=0.1)
    assert online.choice.name == 'split'
    assert online.update(stream=stream).name == 'host_only/raw@model' and online.switches == 1
    assert online.plan().stream == stream
    # Intake so light that the split too serves all 30 frames/s: it is best by latency
    # again, by less than the hysteresis, so the plan stays; a link too slow moves it.
    assert online.update(stream=Stream(30, 0.45)).name == 'host_only/raw@model'
    assert online.update(uplink_mbps=2).name == 'split' and online.switches == 2


def test_uplink_pacer_sends_what_the_link_carries_and_banks_no_credit():
    pacer = UplinkPacer(max_backlog_ms=100, headroom=1.0)
    # A camera at 30 frames/s, 25,000-byte frames over 2 Mbit/s: 100 ms each on the link.
    # The pacer lets up the link's 10 frames/s, never the camera's 30, and never has more
    # than the bound plus one frame on the way.
    sent, worst = 0, 0.0
    for i in range(300):
        now = i * 1000 / 30
        if pacer.ready(now):
            pacer.sent(25_000, 2.0, now)
            sent += 1
        worst = max(worst, pacer.backlog_ms(now))
    assert sent / 10 == pytest.approx(10, abs=0.2) and worst <= 200
    # A link idle for a second banks no credit: the next frame queues behind nothing.
    later = now + 1000
    assert pacer.ready(later) and pacer.backlog_ms(later) == 0
    pacer.sent(25_000, 2.0, later)
    assert pacer.backlog_ms(later) == pytest.approx(100)
    # The headroom leaves a share of the link to headers and other traffic.
    assert UplinkPacer().headroom == PACING_HEADROOM < 1
    with pytest.raises(ValueError, match='headroom'):
        UplinkPacer(headroom=0)


def test_profiles_round_trip_and_edge_host_profiles_combine(tmp_path, one_thread):
    model = models.build_model()
    prof = profiling.measure_profile(model, None, (1, 28, 28), 'small_resnet',
                                     codecs=('raw', 'q8'), repeats=2, warmup=1)
    path = prof.save(tmp_path / 'edge.json')
    again = profiling.load_profile(path)
    assert again == prof and again.machine['threads'] == 1
    assert {f['codec'] for f in again.features} == {'raw', 'q8'}
    assert again.nodes['layer1_0_conv1'] > 0 and 'fc' in again.nodes  # per node, for DADS
    assert all(c['head_ms'] > 0 and c['tail_ms'] > 0 for c in again.cuts[1:])
    raw = {f['cut']: f['bytes'] for f in again.features if f['codec'] == 'raw'}
    assert all(raw[c['name']] == c['bytes'] for c in again.cuts)
    # An edge profile k times slower gives edge times k times larger.
    one = planner.build_candidates(again, prof)
    ten = planner.build_candidates(again, prof, edge_slowdown=10)
    for c1, c10 in zip(one, ten):
        assert c10.edge_ms == pytest.approx(10 * c1.edge_ms)
        assert c10.host_ms == pytest.approx(c1.host_ms)
    with pytest.raises(ValueError, match='not of the same model'):
        planner.build_candidates(again, fake_profile())
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps({'format': 'something else'}))
    with pytest.raises(ValueError, match='not a surgery profile'):
        profiling.load_profile(bad)


def test_profile_sizes_follow_the_jpeg_quality_the_edge_sends(one_thread):
    """The planner costs JPEG at the node's ``quality``: q5 features are far smaller than q90."""
    model = models.build_model()
    sizes = {}
    for q in (5, 90):
        prof = profiling.measure_profile(model, None, (1, 28, 28), 'small_resnet',
                                         codecs=('jpeg',), frame_codecs=('jpeg',), repeats=1,
                                         warmup=0, quality=q, frame_quality=q)
        assert prof.machine['jpeg_quality'] == q and prof.machine['frame_jpeg_quality'] == q
        label = {c['name']: c['label'] or c['name'] for c in prof.cuts}
        sizes[q] = ({label[f['cut']]: f['bytes'] for f in prof.features},
                    {i['codec']: i['bytes'] for i in prof.images})
    features5, frames5 = sizes[5]
    features90, frames90 = sizes[90]
    assert features5['layer1'] * 4 < features90['layer1']
    assert frames5['jpeg'] < frames90['jpeg']


def test_cli_plan_prints_table_and_json_choice(capsys, tmp_path, one_thread):
    code = cli.main(['profile', '--codecs', 'raw,q8', '--repeats', '2', '--warmup', '0',
                     '--out', str(tmp_path / 'edge.json'), '--json'])
    assert code == 0
    capsys.readouterr()
    profiles = ['--edge-profile', str(tmp_path / 'edge.json'), '--host-profile',
                str(tmp_path / 'edge.json'), '--edge-slowdown', '10', '--uplink-mbps', '2']
    code = cli.main(['plan', *profiles, '--codecs', 'raw,q8', '--min-cut', '--json'])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    result = json.loads(out[-1])
    rows = result['candidates']
    allowed = [r for r in rows if not r['excluded']]
    assert result['choice'] == min(allowed, key=lambda r: r['total_ms'])['name']
    names = {r['name'] for r in rows}
    assert 'edge_only' in names and 'host_only/raw' in names and 'layer2/q8' in names
    # q8 is lossy and the default target's shipped measurements have none of it; jpeg
    # frames are not on the allow-list.
    for r in rows:
        assert r['total_ms'] == pytest.approx(r['edge_ms'] + r['transfer_ms'] + r['host_ms'],
                                              abs=1e-3)
        assert (r['excluded'] == 'no accuracy measurement') == (r['codec'] == 'q8'), r
    assert result['excluded'] == sum(bool(r['excluded']) for r in rows) > 0
    assert next(r for r in rows if r['name'] == 'host_only/jpeg')['excluded'] == \
        'codec jpeg not in the codecs allow-list'
    assert any(line.split()[0] == 'edge_only' for line in out if line.strip())
    # The profile timed every defense of the default target; --defense puts one on the edge
    # (edge-only, splits) and on the host (host-only frames), at the sides' slowdowns.
    timed = profiling.load_profile(tmp_path / 'edge.json').defense_ms
    assert set(timed) == {'jpeg', 'dunet', 'dunet_d'}
    code = cli.main(['plan', *profiles, '--codecs', 'raw,q8', '--defense', 'dunet_d', '--json'])
    defended = {r['name']: r for r in
                json.loads(capsys.readouterr().out.strip().splitlines()[-1])['candidates']}
    assert code == 0
    before = {r['name']: r for r in rows}
    assert defended['edge_only']['edge_ms'] == pytest.approx(
        before['edge_only']['edge_ms'] + 10 * timed['dunet_d'], abs=1e-3)
    assert defended['host_only/raw']['host_ms'] == pytest.approx(
        before['host_only/raw']['host_ms'] + timed['dunet_d'], abs=1e-3)
    assert any('choice:' in line for line in out)
    assert any('no accuracy measurement' in line for line in out)
    mc = result['min_cut']
    assert mc['total_ms'] <= mc['best_single_ms'] + 1e-6 and mc['bytes'] > 0

    # A bundle's accuracy profile, the bound and the allow-list.
    bundle = tmp_path / 'bundle'
    Bundle(bundle, {'format': 1, 'target': {'model': 'small_resnet', 'input': [1, 28, 28]},
                    'accuracy': [{'cut': 'layer2', 'codec': 'q8', 'quality': None,
                                  'accuracy': 0.936, 'reference': 0.938, 'drop_pt': 0.2,
                                  'n': 2000}]}).save()
    for drop, excluded in (('1.0', ''), ('0.1', 'accuracy drop 0.20 pt > 0.1')):
        code = cli.main(['plan', *profiles, '--codecs', 'q8', '--bundle', str(bundle),
                         '--max-accuracy-drop', drop, '--json'])
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert code == 0 and result['accuracy_profile'] == f'bundle {bundle}'
        row = next(r for r in result['candidates'] if r['name'] == 'layer2/q8')
        assert row['excluded'] == excluded and row['drop_pt'] == 0.2
        raw = next(r for r in result['candidates'] if r['name'] == 'host_only/raw')
        assert raw['excluded'] == 'codec raw not in the codecs allow-list'
        assert not result['choice'].endswith('/q8') or result['choice'] == 'layer2/q8'


def test_cli_plan_rejects_a_profile_of_another_input(tmp_path, capsys):
    path = fake_profile().save(tmp_path / 'toy.json')
    code = cli.main(['plan', '--edge-profile', str(path), '--host-profile', str(path)])
    assert code == 2
    assert 'is for input [3, 8, 8]' in capsys.readouterr().err


# ----------------------------------------------------------------- validation

def test_planner_validation_runs_every_candidate_end_to_end(one_thread):
    """
    Check the planner's validation on the default model at 1, 10 and 100 Mbit/s.

    Real class and weights. Every candidate runs end to end (real head, real encode,
    bytes / rate, real decode and tail) on an edge emulated 10x slower than this machine,
    and the choice runs head to head with the best measured ones. How close the choice
    comes to the measured best (the 5 % bar) is a timing figure: ``edge-denoise bench
    planner`` measures it and exits 1 when it is missed (docs/results/planner.json). It is
    not asserted here, where the other tenants of a shared machine make any time bound a
    coin toss (1.0500 against 1.05 once).
    """
    model = models.build_model()
    res = validation.validate(model, (1, 28, 28), [1, 10, 100], edge_slowdown=10,
                              repeats=4, warmup=1, clock='cpu', stat='p20')
    assert res['candidates'] > 60  # 20 cuts x 4 codecs, host-only, edge-only
    assert [s['uplink_mbps'] for s in res['speeds']] == [1.0, 10.0, 100.0]
    for s in res['speeds']:
        # The choice and every rival it met head to head were run end to end.
        assert s['choice'] in res['measured'] and s['paired_ratios'], s
        assert set(s['paired_ratios']) <= set(res['measured']), s
    # The exact paths are exact end to end: codec round trip included.
    for name, m in res['measured'].items():
        if name.endswith(('/raw', '/lossless')) or name == 'edge_only':
            assert m['max_error'] <= 1e-5, name
