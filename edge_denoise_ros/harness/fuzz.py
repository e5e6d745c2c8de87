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
``bench fuzz``: hostile messages against a running node, each followed by a valid one.

The node under test runs as its own process on a private DDS domain (``host_node``,
or the edge: ``edge_process`` once with raw and once with compressed camera
input), with the shipped Fast DDS profile as deployed (the driver too, as a camera
driver must). For every case of :mod:`.fuzz_cases` the driver publishes the case, then a
valid *probe* message, and waits for the probe's result (the host's
``classification``, the edge's ``features``): the probe is served only after the
case, so the CPU time the node spent meanwhile, less a probe's own median cost and
less what the idle node spends in that time (its timers, ``idle_ms_per_s``), is
the case's cost, and the peak resident memory over that window (``VmHWM`` reset
before each case) less the memory before it is the case's memory. A probe that is
not back in ``probe_timeout_s`` is waited for up to ``late_timeout_s`` more (noted in
``probes_late_after``): a sample DDS could not hand over at once holds the probe
behind it, and its cost belongs to its own case. A node that dies is counted as a
crash and started again. At the end, ``burst`` large bad messages go back to back,
twice, and the node's memory growth over each burst is reported (what the
middleware keeps of them). Per kind, the worst and the median cost are reported;
``worst_ms`` and ``worst_mb`` are the worst *bad* message's (a valid frame's cost
is its inference, ``bench camera``'s business).

At the end the node's ``diagnostics`` say how many messages reached its callback
(``received``) and how many it counted (frames served, errors by kind, drops by
reason, refusals; reported as ``node_counts``, per transport): ``uncounted`` is the
difference. ``valid_classified_fraction`` is the share of probes and valid variants
whose result came back.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
import tempfile

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from . import procstat
from .fuzz_cases import Case, EdgeCases, HostCases
from .isolation import lease_domain
from .launcher import init_with_profile, NodeProcess, start_node
from ..core import accounting, models, pipeline
from ..ros.common import features_qos, status_values, sub_events
from ..ros.dds import profile_env

TARGETS = ('host', 'edge')
DIAGNOSTICS = '/diagnostics'
IDLE_WINDOW_S = 0.004        # the edge is idle once it spent < IDLE_CPU_MS in this window
IDLE_CPU_MS = 0.3
IDLE_RATE_S = 2.0            # how long the node's background CPU (timers) is measured
COUNTED_PREFIXES = ('errors.', 'dropped.', 'refused.')
FRAME_DROPS = ('dropped.lost_in_transit', 'dropped.before_join')


@dataclass
class FuzzConfig:
    """What ``bench fuzz`` runs."""

    target: str = 'host'
    cases: int = 1000
    seed: int = 0
    composed: bool = True                 # edge: edge_process (else edge_node)
    warmup: int = 30                      # probe-only rounds before the cases
    probe_timeout_s: float = 10.0
    late_timeout_s: float = 60.0          # then how long a late probe is still waited for
    start_timeout_s: float = 90.0
    node_params: dict = field(default_factory=dict)
    log_dir: str | None = None
    huge_frames: bool = True              # edge: include 4K raw frames
    burst: int = 30                       # large bad messages sent back to back, twice (0: none)


class _Driver:
    """The bench's own node: publishes cases and probes, collects results and diagnostics."""

    def __init__(self, context: Context, target: str, transport: str):
        self.node = Node('edge_denoise_fuzz', context=context)
        self.lock = threading.Condition()
        self.seen: set[int] = set()            # stamps (ns) whose result came back
        self.statuses: dict[str, dict] = {}
        self.diag_count = 0
        self.target = target
        if target == 'host':
            self.pub = self.node.create_publisher(CompressedImage, 'features',
                                                  features_qos('reliable', 100))
            self.node.create_subscription(String, 'classification', self._on_result,
                                          QoSProfile(depth=1000,
                                                     reliability=ReliabilityPolicy.RELIABLE),
                                          event_callbacks=sub_events())
        else:
            kind, topic = ((Image, 'image_raw') if transport == 'raw'
                           else (CompressedImage, 'image_raw/compressed'))
            self.pub = self.node.create_publisher(kind, topic, 10)
            self.node.create_subscription(CompressedImage, 'features', self._on_features,
                                          features_qos('reliable', 100),
                                          event_callbacks=sub_events())
        self.node.create_subscription(DiagnosticArray, DIAGNOSTICS, self._on_diag, 100,
                                      event_callbacks=sub_events())

    def _mark(self, sec: int, nanosec: int) -> None:
        with self.lock:
            self.seen.add(sec * 10**9 + nanosec)
            self.lock.notify_all()

    def _on_result(self, msg) -> None:
        record = json.loads(msg.data)
        self._mark(int(record['stamp']['sec']), int(record['stamp']['nanosec']))

    def _on_features(self, msg) -> None:
        self._mark(msg.header.stamp.sec, msg.header.stamp.nanosec)

    def _on_diag(self, msg) -> None:
        with self.lock:
            for status in msg.status:
                self.statuses[status.name] = status_values(status)
            self.diag_count += 1
            self.lock.notify_all()

    def wait_for(self, stamp: int, timeout: float, alive=lambda: True) -> bool:
        """Wait until the result of ``stamp`` came back; False on timeout or a dead node."""
        end = time.monotonic() + timeout
        with self.lock:
            while stamp not in self.seen:
                left = end - time.monotonic()
                if left <= 0 or not alive():
                    return False
                self.lock.wait(min(left, 0.2))
            return True

    def wait_diagnostics(self, n: int = 2, timeout: float = 5.0) -> dict:
        """Wait for ``n`` more diagnostics messages; return the statuses."""
        with self.lock:
            want = self.diag_count + n
            end = time.monotonic() + timeout
            while self.diag_count < want and time.monotonic() < end:
                self.lock.wait(0.1)
            return dict(self.statuses)


