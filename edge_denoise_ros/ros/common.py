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
Pieces every node of the package uses: declared parameters, statistics, hand-off.

- :func:`declare_parameters`: each parameter declared once with a
  ``ParameterDescriptor`` (description, range or choices, read-only); a
  change is checked against its spec, then offered to the node, which may
  refuse it with a reason (``ros2 param set`` prints it). ``TARGET_PARAMS``
  and ``FEATURES_QOS_PARAMS``: the specs edge and host share.
- :class:`NodeStats`: frames, bytes, latency, errors by kind, drops; one
  ``DiagnosticStatus`` for ``/diagnostics``.
- :class:`Mailbox`: a bounded hand-off between callbacks where the newest
  item wins and every item pushed out is counted.
- :func:`features_qos`, :func:`diagnostics_timer`: the features topic's QoS
  (edge and host alike) and the periodic ``diagnostics`` publisher.
- :func:`run_nodes`: the ``main`` of every node executable (a start-up error of
  any kind is one line and status 2; SIGINT or SIGTERM at any moment stops the
  executor before the nodes and rclpy, so nothing publishes into a closed
  context); :func:`spin_until_done` for tools (bag player, recorder) that may run
  inside another's rclpy.
"""

from __future__ import annotations

import collections
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.executors import (ExternalShutdownException, MultiThreadedExecutor,
                             SingleThreadedExecutor)
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import get_default_context

from .dds import fill_message_pool, give_large_samples_back
from .executor import PriorityExecutor
from ..core.models import DEFAULT_MODEL
from ..core.pipeline import check_device
from ..core.scheduler import Scheduler, SchedulerConfig

THROTTLE_S = 5.0
RELIABILITY = ('reliable', 'best_effort')
DIAG_PERIOD_S = 1.0
# A hand-off whose guard-condition wake-up never came is served within two of these.
WAKE_SWEEP_S = 0.1
DIAGNOSTICS_TOPIC = '/diagnostics'   # absolute, where diagnostic aggregators listen
# Status keys: how many readers the edge's features writer matched (hosts listening), and
# how many writers a host's features reader matched (edges heard): 0 = not connected yet.
SUBSCRIBERS, PUBLISHERS = 'features.subscribers', 'features.publishers'
SPIN_PERIOD_S = 0.2                  # the main thread looks at signals at least this often
START_ERROR_STATUS = 2


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: default, description and its constraint."""

    name: str
    default: Any
    description: str
    choices: Sequence[str] | None = None
    range: tuple[float, float] | None = None
    read_only: bool = False
    validate: Callable[[Any], Any] | None = None   # raises ValueError with the reason
    # The default given the parameters declared before it (the cut of a bundle's target);
    # ``default`` is then the value without them and fixes the type.
    default_from: Callable[[dict], Any] | None = None

    @property
    def is_float(self) -> bool:
        """Return whether the parameter holds a number (an integer is taken as well)."""
        return isinstance(self.default, float)

    @property
    def is_list(self) -> bool:
        """Return whether the parameter holds a list of strings (each one of ``choices``)."""
        return isinstance(self.default, list)

    def descriptor(self) -> ParameterDescriptor:
        """
        Return the ROS parameter descriptor: what ``ros2 param describe`` shows.

        A number parameter is declared with dynamic typing, so that ``ros2 param set
        ... uplink_mbps 2`` (an integer) is taken; :meth:`check` keeps it a number.
        So is a list, so that an empty one (which ROS types as no list of strings) is
        taken; :meth:`check` keeps it a list of strings.
        """
        d = ParameterDescriptor(description=self.description, read_only=self.read_only,
                                dynamic_typing=self.is_float or self.is_list)
        if self.choices:
            d.additional_constraints = ('each ' if self.is_list else '') + 'one of: ' + \
                ', '.join(self.choices)
        if self.range is not None:
            lo, hi = self.range
            if isinstance(self.default, int) and not isinstance(self.default, bool):
                d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
            else:
                d.floating_point_range = [FloatingPointRange(from_value=float(lo),
                                                             to_value=float(hi), step=0.0)]
        return d

    def check(self, value) -> str | None:
        """Return why ``value`` is refused, or None."""
        if self.is_float and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f'{self.name} must be a number, got {value!r}'
        if self.is_list:
            if not isinstance(value, (list, tuple)) or \
                    not all(isinstance(v, str) for v in value):
                return f'{self.name} must be a list of strings, got {value!r}'
            bad = [v for v in value if self.choices and v not in self.choices]
            if bad:
                return f'{self.name}: {bad[0]!r} is not one of {list(self.choices)}'
        elif self.choices and value not in self.choices:
            return f'{self.name} must be one of {list(self.choices)}, got {value!r}'
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            return f'{self.name} must lie in [{self.range[0]}, {self.range[1]}], got {value!r}'
        if self.validate is not None:
            try:
                self.validate(value)
            except ValueError as exc:
                return f'{self.name}: {exc}'
        return None


