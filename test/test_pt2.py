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
``.pt2`` (torch.export) targets: loaded without running anything from the file, and served.

A crafted archive (a genuine export with one member replaced, as an attacker would make
it) is refused with a one-line reason and its payload never runs, while plain
``torch.export.load`` does run it. A torchvision classifier the code does not
special-case, exported at 3x72x88, gives the eager model's logits, reports its input
shape and classes, and classifies camera frames through the edge and host nodes.
"""

import builtins
import io
import json
import threading
import zipfile

import numpy as np
import pytest
import torch
import torchvision
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from edge_denoise_ros import cli
from edge_denoise_ros.core import models, pipeline, wire
from edge_denoise_ros.core.frames import Preparation
from edge_denoise_ros.ros import conversions
from edge_denoise_ros.ros.common import DeviceScheduler, features_qos
from edge_denoise_ros.ros.edge_process import DenoiserNode, TargetNode
from edge_denoise_ros.ros.executor import PriorityExecutor
from edge_denoise_ros.ros.host_node import HostNode
from conftest import wait_for

INPUT = (3, 72, 88)
CLASSES = 5
SMALL_INPUT = (3, 16, 20)


class Payload:
    """What an attacker pickles: unpickling it calls ``open(path, 'w')``, creating a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return builtins.open, (self.path, 'w')


def _export(model: torch.nn.Module, x: torch.Tensor, path) -> str:
    torch.export.save(torch.export.export(model, (x,)), path)
    return str(path)


def _replaced(src, out, edits: dict) -> str:
    """Copy the archive ``src`` to ``out``, passing members whose name ends in a key through it."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, 'w') as zout:
        for info in zin.infolist():
            blob = zin.read(info.filename)
            for suffix, edit in edits.items():
                if info.filename.endswith(suffix):
                    blob = edit(blob)
            zout.writestr(info.filename, blob)
    return str(out)


def _pickled(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _json_edit(change):
    def edit(blob):
        program = json.loads(blob)
        change(program)
        return json.dumps(program).encode()
    return edit


def _input_name(program: dict) -> str:
    """Return the name of the program's (one) user input."""
    spec = next(s for s in program['graph_module']['signature']['input_specs']
                if 'user_input' in s)
    return spec['user_input']['arg']['as_tensor']['name']


@pytest.fixture(scope='module')
def small_pt2(tmp_path_factory):
    """Export a small classifier: the genuine archive the attacks start from."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 3)).eval()
    return _export(model, torch.rand(1, *SMALL_INPUT),
                   tmp_path_factory.mktemp('pt2') / 'small.pt2')


def _pickle_in_sample_inputs(src, out, marker):
    return _replaced(src, out, {'data/sample_inputs/model.pt': lambda _: _pickled(
        Payload(marker))})


def _pickle_as_weight(src, out, marker):
    """Store one weight 'pickled' (use_pickle), the pickle being the payload."""
    with zipfile.ZipFile(src) as z:
        config = json.loads(next(z.read(n) for n in z.namelist()
                                 if n.endswith('model_weights_config.json')))
    meta = next(iter(config['config'].values()))
    meta['use_pickle'] = True
    return _replaced(src, out, {
        'model_weights_config.json': lambda _: json.dumps(config).encode(),
        f'data/weights/{meta["path_name"]}': lambda _: _pickled(Payload(marker))})


def _code_as_input_name(src, out, marker):
    """Make the input's name, which torch writes into generated Python, a statement."""
    def rename(program):
        old, new = _input_name(program), f"x=open({str(marker)!r},'w')"

        def walk(node):
            if isinstance(node, dict):
                if node.get('as_tensor') == {'name': old}:
                    node['as_tensor'] = {'name': new}
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)
        walk(program)
        graph = program['graph_module']['graph']
        graph['tensor_values'][new] = graph['tensor_values'].pop(old)
    return _replaced(src, out, {'models/model.json': _json_edit(rename)})


@pytest.mark.parametrize('craft,refused', [
    (_pickle_in_sample_inputs, 'sample_inputs/model.pt needs an unrestricted unpickler'),
    (_pickle_as_weight, 'is not raw tensor data'),
    (_code_as_input_name, 'is not a name'),
])
def test_crafted_pt2_is_refused_and_runs_nothing(small_pt2, tmp_path, craft, refused):
    marker = tmp_path / 'marker'
    path = craft(small_pt2, tmp_path / 'crafted.pt2', marker)
    for load in (models.build_model, models.input_shape, pipeline.Target):
        with pytest.raises(ValueError) as caught:
            load(path)
        reason = str(caught.value)
        assert refused in reason and 'refused' in reason and '\n' not in reason, reason
        assert not marker.exists()
    # The payload is live: torch's own loader runs it.
    with pytest.raises(Exception):
        torch.export.load(path).module()
    assert marker.exists()


def _guard_code(program):
    program['guards_code'] = ["__import__('os').getcwd() is None"]


def _size_code(program):
    sizes = program['graph_module']['graph']['tensor_values'][_input_name(program)]['sizes']
    sizes[0] = {'as_expr': {'expr_str': "__import__('os').getcwd()", 'hint': None}}


def _os_call(program):
    program['graph_module']['graph']['nodes'][0]['target'] = 'torch.os.system'


@pytest.mark.parametrize('change,refused', [
    (_guard_code, 'guard'), (_size_code, 'symbolic size'),
    (_os_call, "calls 'torch.os.system'")])
def test_program_strings_that_reach_python_are_refused(small_pt2, tmp_path, change, refused):
    path = _replaced(small_pt2, tmp_path / 'crafted.pt2',
                     {'models/model.json': _json_edit(change)})
    with pytest.raises(ValueError, match=refused) as caught:
        models.build_model(path)
    assert '\n' not in str(caught.value)