def _stamp(i: int) -> tuple[Time, int]:
    sec, nanosec = 1_000_000 + i // 1000, (i % 1000) * 1000
    return Time(sec=sec, nanosec=nanosec), sec * 10**9 + nanosec


class _Stream:
    """The honest accounting fields of the fuzz's own edge stream (host target)."""

    def __init__(self):
        self.epoch = accounting.new_epoch()
        self.seq = 0

    def fields(self, case: Case) -> list[str]:
        present = {t.split('=', 1)[0] for t in case.tokens}
        if 'replay' in case.tokens:
            case.tokens = [t for t in case.tokens if t != 'replay']
            return [f'epoch={self.epoch}', f'seq={max(1, self.seq)}', f't_rx={time.time_ns()}']
        out = []
        if 'epoch' not in present:
            out.append(f'epoch={self.epoch}')
        if 'seq' not in present:
            self.seq += 1
            out.append(f'seq={self.seq}')
        if 't_rx' not in present:
            out.append(f't_rx={time.time_ns()}')
        return out


def _message(target: str, case: Case, header_stamp: Time, stream: _Stream | None):
    if target == 'host':
        msg = CompressedImage()
        msg.header.stamp, msg.header.frame_id = header_stamp, 'fuzz'
        msg.format = case.format_text(stream.fields(case))
        msg.data = case.payload
        return msg
    if case.image is not None:
        f = case.image
        msg = Image(height=f['height'], width=f['width'], encoding=f['encoding'],
                    is_bigendian=f['is_bigendian'], step=f['step'])
        msg.data = f['data']
    else:
        msg = CompressedImage(format=case.compressed_format)
        msg.data = case.payload
    msg.header.stamp, msg.header.frame_id = header_stamp, 'fuzz'
    return msg


def _wait_idle(pid: int, timeout: float = 2.0) -> None:
    """Wait until ``pid`` spends almost no CPU for ``IDLE_WINDOW_S`` (the case was served)."""
    end = time.monotonic() + timeout
    time.sleep(0.002)
    last = procstat.cpu_ns(pid)
    while time.monotonic() < end:
        time.sleep(IDLE_WINDOW_S)
        now = procstat.cpu_ns(pid)
        if (now - last) / 1e6 < IDLE_CPU_MS:
            return
        last = now


def counted_messages(values: dict) -> int:
    """
    Return the messages a node's diagnostics account for: served + errors + drops.

    Frames the edge sent that never arrived (``lost_in_transit``, ``before_join``) are
    accounted too, but they are not messages that reached the callback.
    """
    total = 0
    for key, value in values.items():
        if key in FRAME_DROPS:
            continue
        if key == 'frames' or key.startswith(COUNTED_PREFIXES):
            try:
                total += int(float(value))
            except ValueError:
                pass
    return total


def _intake_status(statuses: dict, target: str, composed: bool) -> dict:
    """Return the status of the node whose callback takes the fuzzed messages."""
    name = {'host': 'host_node', 'edge': 'denoiser' if composed else 'edge_node'}[target]
    for key, values in statuses.items():
        if key.endswith(f': {name}'):
            return values
    return {}


