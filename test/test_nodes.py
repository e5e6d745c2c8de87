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

"""The nodes in this process on a private DDS domain: parameters and bad input."""

import json
import threading

import numpy as np
import pytest
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from edge_denoise_ros.core import data, pipeline, wire
from edge_denoise_ros.ros import conversions
from edge_denoise_ros.ros.common import features_qos, status_values
from edge_denoise_ros.ros.edge_node import EdgeNode
from edge_denoise_ros.ros.host_node import HostNode
from conftest import wait_for

pytestmark = pytest.mark.ros


class Harness:
    """Spin nodes in a thread; a probe node publishes frames/features and collects outputs."""

    def __init__(self, context, *nodes):
        import rclpy.node
        from diagnostic_msgs.msg import DiagnosticArray

        self.probe = rclpy.node.Node('probe', context=context)
        self.features, self.results, self.diags = [], [], {}
        self.probe.create_subscription(CompressedImage, 'features', self.features.append,
                                       features_qos('reliable', 10))
        self.probe.create_subscription(String, 'classification',
                                       lambda m: self.results.append(json.loads(m.data)), 10)
        self.probe.create_subscription(DiagnosticArray, 'diagnostics', self._diag, 10)
        self.camera = self.probe.create_publisher(Image, 'image_raw', qos_profile_sensor_data)
        self.feature_pub = self.probe.create_publisher(CompressedImage, 'features',
                                                       features_qos('reliable', 10))
        self.executor = MultiThreadedExecutor(num_threads=4, context=context)
        for node in (self.probe, *nodes):
            self.executor.add_node(node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _diag(self, msg):
        for status in msg.status:
            self.diags[status.name] = status_values(status)

    def wait(self, condition, timeout=20.0):
        return wait_for(condition, timeout)

    def connected(self, pub, n=1):
        assert self.wait(lambda: pub.get_subscription_count() >= n), 'no subscriber'

    def close(self):
        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(timeout=5.0)


@pytest.fixture(scope='module')
def sample_frame():
    images, labels = data.load_fashion_mnist('test')
    return data.sample_to_frame(images[0], 224, 'bgr8'), int(labels[0])


@pytest.fixture
def edge(rclpy_context):
    node = EdgeNode(context=rclpy_context, parameter_overrides=[
        Parameter('defense', value='none'), Parameter('cut', value='layer1'),
        Parameter('codec', value='jpeg'), Parameter('quality', value=90)])
    harness = Harness(rclpy_context, node)
    harness.connected(harness.camera)
    yield node, harness
    harness.close()
    node.destroy_node()


def test_parameters_are_described_with_ranges(edge):
    node, _ = edge
    quality, model, defense = node.describe_parameters(['quality', 'model', 'defense'])
    assert quality.description and quality.integer_range[0].from_value == 1 \
        and quality.integer_range[0].to_value == 100
    assert model.read_only
    assert 'dunet_d' in defense.additional_constraints
    for name in node._parameters:
        if name != 'use_sim_time':
            assert node.describe_parameter(name).description, name


@pytest.mark.parametrize('name,value,reason', [
    ('quality', 0, 'out of range'),
    ('codec', 'bogus', 'codec must be one of'),
    ('cut', 'no_such_cut', 'not a cut'),
    ('cut', 'auto', 'start-up'),
    ('defense', 'magic', 'defense must be one of'),
    ('cut', 'output', 'codec raw'),
])
def test_bad_parameter_values_are_refused_with_a_reason(edge, name, value, reason):
    node, _ = edge
    before = node.stage.settings
    result = node.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful and reason in result.reason
    assert node.stage.settings == before
    assert node.get_parameter(name).value != value


def test_cut_change_applies_to_the_next_frame(edge, sample_frame):
    node, h = edge
    frame, _ = sample_frame
    assert node.set_parameters([Parameter('cut', value='layer2')])[0].successful
    h.camera.publish(conversions.image_to_msg(frame, 'bgr8'))
    assert h.wait(lambda: h.features)
    meta = wire.parse_format(h.features[-1].format)
    assert meta['cut'] == 'layer2' and meta['codec'] == 'jpeg' and meta['quality'] == 90
    assert meta['model'] == node.stage.target.hash


def _bad_images(frame):
    wrong = conversions.image_to_msg(frame, 'bgr8')
    wrong.encoding = '16UC1'
    empty = Image(height=0, width=0, encoding='bgr8', step=0)
    short = conversions.image_to_msg(frame, 'bgr8')
    short.step = short.step - 3
    truncated = conversions.image_to_msg(frame, 'bgr8')
    truncated.data = truncated.data[:1000]
    return [wrong, empty, short, truncated]


def test_edge_counts_bad_frames_and_serves_the_next(edge, sample_frame):
    node, h = edge
    frame, _ = sample_frame
    bad = _bad_images(frame)
    for i, msg in enumerate(bad, 1):
        h.camera.publish(msg)
        assert h.wait(lambda: node.stats.errors['bad_image'] == i), f'bad frame {i} not counted'
    h.camera.publish(conversions.image_to_msg(frame, 'bgr8'))
    assert h.wait(lambda: len(h.features) == 1)
    assert h.wait(lambda: h.diags.get('edge_denoise_ros: edge_node', {}).get(
        'errors.bad_image') == str(len(bad)), timeout=5)
    assert node.stats.frames == 1


@pytest.fixture
def host(rclpy_context):
    node = HostNode(context=rclpy_context)
    harness = Harness(rclpy_context, node)
    harness.connected(harness.feature_pub)
    yield node, harness
    harness.close()
    node.destroy_node()


def _valid(node, frame, cut='layer1', codec='jpeg'):
    stage = pipeline.EdgeStage(node.target, pipeline.EdgeSettings('none', cut, codec, 90))
    return stage.process(frame, 'bgr8')


def _msg(payload, meta_or_format):
    fmt = meta_or_format if isinstance(meta_or_format, str) else \
        wire.format_string(meta_or_format)
    msg = CompressedImage(format=fmt)
    msg.data = bytes(payload)
    return msg


def _bad_features(node, frame):
    out = _valid(node, frame)
    raw = _valid(node, frame, codec='raw')
    nan = bytearray(raw.payload)
    nan[0:4] = np.array([np.nan], '<f4').tobytes()
    nan_meta = {k: v for k, v in raw.meta.items() if k not in ('size', 'crc32')}
    flipped = bytearray(out.payload)
    flipped[len(flipped) // 2] ^= 0xFF
    return [
        ('codec', _msg(out.payload[:len(out.payload) // 2], out.meta)),
        ('codec', _msg(flipped, out.meta)),
        ('codec', _msg(out.payload, 'jpeg')),
        ('unknown_cut', _msg(out.payload, {**out.meta, 'cut': 'layer9'})),
        ('model_mismatch', _msg(out.payload, {**out.meta, 'model': '0123456789ab'})),
        ('codec', _msg(bytes(nan), nan_meta)),
        ('shape_mismatch', _msg(raw.payload, {**raw.meta, 'cut': 'layer2'})),
    ]


def test_host_counts_bad_messages_by_kind_and_serves_the_next(host, sample_frame):
    node, h = host
    frame, label = sample_frame
    bad = _bad_features(node, frame)
    for i, (kind, msg) in enumerate(bad, 1):
        before = node.stats.errors[kind]
        h.feature_pub.publish(msg)
        assert h.wait(lambda: node.stats.errors[kind] == before + 1), f'#{i} {kind}'
    assert not h.results
    good = _valid(node, frame)
    h.feature_pub.publish(conversions.payload_to_msg(good.payload, good.meta))
    assert h.wait(lambda: h.results)
    record = h.results[0]
    assert record['class_id'] == label and record['label'] == data.CLASSES[label]
    assert len(record['top_k']) == 3 and 0 < record['score'] <= 1
    want = {f'errors.{k}': str(sum(1 for kk, _ in bad if kk == k)) for k, _ in bad}
    assert h.wait(lambda: all(h.diags.get('edge_denoise_ros: host_node', {}).get(k) == v
                              for k, v in want.items()), timeout=5), h.diags


@pytest.mark.parametrize('cut,codec', [('frame', 'jpeg'), ('frame', 'raw'),
                                       ('output', 'raw'), ('input', 'lossless')])
def test_host_serves_every_kind_of_cut(host, sample_frame, cut, codec):
    node, h = host
    frame, label = sample_frame
    out = _valid(node, frame, cut=cut, codec=codec)
    h.feature_pub.publish(conversions.payload_to_msg(out.payload, out.meta))
    assert h.wait(lambda: h.results)
    assert h.results[0]['class_id'] == label and h.results[0]['cut'] == cut


def test_nodes_wait_on_no_qos_event_status_conditions(edge, host):
    """
    No QoS event handlers on the nodes' topics: with them, rmw_fastrtps woke every wait.

    A sample pending on a busy subscription kept the reader's status condition
    raised through its event handlers, and the executor thread busy-looped
    (thousands of empty waits a second), starving inference: the demo lost
    a third of its frames.
    """
    from rclpy.event_handler import EventHandler
    from rclpy.node import Node

    def handlers(node):
        return sum(isinstance(w, EventHandler) for w in node.waitables)

    bare = Node('bare_node', context=edge[0].context)  # rclpy's own /parameter_events
    try:
        for node, _ in (edge, host):
            assert handlers(node) == handlers(bare), node.get_name()
    finally:
        bare.destroy_node()
