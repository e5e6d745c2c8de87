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
Run the edge and the host as real processes and account for every frame.

Used by ``edge-denoise demo``, the end-to-end tests and ``bench link``: start
``host_node`` and ``edge_process`` (or ``edge_node``) as separate OS
processes, wait until the graph is connected, replay a camera bag, collect
``classification`` and ``diagnostics``, and stop everything again (also on
failure). DDS stays on a private, localhost-only domain unless the caller
passes another environment (the link benchmark's network namespaces).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from .procstat import cpu_ns
from ..ros.bag_player import BagPlayer, PlayOptions
from ..ros.common import PUBLISHERS, sub_events, SUBSCRIBERS
from ..ros.dds import BUILTIN_ENV, PROFILE_ENV

MODULES = {'host_node': 'edge_denoise_ros.ros.entry host_node',   # signals handled from the start
           'edge_node': 'edge_denoise_ros.ros.entry edge_node',
           'edge_process': 'edge_denoise_ros.ros.entry edge_process',
           # the H.264 peer (harness.video_peer): module, then its side
           'video_edge': 'edge_denoise_ros.harness.video_peer edge',
           'video_host': 'edge_denoise_ros.harness.video_peer host'}


def ros_params(params: dict) -> list[str]:
    """
    Return ``--ros-args -p k:=v ...`` for a parameter dict.

    An empty string is left out: ROS refuses ``-p k:=`` and every string
    parameter of the nodes means "unset" by ``''``, its default.
    """
    args = ['--ros-args']
    for key, value in params.items():
        if value == '':
            continue
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        args += ['-p', f'{key}:={value}']
    return args


@dataclass
class NodeProcess:
    """One node executable running as its own process (in its own session)."""

    name: str
    proc: subprocess.Popen
    log: Path

    @property
    def running(self) -> bool:
        """Return whether the process is still alive."""
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """Interrupt (SIGINT, as Ctrl-C), then kill; return the exit status."""
        if self.running:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        return self.proc.returncode

    def tail(self, n: int = 20) -> str:
        """Return the last lines of the process's log."""
        try:
            return '\n'.join(self.log.read_text(errors='replace').splitlines()[-n:])
        except OSError:
            return ''


def swap_environ(values: dict) -> dict:
    """
    Set each environment variable of ``values`` (None unsets it); return the old values.

    ``swap_environ(saved)`` with what it returned puts the environment back.
    """
    saved = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return saved


def init_with_profile(context, domain_id: int, env: dict, make_node):
    """
    Initialise ``context`` and return ``make_node(context)``, under ``env``'s Fast DDS profile.

    A camera driver must run with the nodes' profile. Fast DDS reads the profile when
    the first node creates the participant, not at ``rclpy.init``, so the node is made
    while the profile is in the environment; and only once a process: a process whose
    first participant was made without it keeps the transports it got.
    """
    saved = swap_environ({k: env.get(k) for k in (PROFILE_ENV, BUILTIN_ENV)})
    try:
        rclpy.init(context=context, domain_id=domain_id)
        return make_node(context)
    finally:
        swap_environ(saved)


def wait_for_graph(ready, procs, timeout: float, what: str,
                   poll=lambda: time.sleep(0.1)) -> None:
    """
    Call ``poll()`` until ``ready()`` (the nodes' topics are matched).

    Raises RuntimeError when one of ``procs`` (:class:`NodeProcess`) exits
    first, or after ``timeout`` seconds (``what`` names the graph).
    """
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [p for p in procs if not p.running]
        if dead:
            raise RuntimeError(f'{dead[0].name} exited ({dead[0].proc.returncode}) before '
                               f'the graph was up:\n{dead[0].tail()}')
        if time.monotonic() > deadline:
            raise RuntimeError(f'{what}: not connected after {timeout:g} s')
        poll()


def start_node(executable: str, params: dict, env: dict, log_dir: Path,
               prefix: list[str] | None = None, name: str | None = None) -> NodeProcess:
    """Start a node executable of this package with parameters; stdout/stderr to a log."""
    if executable not in MODULES:
        raise ValueError(f'unknown executable {executable!r}; expected one of {tuple(MODULES)}')
    log_dir.mkdir(parents=True, exist_ok=True)
    name = name or executable
    log = log_dir / f'{name}.log'
    cmd = [*(prefix or []), sys.executable, '-u', '-m', *MODULES[executable].split(),
           *ros_params(params)]
    with open(log, 'w') as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return NodeProcess(name, proc, log)


def features_linked(statuses: dict) -> bool:
    """
    Return whether some status says its features writer, and some its reader, matched.

    ``statuses``: status name -> key/values, as the nodes' ``/diagnostics`` gave them.
    """
    def matched(value) -> bool:
        return str(value).isdigit() and int(value) > 0    # a count, or 'gone' at shutdown
    return all(any(matched(values.get(key, 0)) for values in statuses.values())
               for key in (SUBSCRIBERS, PUBLISHERS))


class Collector:
    """
    A node that gathers ``classification`` records and the latest ``diagnostics``.

    Records are keyed by the camera stamp (ns); ``statuses`` holds the newest
    DiagnosticStatus values per status name.
    """

    def __init__(self, context, namespace: str = ''):
        self.node = Node('edge_denoise_collector', namespace=namespace or None,
                         context=context)
        self.lock = threading.Lock()
        self.records: dict[int, dict] = {}
        self.received: list[tuple[int, dict]] = []   # (receive time ns, record), in order
        self.duplicates = 0
        self.statuses: dict[str, dict] = {}
        self.last_record = time.monotonic()
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(String, 'classification', self._on_result, qos,
                                      event_callbacks=sub_events())
        self.node.create_subscription(DiagnosticArray, 'diagnostics', self._on_diag, 100,
                                      event_callbacks=sub_events())

    def _on_result(self, msg) -> None:
        now = time.time_ns()
        record = json.loads(msg.data)
        stamp = record['stamp']['sec'] * 10**9 + record['stamp']['nanosec']
        with self.lock:
            self.received.append((now, record))
            if stamp in self.records:
                self.duplicates += 1
            self.records[stamp] = record
            self.last_record = time.monotonic()

    def _on_diag(self, msg) -> None:
        with self.lock:
            for status in msg.status:
                self.statuses[status.name] = {kv.key: kv.value for kv in status.values}

    def count(self) -> int:
        """Return the number of distinct frames classified so far."""
        with self.lock:
            return len(self.records)

    def graph_ready(self, camera_topic: str) -> bool:
        """
        Return whether camera -> edge -> host -> classification is connected.

        This node's view of the graph is not enough: discovery is pairwise, and on a
        busy machine the edge and the host matched each other seconds after this node
        saw both (a CI run lost 48 of 60 frames as ``before_join`` so). The nodes'
        own statuses say it: the edge's features writer matched a reader and the
        host's reader a writer.
        """
        n = self.node      # features: the nodes' own word implies this node's view of it
        return (n.count_subscribers(camera_topic) > 0
                and n.count_publishers('classification') > 0 and self.linked())

    def linked(self) -> bool:
        """Return whether the edge and the host said they matched (:func:`features_linked`)."""
        with self.lock:
            return features_linked(self.statuses)


class _Side:
    """Run ``during(collector, player, procs)`` in a thread while the caller spins."""

    def __init__(self, during, *args):
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(during, *args), daemon=True)
        self.thread.start()

    def _run(self, during, *args) -> None:
        try:
            during(*args)
        except BaseException as exc:  # re-raised in the spinning thread
            self.error = exc

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def result(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


@dataclass
class RunResult:
    """What a replay through the real nodes produced."""

    played: int
    records: dict
    statuses: dict
    report: dict
    crashed: list = field(default_factory=list)
    exit_codes: dict = field(default_factory=dict)
    logs: dict = field(default_factory=dict)
    received: list = field(default_factory=list)
    window: tuple = (0, 0)
    cpu_s: dict = field(default_factory=dict)   # process name -> CPU seconds in the window


def run_edge_host(bag: str | os.PathLike, edge_params: dict, host_params: dict, env: dict,
                  log_dir: Path, *, composed: bool = True, rate: float = 1.0,
                  camera_topic: str = '/image_raw', start_timeout: float = 60.0,
                  drain_s: float = 2.0, drain_timeout: float = 30.0,
                  prefixes: dict | None = None, envs: dict | None = None,
                  duration: float | None = None, during=None, progress=None,
                  executables: tuple[str, str] | None = None) -> RunResult:
    """
    Start host and edge processes, replay ``bag`` at ``rate``, collect, stop; return it all.

    ``env`` is the processes' environment (and this process's DDS settings);
    ``prefixes`` optionally wraps a process's command (``{'host_node': ['ip',
    'netns', 'exec', 'host']}``). ``during(collector, player, procs)`` runs in
    a thread once playback started; it may stop and start processes (append
    them to ``procs`` to have them stopped at the end). ``envs`` gives a
    process its own environment; ``duration`` loops the bag for that many
    seconds (``window`` in the result: when playback started and stopped, ns;
    ``executables``: ``(edge, host)`` instead of the package's nodes, e.g.
    ``('video_edge', 'video_host')``;
    ``cpu_s``: each process's CPU time within it). This process takes the
    ``env``'s Fast DDS settings (profile, builtin transports) only if it has
    not created a DDS participant before.
    """
    t0 = time.monotonic()
    prefixes, envs = prefixes or {}, envs or {}
    edge_exe, host_exe = executables or ('edge_process' if composed else 'edge_node',
                                         'host_node')
    procs = []
    context = Context()
    # this process joins the same DDS domain as its children
    saved = swap_environ({k: env.get(k) for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE',
                                                  'ROS_STATIC_PEERS', PROFILE_ENV, BUILTIN_ENV)})
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    player = None
    try:
        procs.append(start_node(host_exe, host_params, envs.get(host_exe, env), log_dir,
                                prefixes.get(host_exe)))
        procs.append(start_node(edge_exe, edge_params, envs.get(edge_exe, env), log_dir,
                                prefixes.get(edge_exe)))
        collector = Collector(context)
        executor.add_node(collector.node)
        wait_for_graph(lambda: collector.graph_ready(camera_topic), procs, start_timeout,
                       'the nodes', lambda: executor.spin_once(timeout_sec=0.1))
        timing = {'startup_s': round(time.monotonic() - t0, 2)}
        options = PlayOptions(rate=rate, topics=(camera_topic,), wait_for_subscribers=5.0,
                              loop=duration is not None)
        player = BagPlayer(bag, options, node_name='edge_denoise_player', context=context,
                           progress=progress)
        executor.add_node(player.node)
        player.start()
        started = time.time_ns()
        cpu0 = _cpu(procs)
        side = _Side(during, collector, player, procs) if during is not None else None
        stop_at = None if duration is None else time.monotonic() + duration
        while not player.done.is_set() or (side is not None and side.running):
            executor.spin_once(timeout_sec=0.1)
            if stop_at is not None and time.monotonic() >= stop_at:
                player.halt()
        window = (started, time.time_ns())
        cpu = {name: round((ns - cpu0[name]) / 1e9, 3) for name, ns in _cpu(procs).items()
               if name in cpu0}
        if side is not None:
            side.result()
        if player.error is not None:
            raise RuntimeError(f'playback failed: {player.error}')
        played = player.report().played.get(camera_topic, 0)
        if played == 0:
            raise RuntimeError(f'nothing was played on {camera_topic} from {bag}')
        timing['replay_s'] = round(time.monotonic() - t0 - timing['startup_s'], 2)
        end = time.monotonic() + drain_timeout
        while time.monotonic() < end and collector.count() < played:
            executor.spin_once(timeout_sec=0.1)
            if time.monotonic() - collector.last_record > drain_s:
                break
        settle = time.monotonic() + 1.5  # one more diagnostics period
        while time.monotonic() < settle:
            executor.spin_once(timeout_sec=0.1)
        report = player.report().as_dict()
        timing['total_s'] = round(time.monotonic() - t0, 2)
        report['timing'] = timing
        crashed = [p.name for p in procs if not p.running]
        with collector.lock:
            records, statuses = dict(collector.records), dict(collector.statuses)
            received = list(collector.received)
    finally:
        if player is not None:
            player.destroy()
        codes = {p.name: p.stop() for p in procs}
        executor.shutdown()
        rclpy.try_shutdown(context=context)
        swap_environ(saved)
    return RunResult(played=played, records=records, statuses=statuses, report=report,
                     crashed=crashed, exit_codes=codes,
                     logs={p.name: str(p.log) for p in procs}, received=received,
                     window=window, cpu_s=cpu)


def _cpu(procs: list[NodeProcess]) -> dict[str, int]:
    """Return the CPU time (ns) of each live process so far."""
    out = {}
    for p in procs:
        try:
            out[p.name] = cpu_ns(p.proc.pid)
        except OSError:
            continue
    return out