class _Session:
    """One node process under fuzz, with the driver attached; restarts the node on a crash."""

    def __init__(self, cfg: FuzzConfig, transport: str, env: dict, log_dir: Path):
        self.cfg, self.env, self.log_dir = cfg, env, log_dir
        self.exe = 'host_node' if cfg.target == 'host' else \
            ('edge_process' if cfg.composed else 'edge_node')
        self.params = dict(cfg.node_params)
        if cfg.target == 'edge':
            self.params.setdefault('input_transport', transport)
            # A reliable camera subscription: a probe lost by best-effort delivery would
            # stall the run for the probe timeout and read as a frame the edge never served.
            self.params.setdefault('camera_qos', 'reliable')
        self.transport = transport
        self.starts = 0
        self.proc: NodeProcess | None = None
        self.exit_codes: list[int] = []
        self.totals: dict[str, int] = defaultdict(int)   # counts of incarnations that ended

    def start(self, driver: _Driver) -> None:
        self.starts += 1
        self.proc = start_node(self.exe, self.params, self.env, self.log_dir,
                               name=f'{self.exe}_{self.transport}_{self.starts}')
        deadline = time.monotonic() + self.cfg.start_timeout_s
        while driver.pub.get_subscription_count() < 1:
            if not self.proc.running:
                raise RuntimeError(f'{self.exe} exited ({self.proc.proc.returncode}) at '
                                   f'start-up:\n{self.proc.tail()}')
            if time.monotonic() > deadline:
                raise RuntimeError(f'{self.exe} did not subscribe within '
                                   f'{self.cfg.start_timeout_s:g} s')
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.proc.pid


