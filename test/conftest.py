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

"""Shared fixtures: every ROS test gets a private, localhost-only DDS domain."""

import os
import signal
import subprocess
import sys
import time

import pytest

from edge_denoise_ros.core.models import compute_threads
from edge_denoise_ros.harness.isolation import lease_domain

# The whole run, and every process it starts, stays on one private domain on loopback.
_SESSION_LEASE = lease_domain()
os.environ.update(_SESSION_LEASE.env())


def wait_for(condition, timeout: float = 20.0) -> bool:
    """Poll ``condition()`` every 20 ms until it holds (True) or ``timeout`` s pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def one_thread():
    """Compute on one thread (torch and OpenCV): steadier on shared cores, CPU time a latency."""
    with compute_threads(1, opencv=True):
        yield


@pytest.fixture
def ros_domain(monkeypatch):
    """Lease a fresh domain id for one test; the test's environment points at it."""
    with lease_domain() as lease:
        for key, value in lease.env().items():
            monkeypatch.setenv(key, value)
        yield lease


@pytest.fixture
def rclpy_context(ros_domain):
    """Yield an initialised rclpy context on the test's private domain."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=ros_domain.domain_id)
    yield context
    rclpy.try_shutdown(context=context)


class ProcessGroup:
    """Start child processes in their own sessions; kill whatever is left at teardown."""

    def __init__(self):
        self.procs = []

    def start(self, args, env=None, **kwargs) -> subprocess.Popen:
        """Start ``args`` (a list) with stdout/stderr captured as text."""
        proc = subprocess.Popen(args, env=env or os.environ.copy(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                **kwargs)
        self.procs.append(proc)
        return proc

    def python(self, *args, env=None, **kwargs) -> subprocess.Popen:
        """Start ``python -u args...`` with this interpreter."""
        return self.start([sys.executable, '-u', *args], env=env, **kwargs)

    def stop(self, proc: subprocess.Popen, timeout: float = 10.0):
        """Interrupt a process (SIGINT), then kill it; return its (stdout, stderr)."""
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            return proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.communicate()

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.communicate()


@pytest.fixture
def processes():
    """Child processes that are always cleaned up, also when the test fails."""
    group = ProcessGroup()
    yield group
    group.close()
