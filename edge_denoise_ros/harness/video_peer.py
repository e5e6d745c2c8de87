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
The H.264 peer: what FogROS2-style offloading does, measured beside our strategies.

The robot encodes its camera frames as an H.264 stream (libx264, low-latency
settings, :mod:`core.video`) and sends every access unit as a
``sensor_msgs/CompressedImage`` (``format`` ``h264 seq=.. t_rx=..``) on
``features``; the host decodes the stream in order and runs the whole
defended model (the defense, then the target) on each frame, publishing
``classification`` records like ``host_node``'s, so the link bench's
collector measures both alike. Benchmark peers, not product nodes:
``python -m edge_denoise_ros.harness.video_peer edge|host --ros-args ...``.
"""

from __future__ import annotations

import json
import sys
import time

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from torch import nn
import torch

from ..core import defenses, pipeline, video
from ..core.models import set_torch_threads
from ..ros import conversions, dds
from ..ros.common import (declare_parameters, diagnostics_timer, features_qos, hand_off_wake,
                          log_error, Mailbox, NodeStats, ParamSpec, PUBLISHERS, run_nodes,
                          SUBSCRIBERS)

VIDEO_EDGE_PARAMS = (
    ParamSpec('gop', video.H264Config.gop, 'key frame (or full intra refresh) every N frames',
              range=(1, 1000), read_only=True),
    ParamSpec('crf', video.H264Config.crf, 'libx264 constant quality (0 lossless .. 51)',
              range=(0, 51), read_only=True),
    ParamSpec('intra_refresh', video.H264Config.intra_refresh, 'periodic intra refresh '
              'instead of key frames', read_only=True),
    ParamSpec('camera_qos', dds.DEFAULT_CAMERA_QOS, 'camera subscription reliability',
              choices=dds.CAMERA_RELIABILITY, read_only=True),
    ParamSpec('camera_qos_depth', dds.DEFAULT_CAMERA_DEPTH, 'camera subscription depth',
              range=(1, 1000), read_only=True),
)
VIDEO_HOST_PARAMS = (
    ParamSpec('defense', pipeline.DEFAULT_DEFENSE, 'input defense the host runs before the '
              'target', choices=defenses.defense_names(), read_only=True),
    ParamSpec('torch_threads', 1, 'torch intra-op threads', range=(0, 256), read_only=True),
    ParamSpec('bundle', '', 'bundle folder of the target and its denoisers ("" = the default '
              'target)', read_only=True),
)
STREAM_QOS = ('reliable', 30)   # as the edge's features (features_reliability, features_depth)


def stream_format(seq: int, t_rx: int) -> str:
    """Return the ``format`` of one access unit's message."""
    return f'{video.CODEC} seq={seq} t_rx={t_rx}'


def parse_stream_format(text: str) -> dict:
    """Parse :func:`stream_format` (``ValueError`` for anything else)."""
    words = text.split()
    if not words or words[0] != video.CODEC:
        raise ValueError(f'not an {video.CODEC} stream message: {text[:40]!r}')
    meta = dict(w.partition('=')[::2] for w in words[1:])
    return {'seq': int(meta['seq']), 't_rx': int(meta['t_rx'])}