# The parameters edge and host both declare: the target they run, the features topic's QoS.
TARGET_PARAMS = (
    ParamSpec('model', DEFAULT_MODEL, 'target classifier: a registry name or a .pt2 file '
              '(edge and host must run the same: messages carry its hash)', read_only=True),
    ParamSpec('weights', '', 'weights file of the target ("" = the shipped weights)',
              read_only=True),
    ParamSpec('bundle', '', 'a bundle folder (edge-denoise train ... --out B), or a shipped '
              'bundle by name (scenes): its target, labels, frame preparation, denoisers and '
              'fine-tuned tails; model and weights are then ignored ("" = none)',
              read_only=True),
    ParamSpec('labels', '', 'class names, one per line ("" = the bundle\'s, or the default '
              'target\'s)', read_only=True),
    ParamSpec('device', 'cpu', 'torch device of this node\'s models, inputs and scheduler: '
              'cpu or cuda[:N]', read_only=True, validate=check_device),
    ParamSpec('torch_threads', 1, 'torch intra-op threads of this process (1 suits batch-1 '
              'inference of small models; 0 = torch\'s default)', range=(0, 256),
              read_only=True),
)
FEATURES_QOS_PARAMS = (
    ParamSpec('features_reliability', 'reliable', 'QoS reliability of features',
              choices=RELIABILITY, read_only=True),
    ParamSpec('features_depth', 30, 'QoS history depth of features', range=(1, 1000),
              read_only=True),
)


