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
``host_node``: the features of N robots -> batched decode + tail -> each robot's results.

The host serves the robots named in ``robots`` (their namespaces: ``<ns>/features`` in,
``<ns>/classification`` out; ``[""]``, the default, is the node's own namespace, one
robot) and, with ``discover``, every ``<ns>/features`` topic that appears. Several hosts
share a fleet by serving disjoint ``robots`` lists; DDS is the only transport.

Each robot has its own (epoch, seq) account (:mod:`core.accounting`), statistics and
diagnostics status. Intake callbacks only validate and queue a message
(:class:`core.batching.Batcher`: bounded per-robot queues, the newest wins); one
inference thread runs the due batches through the tail (``max_batch``,
``max_batch_delay_ms``; ``max_batch: 1`` serves one by one) and publishes each result
in its robot's namespace. ``classification`` carries one JSON object per frame: the
camera stamp and frame_id, class id, label, score, top-k, the end-to-end latency (ms,
from the edge receiving the frame, when plausible), the robot, its epoch and seq, and
when the message arrived here (``host_rx_ns``, this host's clock: what an edge measuring
its uplink reads).
Every frame a robot sent is either classified or counted for that robot with a reason:
``dropped.*`` (lost_in_transit, before_join, skipped, shutdown) or ``errors.*``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import String

from . import cdr
from .common import (declare_parameters, diagnostics_timer, features_qos,
                     FEATURES_QOS_PARAMS, log_error, NodeStats, ParamSpec, pub_events,
                     PUBLISHERS, run_nodes, sub_events, TARGET_PARAMS)
from ..core import accounting, batching, pipeline, tails, wire
from ..core.models import set_torch_threads

FEATURES_TYPE = 'sensor_msgs/msg/CompressedImage'
DISCOVERY_PERIOD_S = 1.0
_DEFAULT_BATCH = batching.BatchConfig()

HOST_PARAMS = TARGET_PARAMS + (
    ParamSpec('top_k', 3, 'classes listed in each classification', range=(1, 1000)),
    ParamSpec('finetuned_tails', True, 'use a tail fine-tuned on decoded features when one '
              'is shipped for the message\'s cut, codec and quality'),
    ParamSpec('max_payload_bytes', wire.MAX_PAYLOAD_BYTES, 'messages with a larger '
              'payload are refused', range=(1, 1 << 30)),
) + FEATURES_QOS_PARAMS + (
    ParamSpec('robots', [''], 'namespaces of the robots this host serves: <ns>/features in, '
              '<ns>/classification out ("" = this node\'s namespace); hosts sharing a fleet '
              'serve disjoint lists', read_only=True),
    ParamSpec('discover', False, 'also serve every <ns>/features topic that appears in the '
              'graph (one host for the whole fleet)', read_only=True),
    ParamSpec('max_batch', _DEFAULT_BATCH.max_batch, 'most messages (of one model, cut, '
              'codec, quality) run through the tail at once; 1 = one by one', range=(1, 1024)),
    ParamSpec('max_batch_delay_ms', _DEFAULT_BATCH.max_batch_delay_ms, 'longest a message '
              'waits for others to fill its batch', range=(0.0, 1000.0)),
    ParamSpec('queue_depth', _DEFAULT_BATCH.queue_depth, 'messages waiting per robot; when '
              'full the newest wins and the oldest is counted dropped.skipped',
              range=(1, 1000)),
)


def robot_label(namespace: str) -> str:
    """Return a robot's name in records and diagnostics: its namespace without slashes."""
    return namespace.strip('/')


def _join(namespace: str, name: str) -> str:
    """Return ``namespace/name`` ('' = relative to the node, '/' = the root)."""
    if not namespace:
        return name
    return f'{namespace.rstrip("/")}/{name}'


def wire_fields(fmt) -> tuple[str | None, str | None]:
    """
    Return the ``epoch`` and ``seq`` texts of a format string without checking the rest.

    The accounting reads them before the message is checked, so a message refused
    for its payload or meta data is still accounted once, not again as a gap.
    """
    if isinstance(fmt, (bytes, bytearray)):
        fmt = bytes(fmt).decode('ascii', 'replace')
    if not isinstance(fmt, str) or len(fmt) > wire.MAX_FORMAT_CHARS:
        return None, None
    fields = dict(t.split('=', 1) for t in fmt.split()[1:] if '=' in t)
    return fields.get('epoch'), fields.get('seq')


@dataclass
class Robot:
    """One robot served by this host: its topics, account and statistics."""

    label: str
    topic: str
    stats: NodeStats
    account: accounting.StreamAccount
    pub: object = None
    sub: object = None
    legacy_epochs: int = 0


