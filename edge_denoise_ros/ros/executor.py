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
``PriorityExecutor``: ready callbacks run by callback-group priority, projected onto the device.

A node gives a callback group a priority with ``priority_group(node, 'inference',
default=10)``: it declares the parameter ``inference_priority`` (so a launch
file or ``ros2 param set`` can change it), creates a mutually exclusive
group and records the group's priority. The executor hands ready callbacks
to its worker threads highest priority first (FIFO within a priority) and runs
each one at its group's priority: ``callback_priority()`` returns it, and
inference through ``core.scheduler`` inside the callback submits its jobs at
that priority. Given a ``Scheduler``, the executor also wraps each callback
of a prioritised group in a scheduler session, so that the callback's chain of
jobs (denoiser then target) is not interleaved with lower-priority work.

Groups without a priority (ordinary nodes composed beside, the default group)
run at ``default_priority`` like they would on a ``MultiThreadedExecutor``.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Optional

from rcl_interfaces.msg import IntegerRange, ParameterDescriptor
from rclpy.callback_groups import (CallbackGroup, MutuallyExclusiveCallbackGroup,
                                   ReentrantCallbackGroup)
from rclpy.executors import (ConditionReachedException, Executor, ExternalShutdownException,
                             ShutdownException, TimeoutException)
from rclpy.guard_condition import GuardCondition

from ..core.scheduler import at_priority, current_priority, THREAD_PREFIX

PRIORITY_RANGE = (0, 99)
_GROUP_PRIORITY: 'weakref.WeakKeyDictionary[CallbackGroup, int]' = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


def set_group_priority(group: CallbackGroup, priority: int) -> None:
    """Give a callback group a priority (higher runs first)."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f'priority must be an int, got {priority!r}')
    with _REGISTRY_LOCK:
        _GROUP_PRIORITY[group] = priority


def group_priority(group: CallbackGroup | None, default: int = 0) -> int:
    """Return a callback group's priority, or ``default`` if it has none."""
    if group is None:
        return default
    with _REGISTRY_LOCK:
        return _GROUP_PRIORITY.get(group, default)


def has_priority(group: CallbackGroup | None) -> bool:
    """Return whether a priority was given to this callback group."""
    if group is None:
        return False
    with _REGISTRY_LOCK:
        return group in _GROUP_PRIORITY


def callback_priority(default: int = 0) -> int:
    """Return the priority the running callback was given (its group's)."""
    return current_priority(default)


def priority_group(node, name: str = 'inference', default: int = 0,
                   reentrant: bool = False) -> CallbackGroup:
    """
    Create a callback group whose priority is the node parameter ``<name>_priority``.

    The parameter is declared here (an integer in ``PRIORITY_RANGE``, higher
    runs first) with ``default`` as its value; later changes of it (``ros2
    param set``) take effect for the next callbacks. Pass the returned group
    as ``callback_group=`` to subscriptions, timers and services.
    """
    lo, hi = PRIORITY_RANGE
    if not lo <= default <= hi:
        raise ValueError(f'default priority must lie in {PRIORITY_RANGE}, got {default}')
    param = f'{name}_priority'
    descriptor = ParameterDescriptor(
        description=f'priority of the {name} callbacks on the PriorityExecutor and of their '
                    f'inference jobs on the device (higher runs first)',
        integer_range=[IntegerRange(from_value=lo, to_value=hi, step=1)])
    value = node.declare_parameter(param, default, descriptor).value
    group = ReentrantCallbackGroup() if reentrant else MutuallyExclusiveCallbackGroup()
    set_group_priority(group, int(value))

    def update(params) -> None:
        for p in params:
            if p.name == param:
                set_group_priority(group, int(p.value))

    node.add_post_set_parameters_callback(update)
    return group


def _stale(item: '_Ready') -> bool:
    """
    Return whether a guard-condition handler lost its trigger to an earlier handler.

    rclpy yields a triggered guard condition again on every wake-up until a
    handler takes it; a handler made between another one's dequeue and its
    take would run the callback twice. rclpy executors rely on the same
    entity flags (``_executor_triggered``, ``_executor_event``).
    """
    return isinstance(item.entity, GuardCondition) and not item.entity._executor_triggered