class VideoEdgeNode(Node):
    """Camera -> H.264 encoder -> ``features``; the newest frame wins while encoding."""

    def __init__(self, node_name: str = 'video_edge', **kwargs):
        super().__init__(node_name, **kwargs)
        self.stats = NodeStats()
        p = self.params = declare_parameters(self, VIDEO_EDGE_PARAMS, lambda changes: None)
        self.config = video.H264Config(gop=p['gop'], crf=p['crf'],
                                       intra_refresh=p['intra_refresh'])
        self.encoder = None
        self.seq = 0
        self.frames = Mailbox(depth=1)
        group = MutuallyExclusiveCallbackGroup()
        self.wake = hand_off_wake(self, group, self.frames, self._encode, self.stats)
        self.pub = self.create_publisher(CompressedImage, 'features', features_qos(*STREAM_QOS))
        self.stats.gauge(SUBSCRIBERS, self.pub.get_subscription_count)
        self.create_subscription(Image, 'image_raw', self._on_frame,
                                 dds.camera_qos(p['camera_qos'], p['camera_qos_depth']),
                                 callback_group=MutuallyExclusiveCallbackGroup())
        diagnostics_timer(self, [(node_name, self.stats)])
        self.get_logger().info(f'video edge ready: H.264 gop {self.config.gop}, crf '
                               f'{self.config.crf}, intra refresh {self.config.intra_refresh}')

    def _on_frame(self, msg) -> None:
        self.stats.drop('skipped', self.frames.put((msg, time.time_ns())))
        self.wake.trigger()

    def _encode(self) -> None:
        item = self.frames.take()
        if item is None:
            return
        msg, t_rx = item
        try:
            frame, encoding = conversions.camera_msg_to_image(msg)
            if encoding == 'rgb8':
                frame = frame[:, :, ::-1]
            elif encoding != 'bgr8':
                raise ValueError(f'the H.264 peer takes rgb8 or bgr8 frames, got {encoding}')
            h, w = frame.shape[:2]
            if self.encoder is None or (self.encoder.width, self.encoder.height) != (w, h):
                self.encoder = video.H264Encoder(w, h, self.config)
            unit = self.encoder.encode(frame)
        except (ValueError, TypeError) as exc:
            log_error(self, self.stats, 'bad_image', exc)
            return
        self.seq += 1
        out = CompressedImage(format=stream_format(self.seq, t_rx), data=unit)
        out.header = msg.header
        self.pub.publish(out)
        self.stats.frame(len(unit), (time.time_ns() - t_rx) / 1e6)


class VideoHostNode(Node):
    """``features`` (H.264 units) -> decoder -> defense + target -> ``classification``."""

    def __init__(self, node_name: str = 'video_host', **kwargs):
        super().__init__(node_name, **kwargs)
        self.stats = NodeStats()
        p = self.params = declare_parameters(self, VIDEO_HOST_PARAMS, lambda changes: None)
        set_torch_threads(p['torch_threads'])
        self.target = pipeline.Target(bundle=p['bundle'] or None)
        self.model = nn.Sequential(pipeline.build_defense(p['defense'], self.target),
                                   self.target.model).eval()
        with torch.no_grad():   # the first call pays torch's set-up, not the first frame
            self.model(torch.zeros(1, *self.target.input_shape, device=self.target.device))
        self.decoder = video.H264Decoder()
        self.pub = self.create_publisher(String, 'classification', 10)
        sub = self.create_subscription(CompressedImage, 'features', self._on_unit,
                                       features_qos(*STREAM_QOS))
        self.stats.gauge(PUBLISHERS, sub.get_publisher_count)
        diagnostics_timer(self, [(node_name, self.stats)])
        self.get_logger().info(f'video host ready: model {self.target.name}, defense '
                               f'{p["defense"]}')

    @torch.no_grad()
    def _on_unit(self, msg) -> None:
        try:
            meta = parse_stream_format(msg.format)
            frames = self.decoder.decode(msg.data)  # every unit, in order: the stream's state
            if not frames:
                return
            x = self.target.preprocess(frames[-1], 'bgr8')
            record = pipeline.result_record(self.target, self.model(x)[0])
        except (ValueError, KeyError, pipeline.PipelineError) as exc:
            log_error(self, self.stats, 'codec', exc)
            return
        latency_ms = (time.time_ns() - meta['t_rx']) / 1e6
        stamp = msg.header.stamp
        record = {'stamp': {'sec': stamp.sec, 'nanosec': stamp.nanosec},
                  'frame_id': msg.header.frame_id, **record,
                  'latency_ms': round(latency_ms, 3), 'edge_rx_ns': meta['t_rx'],
                  'seq': meta['seq'], 'cut': pipeline.FRAME_CUT, 'codec': video.CODEC,
                  'bytes': len(msg.data)}
        self.pub.publish(String(data=json.dumps(record)))
        self.stats.frame(len(msg.data), latency_ms)


def main(argv: list[str] | None = None) -> int:
    """Run one side: ``video_peer edge|host [--ros-args ...]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ('edge', 'host'):
        print('usage: python -m edge_denoise_ros.harness.video_peer edge|host [--ros-args ...]',
              file=sys.stderr)
        return 2
    side = VideoEdgeNode if argv[0] == 'edge' else VideoHostNode
    return run_nodes(lambda scheduler: [side()], ['video_peer', *argv[1:]],
                     f'video_{argv[0]}', scheduled=False)


if __name__ == '__main__':
    sys.exit(main())
