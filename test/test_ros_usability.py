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
What a ROS user meets, checked.

Integers for number parameters, one features topic for both sides, diagnostics where
aggregators listen, every node named in the README, and the device reaching every model,
input and the scheduler.
"""

import ast
from pathlib import Path
import re

import numpy as np
import pytest
from rclpy.parameter import Parameter
import torch

from edge_denoise_ros.core import pipeline
from edge_denoise_ros.ros import common
from edge_denoise_ros.ros.edge_common import HEAD_PARAMS
from edge_denoise_ros.ros.edge_node import EdgeNode

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def edge(rclpy_context):
    node = EdgeNode(context=rclpy_context, namespace='robot1', parameter_overrides=[
        Parameter('defense', value='none'), Parameter('uplink_mbps', value=3)])
    yield node
    node.destroy_node()


def test_number_parameters_take_integers(edge):
    assert edge.head.params['uplink_mbps'] == 3.0            # an integer override at start
    result = edge.set_parameters([Parameter('uplink_mbps', value=2)])[0]
    assert result.successful, result.reason
    assert edge.head.params['uplink_mbps'] == 2.0 and isinstance(edge.head.params['uplink_mbps'],
                                                                 float)
    bad = edge.set_parameters([Parameter('uplink_mbps', value='fast')])[0]
    assert not bad.successful and 'must be a number' in bad.reason


def test_diagnostics_go_to_the_absolute_topic_with_a_namespace(edge):
    topics = {name for name, _ in edge.get_publisher_names_and_types_by_node(
        edge.get_name(), edge.get_namespace())}
    assert '/diagnostics' in topics and '/robot1/features' in topics


@pytest.mark.parametrize('overrides,cut', [
    ({}, pipeline.DEFAULT_CUT),                                    # the shipped classifier
    ({'bundle': 'weights/scenes'}, 'auto'),                        # one parameter: a bundle
    ({'bundle': 'weights/scenes', 'cut': 'net.features.4'}, 'net.features.4'),   # set: kept
])
def test_a_bundle_alone_gives_a_cut_of_its_own_target(rclpy_context, overrides, cut):
    # The shipped edge.yaml leaves cut out so that it follows the bundle: layer1 is a cut of
    # the shipped classifier only, and a node given just bundle:= must start.
    from rclpy.node import Node
    node = Node('cut_default', context=rclpy_context, parameter_overrides=[
        Parameter(k, value=v) for k, v in overrides.items()])
    try:
        values = common.declare_parameters(node, HEAD_PARAMS)
        assert values['cut'] == cut and node.get_parameter('cut').value == cut
    finally:
        node.destroy_node()


def _string_keys(call: ast.Call) -> dict:
    out = {}
    for node in ast.walk(call):
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant):
                    out[k.value] = v
    return out


def test_pipeline_launch_remaps_features_on_both_sides():
    pipeline_launch = ast.parse((ROOT / 'launch' / 'pipeline.launch.py').read_text())
    includes = [n for n in ast.walk(pipeline_launch) if isinstance(n, ast.Call) and
                getattr(n.func, 'id', '') == 'IncludeLaunchDescription']
    assert len(includes) == 2
    for call in includes:
        assert 'features_topic' in _string_keys(call)
    for name in ('edge.launch.py', 'host.launch.py'):
        text = (ROOT / 'launch' / name).read_text()
        assert re.search(r"\('features', LaunchConfiguration\('features_topic'\)\)", text), name


def test_one_bundle_argument_reaches_edge_and_host_of_every_launch_file():
    # edge and host must serve the same bundle (messages carry its target's hash)
    for name in ('pipeline.launch.py', 'fleet.launch.py'):
        tree = ast.parse((ROOT / 'launch' / name).read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and
                 getattr(n.func, 'id', '') in ('IncludeLaunchDescription', 'include') and
                 _string_keys(n)]                   # the calls that pass launch arguments
        assert len(calls) == 2 and all('bundle' in _string_keys(c) for c in calls), name
    for name in ('edge.launch.py', 'host.launch.py'):
        text = (ROOT / 'launch' / name).read_text()
        assert "overrides['bundle'] = bundle" in text, name   # only when given: '' keeps YAML's


def test_readme_names_every_node():
    text = (ROOT / 'README.md').read_text()
    for node in ('edge_node', 'edge_process', 'host_node', '`denoiser`', '`target`'):
        assert node in text, node


def test_the_device_reaches_models_inputs_and_the_scheduler(monkeypatch):
    """Without a GPU: the devices the code asks for, with the target's device set to cuda."""
    target = pipeline.Target()                       # built on the CPU, then told cuda
    host = pipeline.HostStage(target)
    edge = pipeline.EdgeStage(target, pipeline.EdgeSettings('none', 'layer1', 'raw'))
    out = edge.process(np.zeros((28, 28, 3), np.uint8), 'bgr8')
    asked = []

    def record(kind):
        def to(self, *args, **kwargs):
            asked.append((kind, str(args[0] if args else kwargs.get('device'))))
            return self
        return to
    monkeypatch.setattr(target, 'device', torch.device('cuda'))
    monkeypatch.setattr(torch.Tensor, 'to', record('input'))
    monkeypatch.setattr(torch.nn.Module, 'to', record('model'))
    target.preprocess(np.zeros((28, 28, 3), np.uint8), 'bgr8')           # edge input
    host.prepare(out.payload, host.check(out.meta))                       # host input
    inputs = [device for kind, device in asked if kind == 'input']
    assert inputs == ['cuda', 'cuda'], asked
    asked.clear()
    pipeline.build_defense('dunet_d', target)                             # a defense
    assert asked[-1] == ('model', 'cuda'), asked      # loaded on the CPU, then moved
    made = []

    class FakeScheduler:
        def __init__(self, config):
            made.append(config.device)
    monkeypatch.setattr(common, 'Scheduler', FakeScheduler)
    factory = common.DeviceScheduler()
    assert factory('cuda:0') is factory('cuda:0')
    assert made == ['cuda:0']                                             # the scheduler
    with pytest.raises(ValueError, match='one device per process'):
        factory('cpu')
