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

"""Tracing a model while another thread runs one: the guard keeps both correct."""

import threading
import time

import torch
from torch import nn

from edge_denoise_ros.core.fxguard import TraceGuard
from edge_denoise_ros.core.scheduled_model import ScheduledModel
from edge_denoise_ros.core.scheduler import Scheduler, SchedulerConfig


def _blocks():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))


def test_trace_waits_for_running_passes_and_new_passes_wait_for_the_trace():
    guard = TraceGuard()
    order = []
    inside = threading.Event()
    release = threading.Event()

    def reader(tag, hold):
        with guard.running():
            order.append(f'{tag}+')
            if hold:
                inside.set()
                release.wait(5)
            order.append(f'{tag}-')

    def writer():
        with guard.tracing():
            order.append('T')

    first = threading.Thread(target=reader, args=('r1', True))
    first.start()
    assert inside.wait(5)
    trace = threading.Thread(target=writer)
    trace.start()
    while guard._waiting == 0:  # the trace is queued behind r1
        time.sleep(0.001)
    late = threading.Thread(target=reader, args=('r2', False))
    late.start()
    time.sleep(0.05)
    assert order == ['r1+'], order  # neither the trace nor the late pass started
    release.set()
    for t in (first, trace, late):
        t.join(5)
    assert order == ['r1+', 'r1-', 'T', 'r2+', 'r2-']


def test_scheduled_models_built_while_another_thread_runs_one():
    """Building a ScheduledModel traces; a forward pass elsewhere must neither fail nor change."""
    torch.manual_seed(0)
    scheduler = Scheduler(SchedulerConfig(workers=1))
    try:
        model = ScheduledModel(_blocks().eval(), scheduler, name='runner')
        x = torch.randn(1, 1, 16, 16)
        with torch.no_grad():
            expected = model.module(x)
        errors, stop = [], threading.Event()

        def run():
            while not stop.is_set():
                try:
                    with torch.no_grad():
                        assert torch.equal(model(x), expected)
                except Exception as exc:  # noqa: B902 - collected for the assertion
                    errors.append(exc)
                    return

        t = threading.Thread(target=run)
        t.start()
        for _ in range(100):
            ScheduledModel(_blocks().eval(), scheduler, name='built')
        stop.set()
        t.join(10)
        assert errors == []
    finally:
        scheduler.close(cancel_pending=True, timeout=5)
