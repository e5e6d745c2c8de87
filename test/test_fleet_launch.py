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

"""The fleet launch file: two hosts split the robots by launch arguments, nobody twice."""

import ast
from pathlib import Path

import yaml

from edge_denoise_ros.ros.host_node import HOST_PARAMS

ROOT = Path(__file__).resolve().parents[1]
FLEET = ROOT / 'launch' / 'fleet.launch.py'


def _tree():
    return ast.parse(FLEET.read_text())


def _defaults(tree) -> dict:
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == \
                'DeclareLaunchArgument':
            for kw in node.keywords:
                if kw.arg == 'default_value' and isinstance(kw.value, ast.Constant):
                    found[node.args[0].value] = kw.value.value
    return found


def _constant(tree, name) -> tuple:
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f'fleet.launch.py declares no {name}')


def test_two_hosts_split_the_four_robots():
    tree = _tree()
    defaults = _defaults(tree)
    robots, hosts = _constant(tree, 'ROBOTS'), _constant(tree, 'HOSTS')
    assert len(robots) == 4 and len(hosts) == 2
    lists = [yaml.safe_load(defaults[f'{h}_robots']) for h in hosts]
    assert all(len(served) == 2 and all(isinstance(r, str) for r in served) for served in lists)
    assert not set(lists[0]) & set(lists[1]), 'a robot served by two hosts'
    assert set(lists[0]) | set(lists[1]) == set(robots), 'a robot served by no host'


def test_each_host_is_named_and_gets_its_robots():
    text = FLEET.read_text()
    assert "'name': name, 'robots': LaunchConfiguration(f'{name}_robots')" in text
    assert 'for name in HOSTS' in text and 'for robot in ROBOTS' in text
    assert 'robots' in {s.name for s in HOST_PARAMS}


def test_host_launch_passes_name_and_robots():
    text = (ROOT / 'launch' / 'host.launch.py').read_text()
    defaults = _defaults(ast.parse(text))
    assert yaml.safe_load(defaults['robots']) == [''] == \
        next(s.default for s in HOST_PARAMS if s.name == 'robots')
    assert defaults['name'] == 'host_node'
    assert "'robots': LaunchConfiguration('robots')" in text