def declare_parameters(node, specs: Sequence[ParamSpec],
                       apply: Callable[[dict], None] | None = None) -> dict:
    """
    Declare ``specs`` on ``node``; return their values (overrides from launch/YAML applied).

    A bad initial value raises ValueError (the node does not start with it).
    Later changes are checked against the specs, then passed to
    ``apply(changes)``: if it raises ValueError the change is refused with
    that reason and nothing changes.
    """
    by_name = {s.name: s for s in specs}
    values = {}
    for spec in specs:
        default = spec.default if spec.default_from is None else spec.default_from(values)
        value = node.declare_parameter(spec.name, default, spec.descriptor()).value
        reason = spec.check(value)
        if spec.is_float and not reason:
            value = float(value)
        if reason:
            raise ValueError(f'parameter {reason}')
        values[spec.name] = value

    def on_set(params: list[Parameter]) -> SetParametersResult:
        changes = {}
        for p in params:
            spec = by_name.get(p.name)
            if spec is None:
                continue
            value = p.value
            reason = spec.check(value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            changes[p.name] = float(value) if spec.is_float else value
        if changes and apply is not None:
            try:
                apply(changes)
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return values


class NodeStats:
    """Counters and a latency window of one node; thread-safe."""

    def __init__(self, window: int = 2000):
        self._lock = threading.Lock()
        self.frames = 0
        self.bytes = 0
        self.errors: collections.Counter = collections.Counter()
        self.drops: collections.Counter = collections.Counter()
        self.counts: collections.Counter = collections.Counter()
        self._latency = collections.deque(maxlen=window)
        self._times = collections.deque(maxlen=window)
        self._started = time.monotonic()
        self._logged: dict[str, float] = {}
        self.notes: dict[str, str] = {}
        self.warnings: dict[str, str] = {}
        self.gauges: dict[str, object] = {}

    def frame(self, nbytes: int = 0, latency_ms: float | None = None) -> None:
        """Count one served frame."""
        with self._lock:
            self.frames += 1
            self.bytes += nbytes
            self._times.append(time.monotonic())
            if latency_ms is not None:
                self._latency.append(latency_ms)

    def error(self, kind: str) -> bool:
        """Count one error of ``kind``; return True when it is due to be logged (throttled)."""
        with self._lock:
            self.errors[kind] += 1
            now = time.monotonic()
            if now - self._logged.get(kind, -THROTTLE_S) >= THROTTLE_S:
                self._logged[kind] = now
                return True
            return False

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` dropped frames for ``reason``."""
        if n > 0:
            with self._lock:
                self.drops[reason] += n

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to the plain counter ``key`` (reported as is, not as a drop or error)."""
        if n > 0:
            with self._lock:
                self.counts[key] += n

    def note(self, **values) -> None:
        """Set values the status reports as text (e.g. the cut and codec in use)."""
        with self._lock:
            self.notes.update({k: str(v) for k, v in values.items()})

    def warn(self, key: str, text: str) -> None:
        """Hold a standing warning (e.g. a stale denoiser): the status stays WARN and says it."""
        with self._lock:
            self.warnings[key] = text

    def gauge(self, key: str, read) -> None:
        """Report ``read()`` under ``key`` in every status (e.g. a publisher's matched readers)."""
        with self._lock:
            self.gauges[key] = read

    def snapshot(self) -> dict:
        """Return the figures: frames/s over the last 5 s, latency p50/p99, totals."""
        with self._lock:
            gauges = dict(self.gauges)
        read = {k: _read_gauge(fn) for k, fn in gauges.items()}   # outside the lock: rcl
        with self._lock:
            now = time.monotonic()
            recent = [t for t in self._times if now - t <= 5.0]
            span = min(5.0, now - self._started)
            lat = sorted(self._latency)
            return {
                'frames': self.frames,
                'frames_per_s': len(recent) / span if span > 0 else 0.0,
                'latency_p50_ms': _quantile(lat, 0.5),
                'latency_p99_ms': _quantile(lat, 0.99),
                'bytes_per_frame': self.bytes / self.frames if self.frames else 0.0,
                'errors': dict(self.errors),
                'drops': dict(self.drops),
                'counts': dict(self.counts),
                'notes': dict(self.notes),
                'warnings': dict(self.warnings),
                'gauges': read,
            }

    def status(self, name: str, hardware_id: str = '') -> DiagnosticStatus:
        """Return a ``DiagnosticStatus`` (WARN once errors or drops were counted, or warned)."""
        s = self.snapshot()
        values = [('frames', s['frames']), ('frames_per_s', f"{s['frames_per_s']:.2f}"),
                  ('latency_p50_ms', _fmt(s['latency_p50_ms'])),
                  ('latency_p99_ms', _fmt(s['latency_p99_ms'])),
                  ('bytes_per_frame', f"{s['bytes_per_frame']:.1f}"),
                  ('errors', sum(s['errors'].values())), ('dropped', sum(s['drops'].values()))]
        values += [(f'errors.{k}', v) for k, v in sorted(s['errors'].items())]
        values += [(f'dropped.{k}', v) for k, v in sorted(s['drops'].items())]
        values += sorted(s['counts'].items())
        values += sorted(s['notes'].items())
        values += sorted(s['gauges'].items())
        values += [(f'warning.{k}', v) for k, v in sorted(s['warnings'].items())]
        bad = sum(s['errors'].values()) + sum(s['drops'].values())
        message = f"{s['frames']} frames, {s['frames_per_s']:.1f}/s, {bad} errors+drops"
        if s['warnings']:
            message += ', warnings: ' + ', '.join(sorted(s['warnings']))
        return DiagnosticStatus(
            level=DiagnosticStatus.WARN if bad or s['warnings'] else DiagnosticStatus.OK,
            name=name, hardware_id=hardware_id, message=message,
            values=[KeyValue(key=k, value=str(v)) for k, v in values])


def _read_gauge(read):
    """Return ``read()``, or 'gone' once its entity was destroyed (a last status at shutdown)."""
    try:
        return read()
    except RuntimeError:     # rclpy's InvalidHandle
        return 'gone'


def _quantile(values: list, q: float) -> float | None:
    if not values:
        return None
    return float(values[min(len(values) - 1, int(round(q * (len(values) - 1))))])


def _fmt(v) -> str:
    return 'nan' if v is None else f'{v:.2f}'


def status_values(status: DiagnosticStatus) -> dict:
    """Return a ``DiagnosticStatus``'s key/values as a dict (for tools and tests)."""
    return {kv.key: kv.value for kv in status.values}


def status_count(values: dict, key: str) -> int:
    """Return the count ``key`` of :func:`status_values`; 0 where it is absent or no number."""
    try:
        return int(float(values.get(key, 0)))
    except ValueError:
        return 0


class Mailbox:
    """
    A bounded hand-off: ``put`` never blocks; when full the oldest item is pushed out.

    ``replaced`` counts the items pushed out (frames skipped because a newer
    one arrived first): the newest frame wins.
    """

    def __init__(self, depth: int = 1):
        if depth < 1:
            raise ValueError(f'depth must be >= 1, got {depth}')
        self._items = collections.deque()
        self._depth = depth
        self._lock = threading.Lock()
        self.replaced = 0

    def put(self, item) -> int:
        """Add an item; return how many older items it pushed out (0 or 1)."""
        with self._lock:
            self._items.append((time.monotonic(), item))
            if len(self._items) > self._depth:
                self._items.popleft()
                self.replaced += 1
                return 1
            return 0

    def take(self):
        """Return the oldest waiting item, or None."""
        with self._lock:
            return self._items.popleft()[1] if self._items else None

    def waited_s(self) -> float:
        """Return how long the oldest waiting item has waited, in seconds (0 when empty)."""
        with self._lock:
            return time.monotonic() - self._items[0][0] if self._items else 0.0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def hand_off_wake(node, group, box: Mailbox, run: Callable[[], None], stats: NodeStats):
    """
    Return the guard condition that wakes ``run`` (in ``group``) for what is put in ``box``.

    The producer puts an item in ``box`` and triggers the returned guard
    condition. A trigger that comes while the executor's wait returns for another
    entity can be lost below rclpy (seen with Fast DDS under ``bench fuzz``: the
    wait reported the other entity only, and no later wait reported the trigger);
    the item would wait for the next one, forever if none comes. So a timer in the
    same (mutually exclusive) ``group`` runs ``run`` too when the oldest item has
    waited ``WAKE_SWEEP_S`` or more, and counts it as ``wake_swept`` in the node's
    diagnostics (a wake-up that a busy group held back that long is counted too).
    """
    def sweep() -> None:
        if box.waited_s() >= WAKE_SWEEP_S:
            stats.count('wake_swept')
            run()
    node.create_timer(WAKE_SWEEP_S, sweep, callback_group=group)
    return node.create_guard_condition(run, callback_group=group)


def log_error(node, stats: NodeStats, kind: str, exc: BaseException) -> None:
    """Count an error and log it, at most once per ``THROTTLE_S`` per kind (the node goes on)."""
    if stats.error(kind):
        count = stats.errors[kind]
        node.get_logger().warning(f'{kind} (#{count}): {exc}')


def sub_events() -> SubscriptionEventCallbacks:
    """
    Return subscription event callbacks that create no QoS event handlers.

    rmw_fastrtps waits on a reader's status condition for each QoS event
    handler. While the executor leaves a busy subscription out of the wait
    set, a sample pending on that reader still wakes every wait through the
    handler's status condition, and the spinning thread busy-loops on the GIL
    (thousands of empty waits a second), starving inference: the hot topics
    go without event handlers.
    """
    return SubscriptionEventCallbacks(use_default_callbacks=False)


def pub_events() -> PublisherEventCallbacks:
    """Return publisher event callbacks that create no QoS event handlers (see ``sub_events``)."""
    return PublisherEventCallbacks(use_default_callbacks=False)


def features_qos(reliability: str, depth: int) -> QoSProfile:
    """Return the QoS of the features topic (edge and host use the same)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliability == 'reliable'
                      else ReliabilityPolicy.BEST_EFFORT)


def diagnostics_timer(node, parts: list[tuple[str, NodeStats]]) -> None:
    """
    Publish ``/diagnostics`` (one status per part) every ``DIAG_PERIOD_S``.

    The topic is absolute, where diagnostic aggregators listen, also for nodes in a
    namespace (their status names then start with the namespace, so that robots
    publishing side by side stay apart). It is remappable like any topic.
    """
    pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10,
                                event_callbacks=pub_events())
    ns = node.get_namespace().strip('/')

    def tick() -> None:
        msg = DiagnosticArray()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.status = [stats.status(f'edge_denoise_ros: {ns + "/" if ns else ""}{name}',
                                   node.get_fully_qualified_name())
                      for name, stats in parts]
        if node.context.ok():
            pub.publish(msg)
    node.create_timer(DIAG_PERIOD_S, tick, callback_group=MutuallyExclusiveCallbackGroup())


class DeviceScheduler:
    """
    The process's one scheduler, made when the first node asks for it with its device.

    The nodes read their ``device`` parameter first and then ask
    (``scheduler(device)``), so the scheduler moves the models to the device the
    inputs go to; a second device in the same process is refused.
    """

    def __init__(self):
        self.scheduler: Scheduler | None = None
        self.device: str | None = None

    def __call__(self, device: str) -> Scheduler:
        """Return the scheduler for ``device``, made on the first call."""
        if self.scheduler is None:
            self.scheduler = Scheduler(SchedulerConfig(workers=1, device=device))
            self.device = device
        elif device != self.device:
            raise ValueError(f'one device per process: the scheduler runs on {self.device}, '
                             f'a node asked for {device}')
        return self.scheduler

    def close(self) -> None:
        """Stop the scheduler, if one was made."""
        if self.scheduler is not None:
            self.scheduler.close(cancel_pending=True, timeout=5.0)


def start_error(exc: BaseException) -> str:
    """Return the one-line reason a node did not start."""
    text = ' '.join(str(exc).split())
    if not isinstance(exc, (ValueError, OSError)) or not text:
        text = f'{type(exc).__name__}: {text}' if text else type(exc).__name__
    return text[:400]


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _force_quit(signum, frame) -> None:
    os._exit(128 + signum)   # a second signal while stopping: leave now


def run_nodes(nodes_factory, args=None, name: str = 'edge', scheduled: bool = True,
              executor_type: type | None = None) -> int:
    """
    Start rclpy, build the nodes, spin them until SIGINT/SIGTERM; return the exit status.

    ``nodes_factory(scheduler)`` returns the nodes; with ``scheduled``,
    ``scheduler`` is a :class:`DeviceScheduler` (call it with the device to get
    the process's scheduler) and the executor a ``PriorityExecutor``; otherwise it
    is None and the executor ``executor_type()`` (default rclpy's
    ``MultiThreadedExecutor``; the host, whose inference has its own thread, takes the
    ``SingleThreadedExecutor``: a quarter of the CPU per message). Any error while
    the nodes are built (a bad parameter, a device that is not there, weights
    that do not load) ends the process with one line on stderr and status 2.
    Large messages' memory goes back once they are taken
    (:func:`.dds.give_large_samples_back`), or comes from the process's message pool,
    touched once the nodes are built (:func:`.dds.fill_message_pool`).

    rclpy's own signal handlers are not installed: SIGINT and SIGTERM interrupt
    the main thread, which then stops the executor (running callbacks finish,
    nothing else starts), destroys the nodes and only then shuts rclpy down, so
    no callback ever publishes into a closed context.
    """
    handlers = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    give_large_samples_back()      # before rclpy: Fast DDS reads the setting when it starts
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except KeyboardInterrupt:
        return 0
    schedulers = DeviceScheduler() if scheduled else None
    executor = None
    nodes = []
    code = 0
    try:
        try:
            nodes = list(nodes_factory(schedulers))
            # A signal while the executor is half built would leave rclpy an executor that
            # fails in its destructor: it waits until the executor holds the nodes.
            signal.pthread_sigmask(signal.SIG_BLOCK, tuple(handlers))
            try:
                if scheduled:
                    executor = PriorityExecutor(scheduler=schedulers.scheduler)
                else:
                    executor = (executor_type or MultiThreadedExecutor)()
                for node in nodes:
                    executor.add_node(node)
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, tuple(handlers))
        except (KeyboardInterrupt, ExternalShutdownException):
            raise
        except Exception as exc:  # noqa: B902 - every start-up error is one line
            print(f'{name}: error: {start_error(exc)}', file=sys.stderr)
            code = START_ERROR_STATUS
        else:
            fill_message_pool()    # what starting took from the pool is back: touch all of it
            while rclpy.ok():
                executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for sig in handlers:
            signal.signal(sig, _force_quit)
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        for node in nodes:
            node.destroy_node()
        if schedulers is not None:
            schedulers.close()
        rclpy.try_shutdown()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return code


def spin_until_done(make, context=None, ros_args: list[str] | None = None,
                    duration: float | None = None, period: float = 0.1):
    """
    Run a tool's node (the bag player, the recorder) until it is done; return its result.

    ``make()`` builds the tool: it has ``node``, ``start()``, a ``done`` event,
    ``error`` (raised here) and ``finish(interrupted)``, which releases it and
    returns its result (always called, also on Ctrl-C, which ends the tool
    early: ``interrupted``). ``duration`` bounds the run in seconds.
    ``context`` is an rclpy ``Context`` (default: the global one), initialised
    and shut down here unless it is already up; ``ros_args`` go to
    ``rclpy.init`` (default: none, so the process's own command line is not
    parsed by rcl).
    """
    own = not (context or get_default_context()).ok()
    if own:
        rclpy.init(args=ros_args or [sys.argv[0]], context=context)
    tool = result = None
    interrupted = False
    try:
        tool = make()
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(tool.node)
        tool.start()
        deadline = None if duration is None else time.monotonic() + duration
        while not tool.done.is_set() and (deadline is None or time.monotonic() < deadline):
            executor.spin_once(timeout_sec=period)
    except (KeyboardInterrupt, ExternalShutdownException):
        interrupted = True
    finally:
        if tool is not None:
            result = tool.finish(interrupted)
        if own:
            rclpy.try_shutdown(context=context)
    if tool is None:
        raise KeyboardInterrupt
    if tool.error is not None:
        raise tool.error
    return result
