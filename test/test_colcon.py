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
``colcon build`` and ``colcon test`` as a ROS user runs them (README, "With a ROS 2 install").

The repository's files (tracked and untracked, not ignored: no ``.venv``) are
copied to ``src/edge_denoise_ros`` of a temporary workspace; real colcon builds
it, the installed layout is checked, ``install/setup.bash`` is sourced, a node
runs from the install, and ``colcon test`` runs the linters through pytest.
"""

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = 'edge_denoise_ros'
NODE = 'host_node'
NODE_READY = 'host ready: model'


def _colcon() -> str | None:
    """Return the colcon beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name('colcon')
    if beside.exists():
        return str(beside)
    return shutil.which('colcon')


def _executables() -> list:
    """Return the ``console_scripts`` names that ``setup.py`` declares."""
    tree = ast.parse((ROOT / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'setup':
            for keyword in node.keywords:
                if keyword.arg == 'entry_points':
                    scripts = ast.literal_eval(keyword.value)['console_scripts']
                    return sorted(line.split('=')[0].strip() for line in scripts)
    raise AssertionError('setup.py declares no entry_points')


def _source_files() -> list:
    """Return the repository's files a clone would have (plus untracked, not ignored ones)."""
    out = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                         cwd=ROOT, capture_output=True, check=True, timeout=30).stdout
    names = sorted({name for name in out.decode().split('\0') if name})
    return [name for name in names if (ROOT / name).is_file()]


def _tree(path: Path) -> set:
    return {str(p.relative_to(path)) for p in path.rglob('*')}


@pytest.fixture
def workspace():
    """Yield a temporary colcon workspace holding a copy of this repository under ``src/``."""
    if shutil.which('git') is None or not (ROOT / '.git').exists():
        pytest.skip('needs the git checkout: the workspace copies its files')
    with tempfile.TemporaryDirectory(prefix='edge_denoise_colcon_') as tmp:
        src = Path(tmp) / 'src' / PACKAGE
        for name in _source_files():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
        yield Path(tmp)


def _run(processes, args, timeout: float, **kwargs) -> str:
    """Run ``args`` to completion in the process group; return stdout + stderr."""
    proc = processes.start(args, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = processes.stop(proc)
        pytest.fail(f'{" ".join(args[:2])} ran past {timeout} s:\n{out}{err}')
    assert proc.returncode == 0, f'{" ".join(args)} exited {proc.returncode}:\n{out}{err}'
    return out + err


@pytest.mark.colcon
@pytest.mark.ros
def test_colcon_build_install_and_test(workspace, ros_domain, processes):
    colcon = _colcon()
    if colcon is None or importlib.util.find_spec('colcon_ros') is None:
        pytest.skip('colcon with colcon-ros is not installed (pip install -r requirements.txt)')
    env = ros_domain.env()
    env['COLCON_HOME'] = str(workspace / 'colcon_home')  # no user defaults or mixins
    env.pop('PYTEST_ADDOPTS', None)
    src = workspace / 'src' / PACKAGE
    source_before = _tree(src)

    # colcon build: the ament_python layout.
    _run(processes, [colcon, 'build', '--packages-select', PACKAGE], timeout=180,
         env=env, cwd=workspace)
    prefix = workspace / 'install' / PACKAGE
    share = prefix / 'share' / PACKAGE
    assert (prefix / 'share/ament_index/resource_index/packages' / PACKAGE).is_file()
    assert (share / 'package.xml').read_text() == (src / 'package.xml').read_text()
    executables = _executables()
    assert NODE in executables
    for name in executables:
        assert os.access(prefix / 'lib' / PACKAGE / name, os.X_OK), f'{name} not installed'
    for folder, pattern in (('launch', '*.launch.py'), ('config', '*'), ('weights', '*')):
        shipped = sorted(p.name for p in (src / folder).glob(pattern))
        assert shipped, f'no {folder} files in the source'
        assert sorted(p.name for p in (share / folder).iterdir()) == shipped, folder

    # source install/setup.bash: the install is on the ament prefix path and is imported.
    out = _run(processes, ['bash', '-c', 'source install/setup.bash && '
                           'echo "AMENT_PREFIX_PATH=$AMENT_PREFIX_PATH" && '
                           f'"{sys.executable}" -c "import {PACKAGE}; print({PACKAGE}.__file__)"'],
               timeout=60, env=env, cwd=workspace)
    ament = re.search(r'^AMENT_PREFIX_PATH=(.*)$', out, re.M).group(1).split(':')
    assert str(prefix) in ament, out
    assert str(prefix / 'lib') in out, f'{PACKAGE} not imported from the install:\n{out}'

    # A node from the install, on the private domain, runs and stops cleanly on SIGINT.
    log = workspace / 'node.log'
    node = processes.start(['bash', '-c', 'source install/setup.bash && '
                            f'exec install/{PACKAGE}/lib/{PACKAGE}/{NODE} >"{log}" 2>&1'],
                           env=env, cwd=workspace)
    deadline = time.monotonic() + 60
    while NODE_READY not in (log.read_text() if log.exists() else ''):
        assert node.poll() is None, f'{NODE} exited {node.returncode}:\n{log.read_text()}'
        assert time.monotonic() < deadline, f'{NODE} not ready in 60 s:\n{log.read_text()}'
        time.sleep(0.2)
    time.sleep(3.0)
    assert node.poll() is None, f'{NODE} exited {node.returncode}:\n{log.read_text()}'
    processes.stop(node)
    assert node.returncode == 0, f'{NODE} exited {node.returncode} on SIGINT:\n{log.read_text()}'

    # colcon test through pytest (the linters only, to stay short), then colcon test-result.
    _run(processes, [colcon, 'test', '--packages-select', PACKAGE,
                     '--pytest-args', '-m', 'linter'], timeout=240, env=env, cwd=workspace)
    junit = workspace / 'build' / PACKAGE / 'pytest.xml'
    assert junit.is_file(), 'colcon test did not run pytest'
    cases = {case.get('name') for case in ET.parse(junit).iter('testcase')}
    assert {'test_flake8', 'test_pep257', 'test_copyright'} <= cases, cases
    out = _run(processes, [colcon, 'test-result', '--verbose'], timeout=60, env=env,
               cwd=workspace)  # exits 1, listing them, when a test failed
    summary = re.search(r'Summary: (\d+) tests, (\d+) errors, (\d+) failures', out)
    assert summary, out
    assert int(summary.group(1)) >= len(cases) > 0, out
    assert summary.group(2, 3) == ('0', '0'), out

    # Neither command wrote into the package's source (a clone stays clean).
    assert _tree(src) == source_before, sorted(_tree(src) ^ source_before)
