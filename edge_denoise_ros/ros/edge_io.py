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
The edge's input and output, shared by ``edge_node`` and ``edge_process``'s two nodes.

- :class:`CameraInput`: the camera subscription (QoS from ``camera_qos``, ``camera_qos_depth``)
  only stores the newest frame and wakes the inference callback: a frame
  replaced before inference took it is counted as ``dropped.skipped``;
  :func:`serve_newest` runs a node's work on it, :func:`guarded`.
- :class:`FeaturesOutput`: the ``features`` publisher, paced by the head's
  uplink (measured from the host's receipts with ``measure_uplink``);
  :func:`denoised_publisher`: the defended input, on request.
"""

from __future__ import annotations

import time
from typing import Callable

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from . import cdr, conversions
from . import dds
from .common import (features_qos, hand_off_wake, log_error, Mailbox, NodeStats, pub_events,
                     sub_events, SUBSCRIBERS)
from .edge_common import HeadControl
from .executor import PRIORITY_RANGE, set_group_priority
from ..core import accounting, pipeline, wire
from ..core.stream import parse_receipt

MAX_BYTES_PER_PIXEL = 4     # a camera message's data cap: 3 channels plus row padding
RECEIPT_DEPTH = 100         # classification records (receipts) kept between two reads


def guarded(node: Node, stats: NodeStats, work: Callable[..., None], *args) -> None:
    """
    Run one frame's ``work(*args)``; a node never dies on one frame.

    A failure is counted in ``stats`` by kind (a :class:`core.pipeline.PipelineError`'s
    own, else ``inference``) and logged, at most once per kind and throttle period.
    """
    try:
        work(*args)
    except pipeline.PipelineError as exc:
        log_error(node, stats, exc.kind, exc)
    except Exception as exc:  # a node never dies on one frame
        log_error(node, stats, 'inference', exc)


def serve_newest(node: Node, camera: CameraInput, handle: Callable[..., None],
                 features: FeaturesOutput) -> None:
    """
    Run ``handle(frame, encoding, header, t_rx)``, guarded, on the newest frame, if any.

    A frame the uplink has no room for (``features``' pacer) is dropped before
    it is read or decoded.
    """
    def work() -> None:
        item = camera.take(features.admit_frame)
        if item is not None:
            handle(*item)
    guarded(node, camera.stats, work)


class CameraInput:
    """
    The camera subscription: keeps the newest frame, wakes the inference callback.

    ``infer`` runs in ``inference_group``, woken through :func:`.common.hand_off_wake`.
    Its QoS comes from the node's ``camera_qos`` and ``camera_qos_depth`` parameters
    (declared with ``CAMERA_PARAMS`` before this is built).
    """

    def __init__(self, node: Node, transport: str, inference_group, infer: Callable[[], None],
                 stats: NodeStats):
        self.frames = Mailbox(depth=1)
        self.stats = stats
        self.wake = hand_off_wake(node, inference_group, self.frames, infer, stats)
        kind, topic = ((CompressedImage, 'image_raw/compressed') if transport == 'compressed'
                       else (Image, 'image_raw'))
        self._read = cdr.read_compressed_image if transport == 'compressed' else cdr.read_image
        self.max_pixels = node.get_parameter('max_frame_pixels').value
        # The intake only stores the newest frame: it outranks inference on the
        # PriorityExecutor, so no frame is lost uncounted while inference runs.
        group = MutuallyExclusiveCallbackGroup()
        set_group_priority(group, PRIORITY_RANGE[1])
        self.sub = node.create_subscription(
            kind, topic, self._on_frame, dds.camera_qos(
                node.get_parameter('camera_qos').value,
                node.get_parameter('camera_qos_depth').value),
            callback_group=group, event_callbacks=sub_events(), raw=True)
        if transport == 'raw' and not dds.large_data_ready():
            node.get_logger().warning(
                f'{dds.PROFILE_ENV} is not set: camera frames of 640x480 and up are lost '
                f'between processes with Fast DDS\'s default transports; export it as '
                f'{dds.profile_path()} here and in the camera driver (README: Fast DDS)')

    def _on_frame(self, raw: bytes) -> None:
        self.stats.count('received')
        self.stats.drop('skipped', self.frames.put((raw, time.time_ns())))
        self.wake.trigger()

    def take(self, admit: Callable[[NodeStats], bool]):
        """
        Return ``(frame, encoding, header, t_rx_ns)`` of the newest frame, or None.

        The subscription hands over the serialized message (``raw``): its fields are
        read in place (:mod:`.cdr`), so a frame is checked (size cap, encoding,
        image header) before anything is copied or decoded. ``admit(stats)``
        is asked first: False drops the frame unread (it counts the drop).
        """
        item = self.frames.take()
        if item is None or not admit(self.stats):
            return None
        raw, t_rx = item
        try:
            msg = self._read(raw, self.max_pixels * MAX_BYTES_PER_PIXEL)
            frame, encoding = conversions.camera_msg_to_image(msg, self.max_pixels)
        except (ValueError, wire.CodecError) as exc:
            raise pipeline.PipelineError('bad_image', str(exc)) from None
        return frame, encoding, msg.header, t_rx


class FeaturesOutput:
    """
    The features publisher: payload + meta (stream epoch, sequence number, receipt time).

    Paced by the head's uplink (:meth:`HeadControl.pacing_mbps`, its
    :class:`core.stream.UplinkPacer`): :meth:`admit_frame` says whether the
    next camera frame may be computed, or counts it as ``dropped.uplink``.
    With ``measure_uplink`` every message sent, every frame held back and
    every receipt the host reports on ``classification`` goes to the head's
    :class:`core.stream.UplinkMeter`; a record that is none is counted as a
    ``receipt`` error.
    """

    def __init__(self, node: Node, head: HeadControl, stats: NodeStats):
        params = head.params
        self.pub = node.create_publisher(CompressedImage, 'features', features_qos(
            params['features_reliability'], params['features_depth']),
            event_callbacks=pub_events())
        stats.gauge(SUBSCRIBERS, self.pub.get_subscription_count)   # hosts listening now
        self.stats = stats
        self.node = node
        self.pacing_mbps = head.pacing_mbps
        self.pacer = head.pacer
        self.meter = head.link_meter
        self.epoch = accounting.new_epoch()   # this stream's boot id: a restart is a new one
        self.seq = 0
        if self.meter is not None:
            self.receipts = node.create_subscription(String, 'classification', self._on_receipt,
                                                     RECEIPT_DEPTH, event_callbacks=sub_events())

    def admit_frame(self, stats: NodeStats) -> bool:
        """Return whether the uplink has room for a frame now; else count it in ``stats``."""
        if self.pacing_mbps() is None or self.pacer.ready(time.monotonic() * 1e3):
            return True
        stats.drop('uplink')
        if self.meter is not None:
            self.meter.held()
        return False

    def _on_receipt(self, msg: String) -> None:
        try:
            receipt = parse_receipt(msg.data, self.epoch)
        except ValueError as exc:
            log_error(self.node, self.stats, 'receipt', exc)
            return
        if receipt is not None:
            self.meter.received(*receipt)

    def publish(self, out: pipeline.EdgeOutput, header, t_rx: int) -> None:
        """Publish one frame's features with the camera header and the stream's fields."""
        self.seq += 1
        out.meta.update(epoch=self.epoch, seq=self.seq, t_rx=t_rx)
        msg = conversions.payload_to_msg(out.payload, out.meta, header)
        self.pub.publish(msg)
        nbytes = len(msg.data) + len(msg.format)
        if (mbps := self.pacing_mbps()) is not None:
            self.pacer.sent(nbytes, mbps, time.monotonic() * 1e3)
        if self.meter is not None:
            self.meter.sent(self.seq, nbytes, time.time_ns())
        self.stats.frame(len(out.payload), (time.time_ns() - t_rx) / 1e6)


def denoised_publisher(node: Node, enabled: bool):
    """Return a function publishing a defended input ``(1, C, H, W)`` as 32FC1/32FC3."""
    if not enabled:
        return lambda x, header: None
    pub = node.create_publisher(Image, 'denoised', 10, event_callbacks=pub_events())

    def publish(x, header) -> None:
        image = x[0].permute(1, 2, 0).float().cpu().numpy()
        msg = conversions.bridge().cv2_to_imgmsg(
            image[:, :, 0].copy() if image.shape[2] == 1 else image.copy(),
            encoding='32FC1' if image.shape[2] == 1 else '32FC3')
        msg.header = header
        pub.publish(msg)
    return publish
