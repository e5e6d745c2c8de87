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
``edge-denoise bench camera``: camera frames at real sizes between two processes.

For each frame size a camera process publishes ``frames`` ``sensor_msgs/Image``
frames (rgb8) on ``image_raw`` at ``rate`` Hz, and a second process subscribes
with the edge's camera QoS (``camera_qos``, ``camera_qos_depth``), as the edge
node does. Both run on a private localhost domain with the same Fast DDS
settings (the shipped large-data profile, or Fast DDS's defaults). Each row:
frames sent and received, and the latency from publish to the subscriber's
callback (p50, p99; one clock, one machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image

from .isolation import lease_domain
from ..ros import dds

TOPIC = 'image_raw'
SIZES = ((640, 480), (1280, 720))
# The camera stays up this long after its last frame, as a driver does: a best-effort
# publisher destroyed right after publishing can take its last sample with it (seen
# here: a recorder without the last of 40 640x480 frames).
SENDER_LINGER_S = 0.5


@dataclass
class CameraBenchConfig:
    """What ``bench camera`` measures."""

    sizes: tuple = SIZES
    rate: float = 30.0
    frames: int = 300
    reliability: str = dds.DEFAULT_CAMERA_QOS
    depth: int = dds.DEFAULT_CAMERA_DEPTH
    profile: str | None = ''          # '' = the shipped profile; None = Fast DDS's defaults
    drain_s: float = 2.0              # wait this long after the last frame went out
    match_timeout: float = 30.0       # for the subscriber to be discovered

    def check(self) -> None:
        """Raise ``ValueError`` for a bad setting."""
        if not self.sizes:
            raise ValueError('name at least one frame size')
        if not self.rate > 0 or self.frames < 1:
            raise ValueError(f'rate must be > 0 Hz and frames >= 1, got {self.rate}, '
                             f'{self.frames}')
        dds.camera_qos(self.reliability, self.depth)


def quantile(values: list[float], p: float) -> float | None:
    """Return the ``p`` quantile of ``values`` (nearest rank), rounded to 0.01; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))], 2)


def _child(role: str, spec: dict, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-u', '-m', __name__, f'--{role}', json.dumps(spec)],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _last_json(proc: subprocess.Popen, out: str, err: str, role: str) -> dict:
    lines = [ln for ln in out.strip().splitlines() if ln.startswith('{')]
    if proc.returncode != 0 or not lines:
        tail = ' | '.join((err or out).strip().splitlines()[-4:])
        raise RuntimeError(f'camera {role} failed ({proc.returncode}): {tail}')
    return json.loads(lines[-1])


def measure_size(size: tuple[int, int], cfg: CameraBenchConfig, env: dict) -> dict:
    """Run one camera process and one subscriber process for one size; return its row."""
    spec = {'width': size[0], 'height': size[1], 'frames': cfg.frames, 'rate': cfg.rate,
            'reliability': cfg.reliability, 'depth': cfg.depth,
            'match_timeout': cfg.match_timeout}
    receiver = _child('receiver', spec, env)
    sender = None
    try:
        if receiver.stdout.readline().strip() != 'ready':
            receiver.wait(10)
            raise RuntimeError(f'camera receiver did not start: {receiver.stderr.read()[-400:]}')
        sender = _child('sender', spec, env)
        out, err = sender.communicate(timeout=cfg.match_timeout + cfg.frames / cfg.rate + 60)
        sent = _last_json(sender, out, err, 'sender')
        time.sleep(cfg.drain_s)
        out, err = receiver.communicate('stop\n', timeout=30)
        got = _last_json(receiver, out, err, 'receiver')
    finally:
        for proc in (receiver, sender):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    lat = got['latency_ms']
    return {'size': f'{size[0]}x{size[1]}', 'sent': sent['sent'], 'received': got['received'],
            'received_pct': round(100.0 * got['received'] / max(1, sent['sent']), 1),
            'p50_ms': quantile(lat, 0.5), 'p99_ms': quantile(lat, 0.99),
            'bytes_per_frame': size[0] * size[1] * 3, 'sender_max_lag_ms': sent['max_lag_ms']}


def run(cfg: CameraBenchConfig, progress=None) -> dict:
    """Measure every size; return ``{"rows": [...], "config": ..., "fastdds": ...}``."""
    cfg.check()
    rows = []
    with lease_domain() as lease:
        env = dds.profile_env(lease.env(), cfg.profile)
        for size in cfg.sizes:
            rows.append(measure_size(tuple(size), cfg, env))
            if progress is not None:
                progress(len(rows), len(cfg.sizes), {'size': rows[-1]['size']})
    fastdds = {dds.PROFILE_ENV: env.get(dds.PROFILE_ENV),
               dds.BUILTIN_ENV: env.get(dds.BUILTIN_ENV)}
    return {'rows': rows, 'config': asdict(cfg), 'fastdds': fastdds}


# --- the two processes ------------------------------------------------------------------------

def _sender(spec: dict) -> dict:
    """Publish ``frames`` frames at ``rate`` once a subscriber matched; return counts."""
    rclpy.init()
    node = Node('camera_bench_sender')
    try:
        pub = node.create_publisher(Image, TOPIC, dds.camera_qos(spec['reliability'],
                                                                 spec['depth']))
        deadline = time.monotonic() + spec['match_timeout']
        while pub.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f'no subscriber matched in {spec["match_timeout"]:g} s')
            time.sleep(0.05)
        time.sleep(0.5)  # discovery is two-sided: let the subscriber match us as well
        w, h = spec['width'], spec['height']
        msg = Image(height=h, width=w, encoding='rgb8', is_bigendian=0, step=w * 3)
        pattern = (bytes(range(256)) * (w * h * 3 // 256 + 1))[:w * h * 3]
        msg.data = pattern
        msg.header.frame_id = 'camera'
        period = 1.0 / spec['rate']
        t0 = time.monotonic()
        max_lag = 0.0
        stamps = []
        for i in range(spec['frames']):
            due = t0 + i * period
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            max_lag = max(max_lag, time.monotonic() - due)
            now = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = now // 10**9, now % 10**9
            pub.publish(msg)
            stamps.append(now)
        time.sleep(SENDER_LINGER_S)
        return {'sent': spec['frames'], 'max_lag_ms': round(max_lag * 1e3, 2),
                'first_stamp_ns': stamps[0], 'last_stamp_ns': stamps[-1]}
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def _receiver(spec: dict) -> dict:
    """Subscribe with the camera QoS; say ``ready``; count until ``stop`` comes on stdin."""
    rclpy.init()
    node = Node('camera_bench_receiver')
    latency = []
    sizes = set()

    def on_frame(msg) -> None:
        now = time.time_ns()
        latency.append((now - (msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)) / 1e6)
        sizes.add(len(msg.data))

    node.create_subscription(Image, TOPIC, on_frame, dds.camera_qos(spec['reliability'],
                                                                    spec['depth']))
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    print('ready', flush=True)
    try:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return {'received': len(latency), 'latency_ms': [round(v, 3) for v in latency],
            'sizes': sorted(sizes)}


def _main(argv: list[str]) -> int:
    role, spec = argv[0], json.loads(argv[1])
    try:
        out = _sender(spec) if role == '--sender' else _receiver(spec)
    except RuntimeError as exc:
        print(f'{role[2:]}: {exc}', file=sys.stderr)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == '__main__' and len(sys.argv) == 3 and sys.argv[1] in ('--sender', '--receiver'):
    os.environ.setdefault('PYTHONUNBUFFERED', '1')
    sys.exit(_main(sys.argv[1:]))
