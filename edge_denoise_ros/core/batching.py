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
Dynamic batching of feature messages from many robots on one host.

Every robot's messages wait in a queue of their own, bounded by ``queue_depth``: the
newest wins, so a robot that sends faster than the host serves pushes out its own
oldest message (counted for that robot as ``skipped``), never another robot's; a
message older than one of its robot's the host has just taken is dropped the same way.

The inference side asks :meth:`Batcher.next_batch` for work. Messages that share a
:func:`group_key` (model hash, cut, codec, quality, shape) go through the tail as one
batch of at most ``max_batch``, released when it is full or when its oldest message
has waited ``max_batch_delay_ms``. A batch takes its slots in rounds: one message per
robot per round, robots in round-robin order, each robot's newest message first, so a
robot with a full queue cannot crowd out the others and an overloaded host serves the
freshest frames (the older ones are pushed out, counted). ``max_batch = 1`` is
one-by-one serving under the same rules.

:func:`infer_batch` decodes each message of a batch (a bad one fails alone), stacks
them, runs the tail once and returns one outcome per message; the logits equal those
of one-by-one inference (``HostStage.process``) up to float rounding.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from . import codecs
from .pipeline import FRAME_CUT, HostStage, PipelineError

SKIPPED = 'skipped'   # the drop reason of a message pushed out of its robot's full queue


@dataclass(frozen=True)
class BatchConfig:
    """How messages are batched: batch size, how long a batch may wait, queue bound."""

    max_batch: int = 16
    max_batch_delay_ms: float = 2.0
    queue_depth: int = 4

    def __post_init__(self):
        if not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise ValueError(f'max_batch must be an integer >= 1, got {self.max_batch!r}')
        if not 0.0 <= self.max_batch_delay_ms <= 10000.0:
            raise ValueError(f'max_batch_delay_ms must lie in [0, 10000], got '
                             f'{self.max_batch_delay_ms!r}')
        if not isinstance(self.queue_depth, int) or self.queue_depth < 1:
            raise ValueError(f'queue_depth must be an integer >= 1, got {self.queue_depth!r}')


def group_key(meta: dict) -> tuple:
    """
    Return what messages must share to run through one tail as one batch.

    ``(model, cut, codec, quality, shape, defense)``: the quality only where the codec
    takes one (:func:`core.codecs.codec_quality`), the defense only for camera frames
    (the host applies it). ``meta`` is checked (``HostStage.check``).
    """
    codec = meta.get('codec')
    quality = codecs.codec_quality(codec, meta.get('quality'))
    defense = meta.get('defense', 'none') if meta.get('cut') == FRAME_CUT else None
    return (meta.get('model'), meta.get('cut'), codec, quality, tuple(meta.get('shape', ())),
            defense)


@dataclass
class Pending:
    """One message waiting for inference, and what its robot's publisher needs later."""

    robot: str
    payload: Any
    meta: dict
    key: tuple = ()
    arrived: float = 0.0      # the batcher's clock, set by put()
    context: Any = None       # the node's (header, latency, ...); never read here

    def __post_init__(self):
        if not self.key:
            self.key = group_key(self.meta)


