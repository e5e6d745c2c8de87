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
A simulated fleet: N robots replaying recorded feature messages into real host processes.

:func:`record_features` encodes camera frames through :class:`core.pipeline.EdgeStage`
exactly as ``edge_node`` does (defense, head, codec); :class:`FleetSim` is one rclpy node
that plays them as N robots (``/<robot>/features``, each with its own epoch and seq, at
``rate_hz`` each, phases spread evenly) and collects every robot's ``classification``
and the hosts' ``diagnostics``. :func:`run_fleet` starts one ``host_node`` process per
host with its ``robots`` list, plays, drains, stops, and accounts per robot: played =
classified + dropped with a reason (from the serving host's diagnostics) + results the
host served that never came back (``result_lost``), exactly.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import String

from .launcher import MODULES, NodeProcess, ros_params, swap_environ, wait_for_graph
from .procstat import cpu_ns
from ..core import accounting, data, pipeline, wire
from ..ros.common import sub_events

DEFAULT_RATE_HZ = 30.0
STATUS_PREFIX = 'edge_denoise_ros: '
RESULT_GRACE_S = 2.0   # how long a result the host served may still be on its way
_DDS_KEYS = ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_STATIC_PEERS')


def record_features(count: int = 64, settings: pipeline.EdgeSettings | None = None,
                    target: pipeline.Target | None = None, size: int = 224,
                    offset: int = 0, frames: list | None = None) -> list[tuple[bytes, dict]]:
    """
    Encode ``count`` camera frames as the edge does; return ``(payload, meta)`` pairs.

    The frames are ``frames`` (bgr8, cycled), else the demo bag's clean ones
    (Fashion-MNIST test images as ``size`` x ``size`` bgr8 camera frames); the
    meta has no seq, epoch or t_rx (the robots add theirs when they send).
    """
    target = target or pipeline.Target()
    stage = pipeline.EdgeStage(target, settings or pipeline.EdgeSettings())
    images = None if frames else data.load_fashion_mnist('test')[0]
    out = []
    for i in range(offset, offset + count):
        frame = frames[i % len(frames)] if frames else \
            data.sample_to_frame(images[i % len(images)], size, 'bgr8')
        result = stage.process(frame, 'bgr8')
        out.append((bytes(result.payload), dict(result.meta)))
    return out


@dataclass
class SimRobot:
    """One simulated robot: what it sent (seq -> send time) and what came back."""

    name: str
    epoch: str
    phase_s: float
    seq: int = 0
    sent: dict = field(default_factory=dict)        # seq -> send time (ns)
    results: dict = field(default_factory=dict)     # seq -> (arrival ns, record)
    arrived: collections.deque = field(default_factory=collections.deque)  # (ns, JSON) unparsed
    duplicates: int = 0
    foreign: int = 0                                # records naming another robot
    pub: object = None


class FleetSim:
    """One node playing N robots: publishers, result subscriptions, the hosts' diagnostics."""

    def __init__(self, context, robots: list[str], messages: list[tuple[bytes, dict]],
                 rate_hz: float = DEFAULT_RATE_HZ, depth: int = 30):
        if not robots or not messages:
            raise ValueError('a fleet needs robots and recorded messages')
        self.node = Node('edge_denoise_fleet_sim', context=context)
        self.rate_hz = rate_hz
        self.messages = messages
        self.lock = threading.Lock()
        self.statuses: dict[str, dict] = {}
        self.callback_lag_ns: collections.deque = collections.deque(maxlen=10000)
        period = 1.0 / rate_hz
        self.robots = {}
        results_qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        features_qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        for i, name in enumerate(robots):
            robot = SimRobot(name, accounting.new_epoch(), phase_s=period * i / len(robots))
            robot.pub = self.node.create_publisher(CompressedImage, f'/{name}/features',
                                                   features_qos)
            self.node.create_subscription(
                String, f'/{name}/classification',
                lambda msg, info, r=robot: self._on_result(r, msg, info), results_qos,
                event_callbacks=sub_events())
            self.robots[name] = robot
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 100,
                                      event_callbacks=sub_events())

    def _on_result(self, robot: SimRobot, msg, info) -> None:
        # When DDS received it (this process's callbacks may run later when it is busy), on
        # the same wall clock as the send times; parsed later: a cheap callback.
        robot.arrived.append((info.get('received_timestamp') or time.time_ns(), msg.data))
        self.callback_lag_ns.append(time.time_ns() - robot.arrived[-1][0])

    def parse(self) -> None:
        """Move the results that arrived into ``results`` (call with ``lock`` held)."""
        for robot in self.robots.values():
            while robot.arrived:
                now, text = robot.arrived.popleft()
                record = json.loads(text)
                if record.get('robot') != robot.name:
                    robot.foreign += 1
                    continue
                seq = record.get('seq')
                if seq in robot.results:
                    robot.duplicates += 1
                robot.results[seq] = (now, record)

    def _on_diag(self, msg) -> None:
        with self.lock:
            for status in msg.status:
                self.statuses[status.name] = {kv.key: kv.value for kv in status.values}

    def graph_ready(self) -> bool:
        """
        Return whether every robot is connected to its host and the host is fully up.

        Its features have a subscriber, its results a publisher, and the host's status
        for it arrived: the host built its node seconds after this one's readers
        existed, so its result writers had the time to match them (a result published
        before would be lost on the way back, counted ``result_lost``).
        """
        n = self.node
        return all(n.count_subscribers(f'/{r}/features') > 0
                   and n.count_publishers(f'/{r}/classification') > 0
                   and self.host_status(r)[0] is not None for r in self.robots)

    def send(self, robot: SimRobot) -> None:
        """Publish the robot's next recorded message with its epoch, seq and send time."""
        payload, meta = self.messages[robot.seq % len(self.messages)]
        robot.seq += 1
        now = time.time_ns()
        msg = CompressedImage(format=wire.format_string(
            {**meta, 'epoch': robot.epoch, 'seq': robot.seq, 't_rx': now}))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 10**9)
        msg.header.frame_id = robot.name
        msg.data = payload
        with self.lock:
            robot.sent[robot.seq] = now
        robot.pub.publish(msg)

    def play(self, duration_s: float, stop: threading.Event | None = None) -> tuple[int, int]:
        """Send at ``rate_hz`` per robot for ``duration_s``; return the window (ns)."""
        period = 1.0 / self.rate_hz
        start = time.monotonic() + 0.05
        started = time.time_ns()
        ticks = {name: 0 for name in self.robots}
        while True:
            name, due = min(((n, start + r.phase_s + ticks[n] * period)
                             for n, r in self.robots.items()), key=lambda t: t[1])
            if due - start >= duration_s or (stop is not None and stop.is_set()):
                break
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.send(self.robots[name])
            ticks[name] += 1
        return started, time.time_ns()

    def host_status(self, robot: str) -> tuple[str | None, dict]:
        """Return the name and values of the diagnostics status that accounts for a robot."""
        with self.lock:
            for name, values in self.statuses.items():
                if name.startswith(STATUS_PREFIX) and name.endswith(f'/{robot}'):
                    return name, dict(values)
        return None, {}

    def account(self, robot: str) -> dict:
        """Return played, classified and dropped (by reason, from the host) for a robot."""
        r = self.robots[robot]
        status, values = self.host_status(robot)
        reasons = {k: int(v) for k, v in values.items()
                   if (k.startswith('dropped.') or k.startswith('errors.')) and int(v)}
        with self.lock:
            self.parse()
            played, classified = len(r.sent), len(r.results)
        dropped = sum(reasons.values())
        host_frames = int(values.get('frames', 0))
        lost = max(0, host_frames - classified)   # served by the host, never arrived here
        return {'robot': robot, 'status': status, 'played': played, 'classified': classified,
                'dropped': dropped, 'drop_reasons': reasons, 'host_frames': host_frames,
                'host_received': int(values.get('received', 0)), 'result_lost': lost,
                'unaccounted': played - classified - dropped - lost,
                'duplicates': r.duplicates, 'foreign': r.foreign}

    def drain(self, timeout: float, grace: float = RESULT_GRACE_S) -> None:
        """
        Wait until the hosts accounted for every frame played and its results arrived.

        Results the hosts served that still have not arrived ``grace`` seconds after
        everything else was accounted stay ``result_lost``.
        """
        end, results_due = time.monotonic() + timeout, None
        while time.monotonic() < end:
            accounts = [self.account(r) for r in self.robots]
            # the hosts' latest diagnostics count at least what arrived here: not stale
            if all(a['unaccounted'] == 0 and a['host_frames'] >= a['classified']
                   for a in accounts):
                if all(a['result_lost'] == 0 for a in accounts):
                    return
                results_due = results_due or time.monotonic() + grace
                if time.monotonic() >= results_due:
                    return
            time.sleep(0.1)

    def latencies(self, window: tuple[int, int], warmup_s: float = 0.0) -> dict:
        """Return frames/s and send->result latency p50/p99 over the window (after warmup)."""
        lo, hi = window[0] + int(warmup_s * 1e9), window[1]
        lat, served = [], 0
        with self.lock:
            self.parse()
            for r in self.robots.values():
                for seq, (arrival, _) in r.results.items():
                    sent = r.sent.get(seq)
                    if sent is not None and lo <= sent <= hi:
                        served += 1
                        lat.append((arrival - sent) / 1e6)
        lat.sort()
        lag = sorted(v / 1e6 for v in self.callback_lag_ns)
        span = (hi - lo) / 1e9
        return {'frames_per_s': round(served / span, 2) if span > 0 else 0.0,
                'robot_callback_lag_p99_ms': _quantile(lag, 0.99),
                'p50_ms': _quantile(lat, 0.5), 'p99_ms': _quantile(lat, 0.99),
                'served_in_window': served}


