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
``host_node``: features -> decode -> tail -> ``classification`` and ``diagnostics``.

Every message names its cut, codec and model hash (the wire format of
:mod:`core.codecs`); the host runs the tail from that cut (a tail fine-tuned
on decoded features where one is shipped for the message's settings).
``classification`` carries one JSON object per frame: the camera stamp and
frame_id, class id, label, score, top-k and the end-to-end latency (from the
edge receiving the frame to this result, in ms). A bad message is logged
(throttled), counted by kind in ``diagnostics``, and the next one is served.
"""

from __future__ import annotations

import json
import sys
import time

from rclpy.node import Node
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import String

from .common import (declare_parameters, diagnostics_timer, features_qos,
                     FEATURES_QOS_PARAMS, log_error, NodeStats, ParamSpec, pub_events, run_nodes,
                     sub_events, TARGET_PARAMS)
from ..core import pipeline, tails, wire
from ..core.models import set_torch_threads

HOST_PARAMS = TARGET_PARAMS + (
    ParamSpec('top_k', 3, 'classes listed in each classification', range=(1, 1000)),
    ParamSpec('finetuned_tails', True, 'use a tail fine-tuned on decoded features when one '
              'is shipped for the message\'s cut, codec and quality'),
    ParamSpec('max_payload_bytes', wire.MAX_PAYLOAD_BYTES, 'messages with a larger '
              'payload are refused', range=(1, 1 << 30)),
) + FEATURES_QOS_PARAMS


class HostNode(Node):
    """Finish the classification of the features the edge publishes."""

    def __init__(self, node_name: str = 'host_node', **kwargs):
        super().__init__(node_name, **kwargs)
        self.stats = NodeStats()
        self.params = declare_parameters(self, HOST_PARAMS, self._apply)
        p = self.params
        set_torch_threads(p['torch_threads'])
        self.target = pipeline.Target(p['model'], p['weights'] or None, p['device'])
        self.stage = pipeline.HostStage(self.target, p['max_payload_bytes'],
                                        self._finetuned_tails(p['finetuned_tails']))
        self.last_seq: int | None = None
        self.pub = self.create_publisher(String, 'classification', 10,
                                         event_callbacks=pub_events())
        self.sub = self.create_subscription(
            CompressedImage, 'features', self._on_features,
            features_qos(p['features_reliability'], p['features_depth']),
            event_callbacks=sub_events())
        diagnostics_timer(self, [(node_name, self.stats)])
        self.get_logger().info(f'host ready: model {self.target.name} ({self.target.hash})')

    def _finetuned_tails(self, enabled: bool):
        if not enabled:
            return None
        return tails.finetuned_tails(self.target)

    def _apply(self, changes: dict) -> None:
        if 'finetuned_tails' in changes:
            self.stage.set_tails(self._finetuned_tails(changes['finetuned_tails']))
        if 'max_payload_bytes' in changes:
            self.stage.max_bytes = changes['max_payload_bytes']
        self.params = {**self.params, **changes}

    def _on_features(self, msg: CompressedImage) -> None:
        try:
            logits, meta = self.stage.process(msg.data, msg.format)
            record = pipeline.result_record(self.target, logits, self.params['top_k'])
        except pipeline.PipelineError as exc:
            log_error(self, self.stats, exc.kind, exc)
            return
        except Exception as exc:  # a node never dies on one message
            log_error(self, self.stats, 'inference', exc)
            return
        self._count_gap(meta.get('seq'))
        latency_ms = t_rx = None
        if 't_rx' in meta:
            try:
                t_rx = int(meta['t_rx'])
                latency_ms = (time.time_ns() - t_rx) / 1e6
            except ValueError:
                pass
        stamp = msg.header.stamp
        record = {'stamp': {'sec': stamp.sec, 'nanosec': stamp.nanosec},
                  'frame_id': msg.header.frame_id, **record,
                  'latency_ms': None if latency_ms is None else round(latency_ms, 3),
                  'edge_rx_ns': t_rx,
                  'cut': meta['cut'], 'codec': meta['codec'], 'bytes': len(msg.data)}
        self.pub.publish(String(data=json.dumps(record)))
        self.stats.frame(len(msg.data), latency_ms)

    def _count_gap(self, seq) -> None:
        """Count frames the edge sent but that never arrived (gaps in its sequence)."""
        try:
            seq = int(seq)
        except (TypeError, ValueError):
            return
        if self.last_seq is not None and seq > self.last_seq + 1:
            self.stats.drop('lost_in_transit', seq - self.last_seq - 1)
        if self.last_seq is None or seq > self.last_seq or seq == 1:
            self.last_seq = seq


def main(args=None) -> int:
    """Run ``host_node``."""
    return run_nodes(lambda scheduler: [HostNode()], args, 'host_node', scheduled=False)


if __name__ == '__main__':
    sys.exit(main())
