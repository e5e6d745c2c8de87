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
``bench soak``: a long camera stream through edge and host, memory and latency watched.

``host_node`` and ``edge_process`` run as their own processes on a private DDS
domain, as deployed: with the shipped Fast DDS profile (``profile``), serving the
``bundle`` when one is given. This process is the camera, with the same profile:
``frames`` bgr8 frames of ``frame_size`` (640x480 by default; the bundle's held-out
scenes, else Fashion-MNIST test images, scaled to it; each with its own stamp) at
``rate_hz`` on sensor-data QoS, as a camera driver publishes them. It collects
``classification`` and ``diagnostics`` and samples each node's resident memory
every second.

Result: frames sent and classified; every frame not classified by its reason
(from the nodes' diagnostics: not received by the edge, skipped for a newer frame,
errors and drops by kind on either side; ``unaccounted`` is what no reason
explains); each node's memory growth after warm-up (the median of the last samples
against the median of the samples just after warm-up); the p99 end-to-end latency
of the first and the last window of frames after warm-up.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from . import procstat
from .bundle_bag import at_camera_size
from .demo import bundle_defaults
from .fuzz_cases import image_fields, sample_frames
from .isolation import lease_domain
from .labelled_frames import load_source, source_of
from .launcher import features_linked, init_with_profile, start_node, wait_for_graph
from ..core.bundle import Bundle
from ..core.frames import parse_size
from ..ros.common import status_count, status_values, sub_events
from ..ros.dds import profile_env, PROFILE_ENV

DIAGNOSTICS = '/diagnostics'
SAMPLE_PERIOD_S = 1.0
MEMORY_SAMPLES = 10          # medians over this many samples at the start and the end


@dataclass
class SoakConfig:
    """What ``bench soak`` runs."""

    frames: int = 10000
    rate_hz: float = 30.0
    warmup: int = 300            # frames left out of the memory and latency baselines
    window: int = 1000           # frames in the first and the last latency window
    composed: bool = True
    edge_params: dict = field(default_factory=lambda: {})
    host_params: dict = field(default_factory=dict)
    start_timeout_s: float = 90.0
    drain_s: float = 5.0
    log_dir: str | None = None
    seed: int = 0
    # A bundle the nodes serve (the demo's defense, cut: auto); the frames are its held-out
    # scenes.
    bundle: str | None = None
    frame_size: str = '640x480'  # the camera's frames, WIDTHxHEIGHT
    profile: str | None = ''     # Fast DDS profile of nodes and camera: '' shipped, None none


FRAME_POOL = 64                  # distinct frames, played in turn


def soak_frames(cfg: SoakConfig) -> list[dict]:
    """Return the camera's frames as sensor_msgs/Image fields (``FRAME_POOL`` of them)."""
    if cfg.bundle:
        b = Bundle.load(cfg.bundle)
        images = load_source(source_of(None, b), b.labels(), FRAME_POOL, cfg.seed).images
    else:
        images = sample_frames(FRAME_POOL, seed=cfg.seed)
    return [image_fields(f) for f in at_camera_size(images, cfg.frame_size)]


class _Camera:
    """The soak's node: the camera publisher and the collector of results and diagnostics."""

    def __init__(self, context: Context):
        self.node = Node('edge_denoise_soak', context=context)
        self.pub = self.node.create_publisher(Image, 'image_raw', qos_profile_sensor_data)
        self.lock = threading.Lock()
        self.latency: dict[int, float | None] = {}      # frame index -> latency (ms)
        self.duplicates = 0
        self.statuses: dict[str, dict] = {}
        self.node.create_subscription(String, 'classification', self._on_result,
                                      QoSProfile(depth=1000,
                                                 reliability=ReliabilityPolicy.RELIABLE),
                                      event_callbacks=sub_events())
        self.node.create_subscription(DiagnosticArray, DIAGNOSTICS, self._on_diag, 100,
                                      event_callbacks=sub_events())

    def _on_result(self, msg) -> None:
        record = json.loads(msg.data)
        index = int(record['stamp']['sec']) - 1_000_000
        with self.lock:
            if index in self.latency:
                self.duplicates += 1
            self.latency[index] = record.get('latency_ms')

    def _on_diag(self, msg) -> None:
        with self.lock:
            for status in msg.status:
                self.statuses[status.name] = status_values(status)


def _status(statuses: dict, name: str) -> dict:
    for key, values in statuses.items():
        if key.endswith(f': {name}'):
            return values
    return {}


def drop_reasons(sent: int, classified: int, statuses: dict, composed: bool) -> dict:
    """Explain ``sent - classified`` from the nodes' diagnostics; the rest is ``unaccounted``."""
    intake = _status(statuses, 'denoiser' if composed else 'edge_node')
    names = ('denoiser', 'target') if composed else ('edge_node',)
    reasons: dict[str, int] = {}
    received = status_count(intake, 'received')
    if 'received' in intake:
        reasons['edge.not_received'] = max(0, sent - received)
    for side, nodes in (('edge', names), ('host', ('host_node',))):
        for name in nodes:
            for key, value in _status(statuses, name).items():
                if key.startswith(('dropped.', 'errors.')):
                    reasons[f'{side}.{key}'] = reasons.get(f'{side}.{key}', 0) + status_count(
                        {key: value}, key)
    # The host counts frames lost in transit and those of an epoch it joined late; frames
    # the edge sent that the host never saw are in them, the rest are the edge's own drops.
    explained = sum(reasons.values())
    rest = sent - classified - explained
    if rest:
        reasons['unaccounted'] = rest
    return {k: v for k, v in sorted(reasons.items()) if v}