class Batcher:
    """
    Per-robot bounded queues (newest wins) and the flush rule of dynamic batching.

    Thread-safe: intake callbacks :meth:`put`, one inference thread calls
    :meth:`next_batch`. ``clock`` is monotonic seconds (tests pass a fake one).
    """

    def __init__(self, config: BatchConfig = BatchConfig(),
                 clock: Callable[[], float] = time.monotonic,
                 on_drop: Callable[[Pending], None] | None = None):
        self.config = config
        self.clock = clock
        self.on_drop = on_drop
        self._queues: dict[str, collections.deque] = {}
        self._cond = threading.Condition()
        self._closed = False
        self.dropped: collections.Counter = collections.Counter()   # robot -> skipped
        self._served: dict[str, int] = {}   # robot -> the batch that last served it
        self.batches = 0
        self.batched = 0

    def configure(self, config: BatchConfig) -> None:
        """Apply new settings; queues longer than the new depth drop their oldest (counted)."""
        with self._cond:
            self.config = config
            for queue in self._queues.values():
                while len(queue) > config.queue_depth:
                    self._drop(queue.popleft())
            self._cond.notify_all()

    def put(self, item: Pending) -> Pending | None:
        """Queue a message; return the robot's oldest message it pushed out (counted), if any."""
        with self._cond:
            item.arrived = self.clock()
            queue = self._queues.setdefault(item.robot, collections.deque())
            queue.append(item)
            out = None
            if len(queue) > self.config.queue_depth:
                out = queue.popleft()
                self._drop(out)
            self._cond.notify()
            return out

    def _drop(self, item: Pending) -> None:
        self.dropped[item.robot] += 1
        if self.on_drop is not None:
            self.on_drop(item)

    def pending(self, robot: str | None = None) -> int:
        """Return how many messages wait (of one robot, or of all)."""
        with self._cond:
            if robot is not None:
                return len(self._queues.get(robot, ()))
            return sum(len(q) for q in self._queues.values())

    def drain(self) -> list[Pending]:
        """Remove and return every waiting message (a node shutting down accounts for them)."""
        with self._cond:
            items = [i for q in self._queues.values() for i in q]
            for q in self._queues.values():
                q.clear()
            return items

    def close(self) -> None:
        """Wake the inference thread for good: :meth:`next_batch` returns [] from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """Return whether :meth:`close` was called."""
        return self._closed

    def next_batch(self, timeout: float | None = None) -> list[Pending]:
        """
        Wait for the next due batch and return it (oldest first); [] on timeout or close.

        A group is due when it holds ``max_batch`` messages or its oldest message
        has waited ``max_batch_delay_ms``.
        """
        end = None if timeout is None else self.clock() + timeout
        with self._cond:
            while not self._closed:
                now = self.clock()
                key, due_at = self._due(now)
                if key is not None and due_at <= now:
                    batch = self._take(key)
                    self.batches += 1
                    self.batched += len(batch)
                    return batch
                wake = due_at if key is not None else None
                if end is not None:
                    if now >= end:
                        return []
                    wake = end if wake is None else min(wake, end)
                self._cond.wait(None if wake is None else max(0.0, wake - now))
            return []

    def _due(self, now: float) -> tuple[tuple | None, float]:
        """Return the group to serve next and when it is due (``now`` if already)."""
        counts: collections.Counter = collections.Counter()
        oldest: dict[tuple, float] = {}
        for queue in self._queues.values():
            for item in queue:
                counts[item.key] += 1
                if item.key not in oldest or item.arrived < oldest[item.key]:
                    oldest[item.key] = item.arrived
        if not counts:
            return None, 0.0
        full = [k for k, n in counts.items() if n >= self.config.max_batch]
        if full:
            return min(full, key=oldest.get), now
        key = min(oldest, key=oldest.get)
        return key, oldest[key] + self.config.max_batch_delay_ms / 1000.0

    def _take(self, key: tuple) -> list[Pending]:
        """
        Take up to ``max_batch`` messages of ``key`` in rounds of one per robot.

        Robots go in round-robin order (the least recently served first, then the one
        whose message waited longest); each round takes every robot's newest message
        not yet taken. A robot's messages older than the newest one taken are dropped
        (superseded: the robot has a fresher result coming), so an overloaded host
        serves the freshest frames and never answers with a stale one later.
        """
        lists = {robot: [i for i in q if i.key == key] for robot, q in self._queues.items()}
        order = sorted((r for r, items in lists.items() if items),
                       key=lambda r: (self._served.get(r, -1), lists[r][0].arrived))
        batch: list[Pending] = []
        depth = 1
        while len(batch) < self.config.max_batch:
            row = [lists[r][-depth] for r in order if depth <= len(lists[r])]
            if not row:
                break
            batch.extend(row[:self.config.max_batch - len(batch)])
            depth += 1
        newest: dict[str, float] = {}
        for item in batch:
            self._queues[item.robot].remove(item)
            self._served[item.robot] = self.batches
            newest[item.robot] = max(newest.get(item.robot, item.arrived), item.arrived)
        for robot, arrived in newest.items():
            queue = self._queues[robot]
            while queue and queue[0].arrived < arrived:
                self._drop(queue.popleft())
        return sorted(batch, key=lambda i: i.arrived)


@dataclass
class Outcome:
    """One message's result: logits, or the error that stopped it."""

    item: Pending
    logits: torch.Tensor | None = None
    error: PipelineError | None = None


@dataclass
class BatchTimes:
    """Where the batches' time went (seconds): decoding and the tail's forward passes."""

    decode_s: float = 0.0
    tail_s: float = 0.0
    batches: int = 0
    samples: int = 0       # messages that reached the tail


@torch.no_grad()
def infer_batch(stage: HostStage, items: Sequence[Pending],
                times: BatchTimes | None = None) -> list[Outcome]:
    """
    Decode every message of one group, run the tail once on the stack, split the logits.

    A message that fails to decode fails alone (its ``error``); the others are served.
    Items must share a :func:`group_key` (what :meth:`Batcher.next_batch` returns).
    """
    outcomes = [Outcome(item) for item in items]
    if len({item.key for item in items}) > 1:
        raise ValueError('a batch must hold one group (model, cut, codec, quality, shape)')
    t0 = time.perf_counter()
    ready: list[tuple[Outcome, torch.Tensor]] = []
    for outcome in outcomes:
        try:
            ready.append((outcome, stage.prepare(outcome.item.payload, outcome.item.meta)))
        except PipelineError as exc:
            outcome.error = exc
    t1 = time.perf_counter()
    if ready:
        try:
            tail = stage.tail_for(ready[0][0].item.meta)
            logits = tail(torch.stack([x for _, x in ready]))   # (B, ...) -> (B, classes)
        except PipelineError as exc:
            for outcome, _ in ready:
                outcome.error = exc
        except Exception as exc:  # a host never dies on one batch
            error = PipelineError('inference', f'{type(exc).__name__}: {exc}')
            for outcome, _ in ready:
                outcome.error = error
        else:
            for (outcome, _), row in zip(ready, logits):
                outcome.logits = row
    if times is not None:
        times.decode_s += t1 - t0
        times.tail_s += time.perf_counter() - t1
        times.batches += 1
        times.samples += len(ready)
    return outcomes
