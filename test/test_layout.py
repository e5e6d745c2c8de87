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

"""The house rules, read from the source: module size, one-way arrows, no cycles, top imports."""

import ast
from pathlib import Path

import pytest

PACKAGE = 'edge_denoise_ros'
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
MAX_LINES = 700

# Floors, lowest first: a module may import its own floor and those below, never above.
FLOORS = ('core', 'ros', 'harness', 'commands', 'cli')

# The only third-party modules a function may import (optional, heavy, or absent off a ROS
# install): plots, the H.264 peer, the ament index of a sourced ROS workspace, and torchvision
# (its import pulls in torch._dynamo, ~2 s, and only torchvision targets need it).
OPTIONAL_LOCAL_IMPORTS = frozenset({'matplotlib', 'av', 'ament_index_python', 'torchvision'})


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob('*.py')):
        parts = path.relative_to(ROOT.parent).with_suffix('').parts
        if parts[-1] == '__init__':
            parts = parts[:-1]
        found['.'.join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == '__init__.py'


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """Absolute names of what a relative or absolute ``from`` import takes from this package."""
    if node.level:
        base = module.split('.') if _is_package(module) else module.split('.')[:-1]
        base = base[:len(base) - (node.level - 1)]
        prefix = '.'.join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ''
    if not prefix.startswith(PACKAGE):
        return []
    names = []
    for alias in node.names:
        candidate = f'{prefix}.{alias.name}'
        names.append(candidate if candidate in MODULES else prefix)
    return names


def _imports(module: str):
    """Yield (target module, line, local) for every import of this package's modules."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    local_nodes = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            local_nodes.update(id(n) for n in ast.walk(fn) if n is not fn)
    for node in ast.walk(tree):
        local = id(node) in local_nodes
        if isinstance(node, ast.ImportFrom):
            for target in _resolve(module, node):
                yield target, node.lineno, local, None
            if not node.level and node.module and not node.module.startswith(PACKAGE):
                yield None, node.lineno, local, node.module.split('.')[0]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    yield alias.name, node.lineno, local, None
                else:
                    yield None, node.lineno, local, alias.name.split('.')[0]


def _floor(module: str) -> int | None:
    parts = module.split('.')
    return FLOORS.index(parts[1]) if len(parts) > 1 and parts[1] in FLOORS else None


def _graph() -> dict[str, set[str]]:
    graph = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _, _, _ in _imports(module):
            if target and target != module and target in MODULES:
                graph[module].add(target)
    return graph


def test_the_rules_see_the_package():
    """Guard against a checker that checks nothing: it finds the floors and real arrows."""
    assert {f'{PACKAGE}.core', f'{PACKAGE}.ros', f'{PACKAGE}.commands'} <= set(MODULES)
    graph = _graph()
    assert sum(len(v) for v in graph.values()) > 30
    assert f'{PACKAGE}.core.codecs' in graph[f'{PACKAGE}.core.pipeline']


@pytest.mark.parametrize('module', sorted(MODULES))
def test_module_is_one_idea_sized(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f'{module}: {lines} lines (at most {MAX_LINES}); split it by idea'


def test_no_upward_imports():
    upward = []
    for module in MODULES:
        own = _floor(module)
        for target, line, _, _ in _imports(module):
            there = _floor(target) if target else None
            if own is not None and there is not None and there > own:
                upward.append(f'{MODULES[module].relative_to(ROOT.parent)}:{line} -> {target}')
    assert not upward, 'imports that run back up:\n' + '\n'.join(upward)


def test_no_import_cycles():
    graph = _graph()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 'open':
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 'done'

    for node in sorted(graph):
        if node not in state:
            visit(node)
    # A package's __init__ importing its own modules is not a cycle of ideas.
    cycles = [c for c in cycles if not any(_is_package(m) for m in c)]
    assert not cycles, 'import cycles:\n' + '\n'.join(' -> '.join(c) for c in cycles)


def test_function_local_imports_only_for_named_optional_dependencies():
    local = []
    for module in MODULES:
        for target, line, is_local, third_party in _imports(module):
            if is_local and (target or third_party not in OPTIONAL_LOCAL_IMPORTS):
                local.append(f'{MODULES[module].relative_to(ROOT.parent)}:{line} '
                             f'{target or third_party}')
    assert not local, 'function-local imports (move them to the top):\n' + '\n'.join(local)