def _fuzz_one(cfg: FuzzConfig, transport: str, n_cases: int, env: dict, log_dir: Path,
              progress=None) -> dict:
    """Fuzz one node process with ``n_cases`` cases; return the raw figures."""
    context = Context()
    # The driver's participant loads the node's Fast DDS profile, as a camera driver must.
    driver = init_with_profile(context, int(env['ROS_DOMAIN_ID']), env,
                               lambda c: _Driver(c, cfg.target, transport))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(driver.node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    session = _Session(cfg, transport, env, log_dir)
    if cfg.target == 'host':
        maker = HostCases(pipeline.Target(cfg.node_params.get('model', models.DEFAULT_MODEL)),
                          seed=cfg.seed)
    else:
        maker = EdgeCases(transport, seed=cfg.seed + (transport == 'compressed'),
                          huge=cfg.huge_frames)
    stream = _Stream() if cfg.target == 'host' else None
    missed: list[tuple[int, str]] = []        # probes not served in time, and the case before
    out = {'cases': 0, 'crashes': 0, 'crash_kinds': [], 'probes': 0, 'probes_served': 0,
           'valid_sent': 0, 'valid_served': 0, 'by_kind': {}, 'sent': 0,
           'probes_late_after': []}
    index = [0]

    def send(case: Case) -> int:
        header, stamp = _stamp(index[0])
        index[0] += 1
        driver.pub.publish(_message(cfg.target, case, header, stream))
        out['sent'] += 1
        return stamp

    try:
        session.start(driver)
        pid = session.pid
        probe_ms = []
        for i in range(cfg.warmup):             # warm-up: tails, caches, allocator
            c0 = procstat.cpu_ns(pid)
            ok = driver.wait_for(send(maker.probe(i)), cfg.probe_timeout_s,
                                 lambda: session.proc.running)
            if ok and i >= cfg.warmup // 2:
                probe_ms.append((procstat.cpu_ns(pid) - c0) / 1e6)
        out['probe_ms'] = round(statistics.median(probe_ms), 3) if probe_ms else None
        base_ms = out['probe_ms'] or 0.0
        # What the node spends doing nothing (its timers: diagnostics, discovery): taken
        # off each case for the time its window lasted, which matters for a late probe.
        c0 = procstat.cpu_ns(pid)
        time.sleep(IDLE_RATE_S)
        idle_ms_per_s = (procstat.cpu_ns(pid) - c0) / 1e6 / IDLE_RATE_S
        out['idle_ms_per_s'] = round(idle_ms_per_s, 3)
        rss_start = procstat.rss_bytes(pid)
        peak_ok = procstat.reset_peak(pid)
        for i in range(n_cases):
            case = maker.case()
            pid = session.pid
            _wait_idle(pid)    # what the last case left (a large message's DDS work) is its own
            rss0 = procstat.rss_bytes(pid)
            procstat.reset_peak(pid)
            c0, t0 = procstat.cpu_ns(pid), time.monotonic()
            stamp = send(case)
            if cfg.target == 'edge':
                # The edge keeps only the newest frame: the probe must not push the case out.
                # A valid case shows its own result; any other, an idle node.
                if not (case.valid and driver.wait_for(stamp, cfg.probe_timeout_s,
                                                       lambda: session.proc.running)):
                    _wait_idle(pid)
            probe_stamp, sent_at = send(maker.probe(i)), time.monotonic()
            # A case DDS could not hand over at once (a large sample waits for the reliable
            # repair) holds the probe behind it: a late probe is waited for, so that the
            # case's cost is measured in its own window, not in the next case's.
            served = driver.wait_for(probe_stamp, cfg.probe_timeout_s + cfg.late_timeout_s,
                                     lambda: session.proc.running)
            late = served and time.monotonic() - sent_at > cfg.probe_timeout_s
            alive = session.proc.running
            if alive:
                cost_ms = max(0.0, (procstat.cpu_ns(pid) - c0) / 1e6 - base_ms
                              - idle_ms_per_s * (time.monotonic() - t0))
                cost_mb = max(0.0, (procstat.peak_rss_bytes(pid) - rss0) / 2**20) \
                    if peak_ok else 0.0
            else:
                cost_ms = cost_mb = float('nan')
            k = out['by_kind'].setdefault(case.kind, {'n': 0, 'classified': 0,
                                                      'valid': case.valid,
                                                      'costs_ms': [], 'costs_mb': []})
            k['n'] += 1
            out['cases'] += 1
            out['probes'] += 1
            with driver.lock:
                got_case = stamp in driver.seen
            k['classified'] += got_case
            if case.valid:
                out['valid_sent'] += 1
                out['valid_served'] += got_case
            if served:
                out['probes_served'] += 1
                if late:
                    out['probes_late_after'].append(case.kind)
            else:
                missed.append((probe_stamp, case.kind))
            if alive:
                k['costs_ms'].append(cost_ms)
                k['costs_mb'].append(cost_mb)
            else:
                out['crashes'] += 1
                out['crash_kinds'].append(case.kind)
                session.exit_codes.append(session.proc.proc.wait())
                session.start(driver)
            if progress is not None:
                progress(i + 1, n_cases, {'crashes': out['crashes']})
        _wait_idle(session.pid)
        rss_end = procstat.rss_bytes(session.pid)     # over the cases; the bursts apart
        big = _big_case(cfg, maker, transport)
        if cfg.burst and big is not None and session.proc.running:
            out['burst'] = _burst(cfg, big, maker, session, driver, send, out)
        statuses = driver.wait_diagnostics(2)
        with driver.lock:     # a probe served late still counts as served; how late is noted
            late = [kind for stamp, kind in missed if stamp in driver.seen]
            out['probes_unserved_after'] = sorted(kind for stamp, kind in missed
                                                  if stamp not in driver.seen)
        out['probes_served'] += len(late)
        out['probes_late_after'] = sorted(out['probes_late_after'] + late)
        values = _intake_status(statuses, cfg.target, cfg.composed)
        out['rss_growth_pct'] = round(100.0 * (rss_end - rss_start) / rss_start, 3)
        out['received'] = int(float(values.get('received', out['sent'] if
                                               cfg.target == 'host' else -1)))
        out['counted'] = counted_messages(values)
        out['diagnostics'] = values
    finally:
        if session.proc is not None:
            session.exit_codes.append(session.proc.stop())
        executor.shutdown(timeout_sec=5.0)
        spinner.join(timeout=5.0)
        driver.node.destroy_node()
        rclpy.try_shutdown(context=context)
    out['exit_codes'] = session.exit_codes
    out['log'] = str(log_dir)
    return out


def _big_case(cfg: FuzzConfig, maker, transport: str):
    """Return the maker of this node's large bad message (the burst's), or None."""
    if cfg.target == 'host':
        return maker.oversize
    return maker.raw_huge if transport == 'raw' and cfg.huge_frames else None


BURST_ROUNDS = 2


def _burst(cfg: FuzzConfig, big, maker, session: _Session, driver: _Driver, send,
           out: dict) -> dict:
    """
    Send ``cfg.burst`` large bad messages back to back, then a probe; twice.

    Return the node's resident memory growth over each round (MB): the middleware
    keeps a buffer grown to a large sample for each history slot it landed in, so
    the first round shows what a burst leaves behind and the second that it stays
    bounded.
    """
    pid = session.pid
    growth, served_all = [], True
    case = big()                  # one message, sent again and again: the same bytes
    for _ in range(BURST_ROUNDS):
        _wait_idle(pid)
        before = procstat.rss_bytes(pid)
        for _ in range(cfg.burst):
            send(case)
        probe = send(maker.probe(out['probes']))
        out['probes'] += 1
        served = driver.wait_for(probe, cfg.probe_timeout_s + cfg.late_timeout_s,
                                 lambda: session.proc.running)
        out['probes_served'] += served
        served_all = served_all and served
        if not session.proc.running:
            break
        _wait_idle(pid)
        growth.append(round((procstat.rss_bytes(pid) - before) / 2**20, 1))
    return {'kind': case.kind, 'messages': cfg.burst, 'rounds': len(growth),
            'rss_growth_mb': growth, 'probes_served': served_all}


def run_fuzz(cfg: FuzzConfig, progress=None) -> dict:
    """Run ``bench fuzz``; return its JSON result."""
    if cfg.target not in TARGETS:
        raise ValueError(f'target must be one of {TARGETS}, got {cfg.target!r}')
    if cfg.cases < 1:
        raise ValueError(f'cases must be >= 1, got {cfg.cases}')
    log_dir = Path(cfg.log_dir or tempfile.mkdtemp(prefix='edge_denoise_fuzz_'))
    started = time.monotonic()
    transports = ('raw', 'compressed') if cfg.target == 'edge' else ('features',)
    parts = {}
    with lease_domain() as lease:
        for j, transport in enumerate(transports):
            n = cfg.cases // len(transports) + (j < cfg.cases % len(transports))
            parts[transport] = _fuzz_one(cfg, transport, n, profile_env(lease.env()), log_dir,
                                         progress)
    return summarize(cfg, parts, time.monotonic() - started)


def _stat(fn, values: list, empty):
    """Return ``fn(values)`` rounded to 3 places, or ``empty`` for no values."""
    return round(fn(values), 3) if values else empty


def summarize(cfg: FuzzConfig, parts: dict, seconds: float) -> dict:
    """Return the JSON summary of the per-process figures in ``parts``."""
    cases = sum(p['cases'] for p in parts.values())
    counted = sum(p['counted'] for p in parts.values())
    received = sum(p['received'] for p in parts.values())
    probes = sum(p['probes'] for p in parts.values())
    valid = probes + sum(p['valid_sent'] for p in parts.values())
    served = sum(p['probes_served'] + p['valid_served'] for p in parts.values())
    merged: dict[str, dict] = {}
    for p in parts.values():
        for kind, k in p['by_kind'].items():
            agg = merged.setdefault(kind, {'n': 0, 'classified': 0, 'valid': k['valid'],
                                           'costs_ms': [], 'costs_mb': []})
            for key in ('n', 'classified', 'costs_ms', 'costs_mb'):
                agg[key] += k[key]
    by_kind = {kind: {'n': k['n'], 'classified': k['classified'],
                      'worst_ms': _stat(max, k['costs_ms'], 0.0),
                      'worst_mb': _stat(max, k['costs_mb'], 0.0), 'valid': k['valid'],
                      'median_ms': _stat(statistics.median, k['costs_ms'], None),
                      'median_mb': _stat(statistics.median, k['costs_mb'], None)}
               for kind, k in sorted(merged.items())}
    bad = [k for k in by_kind.values() if k['valid'] is not True]   # the bar's, not frames
    return {
        'target': cfg.target, 'cases': cases,
        'crashes': sum(p['crashes'] for p in parts.values()),
        'counted': counted, 'uncounted': received - counted,
        'rss_growth_pct': max(p['rss_growth_pct'] for p in parts.values()),
        'worst_ms': max((k['worst_ms'] for k in bad), default=0.0),
        'worst_mb': max((k['worst_mb'] for k in bad), default=0.0),
        'valid_classified_fraction': round(served / valid, 6) if valid else None,
        'received': received, 'sent': sum(p['sent'] for p in parts.values()),
        'probe_ms': {t: p['probe_ms'] for t, p in parts.items()},
        'idle_ms_per_s': {t: p['idle_ms_per_s'] for t, p in parts.items()},
        'crash_kinds': [k for p in parts.values() for k in p['crash_kinds']],
        'probes_late_after': [k for p in parts.values() for k in p['probes_late_after']],
        'probes_unserved_after': [k for p in parts.values()
                                  for k in p['probes_unserved_after']],
        'exit_codes': {t: p['exit_codes'] for t, p in parts.items()},
        'node_counts': {t: p['diagnostics'] for t, p in parts.items()},
        'by_kind': by_kind,
        'burst': {t: p['burst'] for t, p in parts.items() if 'burst' in p},
        'seed': cfg.seed, 'seconds': round(seconds, 1),
        'logs': next(iter(parts.values()))['log'],
    }