@dataclass(order=True)
class _Ready:
    """A ready callback waiting for a worker; ordered highest priority, then oldest, first."""

    key: tuple
    priority: int = field(compare=False)
    handler: Any = field(compare=False)
    prioritised: bool = field(compare=False)
    entity: Any = field(compare=False, default=None)


class PriorityExecutor(Executor):
    """
    Run ready callbacks in worker threads, highest callback-group priority first.

    ``num_threads`` workers (default: the CPUs this process may use, at least
    2) take the highest-priority ready callback whenever they are free.
    ``spare_threads`` more workers only take a callback that outranks one
    already running while every regular worker is busy, so a high-priority
    callback never waits for a thread behind a long low-priority one.
    ``scheduler``: a ``core.scheduler.Scheduler`` whose sessions wrap the
    callbacks of prioritised groups (see the module docstring).

    An exception raised by a callback is raised again from ``spin_once`` in
    the spinning thread, as rclpy's own executors do.
    """

    def __init__(self, num_threads: Optional[int] = None, *, spare_threads: int = 1,
                 scheduler=None, default_priority: int = 0, context=None) -> None:
        super().__init__(context=context)
        if num_threads is None:
            num_threads = max(2, len(os.sched_getaffinity(0)) if hasattr(
                os, 'sched_getaffinity') else (os.cpu_count() or 2))
        if num_threads < 1 or spare_threads < 0:
            raise ValueError(f'need num_threads >= 1 and spare_threads >= 0, got '
                             f'{num_threads}, {spare_threads}')
        self._num_threads, self._spare_threads = num_threads, spare_threads
        self._scheduler = scheduler
        self._default_priority = default_priority
        self._cond = threading.Condition()
        self._ready: list[_Ready] = []
        self._queued: set[int] = set()  # handlers waiting in _ready or in a worker's hands
        self._queued_entities: set[int] = set()  # guard conditions with a waiting handler
        self._started: set[int] = set()  # handlers run at least once (coroutines may resume)
        self._running: dict[int, int] = {}  # worker thread -> priority of its callback
        self._idle_regular = 0
        self._finished: list = []
        self._seq = itertools.count()
        self._stop = False
        self._workers: list[threading.Thread] = []

    # ------------------------------------------------------------------ priorities

    def priority_of(self, entity) -> int:
        """Return the priority the executor gives an entity's callbacks."""
        return group_priority(getattr(entity, 'callback_group', None), self._default_priority)

    @property
    def threads(self) -> list[threading.Thread]:
        """Return the worker threads started so far."""
        return list(self._workers)

    def waiting(self) -> list[int]:
        """Return the priorities of the ready callbacks waiting for a worker, next first."""
        with self._cond:
            return [item.priority for item in sorted(self._ready)]

    # -------------------------------------------------------------------- spinning

    def _start_workers(self) -> None:
        # Each worker is listed only once started: an interrupt (Ctrl-C) between the two
        # must not leave shutdown() a thread to join that never started.
        for i in range(len(self._workers), self._num_threads + self._spare_threads):
            spare = i >= self._num_threads
            t = threading.Thread(target=self._work, args=(spare,), daemon=True,
                                 name=f'{THREAD_PREFIX}-executor-{"spare" if spare else "w"}{i}')
            t.start()
            self._workers.append(t)

    def use_scheduler(self, scheduler) -> None:
        """Wrap prioritised callbacks in ``scheduler``'s sessions from now on (None: none)."""
        self._scheduler = scheduler

    def _spin_once_impl(self, timeout_sec=None, wait_condition=lambda: False) -> None:
        try:
            handler, entity, node = self.wait_for_ready_callbacks(
                timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException,
                ConditionReachedException):
            pass
        except Exception:  # noqa: B902
            if not self._is_shutdown:
                raise  # else: shutdown() from another thread tore the wait set down mid-wait
        else:
            self._enqueue(handler, entity)
        self._raise_failures()

    def _enqueue(self, handler, entity) -> None:
        self._start_workers()
        group = getattr(entity, 'callback_group', None)
        priority = self.priority_of(entity)
        with self._cond:
            if self._stop or id(handler) in self._queued:
                # rclpy yields a pending task again on every wake-up, also one a worker has
                # picked but not started yet: queued twice, the copy would stand for its
                # entity after the task ran (see below).
                return
            if isinstance(entity, GuardCondition) and id(entity) in self._queued_entities:
                # rclpy yields a triggered guard condition again on every wake-up until its
                # handler runs: one waiting handler per guard condition is enough. Never so
                # for another entity: rclpy waits on a subscription (timer, ...) again only
                # once its handler ran, and a cancelled one never runs.
                handler.cancel()
                return
            self._queued.add(id(handler))
            if isinstance(entity, GuardCondition):
                self._queued_entities.add(id(entity))
            heapq.heappush(self._ready, _Ready((-priority, next(self._seq)), priority, handler,
                                               has_priority(group), entity))
            self._cond.notify_all()

    def _raise_failures(self) -> None:
        """Raise the first callback exception here, as rclpy's executors do; keep the rest."""
        with self._cond:
            done, self._finished = self._finished, []
        for i, handler in enumerate(done):
            if handler.exception() is not None:
                with self._cond:
                    self._finished[:0] = done[i + 1:]
                handler.result()

    def _pick(self, spare: bool) -> _Ready | None:
        """Return the next callback for a worker (lock held), or ``None``."""
        if not self._ready:
            return None
        if spare:
            if self._idle_regular > 0 or not self._running:
                return None
            if self._ready[0].priority <= min(self._running.values()):
                return None
        return heapq.heappop(self._ready)

    def _work(self, spare: bool) -> None:
        me = threading.get_ident()
        while True:
            with self._cond:
                if not spare:
                    self._idle_regular += 1
                while not self._stop:
                    item = self._pick(spare)
                    if item is not None:
                        break
                    self._cond.wait()
                if not spare:
                    self._idle_regular -= 1
                if self._stop:
                    return
                self._queued_entities.discard(id(item.entity))
                if id(item.handler) not in self._started and _stale(item):
                    self._queued.discard(id(item.handler))
                    self._drop(item)
                    continue
                self._started.add(id(item.handler))
                self._running[me] = item.priority
            try:
                self._run(item)
            finally:
                with self._cond:
                    del self._running[me]
                    self._queued.discard(id(item.handler))  # a coroutine may be queued again
                    if item.handler.done():
                        self._started.discard(id(item.handler))
                        self._finished.append(item.handler)
                    self._cond.notify_all()

    def _drop(self, item: _Ready) -> None:
        """Discard a handler whose guard-condition trigger an earlier handler took."""
        item.handler.cancel()
        item.entity._executor_event = False  # wait on the guard condition again
        try:
            self.wake()
        except Exception:  # noqa: B902 - the executor is shutting down
            pass

    def _run(self, item: _Ready) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(at_priority(item.priority))
            if self._scheduler is not None and item.prioritised:
                stack.enter_context(self._scheduler.session(item.priority))
            item.handler()

    def spin_once(self, timeout_sec: Optional[float] = None) -> None:
        """Wait for one ready callback and hand it to the workers."""
        self._spin_once_impl(timeout_sec)

    def _spin_once_until_future_complete(self, future, timeout_sec=None) -> None:
        self._spin_once_impl(timeout_sec, future.done)

    def spin_once_until_future_complete(self, future, timeout_sec=None) -> None:
        """Wait for one ready callback, or for ``future`` to complete."""
        future.add_done_callback(lambda x: self.wake())
        self._spin_once_until_future_complete(future, timeout_sec)

    # ------------------------------------------------------------------- shutdown

    def shutdown(self, timeout_sec: Optional[float] = None) -> bool:
        """Stop handing out callbacks, let running ones finish, join every worker."""
        done = super().shutdown(timeout_sec)
        with self._cond:
            self._stop = True
            dropped, self._ready = self._ready, []
            self._queued.clear()
            self._queued_entities.clear()
            self._cond.notify_all()
        for t in list(self._workers):
            if t.ident is not None:
                t.join(None if timeout_sec is None or timeout_sec < 0 else timeout_sec)
        for item in dropped:
            if not item.handler.done():
                item.handler.cancel()
        return done and not any(t.is_alive() for t in self._workers)
