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

"""Launch files and parameter files: valid, complete, and only the public launch API."""

import ast
from pathlib import Path

import pytest
import yaml

from edge_denoise_ros.ros.edge_common import CAMERA_PARAMS, HEAD_PARAMS
from edge_denoise_ros.ros.host_node import HOST_PARAMS

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = sorted((ROOT / 'launch').glob('*.launch.py'))
PUBLIC = {'launch', 'launch.actions', 'launch.conditions', 'launch.substitutions',
          'launch.launch_description_sources', 'launch_ros.actions',
          'launch_ros.substitutions'}
PRIORITIES = {'inference_priority', 'denoiser_priority', 'target_priority'}


def _launch_args(tree) -> set:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == \
                'DeclareLaunchArgument':
            names.add(node.args[0].value)
    return names


def _console_scripts() -> set:
    text = (ROOT / 'setup.py').read_text()
    return {line.split('=')[0].strip().strip("'") for line in text.splitlines()
            if '= edge_denoise_ros.' in line}


def test_four_launch_files_exist():
    assert [p.name for p in LAUNCH] == ['edge.launch.py', 'fleet.launch.py', 'host.launch.py',
                                        'pipeline.launch.py']


@pytest.mark.parametrize('path', LAUNCH, ids=lambda p: p.name)
def test_launch_file_uses_only_the_public_api(path):
    tree = ast.parse(path.read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert modules <= PUBLIC, modules - PUBLIC
    funcs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert funcs == ['generate_launch_description']
    args = _launch_args(tree)
    assert {'namespace', 'device', 'bundle'} <= args     # bundle:=scenes on every launch
    assert any(a.endswith('params_file') for a in args)
    if path.name != 'host.launch.py':
        assert 'camera_topic' in args
    executables = {kw.value.value for n in ast.walk(tree) if isinstance(n, ast.Call)
                   for kw in n.keywords if kw.arg == 'executable'}
    assert executables <= _console_scripts()


def test_launch_files_load_with_a_ros_install():
    # (launch/ of this repository is a namespace package; the real one is a regular package)
    sources = pytest.importorskip('launch.launch_description_sources',
                                  reason='launch is not installable from PyPI: this check '
                                         'runs on ROS installs')
    import launch
    PythonLaunchDescriptionSource = sources.PythonLaunchDescriptionSource
    for path in LAUNCH:
        description = PythonLaunchDescriptionSource(str(path)).get_launch_description(
            launch.LaunchContext())
        assert description.entities


def test_setup_installs_launch_config_and_weights():
    text = (ROOT / 'setup.py').read_text()
    for folder in ('launch/*.launch.py', 'config/*.yaml', 'weights/*'):
        assert folder in text
    assert {'edge-denoise', 'edge_node', 'host_node', 'edge_process', 'bag_player'} <= \
        _console_scripts()


@pytest.mark.parametrize('name,specs', [
    ('edge.yaml', CAMERA_PARAMS + HEAD_PARAMS),
    ('host.yaml', HOST_PARAMS),
])
def test_config_files_set_declared_parameters_to_valid_values(name, specs):
    doc = yaml.safe_load((ROOT / 'config' / name).read_text())
    params = doc['/**']['ros__parameters']
    by_name = {s.name: s for s in specs}
    extra = set(params) - set(by_name) - (PRIORITIES if name == 'edge.yaml' else set())
    assert not extra, f'{name} sets undeclared parameters {extra}'
    # A parameter whose default follows another (cut follows bundle) is left to the node.
    follows = {s.name for s in specs if s.default_from is not None}
    assert follows.isdisjoint(params), f'{name} fixes {follows & set(params)}'
    missing = set(by_name) - set(params) - follows
    assert not missing, f'{name} leaves out {missing}'
    for key, value in params.items():
        if key in PRIORITIES:
            assert isinstance(value, int) and 0 <= value <= 99
            continue
        spec = by_name[key]
        assert type(value) is type(spec.default), (key, value)
        assert spec.check(value) is None, spec.check(value)
        assert value == spec.default, f'{name}: {key} differs from the node default'