def _quantile(values: list, q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 2)


def start_host(name: str, robots: list[str], params: dict, env: dict,
               log_dir: Path) -> NodeProcess:
    """Start ``host_node`` as ``name`` serving ``robots`` (its own process and log)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f'{name}.log'
    robots_yaml = '[' + ', '.join(f"'{r}'" for r in robots) + ']'
    args = [sys.executable, '-u', '-m', *MODULES['host_node'].split(),
            *ros_params({**params, 'robots': robots_yaml}), '-r', f'__node:={name}']
    with open(log, 'w') as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return NodeProcess(name, proc, log)


@dataclass
class FleetResult:
    """What a fleet run produced: per-robot accounts, the window's figures, the hosts."""

    robots: list
    figures: dict
    window: tuple
    exit_codes: dict
    logs: dict
    statuses: dict
    timing: dict
    host_cpu_s: dict = field(default_factory=dict)   # host -> CPU seconds while playing


def run_fleet(hosts: dict[str, list[str]], messages: list[tuple[bytes, dict]], env: dict,
              log_dir: Path, *, host_params: dict | None = None,
              rate_hz: float = DEFAULT_RATE_HZ, duration_s: float = 5.0,
              warmup_s: float = 0.0, start_timeout: float = 90.0,
              drain_timeout: float = 15.0, keep_records: dict | None = None) -> FleetResult:
    """
    Start a host process per entry of ``hosts`` (name -> its robots), play, drain, stop.

    ``env`` holds the private DDS settings (this process joins the same domain for
    the run). ``keep_records`` (a dict) receives each robot's results, seq -> (arrival
    ns, record). Raises RuntimeError when a host dies or the graph does not connect.
    """
    t0 = time.monotonic()
    robots = [r for served in hosts.values() for r in served]
    if len(set(robots)) != len(robots):
        raise ValueError(f'hosts must split the robots, got {hosts}')
    saved = swap_environ({k: env.get(k) for k in _DDS_KEYS})
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    procs: list[NodeProcess] = []
    try:
        for name, served in hosts.items():
            procs.append(start_host(name, served, host_params or {}, env, log_dir))
        sim = FleetSim(context, robots, messages, rate_hz)
        executor.add_node(sim.node)
        spinner = threading.Thread(target=_spin, args=(executor,), daemon=True)
        spinner.start()
        wait_for_graph(sim.graph_ready, procs, start_timeout, 'the fleet')
        timing = {'startup_s': round(time.monotonic() - t0, 2)}
        cpu = {p.name: cpu_ns(p.proc.pid) for p in procs}
        window = sim.play(duration_s)
        timing['play_s'] = round(time.monotonic() - t0 - timing['startup_s'], 2)
        sim.drain(drain_timeout)
        cpu = {p.name: round((cpu_ns(p.proc.pid) - cpu[p.name]) / 1e9, 3) for p in procs}
        timing['total_s'] = round(time.monotonic() - t0, 2)
        figures = sim.latencies(window, warmup_s)
        accounts = [sim.account(r) for r in robots]
        with sim.lock:
            sim.parse()
            statuses = dict(sim.statuses)
            if keep_records is not None:
                keep_records.update({r: dict(sim.robots[r].results) for r in robots})
    finally:
        codes = {p.name: p.stop() for p in procs}
        executor.shutdown()
        rclpy.try_shutdown(context=context)
        swap_environ(saved)
    return FleetResult(accounts, figures, window, codes, {p.name: str(p.log) for p in procs},
                       statuses, timing, cpu)


def _spin(executor) -> None:
    try:
        executor.spin()
    except Exception:  # the context went down under us: the run is over
        return