def _p99(values: list) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return round(values[min(len(values) - 1, int(round(0.99 * (len(values) - 1))))], 3)


def _growth(samples: list[int], start: int) -> float | None:
    """Growth (%) of the median of the last samples over the median just after warm-up."""
    after = samples[start:]
    if len(after) < 2 * MEMORY_SAMPLES:
        after = samples[len(samples) // 2 - 1:] if len(samples) >= 4 else samples
    k = max(1, min(MEMORY_SAMPLES, len(after) // 2))
    base, end = statistics.median(after[:k]), statistics.median(after[-k:])
    return round(100.0 * (end - base) / base, 3) if base else None


def run_soak(cfg: SoakConfig, progress=None) -> dict:
    """Run ``bench soak``; return its JSON result."""
    if cfg.frames < 1 or cfg.rate_hz <= 0:
        raise ValueError(f'need frames >= 1 and rate_hz > 0, got {cfg.frames}, {cfg.rate_hz}')
    parse_size(cfg.frame_size)
    log_dir = Path(cfg.log_dir or tempfile.mkdtemp(prefix='edge_denoise_soak_'))
    frames = soak_frames(cfg)
    started = time.monotonic()
    edge_exe = 'edge_process' if cfg.composed else 'edge_node'
    procs, memory = {}, {'host_node': [], edge_exe: []}
    served = {'bundle': cfg.bundle} if cfg.bundle else {}
    edge_served = {**bundle_defaults(cfg.bundle), **served} if cfg.bundle else {}
    with lease_domain() as lease:
        env = profile_env(lease.env(), cfg.profile)
        context = Context()
        camera = init_with_profile(context, lease.domain_id, env, _Camera)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(camera.node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        try:
            procs['host_node'] = start_node('host_node', {**served, **cfg.host_params}, env,
                                            log_dir)
            procs[edge_exe] = start_node(edge_exe, {**edge_served, **cfg.edge_params},
                                         env, log_dir)
            _wait_connected(camera, procs, cfg.start_timeout_s)
            sent, warm_sample = _play(cfg, camera, frames, procs, memory, progress)
            end = time.monotonic() + cfg.drain_s
            while time.monotonic() < end:
                with camera.lock:
                    done = len(camera.latency) >= sent
                if done:
                    break
                time.sleep(0.1)
            time.sleep(2.5)   # two more diagnostics periods
            crashed = [n for n, p in procs.items() if not p.running]
            with camera.lock:
                latency, statuses = dict(camera.latency), dict(camera.statuses)
                duplicates = camera.duplicates
        finally:
            codes = {n: p.stop() for n, p in procs.items()}
            executor.shutdown(timeout_sec=5.0)
            spinner.join(timeout=5.0)
            camera.node.destroy_node()
            rclpy.try_shutdown(context=context)
    classified = len([i for i in latency if 0 <= i < sent])
    w = min(cfg.window, max(1, (sent - cfg.warmup) // 2))
    first = [latency.get(i) for i in range(cfg.warmup, cfg.warmup + w)]
    last = [latency.get(i) for i in range(sent - w, sent)]
    return {
        'frames': sent, 'classified': classified,
        'dropped_by_reason': drop_reasons(sent, classified, statuses, cfg.composed),
        'rss_growth_pct_by_node': {n: _growth(s, warm_sample) for n, s in memory.items()},
        'p99_first_ms': _p99(first), 'p99_last_ms': _p99(last),
        'rss_mb_by_node': {n: round(s[-1] / 2**20, 1) if s else None
                           for n, s in memory.items()},
        'duplicates': duplicates, 'crashed': crashed, 'exit_codes': codes,
        'rate_hz': cfg.rate_hz, 'warmup': cfg.warmup, 'window': w,
        'frame_size': f'{frames[0]["width"]}x{frames[0]["height"]}', 'bundle': cfg.bundle,
        'fastdds_profile': env.get(PROFILE_ENV),
        'seconds': round(time.monotonic() - started, 1), 'logs': str(log_dir),
    }


def _wait_connected(camera: _Camera, procs: dict, timeout: float) -> None:
    node = camera.node

    def ready() -> bool:
        with camera.lock:   # features: edge -> host, as the two nodes say it
            linked = features_linked(camera.statuses)
        return (linked and camera.pub.get_subscription_count() > 0
                and node.count_publishers('classification') > 0)
    wait_for_graph(ready, list(procs.values()), timeout, 'the nodes')


def _play(cfg: SoakConfig, camera: _Camera, frames: list, procs: dict, memory: dict,
          progress) -> tuple[int, int]:
    """Publish the frames at the rate; sample memory; return (sent, first sample after warm-up)."""
    period = 1.0 / cfg.rate_hz
    t0 = time.monotonic()
    next_sample = t0
    warm_sample = None
    sent = 0
    for i in range(cfg.frames):
        due = t0 + i * period
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        f = frames[i % len(frames)]
        msg = Image(height=f['height'], width=f['width'], encoding=f['encoding'],
                    is_bigendian=0, step=f['step'])
        msg.data = f['data']
        msg.header.stamp = Time(sec=1_000_000 + i, nanosec=0)
        msg.header.frame_id = 'camera'
        camera.pub.publish(msg)
        sent += 1
        if time.monotonic() >= next_sample:
            next_sample += SAMPLE_PERIOD_S
            for name, p in procs.items():
                if p.running:
                    memory[name].append(procstat.rss_bytes(p.proc.pid))
            if warm_sample is None and i >= cfg.warmup:
                warm_sample = len(memory['host_node']) - 1
            if any(not p.running for p in procs.values()):
                break
        if progress is not None and i % 30 == 0:
            progress(i + 1, cfg.frames, {})
    return sent, warm_sample or 0
