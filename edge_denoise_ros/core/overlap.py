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
Defended inference overlapped: the denoiser runs on frame i+1 while the target runs on frame i.

eDenoizer's pipelining: a denoiser thread and a target thread connected by
bounded queues (:class:`Overlap`), so the two models overlap; outputs come out
in frame order, and frames are only dropped by an explicit queue-depth policy
(:class:`FrameQueue`) that counts every drop. :func:`sequential` is the
baseline that runs one frame at a time. Each stage may be a
:class:`.scheduled_model.ScheduledModel`, whose jobs then meet on the
scheduler's queue.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
from typing import Any, Callable, Iterable

import torch
from torch import nn

from .scheduler import at_priority, THREAD_PREFIX

DROP_POLICIES = ('block', 'drop_oldest', 'drop_newest')


class FrameQueue:
    """
    A bounded FIFO of ``(frame, item)`` with an explicit, counted overflow policy.

    ``block``: ``put`` waits for room (nothing is ever dropped);
    ``drop_oldest``: the oldest waiting frame is dropped to make room;
    ``drop_newest``: the new frame is refused. ``depth=0`` is unbounded.
    Every dropped frame id is kept in ``dropped_frames``.
    """

    def __init__(self, depth: int = 2, policy: str = 'block'):
        if depth < 0:
            raise ValueError(f'depth must be >= 0 (0: unbounded), got {depth}')
        if policy not in DROP_POLICIES:
            raise ValueError(f'policy must be one of {DROP_POLICIES}, got {policy!r}')
        self.depth, self.policy = depth, policy
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped_frames: list[int] = []

    @property
    def dropped(self) -> int:
        """Return the number of frames dropped so far."""
        return len(self.dropped_frames)

    def put(self, frame: int, item: Any) -> bool:
        """Queue a frame; return ``False`` if it was refused (``drop_newest`` only)."""
        with self._cond:
            if self._closed:
                raise ValueError('put() on a closed FrameQueue')
            full = self.depth and len(self._items) >= self.depth
            if full and self.policy == 'drop_newest':
                self.dropped_frames.append(frame)
                return False
            if full and self.policy == 'drop_oldest':
                self.dropped_frames.append(self._items.popleft()[0])
            while self.depth and len(self._items) >= self.depth and not self._closed:
                self._cond.wait()
            self._items.append((frame, item))
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> tuple[int, Any] | None:
        """Take the oldest frame; ``None`` once closed and empty. ``TimeoutError`` on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                raise TimeoutError(f'no frame within {timeout} s')
            if not self._items:
                return None
            entry = self._items.popleft()
            self._cond.notify_all()
            return entry

    def close(self) -> None:
        """Let waiting getters finish once the queue is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class _Failed:
    """A frame whose stage raised: the exception travels down the stages in frame order."""

    def __init__(self, error: BaseException):
        self.error = error


