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
A model whose forward pass runs as scheduler jobs, one per top-level block.

Its FX graph is split into one partition per top-level block
(:func:`split_blocks`), and each partition call becomes a job ``(priority,
model, frame)`` on the :class:`.scheduler.Scheduler`'s queue, all inside one
session at the caller's priority.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.fx.passes.split_module import split_module

from .fxguard import FX_GUARD
from .scheduler import check_priority, current_priority, Scheduler


def _top_block(node: torch.fx.Node) -> str | None:
    """Return the top-level child module a traced node belongs to (``None``: the root)."""
    if node.op == 'call_module':
        return str(node.target).split('.')[0]
    stack = node.meta.get('nn_module_stack') or {}
    for path in stack:
        return str(path).split('.')[0] or None
    if node.op == 'get_attr':
        return str(node.target).split('.')[0]
    return None


def split_blocks(model: nn.Module) -> torch.fx.GraphModule:
    """
    Split a model's FX graph into one partition per top-level block, in order.

    Each partition becomes a submodule ``submod_<k>`` of the returned graph
    module, called in topological order; operations of the root module itself
    (``torch.cat``, ``F.interpolate``, a residual ``+``) join the partition
    before them. Values used across partitions (U-Net skips) are passed along.
    Raises ``ValueError`` when the model cannot be traced symbolically.
    """
    try:
        with FX_GUARD.tracing():
            traced = torch.fx.symbolic_trace(model)
    except Exception as exc:  # noqa: B902 - any tracing failure means "not traceable"
        raise ValueError(f'{type(model).__name__} cannot be traced by torch.fx '
                         f'({type(exc).__name__}: {exc}); wrap it in an nn.Sequential of '
                         f'blocks, or schedule it as a single job') from exc
    part: dict[torch.fx.Node, int] = {}
    index, block, started = 0, None, False
    for node in traced.graph.nodes:
        if node.op in ('placeholder', 'output'):
            continue
        owner = _top_block(node)
        if owner is not None and owner != block:
            if started:
                index += 1
            block = owner
        started = True
        part[node] = index
    return split_module(traced, model, lambda node: part[node], keep_original_order=True)


class _JobPlan:
    """
    Run a ``split_blocks`` graph with every partition call as one scheduler job.

    The steps are resolved once (a ``torch.fx.Interpreter`` per call would walk
    the module tree on every forward); the values live in a per-call dict.
    """

    def __init__(self, graph: torch.fx.GraphModule):
        self.steps = []
        for node in graph.graph.nodes:
            if node.op == 'get_attr':
                target = _fetch(graph, node.target)
            elif node.op == 'call_module':
                target = graph.get_submodule(node.target)
            else:
                target = node.target
            self.steps.append((node, node.op, target))

    def run(self, x, call: Callable):
        env: dict = {}

        def load(a):
            return torch.fx.node.map_arg(a, lambda n: env[n])

        for node, op, target in self.steps:
            if op == 'placeholder':
                env[node] = x
            elif op == 'get_attr':
                env[node] = target
            elif op == 'call_module':
                env[node] = call(str(node.target), target, load(node.args), load(node.kwargs))
            elif op == 'call_function':
                env[node] = target(*load(node.args), **load(node.kwargs))
            elif op == 'call_method':
                obj, *rest = load(node.args)
                env[node] = getattr(obj, target)(*rest, **load(node.kwargs))
            elif op == 'output':
                return load(node.args[0])
        raise ValueError('graph without output')


def _fetch(module: nn.Module, target: str):
    obj = module
    for part in target.split('.'):
        obj = getattr(obj, part)
    return obj


class ScheduledModel:
    """
    A model whose forward pass runs as scheduler jobs, one per top-level block.

    ``model(x)`` is called from the model's own thread (a ROS callback, a
    ``ModelThread``): it submits the first block, waits for its result,
    submits the next, and so on, all inside one ``Scheduler.session`` at the
    priority given, else the model's default, else the caller's
    ``current_priority()``. Models that torch.fx cannot trace run as one job.
    The module is moved to the scheduler's device (in place, as ``.to`` does).
    """

    def __init__(self, module: nn.Module, scheduler: Scheduler, name: str | None = None,
                 priority: int | None = None):
        self.name = name or type(module).__name__
        self.scheduler = scheduler
        self.priority = None if priority is None else check_priority(priority)
        self.module = module.to(scheduler.device)
        try:
            self.graph: torch.fx.GraphModule | None = split_blocks(self.module)
        except ValueError:
            self.graph = None
        self._plan = _JobPlan(self.graph) if self.graph is not None else None

    @property
    def jobs_per_forward(self) -> int:
        """Return the number of jobs one forward pass submits."""
        if self.graph is None:
            return 1
        return sum(1 for n in self.graph.graph.nodes if n.op == 'call_module')

    def __call__(self, x, *, frame: int | None = None, priority: int | None = None):
        """Run the forward pass through the scheduler; return its output."""
        if priority is None:
            priority = self.priority if self.priority is not None else current_priority()
        priority = check_priority(priority)

        def call(stage: str, fn: Callable, args: tuple, kwargs: dict):
            return self.scheduler.call(fn, args, kwargs, priority=priority, model=self.name,
                                       frame=frame)

        with FX_GUARD.running(), self.scheduler.session(priority):
            if self.graph is None:
                return call('forward', self.module, (x,), {})
            return self._plan.run(x, call)