class HostNode(Node):
    """Finish the classification of the features N robots publish, in batches."""

    def __init__(self, node_name: str = 'host_node', **kwargs):
        super().__init__(node_name, **kwargs)
        self._worker: threading.Thread | None = None
        self.robots: dict[str, Robot] = {}
        self.params = declare_parameters(self, HOST_PARAMS, self._apply)
        p = self.params
        set_torch_threads(p['torch_threads'])
        self.tail_report: dict[str, str] = {}
        self.target = pipeline.Target(p['model'], p['weights'] or None, p['device'],
                                      bundle=p['bundle'] or None, labels=p['labels'] or None)
        self.stage = pipeline.HostStage(self.target, p['max_payload_bytes'],
                                        self._finetuned_tails(p['finetuned_tails']))
        self.batcher = batching.Batcher(self._batch_config(p), on_drop=self._skipped)
        self.times = batching.BatchTimes()
        self._lock = threading.Lock()
        self.total = NodeStats()
        names = [str(n) for n in (p['robots'] or [''])]
        if len(set(names)) != len(names):
            raise ValueError(f'parameter robots names a robot twice: {names}')
        self.single = names == [''] and not p['discover']
        self.parts: list[tuple[str, NodeStats]] = [] if self.single else \
            [(self.get_name(), self.total)]
        for name in names:
            self._add_robot(name)
        # One robot (the default): the node's status is that robot's, as before fleets.
        self.stats = next(iter(self.robots.values())).stats if self.single else self.total
        self.stats.note(**self.tail_report)      # which tail serves each setting
        diagnostics_timer(self, self.parts)
        if p['discover']:
            self.create_timer(DISCOVERY_PERIOD_S, self._discover,
                              callback_group=MutuallyExclusiveCallbackGroup())
        self._worker = threading.Thread(target=self._serve, name='host_inference', daemon=True)
        self._worker.start()
        self.get_logger().info(
            f'host ready: model {self.target.name} ({self.target.hash}), robots '
            f'{[r.label or "." for r in self.robots.values()]}'
            f'{" + discovered" if p["discover"] else ""}, max_batch {p["max_batch"]}')

    # ------------------------------------------------------------------ robots

    def _add_robot(self, namespace: str) -> Robot:
        """Subscribe to ``<namespace>/features`` and advertise its ``classification``."""
        ns = namespace.rstrip('/') or ('/' if namespace.startswith('/') else '')
        topic = self.resolve_topic_name(_join(ns, 'features'))
        with self._lock:
            if topic in self.robots:
                return self.robots[topic]
            label = robot_label(ns)
            robot = Robot(label, topic, NodeStats(), accounting.StreamAccount())
            robot.pub = self.create_publisher(
                String, _join(ns, 'classification'), 10,
                event_callbacks=pub_events())
            p = self.params
            # Raw: the message is read in place (ros/cdr.py), so one over max_payload_bytes
            # is refused after reading its length, before any copy or deserialization.
            robot.sub = self.create_subscription(
                CompressedImage, topic, lambda raw, r=robot: self._on_features(r, raw),
                features_qos(p['features_reliability'], p['features_depth']),
                event_callbacks=sub_events(), raw=True)
            robot.stats.gauge(PUBLISHERS, robot.sub.get_publisher_count)   # edges heard
            self.robots[topic] = robot
            self.parts.append((self.get_name() if self.single else
                               f'{self.get_name()}/{label or "."}', robot.stats))
        return robot

    def _discover(self) -> None:
        """Serve every ``<ns>/features`` topic of the graph not served yet."""
        for topic, types in self.get_topic_names_and_types():
            if topic.endswith('/features') and FEATURES_TYPE in types \
                    and topic not in self.robots:
                robot = self._add_robot(topic[:-len('features')])
                self.get_logger().info(f'discovered robot {robot.label or "/"} on {topic}')

    # ------------------------------------------------------------------ intake

    def _on_features(self, robot: Robot, raw: bytes) -> None:
        """Account for one message, check it, queue it: no inference here."""
        received_ns = time.time_ns()
        robot.stats.count('received')
        try:
            msg = cdr.read_compressed_image(raw, self.params['max_payload_bytes'])
        except cdr.CdrError as exc:
            self._error(robot, 'codec', exc)
            return
        epoch, seq = wire_fields(msg.format)
        verdict = None
        if seq is None:
            robot.stats.count('unsequenced')    # an edge that numbers nothing: not accounted
        else:
            try:
                verdict = robot.account.check(self._epoch(robot, epoch, seq), seq)
            except accounting.StreamError as exc:
                self._error(robot, exc.kind, exc)
                return
            self._drop(robot, 'lost_in_transit', verdict.lost)
            self._drop(robot, 'before_join', verdict.before_join)
            if verdict.restart:
                robot.stats.count('restarts')
        try:
            meta = self.stage.check(msg.format)
        except pipeline.PipelineError as exc:
            self._error(robot, exc.kind, exc)
            return
        item = batching.Pending(robot.topic, msg.data, meta,
                                context=(msg.header, received_ns, verdict))
        self.batcher.put(item)

    def _skipped(self, item: batching.Pending) -> None:
        """Count a message the batcher dropped (pushed out or superseded) for its robot."""
        self._drop(self.robots[item.robot], batching.SKIPPED)

    def _epoch(self, robot: Robot, epoch, seq) -> str:
        """Return the message's epoch; an edge that sends none gets one per run (seq 1)."""
        if epoch is not None:
            return epoch
        if robot.legacy_epochs == 0 or str(seq) == '1':
            robot.legacy_epochs += 1
        return f'{robot.legacy_epochs:016x}'

    # --------------------------------------------------------------- inference

    def _serve(self) -> None:
        """Run the inference thread: take due batches, run them, publish every result."""
        while True:
            batch = self.batcher.next_batch(timeout=0.5)
            if not batch:
                if self.batcher.closed:
                    return
                continue
            try:
                outcomes = batching.infer_batch(self.stage, batch, self.times)
            except Exception as exc:  # the thread never dies: count the batch as failed
                outcomes = [batching.Outcome(i, error=pipeline.PipelineError(
                    'inference', str(exc))) for i in batch]
            self.total.count('batches')
            for outcome in outcomes:
                self._publish(outcome)

    def _publish(self, outcome: batching.Outcome) -> None:
        item = outcome.item
        robot = self.robots[item.robot]
        if outcome.error is not None:
            self._error(robot, outcome.error.kind, outcome.error)
            return
        header, received_ns, verdict = item.context
        try:
            record = pipeline.result_record(self.target, outcome.logits, self.params['top_k'])
        except pipeline.PipelineError as exc:
            self._error(robot, exc.kind, exc)
            return
        meta = item.meta
        latency_ms = accounting.latency_ms(meta.get('t_rx'))
        t_rx = int(meta['t_rx']) if latency_ms is not None else None
        stamp = header.stamp
        record = {'stamp': {'sec': stamp.sec, 'nanosec': stamp.nanosec},
                  'frame_id': header.frame_id, **record,
                  'latency_ms': None if latency_ms is None else round(latency_ms, 3),
                  'edge_rx_ns': t_rx, 'host_rx_ns': received_ns, 'cut': meta['cut'],
                  'codec': meta['codec'],
                  'bytes': len(item.payload), 'robot': robot.label,
                  'epoch': verdict.epoch if verdict else None,
                  'seq': verdict.seq if verdict else None}
        robot.pub.publish(String(data=json.dumps(record)))
        robot.stats.frame(len(item.payload), latency_ms)
        self.total.frame(len(item.payload), latency_ms)

    # -------------------------------------------------------------- accounting

    def _drop(self, robot: Robot, reason: str, n: int = 1) -> None:
        robot.stats.drop(reason, n)
        if not self.single:
            self.total.drop(reason, n)

    def _error(self, robot: Robot, kind: str, exc: BaseException) -> None:
        log_error(self, robot.stats, kind, exc if self.single or not robot.label
                  else f'{robot.label}: {exc}')
        if not self.single:
            self.total.error(kind)

    # ------------------------------------------------------------- parameters

    def _finetuned_tails(self, enabled: bool):
        if not enabled:
            return None
        lookup = tails.finetuned_tails(self.target)
        self._report_tails(lookup)
        return lookup

    def _report_tails(self, lookup) -> None:
        """Say which fine-tuned tail serves each (cut, codec, quality), and which cannot."""
        log = self.get_logger()
        for key, served in sorted(lookup.report.items()):
            if key in lookup.problems:
                log.error(f'fine-tuned tail for {key} not used: {served}')
            else:
                log.info(f'fine-tuned tail for {key}: {served}')
        if not lookup.report:
            log.info('no fine-tuned tails: the plain split tail serves every cut')
        self.tail_report = {f'tail.{k}': v for k, v in lookup.report.items()}

    @staticmethod
    def _batch_config(p: dict) -> batching.BatchConfig:
        return batching.BatchConfig(int(p['max_batch']), float(p['max_batch_delay_ms']),
                                    int(p['queue_depth']))

    def _apply(self, changes: dict) -> None:
        p = {**self.params, **changes}
        if {'max_batch', 'max_batch_delay_ms', 'queue_depth'} & set(changes):
            self.batcher.configure(self._batch_config(p))
        if 'finetuned_tails' in changes:
            self.stage.set_tails(self._finetuned_tails(changes['finetuned_tails']))
            self.stats.note(**self.tail_report)
        if 'max_payload_bytes' in changes:
            self.stage.max_bytes = changes['max_payload_bytes']
        self.params = p

    def destroy_node(self):
        """Stop the inference thread; messages still queued are counted dropped.shutdown."""
        if self._worker is not None:
            self.batcher.close()
            if self._worker is not threading.current_thread():
                self._worker.join(timeout=5.0)
            for item in self.batcher.drain():
                self._drop(self.robots[item.robot], 'shutdown')
        return super().destroy_node()


def main(args=None) -> int:
    """Run ``host_node`` (intake on a single-threaded executor, inference on its own thread)."""
    return run_nodes(lambda scheduler: [HostNode()], args, 'host_node', scheduled=False,
                     executor_type=SingleThreadedExecutor)


if __name__ == '__main__':
    sys.exit(main())
