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
One host, many robots; a fleet shared by two hosts: real host processes on real DDS.

Simulated robots replay feature messages encoded by the edge stage (each robot with its
own epoch and seq); every robot's frames are accounted for exactly (played = classified
+ dropped with the serving host's reason), each robot's results come back in its own
namespace, each robot is served by the host whose ``robots`` list names it, and every
classification equals one-by-one inference of the message it answers.
"""

import json
import threading
import time

import pytest
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import String

from edge_denoise_ros.core import accounting, pipeline, tails, wire
from edge_denoise_ros.core.models import compute_threads
from edge_denoise_ros.harness.fleet import record_features, run_fleet
from edge_denoise_ros.ros.common import features_qos
from edge_denoise_ros.ros.host_node import HostNode
from conftest import wait_for

pytestmark = pytest.mark.ros
MESSAGES = 16


@pytest.fixture(scope='module')
def recorded():
    with compute_threads(1):
        target = pipeline.Target()
        messages = record_features(MESSAGES, target=target)
        stage = pipeline.HostStage(target, tails=tails.finetuned_tails(target))
        want = [target.classify(stage.process(p, m)[0])['class_id'] for p, m in messages]
    return messages, want


def _check(result, hosts, want):
    assert set(result.exit_codes.values()) == {0}, result.exit_codes
    by_robot = {a['robot']: a for a in result.robots}
    for host, robots in hosts.items():
        for robot in robots:
            a = by_robot[robot]
            assert a['status'] == f'edge_denoise_ros: {host}/{robot}', a
            assert a['played'] >= 30, a
            assert a['played'] == a['classified'] + a['dropped'], a
            assert a['unaccounted'] == 0 and a['result_lost'] == 0, a
            assert a['host_frames'] == a['classified'] and a['host_received'] <= a['played'], a
            assert a['duplicates'] == 0 and a['foreign'] == 0, a
            assert a['classified'] >= 0.8 * a['played'], a
    for name in result.statuses:  # no host reports a robot it does not serve
        host, _, robot = name.removeprefix('edge_denoise_ros: ').partition('/')
        assert not robot or robot in hosts[host], name
    return by_robot


def _check_records(records, want):
    for robot, results in records.items():
        for seq, (_, record) in results.items():
            assert record['robot'] == robot and record['seq'] == seq
            assert record['class_id'] == want[(seq - 1) % len(want)], (robot, seq)
            assert record['latency_ms'] is not None and record['latency_ms'] >= 0


def test_two_robots_on_one_host(recorded, ros_domain, tmp_path):
    messages, want = recorded
    hosts = {'host_node': ['robot1', 'robot2']}
    records = {}
    result = run_fleet(hosts, messages, ros_domain.env(), tmp_path, duration_s=3.0,
                       host_params={'max_batch': 8}, keep_records=records)
    _check(result, hosts, want)
    _check_records(records, want)
    assert result.figures['frames_per_s'] > 0


def test_two_hosts_share_four_robots(recorded, ros_domain, tmp_path):
    messages, want = recorded
    hosts = {'host_a': ['robot1', 'robot2'], 'host_b': ['robot3', 'robot4']}
    records = {}
    result = run_fleet(hosts, messages, ros_domain.env(), tmp_path, duration_s=3.0,
                       keep_records=records)
    _check(result, hosts, want)
    _check_records(records, want)
    for host in hosts:   # each host's own total counts only its robots' frames
        total = result.statuses[f'edge_denoise_ros: {host}']
        served = sum(len(records[r]) for r in hosts[host])
        assert int(total['frames']) == served, (host, total)


# --- in this process: discovery, per-robot accounting and namespaces -------------------------

class Robots:
    """A probe node playing robots on absolute topics; spins the host in a thread."""

    def __init__(self, context, host, names):
        self.node = Node('robots_probe', context=context)
        self.results = {n: [] for n in names}
        self.pubs = {}
        for name in names:
            self.pubs[name] = self.node.create_publisher(
                CompressedImage, f'/{name}/features', features_qos('reliable', 10))
            self.node.create_subscription(
                String, f'/{name}/classification',
                lambda m, n=name: self.results[n].append(json.loads(m.data)), 10)
        self.executor = MultiThreadedExecutor(num_threads=3, context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(host)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def wait(self, condition, timeout=20.0):
        return wait_for(condition, timeout)

    def send(self, name, message, **fields):
        payload, meta = message
        msg = CompressedImage(format=wire.format_string({**meta, **fields}))
        msg.data = payload
        self.pubs[name].publish(msg)

    def close(self):
        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(timeout=5.0)
        self.node.destroy_node()


def test_discovered_robots_are_served_in_their_namespaces(recorded, rclpy_context):
    messages, want = recorded
    host = HostNode(context=rclpy_context, parameter_overrides=[
        Parameter('robots', value=['robot7']), Parameter('discover', value=True)])
    probe = Robots(rclpy_context, host, ['robot7', 'robot8'])
    try:
        assert probe.wait(lambda: all(p.get_subscription_count() for p in probe.pubs.values())), \
            'the host did not discover robot8'
        epochs = {n: accounting.new_epoch() for n in probe.pubs}
        for seq in (1, 2, 3):
            for name in probe.pubs:
                probe.send(name, messages[seq], epoch=epochs[name], seq=seq, t_rx=time.time_ns())
        assert probe.wait(lambda: all(len(r) == 3 for r in probe.results.values()))
        for name, results in probe.results.items():
            assert [r['robot'] for r in results] == [name] * 3
            assert sorted(r['seq'] for r in results) == [1, 2, 3]
            assert all(r['epoch'] == epochs[name] for r in results)
            assert [r['class_id'] for r in sorted(results, key=lambda r: r['seq'])] == want[1:4]
    finally:
        probe.close()
        host.destroy_node()


def test_each_robot_has_its_own_sequence_and_epoch(recorded, rclpy_context):
    messages, _ = recorded
    host = HostNode(context=rclpy_context, parameter_overrides=[
        Parameter('robots', value=['ra', 'rb'])])
    probe = Robots(rclpy_context, host, ['ra', 'rb'])
    try:
        assert probe.wait(lambda: all(p.get_subscription_count() for p in probe.pubs.values()))
        a, b = accounting.new_epoch(), accounting.new_epoch()
        now = time.time_ns()
        # Interleaved, both from seq 1: one robot's numbers never disturb the other's.
        for seq in (1, 2, 5):
            probe.send('ra', messages[0], epoch=a, seq=seq, t_rx=now)
        for seq in (1, 2, 3):
            probe.send('rb', messages[0], epoch=b, seq=seq, t_rx=now)
        probe.send('ra', messages[0], epoch=a, seq=5, t_rx=now)      # replayed: refused
        a2 = accounting.new_epoch()
        probe.send('ra', messages[0], epoch=a2, seq=3, t_rx=now)     # restart; 2 before join
        assert probe.wait(lambda: len(probe.results['ra']) == 4 and len(probe.results['rb']) == 3)
        robots = {r.label: r for r in host.robots.values()}
        assert probe.wait(lambda: robots['ra'].stats.errors['replayed'] == 1)
        ra, rb = robots['ra'].stats.snapshot(), robots['rb'].stats.snapshot()
        assert ra['drops'] == {'lost_in_transit': 2, 'before_join': 2}, ra
        assert ra['errors'] == {'replayed': 1} and ra['counts']['restarts'] == 1
        assert ra['counts']['received'] == 5 and ra['frames'] == 4
        assert rb['drops'] == {} and rb['errors'] == {} and rb['frames'] == 3
        total = host.total.snapshot()
        assert total['frames'] == 7
        assert total['drops'] == {'lost_in_transit': 2, 'before_join': 2}
    finally:
        probe.close()
        host.destroy_node()


def test_batch_parameters_are_checked_and_applied_live(rclpy_context):
    host = HostNode(context=rclpy_context)
    try:
        assert host.set_parameters([Parameter('max_batch', value=4)])[0].successful
        assert host.batcher.config.max_batch == 4
        bad = host.set_parameters([Parameter('max_batch', value=0)])[0]
        assert not bad.successful and 'max_batch' in bad.reason
        assert host.set_parameters([Parameter('queue_depth', value=1)])[0].successful
        assert host.batcher.config.queue_depth == 1
        with pytest.raises(ValueError, match='twice'):
            HostNode('host_twice', context=rclpy_context, parameter_overrides=[
                Parameter('robots', value=['r1', 'r1'])])
    finally:
        host.destroy_node()
