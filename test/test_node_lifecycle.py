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
The node executables start and stop cleanly: a bad start-up is one line and status 2.

Every kind of start-up error (a device that is not there or not a device, a weights
file that does not load, a bad parameter) ends the process with one line on stderr
and status 2; SIGINT at any moment after start ends it with status 0 and nothing on
stderr but the nodes' own log lines (no traceback, no "context is invalid").
"""

import os
import select
import signal
import subprocess
import sys
import time

import pytest
import torch

pytestmark = pytest.mark.ros
MODULES = {'host_node': 'edge_denoise_ros.ros.entry host_node',
           'edge_node': 'edge_denoise_ros.ros.entry edge_node',
           'edge_process': 'edge_denoise_ros.ros.entry edge_process'}


def _start(exe: str, *params: str) -> subprocess.Popen:
    args = [sys.executable, '-u', '-m', *MODULES[exe].split(), '--ros-args']
    for p in params:
        args += ['-p', p]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=os.environ.copy())


def _finish(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return proc.returncode, out, err


@pytest.fixture(scope='module')
def garbage_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp('weights') / 'garbage.pt'
    path.write_bytes(b'PK\x03\x04 this is not a torch file' * 10)
    return str(path)


def _bad_starts(garbage):
    cases = [('host_node', 'device:=gpu'), ('edge_node', 'device:=gpu'),
             ('host_node', f'weights:={garbage}'), ('edge_process', f'weights:={garbage}'),
             ('edge_node', 'cut:=layer9'), ('host_node', 'top_k:=0'),
             ('edge_node', 'codecs:=[lossless]')]   # cut layer1 sends jpeg: not allowed
    if not torch.cuda.is_available():
        cases += [('host_node', 'device:=cuda'), ('edge_process', 'device:=cuda:0')]
    return cases


def test_every_start_up_error_is_one_line_and_status_2(ros_domain, garbage_weights):
    cases = _bad_starts(garbage_weights)
    # A few at a time: eight processes importing torch at once on two cores ran past the
    # timeout in a loaded CI run; what is tested is each one's exit, not how fast they start.
    width = max(2, os.cpu_count() or 2)
    finished = []
    for i in range(0, len(cases), width):
        procs = [(exe, param, _start(exe, param)) for exe, param in cases[i:i + width]]
        finished += [(exe, param, *_finish(proc, timeout=180.0)) for exe, param, proc in procs]
    for exe, param, code, out, err in finished:
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (exe, param, code, err[-2000:])
        assert len(lines) == 1 and lines[0].startswith(f'{exe}: error: '), (exe, param, err)
        assert 'Traceback' not in err


def _wait_ready(proc: subprocess.Popen, word: str, timeout: float = 90.0) -> str:
    """
    Read the node's stderr until a line says ``word`` (its nodes are up); return it all.

    Reads the pipe itself: a buffered ``readline`` can take two lines at once (a warning
    and the ready line come milliseconds apart) and leave the second where ``select``
    does not see it.
    """
    seen, end, fd = b'', time.monotonic() + timeout, proc.stderr.fileno()
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
            if word.encode() in seen:
                return seen.decode(errors='replace')
    raise AssertionError(f'no {word!r} line: {seen.decode(errors="replace")[-2000:]}')


def _takes_sigterm(pid: int) -> bool:
    """Return whether the process installed its SIGTERM handler (the entry point's first act)."""
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('SigCgt:'):
                return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def test_sigint_during_start_up_exits_cleanly(ros_domain):
    runs = [('edge_process', 0.0), ('edge_process', 0.3), ('edge_process', 2.0),
            ('host_node', 1.0), ('edge_node', 1.5)]
    procs = [(delay, _start(exe)) for exe, delay in runs]
    end = time.monotonic() + 30.0      # a signal before Python runs any code kills it outright
    while not all(_takes_sigterm(p.pid) for _, p in procs) and time.monotonic() < end:
        time.sleep(0.005)
    start = time.monotonic()
    for delay, proc in procs:
        time.sleep(max(0.0, start + delay - time.monotonic()))
        os.killpg(proc.pid, signal.SIGINT)
    for (exe, _), (delay, proc) in zip(runs, procs):
        code, out, err = _finish(proc)
        assert code == 0, (exe, delay, code, err[-3000:])
        assert 'Traceback' not in err and 'context is invalid' not in err, (exe, delay, err)


# A signal that lands in a C extension's import can come out disguised: numpy's C API
# reports any failure as ImportError; a fallback ``except ImportError`` then swallows it.
_DISGUISED = (
    'import os, signal, sys, types; from edge_denoise_ros.ros import entry\n'
    'def load(name):\n'
    '    try:\n'
    '        os.kill(os.getpid(), signal.SIGINT)\n'
    '    except KeyboardInterrupt:\n'
    '        if sys.argv[1] == "raise":\n'
    '            raise ImportError("numpy.core.multiarray failed to import")\n'
    '    return types.SimpleNamespace(main=lambda args: print("node ran") or 3)\n'
    'entry.importlib.import_module = load\n'
    'entry.run("host_node")\n')


def _entry_run(code: str, how: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', code, how], capture_output=True, text=True,
                          timeout=60, env={**os.environ, 'EDGE_DENOISE_NO_HUGETLB': '1'})


@pytest.mark.parametrize('how', ['raise', 'swallow'])
def test_a_signal_disguised_by_an_import_still_ends_the_start_cleanly(how):
    out = _entry_run(_DISGUISED, how)
    assert (out.returncode, out.stdout, out.stderr) == (0, '', ''), out


def test_an_import_error_without_a_signal_is_not_hidden():
    out = _entry_run(_DISGUISED.replace('os.kill(os.getpid(), signal.SIGINT)',
                                        'raise KeyboardInterrupt'), 'raise')
    assert out.returncode != 0 and 'failed to import' in out.stderr, out


@pytest.mark.parametrize('exe,word,after', [('edge_process', 'denoiser ready', 0.0),
                                            ('edge_node', 'edge ready', 1.0),
                                            ('host_node', 'host ready', 0.5)])
def test_sigint_while_running_exits_cleanly(ros_domain, exe, word, after):
    proc = _start(exe)
    head = _wait_ready(proc, word)
    time.sleep(after)
    os.killpg(proc.pid, signal.SIGINT)
    code, out, err = _finish(proc)
    err = head + err
    assert code == 0, (exe, after, code, err[-3000:])
    assert 'Traceback' not in err and 'context is invalid' not in err, (exe, after, err)
