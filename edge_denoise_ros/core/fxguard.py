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
One process-wide guard between torch.fx tracing and running modules.

``torch.fx.symbolic_trace`` patches ``nn.Module.__call__`` for the whole
process while it traces: a module that another thread calls meanwhile is
routed into the tracer and fails ("module is not installed as a
submodule"). Tracing therefore takes the guard exclusively, and a forward
pass that may overlap a trace (a scheduled model's, in a multi-threaded node)
takes it shared. Writers go first: a trace waits only for the passes already
running, and passes that arrive meanwhile wait for the trace.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator


class TraceGuard:
    """A readers-writer lock: many forward passes, or one trace."""

    def __init__(self):
        self._cond = threading.Condition()
        self._running = 0
        self._tracing = False
        self._waiting = 0

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Hold the guard shared for one forward pass."""
        with self._cond:
            while self._tracing or self._waiting:
                self._cond.wait()
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def tracing(self) -> Iterator[None]:
        """Hold the guard exclusively while torch.fx traces."""
        with self._cond:
            self._waiting += 1
            while self._tracing or self._running:
                self._cond.wait()
            self._waiting -= 1
            self._tracing = True
        try:
            yield
        finally:
            with self._cond:
                self._tracing = False
                self._cond.notify_all()


FX_GUARD = TraceGuard()