def test_compiled_code_members_are_refused(small_pt2, tmp_path):
    path = tmp_path / 'aoti.pt2'
    _replaced(small_pt2, path, {})
    with zipfile.ZipFile(path, 'a') as z:
        z.writestr('small/data/aotinductor/model/model.so', b'\x7fELF')
    with pytest.raises(ValueError, match='compiled'):
        models.build_model(str(path))


@pytest.fixture(scope='module')
def squeezenet(tmp_path_factory):
    """Export a torchvision classifier nothing special-cases, 5 classes, at 3x72x88."""
    torch.manual_seed(0)
    eager = torchvision.models.squeezenet1_1(weights=None, num_classes=CLASSES).eval()
    path = tmp_path_factory.mktemp('squeezenet') / 'squeezenet.pt2'
    return _export(eager, torch.rand(1, *INPUT), path), eager


@torch.no_grad()
def test_exported_torchvision_model_loads_with_the_eager_logits(squeezenet):
    path, eager = squeezenet
    loaded = models.build_model(path)
    x = torch.rand(1, *INPUT, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(loaded(x), eager(x), atol=1e-5)
    assert models.input_shape(path) == INPUT
    assert models.exported_io(path) == (INPUT, CLASSES)
    target = models.build_target(path)          # wrapped: eval mode set without .eval()
    assert not any(m.training for m in target.modules())
    prep = Preparation()
    assert torch.allclose(target(x), models.Prepared(eager, prep.mean, prep.std)(x), atol=1e-5)


def test_plan_takes_the_input_shape_from_the_pt2(small_pt2, capsys):
    argv = ['plan', '--model', small_pt2, '--codecs', 'raw', '--frame-codecs', 'raw',
            '--repeats', '1', '--warmup', '0', '--json']
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert tuple(result['input']) == SMALL_INPUT


def _frames(n: int) -> list[np.ndarray]:
    """Noise frames of a camera's aspect, each with its own colour cast (not all one class)."""
    rng = np.random.default_rng(7)
    return [(rng.random((96, 128, 3)) * rng.integers(1, 256, 3)).astype(np.uint8)
            for _ in range(n)]


@pytest.mark.ros
def test_exported_model_classifies_frames_through_edge_and_host(squeezenet, rclpy_context):
    import rclpy.node

    path, _ = squeezenet
    reference = pipeline.Target(path)
    labels = [c for c in reference.cuts if c != 'input']
    cut = labels[len(labels) // 2]
    frames = _frames(4)
    with torch.no_grad():
        want = [reference.classify(reference.model(reference.preprocess(f, 'bgr8'))[0])
                for f in frames]

    ctx = rclpy_context
    schedulers = DeviceScheduler()       # the edge as edge_process composes it
    target = TargetNode(scheduler=schedulers, context=ctx, parameter_overrides=[
        Parameter('model', value=path), Parameter('cut', value=cut),
        Parameter('codec', value='lossless')])
    denoiser = DenoiserNode(target, context=ctx, parameter_overrides=[
        Parameter('defense', value='none')])
    host = HostNode(context=ctx, parameter_overrides=[Parameter('model', value=path)])
    probe = rclpy.node.Node('probe', context=ctx)
    results, features = {}, []

    def on_result(msg):
        record = json.loads(msg.data)
        results.setdefault(record['stamp']['sec'], record)
    probe.create_subscription(String, 'classification', on_result, 10)
    probe.create_subscription(CompressedImage, 'features', features.append,
                              features_qos('reliable', 10))
    camera = probe.create_publisher(Image, 'image_raw', qos_profile_sensor_data)
    edge_exec = PriorityExecutor(scheduler=schedulers.scheduler, context=ctx)
    host_exec = MultiThreadedExecutor(num_threads=2, context=ctx)
    for node in (target, denoiser):
        edge_exec.add_node(node)
    for node in (host, probe):
        host_exec.add_node(node)
    threads = [threading.Thread(target=e.spin, daemon=True) for e in (edge_exec, host_exec)]
    for thread in threads:
        thread.start()
    try:
        assert wait_for(lambda: camera.get_subscription_count() >= 1)
        for i, frame in enumerate(frames, start=1):
            msg = conversions.image_to_msg(frame, 'bgr8')
            msg.header.stamp.sec = i
            # one frame at a time (best effort camera): sent again until its result is back
            for _ in range(10):
                camera.publish(msg)
                if wait_for(lambda i=i: i in results, timeout=5.0):
                    break
        assert sorted(results) == list(range(1, len(frames) + 1)), results
        got = [results[i] for i in range(1, len(frames) + 1)]
        assert all(0 <= r['class_id'] < CLASSES for r in got)
        assert [r['class_id'] for r in got] == [w['class_id'] for w in want]
        for r, w in zip(got, want):     # lossless features: the split's scores are the model's
            assert [t['class_id'] for t in r['top_k']] == [t['class_id'] for t in w['top_k']]
            assert np.allclose([t['score'] for t in r['top_k']],
                               [t['score'] for t in w['top_k']], atol=1e-4)
        meta = wire.parse_format(features[-1].format)
        assert (meta['cut'], meta['codec'], meta['model']) == (cut, 'lossless', reference.hash)
    finally:
        for e in (edge_exec, host_exec):
            e.shutdown(timeout_sec=5.0)
        for thread in threads:
            thread.join(timeout=5.0)
        for node in (target, denoiser, host, probe):
            node.destroy_node()
        schedulers.close()
