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
eDenoizer's scheduling framework: model threads, one priority job queue, a kernel launcher.

A model's forward pass runs as a sequence of jobs at module granularity, one per
top-level block (:class:`.scheduled_model.ScheduledModel`), each a job
``(priority, model, frame)`` on one shared ``JobQueue``. The launcher
(``Scheduler``) runs the highest-priority job first, FIFO within a priority,
optionally aging waiting jobs so that low priorities never starve, and hands
each result back to the model thread waiting on its ``Future``; an exception
raised by a job reaches that thread and leaves the launcher running.
denoise(i+1) overlaps target(i) through :mod:`.overlap`.

The priority of the CPU side is projected onto the device in two ways:

* a model thread's forward pass is a *session*: while a higher-priority
  session is between two of its jobs (for at most ``hold_s``), lower-priority
  jobs are not started, so a high-priority chain is not interleaved with
  background work at every block boundary;
* on CUDA every priority level has its own ``torch.cuda.Stream`` (one per
  level and model, so that two models at one level, the denoiser on frame
  i+1 and the target on frame i, can overlap) created with a matching stream
  priority; the launcher only enqueues kernels (it never waits for one),
  completion is detected by a ``torch.cuda.Event`` per job in one watcher
  thread per stream, and at most ``max_inflight`` jobs per stream are on the
  device at once, so the backlog of low-priority kernels stays short and the
  rest of it keeps its place in the priority queue.

On the CPU the device has ``workers`` slots and the launcher as many threads,
each running one job at a time with torch's intra-op threads
(``intra_op_threads``, process-wide; keep ``workers * intra_op_threads`` near
the core count). A model thread that waits for its job anyway runs it itself
when a slot is free and nothing queued may go first (``inline``): the order is
the queue's, without two thread switches per job. ``spare_workers`` slots
take only a job that outranks everything running: a high-priority job then
starts at once instead of waiting for the low-priority block in progress.

The priority of the calling code travels in a context variable
(``at_priority`` / ``current_priority``): the ROS ``PriorityExecutor`` sets it
to a callback group's priority, and every job submitted from that callback
inherits it.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import itertools
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

THREAD_PREFIX = 'edge-denoise'

_PRIORITY: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    'edge_denoise_priority', default=None)
_SESSION: contextvars.ContextVar['Session | None'] = contextvars.ContextVar(
    'edge_denoise_session', default=None)


def current_priority(default: int = 0) -> int:
    """Return the priority set by the innermost ``at_priority`` of this context."""
    value = _PRIORITY.get()
    return default if value is None else value


@contextlib.contextmanager
def at_priority(priority: int) -> Iterator[int]:
    """Run the body at ``priority``: jobs submitted without one inherit it."""
    token = _PRIORITY.set(check_priority(priority))
    try:
        yield priority
    finally:
        _PRIORITY.reset(token)


