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
End to end: a camera bag replayed through real host and edge processes on real DDS.

Every frame is accounted for (played = classified + dropped with a reason),
and the pipeline's accuracy equals this process's evaluation of the same
frames; sqlite3 and MCAP bags, raw and compressed camera input, the
composed edge process and the single edge node, and a host restart.
"""

import time

import pytest

from edge_denoise_ros.core import pipeline
from edge_denoise_ros.core.models import compute_threads
from edge_denoise_ros.harness import demo, demo_bag
from edge_denoise_ros.harness.launcher import run_edge_host, start_node

pytestmark = pytest.mark.ros
FRAMES = 60


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('bags')
    made = {}
    configs = {
        'mcap': demo_bag.DemoBagConfig(frames=FRAMES, storage='mcap'),
        'sqlite3': demo_bag.DemoBagConfig(frames=FRAMES, storage='sqlite3', seed=1),
        'compressed': demo_bag.DemoBagConfig(frames=FRAMES, compressed='png', seed=2),
        'long': demo_bag.DemoBagConfig(frames=300, seed=3, adversarial_fraction=0.0),
    }
    with compute_threads(1):  # small batches: one thread is fastest on a busy machine
        for name, cfg in configs.items():
            demo_bag.make_demo_bag(root / name, cfg)
            made[name] = root / name
    return made


@pytest.fixture(scope='module')
def target():
    return pipeline.Target()


def _check_accounting(result, cfg, truths, target, topic='/image_raw'):
    settings = pipeline.EdgeSettings(cfg.defense, cfg.cut, cfg.codec, cfg.quality)
    ref = demo.reference(cfg.bag, settings, target, topic)
    s = demo.summarize_demo(cfg, result, truths, ref)
    assert not s['crashed'] and set(s['exit_codes'].values()) == {0}, s
    assert s['played'] == FRAMES
    assert s['classified'] + s['dropped'] == s['played']
    assert sum(s['drop_reasons'].values()) == s['dropped'], s['drop_reasons']
    assert 'unaccounted' not in s['drop_reasons']
    assert s['classified'] >= FRAMES // 2, s
    for kind in ('clean', 'adversarial'):
        got, want = s['accuracy'][kind], s['reference']['defended'][kind]
        assert abs(got - want) <= 0.01, (kind, got, want)
    assert s['reference']['agreement'] >= 0.99
    return s


@pytest.mark.parametrize('storage,composed', [('mcap', True), ('sqlite3', False)])
def test_replay_accounts_for_every_frame(bags, target, ros_domain, tmp_path, storage,
                                         composed):
    cfg = demo.DemoConfig(bag=str(bags[storage]), defense='dunet_d', composed=composed)
    truths = demo_bag.read_ground_truth(cfg.bag)
    result = run_edge_host(cfg.bag, cfg.edge(), {}, ros_domain.env(), tmp_path,
                           composed=composed)
    s = _check_accounting(result, cfg, truths, target)
    # Each side's status says who it is connected to: the edge one host, the host one edge.
    linked = {key: [v[key] for v in result.statuses.values() if key in v]
              for key in ('features.subscribers', 'features.publishers')}
    assert linked == {'features.subscribers': ['1'], 'features.publishers': ['1']}, linked
    # The defense works through the real pipeline too: adversarial frames mostly right.
    assert s['accuracy']['adversarial'] >= 0.5
    assert s['bytes_per_frame'] < s['raw_bytes_per_frame'] / 10


def test_compressed_camera_input(bags, target, ros_domain, tmp_path):
    topic = '/image_raw/compressed'
    cfg = demo.DemoConfig(bag=str(bags['compressed']), defense='none', codec='lossless',
                          edge_params={'input_transport': 'compressed'})
    truths = demo_bag.read_ground_truth(cfg.bag, )
    result = run_edge_host(cfg.bag, cfg.edge(), {}, ros_domain.env(), tmp_path,
                           camera_topic=topic)
    _check_accounting(result, cfg, truths, target, topic)


def test_host_restart_mid_replay(bags, ros_domain, tmp_path):
    cfg = demo.DemoConfig(bag=str(bags['long']), defense='none')
    env = ros_domain.env()
    marks = {}

    def restart_host(collector, player, procs):
        assert _wait(lambda: collector.count() >= 5, 30), 'no classification before restart'
        host = next(p for p in procs if p.name == 'host_node')
        assert host.stop() == 0
        marks['down'] = collector.count()
        time.sleep(1.0)
        marks['played_at_restart'] = player.report().total
        procs.append(start_node('host_node', {}, env, tmp_path, name='host_node_2'))

    result = run_edge_host(cfg.bag, cfg.edge(), {}, env, tmp_path, during=restart_host)
    assert result.played == 300
    frames = sorted(demo_bag.read_ground_truth(cfg.bag))
    restart_stamp = frames[marks['played_at_restart']]
    # The new host classified frames played after its start: the host resumed.
    later = [s for s in result.records if s > restart_stamp]
    assert len(later) >= 5, (len(later), marks)
    # Frames played while no host was up were published by the edge, not classified.
    assert len(result.records) < result.played
    # The edge kept publishing while the host was down: it sent more than the host served.
    edge = result.statuses['edge_denoise_ros: target']
    assert int(edge['frames']) > len(result.records)
    assert result.exit_codes['host_node_2'] == 0 and result.exit_codes['edge_process'] == 0


def _wait(condition, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return False