class ModelThread:
    """
    A model's own thread: takes frames from ``inbox``, runs ``model``, hands results on.

    Each item is run as ``model(x, frame=frame)`` at ``priority`` (through a
    ``ScheduledModel`` this submits the model's jobs); ``emit(frame, y)`` receives
    the output, or a failure marker that later stages pass through untouched.
    The thread ends when the inbox is closed and empty.
    """

    def __init__(self, model: Callable, inbox: FrameQueue, emit: Callable[[int, Any], None], *,
                 priority: int | None = None, name: str = 'model'):
        self.model, self.inbox, self.emit = model, inbox, emit
        self.priority = priority
        self.thread = threading.Thread(target=self._loop, daemon=True,
                                       name=f'{THREAD_PREFIX}-model-{name}')

    def start(self) -> 'ModelThread':
        """Start the thread."""
        self.thread.start()
        return self

    def _loop(self) -> None:
        with contextlib.ExitStack() as stack:
            if self.priority is not None:
                stack.enter_context(at_priority(self.priority))
            while True:
                entry = self.inbox.get()
                if entry is None:
                    return
                frame, x = entry
                if isinstance(x, _Failed):
                    self.emit(frame, x)
                    continue
                try:
                    y = self.model(x, frame=frame)
                except BaseException as exc:  # noqa: B902 - reaches the overlap's reader
                    y = _Failed(exc)
                self.emit(frame, y)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end."""
        self.thread.join(timeout)


def _plain(model: Callable) -> Callable:
    """Return a stage as ``f(x, frame=...)``: a ``ScheduledModel``, a module or a function."""
    if not isinstance(model, nn.Module):
        return model  # ScheduledModel, or any callable taking (x, frame=...)

    @torch.no_grad()
    def call(x, frame=None):
        return model(x)
    return call


class Overlap:
    """
    Defended inference overlapped: the denoiser runs on frame i+1 while the target runs on frame i.

    ``submit(x)`` hands a frame to the denoiser thread (bounded by ``depth``,
    overflow handled by ``policy``, see ``FrameQueue``); the denoised frame
    goes through a blocking queue to the target thread; ``get()`` returns
    ``(frame, output)`` strictly in frame order and raises a stage's exception
    for the frame it belongs to. ``close()`` lets every accepted frame finish
    and joins both threads.
    """

    def __init__(self, denoiser: Callable, target: Callable, *, depth: int = 2,
                 policy: str = 'block', priority: int | None = None):
        self._inbox = FrameQueue(depth, policy)
        self._middle = FrameQueue(max(depth, 1), 'block')
        self._outbox = FrameQueue(0, 'block')
        self._frames = itertools.count()
        self._lock = threading.Lock()
        self.submitted = 0
        self._stages = [
            ModelThread(_plain(denoiser), self._inbox, self._middle.put, priority=priority,
                        name='denoiser').start(),
            ModelThread(_plain(target), self._middle, self._outbox.put, priority=priority,
                        name='target').start()]
        self._closed = False

    def submit(self, x, frame: int | None = None) -> int | None:
        """Queue a frame; return its id, or ``None`` if the queue policy refused it."""
        with self._lock:
            frame = next(self._frames) if frame is None else frame
            self.submitted += 1
        return frame if self._inbox.put(frame, x) else None

    def get(self, timeout: float | None = None) -> tuple[int, Any]:
        """Return the next ``(frame, output)`` in frame order; raise its stage's exception."""
        entry = self._outbox.get(timeout)
        if entry is None:
            raise EOFError('the overlap is closed and every frame was returned')
        frame, y = entry
        if isinstance(y, _Failed):
            raise y.error
        return frame, y

    @property
    def dropped_frames(self) -> list[int]:
        """Return the ids of the frames dropped by the queue policy."""
        return list(self._inbox.dropped_frames)

    def stats(self) -> dict:
        """Return submitted / dropped counts and the current queue lengths."""
        return {'submitted': self.submitted, 'dropped': self._inbox.dropped,
                'waiting': len(self._inbox), 'between': len(self._middle),
                'ready': len(self._outbox)}

    def close(self, timeout: float | None = None) -> None:
        """Finish every accepted frame, then join the model threads."""
        if self._closed:
            return
        self._closed = True
        self._inbox.close()
        self._stages[0].join(timeout)
        self._middle.close()
        self._stages[1].join(timeout)
        self._outbox.close()

    def threads(self) -> list[threading.Thread]:
        """Return the two model threads, for inspection."""
        return [s.thread for s in self._stages]

    def __enter__(self) -> 'Overlap':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sequential(denoiser: Callable, target: Callable, frames: Iterable) -> list:
    """Run denoise then target on each frame, one frame at a time (the baseline, no overlap)."""
    d, t = _plain(denoiser), _plain(target)
    return [t(d(x, frame=i), frame=i) for i, x in enumerate(frames)]


def overlapped(denoiser: Callable, target: Callable, frames: Iterable, depth: int = 2,
               priority: int | None = None) -> list:
    """Run frames through an :class:`Overlap` (no drops); return the outputs in frame order."""
    outputs = []
    with Overlap(denoiser, target, depth=depth, priority=priority) as overlap:
        reader_error: list[BaseException] = []

        def read(n: int) -> None:
            try:
                for _ in range(n):
                    outputs.append(overlap.get()[1])
            except BaseException as exc:  # noqa: B902 - re-raised in the caller
                reader_error.append(exc)

        frames = list(frames)
        reader = threading.Thread(target=read, args=(len(frames),), daemon=True,
                                  name=f'{THREAD_PREFIX}-reader')
        reader.start()
        for x in frames:
            overlap.submit(x)
        reader.join()
    if reader_error:
        raise reader_error[0]
    return outputs