def check_priority(priority) -> int:
    """Return ``priority`` if it is an int (higher runs first); raise ValueError if not."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f'priority must be an int (higher runs first), got {priority!r}')
    return priority


def current_session() -> 'Session | None':
    """Return the innermost open ``Scheduler.session`` of this context, if any."""
    return _SESSION.get()


class SchedulerClosed(RuntimeError):
    """The scheduler was closed: the job was not (and will not be) run."""


@dataclass(frozen=True)
class SchedulerConfig:
    """
    Settings of the kernel launcher.

    ``device``: ``cpu`` or ``cuda[:N]``. ``workers``: CPU launcher threads.
    ``intra_op_threads``: torch threads per job (process-wide, set when the
    scheduler starts; ``None`` leaves torch's setting alone). ``aging_per_s``:
    priority levels a waiting job gains per second (0 disables aging).
    ``hold_s``: how long after one of its jobs finished a higher-priority
    session still keeps lower-priority jobs from starting (0 disables holding).
    ``max_inflight``: CUDA only, launched but unfinished jobs per stream.
    ``inline``: CPU only, let a waiting caller run its own job when a slot is
    free and nothing queued may go first (see ``Scheduler.call``).
    ``spare_workers``: CPU only, extra slots that only a job outranking every
    running job may take, so a high-priority job does not wait for a running
    low-priority one to end (the CPU analog of a high-priority CUDA stream
    getting SMs while low-priority kernels run).
    """

    device: str = 'cpu'
    workers: int = 1
    intra_op_threads: int | None = None
    aging_per_s: float = 0.0
    hold_s: float = 0.005
    max_inflight: int = 2
    inline: bool = True
    spare_workers: int = 0

    def __post_init__(self):
        kind = str(self.device).split(':')[0]
        if kind not in ('cpu', 'cuda'):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.workers < 1 or self.max_inflight < 1 or self.spare_workers < 0:
            raise ValueError(f'workers and max_inflight must be >= 1, spare_workers >= 0, '
                             f'got {self}')
        if self.intra_op_threads is not None and self.intra_op_threads < 1:
            raise ValueError(f'intra_op_threads must be None or >= 1, got {self.intra_op_threads}')
        if self.aging_per_s < 0 or self.hold_s < 0:
            raise ValueError(f'aging_per_s and hold_s must be >= 0, got {self}')


@dataclass(eq=False)
class Job:
    """One operation of one model for one frame, waiting for (or on) the device."""

    priority: int
    model: str
    frame: int | None
    fn: Callable
    args: tuple
    kwargs: dict
    future: Future
    seq: int = 0
    submitted: float = 0.0
    session: 'Session | None' = None


class JobQueue:
    """
    The shared priority queue: one FIFO per priority level.

    A job's effective priority is ``priority + aging_per_s * seconds waited``.
    The head of each level is its oldest job, hence its most aged one, so the
    best job overall is the best of the heads: ``pop`` compares one job per
    level. Not thread-safe on its own; ``Scheduler`` holds its lock around it.
    """

    def __init__(self, aging_per_s: float = 0.0, clock: Callable[[], float] = time.monotonic):
        if aging_per_s < 0:
            raise ValueError(f'aging_per_s must be >= 0, got {aging_per_s}')
        self.aging_per_s = aging_per_s
        self.clock = clock
        self._levels: dict[int, collections.deque[Job]] = {}
        self._seq = itertools.count()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, job: Job) -> Job:
        """Append a job at the tail of its priority level; stamp its order and time."""
        job.seq = next(self._seq)
        job.submitted = self.clock()
        self._levels.setdefault(job.priority, collections.deque()).append(job)
        self._size += 1
        return job

    def effective(self, job: Job, now: float | None = None) -> float:
        """Return the job's priority after aging."""
        if not self.aging_per_s:
            return job.priority
        now = self.clock() if now is None else now
        return job.priority + self.aging_per_s * max(0.0, now - job.submitted)

    def best(self, floor: float = float('-inf'), now: float | None = None,
             allowed: Callable[[Job], bool] | None = None) -> Job | None:
        """
        Return (without removing) the job to run next, or ``None``.

        Only the head of each level is a candidate, if its effective priority
        is at least ``floor`` and ``allowed(job)`` holds; ties go to the older job.
        """
        now = self.clock() if now is None else now
        chosen, key = None, None
        for level, jobs in self._levels.items():
            if not jobs or (allowed is not None and not allowed(jobs[0])):
                continue
            head = jobs[0]
            eff = self.effective(head, now)
            if eff < floor:
                continue
            k = (-eff, head.seq)
            if key is None or k < key:
                chosen, key = head, k
        return chosen

    def pop(self, floor: float = float('-inf'), now: float | None = None,
            allowed: Callable[[Job], bool] | None = None) -> Job | None:
        """Remove and return the job to run next (see ``best``), or ``None``."""
        job = self.best(floor, now, allowed)
        if job is not None:
            self._levels[job.priority].popleft()
            self._size -= 1
        return job

    def drain(self) -> list[Job]:
        """Remove and return every queued job, oldest first."""
        jobs = sorted((j for q in self._levels.values() for j in q), key=lambda j: j.seq)
        self._levels.clear()
        self._size = 0
        return jobs


@dataclass(eq=False)
class Session:
    """A forward pass in progress at one priority (see ``Scheduler.session``)."""

    scheduler: 'Scheduler'
    priority: int
    last_done: float
    pending: int = 0
    depth: int = 1


@dataclass
class _Watch:
    """CUDA completion watcher of one stream: jobs in launch order."""

    stream: Any
    thread: threading.Thread | None = None
    items: collections.deque = field(default_factory=collections.deque)
    cond: threading.Condition = field(default_factory=threading.Condition)
    stop: bool = False


class Scheduler:
    """
    The kernel launcher: takes jobs from the shared queue and runs them on the device.

    ``submit(fn, args)`` queues a job and returns a ``concurrent.futures.Future``;
    ``call(fn, args)`` (what ``ScheduledModel`` uses) waits for the result. Use
    it as a context manager, or call ``close()``: every launcher and watcher
    thread is joined.
    """

    def __init__(self, config: SchedulerConfig = SchedulerConfig()):
        self.config = config
        self.device = torch.device(config.device)
        self._cuda = self.device.type == 'cuda'
        if self._cuda and not torch.cuda.is_available():
            raise ValueError(f'device {config.device!r} asked for, but torch.cuda.is_available() '
                             f'is False')
        if self._cuda and self.device.index is None:
            self.device = torch.device('cuda', torch.cuda.current_device())
        if config.intra_op_threads:
            torch.set_num_threads(config.intra_op_threads)
        self._cond = threading.Condition()
        self._queue = JobQueue(config.aging_per_s)
        self._sessions: list[Session] = []
        self._closing = False
        self._closed = False
        self._inflight: collections.Counter = collections.Counter()
        self._active = 0  # CPU jobs running (launcher workers and inline callers)
        self._running: collections.Counter = collections.Counter()  # their priorities
        self._watches: dict[tuple[int, str], _Watch] = {}
        self._stats = {'submitted': 0, 'completed': 0, 'failed': 0, 'cancelled': 0,
                       'max_queue': 0, 'held': 0, 'inline': 0, 'busy_s': 0.0}
        self._by_priority: collections.Counter = collections.Counter()
        count = 1 if self._cuda else config.workers + config.spare_workers
        target = self._cuda_loop if self._cuda else self._cpu_loop
        self._threads = [threading.Thread(target=target, daemon=True,
                                          name=f'{THREAD_PREFIX}-launcher-{i}')
                         for i in range(count)]
        for t in self._threads:
            t.start()

    # ----------------------------------------------------------------- submitting

    def submit(self, fn: Callable, args: tuple = (), kwargs: dict | None = None, *,
               priority: int | None = None, model: str = '', frame: int | None = None) -> Future:
        """
        Queue ``fn(*args, **kwargs)`` as one job; return its future.

        ``priority`` defaults to the caller's ``current_priority()`` (higher runs
        first). A job submitted inside a ``session`` of this scheduler belongs to it
        and runs at no less than the session's priority.
        """
        job = self._job(fn, args, kwargs, priority, model, frame)
        with self._cond:
            self._accept(job)
            self._push(job)
        return job.future

    def call(self, fn: Callable, args: tuple = (), kwargs: dict | None = None, *,
             priority: int | None = None, model: str = '', frame: int | None = None) -> Any:
        """
        Run ``fn(*args, **kwargs)`` as one job and wait for its result (or exception).

        On the CPU with ``inline`` set, when a device slot is free and no queued
        job may start before this one, the calling thread runs the job itself
        (the launcher lends it the slot): the same order as queuing it, without
        two thread switches per job. Otherwise the job queues for the launcher.
        """
        job = self._job(fn, args, kwargs, priority, model, frame)
        with self._cond:
            self._accept(job)
            inline = self._may_inline(job)
            if inline:
                self._start(job)
                self._stats['inline'] += 1
            else:
                self._push(job)
        if inline and job.future.set_running_or_notify_cancel():
            self._execute(job)
        return job.future.result()

    def run(self, fn: Callable, *args, priority: int | None = None, model: str = '',
            frame: int | None = None, **kwargs) -> Any:
        """Run ``fn(*args, **kwargs)`` as one job and return its result (see ``call``)."""
        return self.call(fn, args, kwargs, priority=priority, model=model, frame=frame)

    def _job(self, fn, args, kwargs, priority, model, frame) -> Job:
        priority = current_priority() if priority is None else check_priority(priority)
        session = _SESSION.get()
        if session is not None and session.scheduler is not self:
            session = None
        if session is not None and session.priority > priority:
            priority = session.priority  # inherit: no inversion inside a forward pass
        return Job(priority, model, frame, fn, tuple(args), dict(kwargs or {}), Future(),
                   session=session)

    def _accept(self, job: Job) -> None:
        """Count a new job in (lock held); refuse it once closing."""
        if self._closing:
            raise SchedulerClosed('the scheduler is closed; no new jobs are accepted')
        if job.session is not None:
            job.session.pending += 1
        self._stats['submitted'] += 1

    def _push(self, job: Job) -> None:
        """Queue an accepted job for the launcher (lock held)."""
        self._queue.push(job)
        self._stats['max_queue'] = max(self._stats['max_queue'], len(self._queue))
        self._cond.notify_all()

    def _may_inline(self, job: Job) -> bool:
        """Return whether the caller may run ``job`` now, in its own thread (lock held)."""
        if not self.config.inline or self._cuda:
            return False
        now = time.monotonic()
        floor, _ = self._floor(now)
        floor = max(floor, self._slot_floor())
        return job.priority >= floor and self._queue.best(floor, now) is None

    def _slot_floor(self) -> float:
        """
        Return the lowest priority that may take a CPU slot now (lock held).

        Any job may take one of the ``workers`` slots; a spare slot only goes to
        a job that outranks every running job; with every slot taken, none.
        """
        if self._active < self.config.workers:
            return float('-inf')
        if self._active < self.config.workers + self.config.spare_workers and self._running:
            return max(self._running) + 1e-9
        return float('inf')

    def _start(self, job: Job) -> None:
        """Give a CPU job a slot (lock held)."""
        self._active += 1
        self._running[job.priority] += 1

    def _release(self, job: Job) -> None:
        """Take a CPU job's slot back (lock held)."""
        self._active -= 1
        self._running[job.priority] -= 1
        if not self._running[job.priority]:
            del self._running[job.priority]

    @contextlib.contextmanager
    def session(self, priority: int | None = None) -> Iterator[Session]:
        """
        Mark a forward pass (or a chain of them) in progress at ``priority``.

        Between two jobs of an open session, lower-priority jobs are held back
        for up to ``hold_s`` after its last job finished, so that the launcher
        does not slip background work in at every block boundary. Sessions nest:
        an inner one at no higher priority joins the outer one.
        """
        priority = current_priority() if priority is None else check_priority(priority)
        outer = _SESSION.get()
        if outer is not None and outer.scheduler is self and outer.priority >= priority:
            outer.depth += 1
            try:
                yield outer
            finally:
                outer.depth -= 1
            return
        s = Session(self, priority, time.monotonic())
        with self._cond:
            self._sessions.append(s)
        token = _SESSION.set(s)
        try:
            yield s
        finally:
            _SESSION.reset(token)
            with self._cond:
                self._sessions.remove(s)
                self._cond.notify_all()

    # ------------------------------------------------------------------- launching

    def _floor(self, now: float) -> tuple[float, float | None]:
        """Return (lowest priority allowed to start now, when that may change)."""
        floor, wake = float('-inf'), None
        hold = self.config.hold_s
        if not hold:
            return floor, wake
        for s in self._sessions:
            if s.priority <= floor:
                continue
            if s.pending > 0:
                floor = s.priority
            elif now - s.last_done < hold:
                floor = s.priority
                end = s.last_done + hold
                wake = end if wake is None else min(wake, end)
        return floor, wake

    def _next(self, allowed: Callable[[Job], bool] | None = None) -> Job | None:
        """Wait (lock held) for the next job to run; ``None`` once closed and drained."""
        while True:
            if self._closing and not len(self._queue):
                return None
            slot = float('-inf') if self._cuda else self._slot_floor()
            if slot == float('inf'):
                self._cond.wait()  # every CPU slot is taken (by inline jobs)
                continue
            now = time.monotonic()
            floor, wake = self._floor(now)
            job = self._queue.pop(max(floor, slot), now, allowed)
            if job is not None:
                return job
            timeout = None
            if len(self._queue):
                if wake is not None and self._queue.best(now=now, allowed=allowed) is not None:
                    self._stats['held'] += 1
                if self.config.aging_per_s and floor > float('-inf'):
                    timeout = 0.001  # an aged job may cross the floor
                if wake is not None:
                    left = max(0.0, wake - now)
                    timeout = left if timeout is None else min(timeout, left)
            self._cond.wait(timeout)

    def _finish(self, job: Job, result: Any = None, error: BaseException | None = None) -> None:
        """Hand a job's outcome back to its submitter; account for it."""
        with self._cond:
            if job.session is not None:
                job.session.pending -= 1
                job.session.last_done = time.monotonic()
            if not self._cuda:
                self._release(job)
            self._stats['failed' if error is not None else 'completed'] += 1
            self._by_priority[job.priority] += 1
            self._cond.notify_all()
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    def _cpu_loop(self) -> None:
        while True:
            with self._cond:
                job = self._next()
                if job is not None:
                    self._start(job)
            if job is None:
                return
            if not job.future.set_running_or_notify_cancel():
                self._cancelled(job)
                continue
            self._execute(job)

    def _execute(self, job: Job) -> None:
        """Run a CPU job in this thread (a launcher worker, or the caller inline)."""
        start = time.perf_counter()
        try:
            with torch.no_grad():
                out = job.fn(*job.args, **job.kwargs)
        except BaseException as exc:  # noqa: B902 - every failure goes to the submitter
            out, error = None, exc
        else:
            error = None
        with self._cond:
            self._stats['busy_s'] += time.perf_counter() - start
        self._finish(job, out, error)

    def _cancelled(self, job: Job) -> None:
        with self._cond:
            if job.session is not None:
                job.session.pending -= 1
            if not self._cuda:
                self._release(job)
            self._stats['cancelled'] += 1
            self._cond.notify_all()

    # ------------------------------------------------------------------------ CUDA

    @staticmethod
    def stream_priority(priority: int) -> int:
        """
        Return the CUDA stream priority of a scheduler priority level.

        CUDA counts the other way (lower is more urgent): level ``p >= 0`` asks
        for ``-p``, negative levels for 0; torch clamps to the device's range,
        so the highest levels may share the device's highest stream priority
        (the launcher still orders their jobs).
        """
        return -priority if priority > 0 else 0

    def streams(self) -> dict:
        """Return ``{(priority level, model): torch.cuda.Stream}`` used so far (CUDA)."""
        return {key: w.stream for key, w in sorted(list(self._watches.items()))}

    def _watch(self, job: Job) -> _Watch:
        """Return (creating on first use) the stream and watcher of a job's level and model."""
        key = (job.priority, job.model)
        watch = self._watches.get(key)
        if watch is None:
            stream = torch.cuda.Stream(device=self.device,
                                       priority=self.stream_priority(job.priority))
            watch = _Watch(stream)
            watch.thread = threading.Thread(
                target=self._watch_loop, args=(watch,), daemon=True,
                name=f'{THREAD_PREFIX}-watch-p{job.priority}-{job.model or "job"}')
            self._watches[key] = watch
            watch.thread.start()
        return watch

    def _cuda_loop(self) -> None:
        cap = self.config.max_inflight
        torch.cuda.set_device(self.device)
        while True:
            with self._cond:
                job = self._next(lambda j: self._inflight[j.priority, j.model] < cap)
                if job is not None:
                    self._inflight[job.priority, job.model] += 1
            if job is None:
                break
            if not job.future.set_running_or_notify_cancel():
                with self._cond:
                    self._inflight[job.priority, job.model] -= 1
                self._cancelled(job)
                continue
            try:
                watch = self._watch(job)
                with torch.cuda.stream(watch.stream), torch.no_grad():
                    args = _to_stream(job.args, self.device, watch.stream)
                    kwargs = _to_stream(job.kwargs, self.device, watch.stream)
                    out = job.fn(*args, **kwargs)
                    done = torch.cuda.Event()
                    done.record(watch.stream)
            except BaseException as exc:  # noqa: B902 - every failure goes to the submitter
                with self._cond:
                    self._inflight[job.priority, job.model] -= 1
                self._finish(job, error=exc)
                continue
            with watch.cond:
                watch.items.append((job, done, out))
                watch.cond.notify()
        for watch in list(self._watches.values()):
            with watch.cond:
                watch.stop = True
                watch.cond.notify()

    def _watch_loop(self, watch: _Watch) -> None:
        torch.cuda.set_device(self.device)
        while True:
            with watch.cond:
                while not watch.items and not watch.stop:
                    watch.cond.wait()
                if not watch.items:
                    return
                job, done, out = watch.items.popleft()
            try:
                done.synchronize()  # this thread waits; the launcher never does
            except BaseException as exc:  # noqa: B902 - asynchronous device errors
                error = exc
            else:
                error = None
            with self._cond:
                self._inflight[job.priority, job.model] -= 1
            self._finish(job, None if error else out, error)

    # ---------------------------------------------------------------------- closing

    def stats(self) -> dict:
        """
        Return counters: jobs submitted, completed, failed, cancelled, queue peak, by level.

        ``held``: times the launcher held lower-priority jobs for a session;
        ``busy_s``: seconds the CPU workers spent running jobs (CPU path only).
        """
        with self._cond:
            return {**self._stats, 'queued': len(self._queue),
                    'by_priority': dict(sorted(self._by_priority.items()))}

    def threads(self) -> list[threading.Thread]:
        """Return the launcher and watcher threads, for inspection."""
        return self._threads + [w.thread for w in self._watches.values() if w.thread]

    def close(self, cancel_pending: bool = False, timeout: float | None = None) -> bool:
        """
        Stop accepting jobs, finish (or cancel) the queued ones, join every thread.

        Cancelled jobs fail with ``SchedulerClosed``. Return ``True`` when every
        thread has ended within ``timeout`` seconds.
        """
        with self._cond:
            self._closing = True
            dropped = self._queue.drain() if cancel_pending else []
            for job in dropped:
                if job.session is not None:
                    job.session.pending -= 1
            self._stats['cancelled'] += len(dropped)
            self._cond.notify_all()
        for job in dropped:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(SchedulerClosed('cancelled by Scheduler.close()'))
        end = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if end is None else max(0.0, end - time.monotonic()))
        for watch in list(self._watches.values()):
            with watch.cond:
                watch.stop = True
                watch.cond.notify()
            watch.thread.join(None if end is None else max(0.0, end - time.monotonic()))
        self._closed = not any(t.is_alive() for t in self.threads())
        return self._closed

    def __enter__(self) -> 'Scheduler':
        return self

    def __exit__(self, *exc) -> None:
        self.close(cancel_pending=exc[0] is not None)


def _to_stream(obj, device: torch.device, stream) -> Any:
    """Move CPU tensors to ``device`` on ``stream``; mark device tensors as used by it."""
    if isinstance(obj, torch.Tensor):
        if obj.device.type != 'cuda':
            return obj.to(device, non_blocking=True)
        obj.record_stream(stream)  # the caching allocator must not reuse it too early
        return obj
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_stream(o, device, stream) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_stream(v, device, stream) for k, v in obj.items()}
    return obj
