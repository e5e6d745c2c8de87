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
kill -9 either side mid-replay and start it again: every frame classified or dropped with a reason.

The side that survives keeps exact counts; the edge's (epoch, seq) on the wire lets the
harness tell the killed side's frames apart:

- host killed: every frame the edge received is a feature with a seq; each seq is
  classified (by the first or the second host), counted by the surviving host (lost in
  transit, refused, skipped), or fell between the first host's last and the second
  host's first message (``host_down``): exact.
- edge killed: every frame the second edge received is classified or counted by it or by
  the host, exactly; the first edge's frames are classified, counted by the host (its
  seq gaps), or were in the killed process or played while no edge ran
  (``edge_down``), which is bounded by the time the edge was away. The host sees the
  restart (a new epoch) at once.
"""

import os
import signal
import time

import pytest

from edge_denoise_ros.core.models import compute_threads
from edge_denoise_ros.harness.demo_bag import DemoBagConfig, make_demo_bag
from edge_denoise_ros.harness.launcher import run_edge_host, start_node
from edge_denoise_ros.ros.common import status_count
from conftest import wait_for

pytestmark = pytest.mark.ros
FRAMES = 540
RATE_HZ = 30.0
EDGE = {'defense': 'none'}


@pytest.fixture(scope='module')
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp('restart') / 'bag'
    with compute_threads(1):
        make_demo_bag(path, DemoBagConfig(frames=FRAMES, seed=4, adversarial_fraction=0.0))
    return str(path)


def _status(statuses: dict, name: str) -> dict:
    return statuses.get(f'edge_denoise_ros: {name}', {})


def _counted(values: dict, *keys: str) -> int:
    return sum(status_count(values, k) for k in keys)


def _drops(values: dict, exclude=()) -> int:
    return sum(status_count(values, k) for k in values
               if k.startswith(('dropped.', 'errors.')) and k not in exclude)


def _kill(proc) -> None:
    os.killpg(proc.proc.pid, signal.SIGKILL)
    proc.proc.wait()


def test_host_killed_mid_replay(bag, ros_domain, tmp_path):
    env = ros_domain.env()
    marks = {}

    def kill_host(collector, player, procs):
        assert wait_for(lambda: collector.count() >= 40, 60), 'nothing classified before the kill'
        with collector.lock:
            marks['first_host'] = dict(_status(collector.statuses, 'host_node'))
        _kill(next(p for p in procs if p.name == 'host_node'))
        marks['killed'] = time.time_ns()
        time.sleep(1.0)
        procs.append(start_node('host_node', {}, env, tmp_path, name='host_node_2'))
        assert wait_for(lambda: collector.node.count_subscribers('features') > 0, 60)
        marks['left'] = FRAMES - player.report().total

    result = run_edge_host(bag, EDGE, {}, env, tmp_path, during=kill_host)
    assert result.played == FRAMES and result.exit_codes['edge_process'] == 0
    denoiser, target = (_status(result.statuses, n) for n in ('denoiser', 'target'))
    host = _status(result.statuses, 'host_node')            # the second host's, at the end
    seqs = {r['seq']: t for t, r in result.received}
    first = [s for s, t in seqs.items() if t < marks['killed']]
    second = [s for s, t in seqs.items() if t > marks['killed']]
    assert first and second, ('both hosts classified frames', marks)
    assert len({r['epoch'] for _, r in result.received}) == 1      # one edge, one epoch
    sent = status_count(target, 'frames')                           # seqs 1..sent
    # The first host's era: what it did not serve, it counted (its last diagnostics before
    # the kill; e.g. the frames sent before discovery reached it: before_join).
    before = [s for s in range(1, max(first) + 1) if s not in seqs]
    assert len(before) == _drops(marks['first_host']), (before[:10], marks['first_host'])
    # The second host joined the stream late and says so: every frame before its first.
    joined = status_count(host, 'dropped.before_join')
    assert max(first) <= joined < min(second), (joined, max(first), min(second))
    host_down = joined - max(first)          # sent while no host listened: nobody served them
    assert not [s for s in range(max(first) + 1, joined + 1) if s in seqs]
    # (the second host's own count: its first results may go out before this collector
    # matched its new classification publisher)
    served_second = status_count(host, 'frames')
    assert served_second >= len(second)
    assert sent - joined == served_second + _drops(host, ('dropped.before_join',)), host
    # Every camera frame: not received by the edge, dropped by it, or a seq accounted above.
    received = status_count(denoiser, 'received')
    edge_drops = _drops(denoiser) + _drops(target)
    assert received == sent + edge_drops, (denoiser, target)
    reasons = {'edge.not_received': result.played - received, 'edge.drops': edge_drops,
               'host_down': host_down, 'first_host.counted': len(before),
               'host.counted': _drops(host, ('dropped.before_join',))}
    classified = len(first) + served_second
    assert classified + sum(reasons.values()) == result.played, (classified, reasons)


def test_edge_killed_mid_replay(bag, ros_domain, tmp_path):
    env = ros_domain.env()
    marks = {}

    def kill_edge(collector, player, procs):
        assert wait_for(lambda: collector.count() >= 40, 60), 'nothing classified before the kill'
        _kill(next(p for p in procs if p.name == 'edge_process'))
        marks['killed'] = time.time_ns()
        marks['played_at_kill'] = player.report().total
        time.sleep(0.5)
        procs.append(start_node('edge_process', EDGE, env, tmp_path, name='edge_process_2'))

    result = run_edge_host(bag, EDGE, {}, env, tmp_path, during=kill_edge)
    assert result.played == FRAMES and result.exit_codes['host_node'] == 0
    epochs = []
    for _, r in result.received:
        if r['epoch'] not in epochs:
            epochs.append(r['epoch'])
    assert len(epochs) == 2, epochs                   # the restart is a new epoch
    first, second = epochs
    host = _status(result.statuses, 'host_node')        # survived: exact
    denoiser, target = (_status(result.statuses, n) for n in ('denoiser', 'target'))   # 2nd edge
    assert status_count(host, 'restarts') == 1
    by_epoch = {e: sorted(r['seq'] for _, r in result.received if r['epoch'] == e)
                for e in epochs}
    # Second edge: every frame it received is classified or counted, by it or by the host.
    received_2 = status_count(denoiser, 'received')
    sent_2 = status_count(target, 'frames')
    assert received_2 == sent_2 + _drops(denoiser) + _drops(target), (denoiser, target)
    gaps_1 = max(by_epoch[first]) - len(by_epoch[first])    # first edge's seqs the host missed
    host_counted = _drops(host)
    assert sent_2 == len(by_epoch[second]) + host_counted - gaps_1, (host, by_epoch)
    # First edge: what it held or what was played while no edge ran, bounded by the outage.
    edge_down = result.played - received_2 - len(by_epoch[first]) - gaps_1
    t_last_1 = max(t for t, r in result.received if r['epoch'] == first)
    t_first_2 = min(t for t, r in result.received if r['epoch'] == second)
    outage = (t_first_2 - t_last_1) / 1e9 + 1.0
    assert 0 <= edge_down <= RATE_HZ * outage, (edge_down, outage)
