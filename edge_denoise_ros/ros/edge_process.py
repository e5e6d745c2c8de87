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
``edge_process``: the edge's denoiser and target nodes composed in one process.

Both nodes run on one :class:`PriorityExecutor` over one scheduler, each with
its own callback group and priority parameter (``denoiser_priority``,
``target_priority``). The denoiser hands each defended input to the target
node in-process (no serialization), so while the target runs the head of
frame i the denoiser already cleans frame i+1 (eDenoizer's pipelining); on
the device, jobs run by their callback group's priority.
"""

from __future__ import annotations

import sys

from rclpy.node import Node

from .common import (declare_parameters, diagnostics_timer, hand_off_wake, Mailbox, NodeStats,
                     run_nodes)
from .edge_common import apply_defense, CAMERA_PARAMS, HeadControl
from .edge_io import CameraInput, denoised_publisher, FeaturesOutput, guarded, serve_newest
from .executor import priority_group
from ..core import pipeline
from ..core.scheduler import Scheduler

HANDOFF_DEPTH = 2


class TargetNode(Node):
    """Defended input -> head -> encode -> ``features``; owns the target model."""

    def __init__(self, node_name: str = 'target', *, scheduler: Scheduler | None = None,
                 **kwargs):
        super().__init__(node_name, **kwargs)
        self.stats = NodeStats()
        self.head = HeadControl(self, scheduler)
        self.stage = self.head.stage
        self.inbox = Mailbox(depth=HANDOFF_DEPTH)
        group = priority_group(self, 'target', default=60)
        self.wake = hand_off_wake(self, group, self.inbox, self._run, self.stats)
        self.features = FeaturesOutput(self, self.head, self.stats)
        diagnostics_timer(self, [(node_name, self.stats)])
        s = self.stage.settings
        self.get_logger().info(f'target ready: model {self.stage.target.name} '
                               f'({self.stage.target.hash}), cut {s.cut}, codec {s.codec}, '
                               f'quality {s.quality}')

    def submit(self, item: tuple) -> None:
        """Take ``(x or image, encoding, settings, header, t_rx)`` from the denoiser."""
        self.stats.drop('handoff_full', self.inbox.put(item))
        self.wake.trigger()

    def _run(self) -> None:
        while (item := self.inbox.take()) is not None:
            guarded(self, self.stats, self._serve, *item)

    def _serve(self, value, encoding: str, settings: pipeline.EdgeSettings, header,
               t_rx: int) -> None:
        if settings.cut == pipeline.FRAME_CUT:      # value: the image frame_image made
            out = self.stage.encode_image(value, settings)
        else:
            out = self.stage.head_encode(value, settings)
        self.features.publish(out, header, t_rx)


class DenoiserNode(Node):
    """Camera -> preprocess -> defense, handed to the target node in-process."""

    def __init__(self, target: TargetNode, node_name: str = 'denoiser', **kwargs):
        super().__init__(node_name, **kwargs)
        self.stats = NodeStats()
        self.target = target
        self.stage = target.stage
        self.params = declare_parameters(self, CAMERA_PARAMS, self._apply)
        self._apply(self.params)
        group = priority_group(self, 'denoiser', default=50)
        self.camera = CameraInput(self, self.params['input_transport'], group, self._run,
                                  self.stats)
        target.head.watch_stream(lambda: self.stats.counts['received'])
        self.publish_denoised = denoised_publisher(self, self.params['publish_denoised'])
        diagnostics_timer(self, [(node_name, self.stats)])
        self.get_logger().info(f'denoiser ready: defense {self.stage.settings.defense}, '
                               f'{self.params["input_transport"]} camera input')

    def _apply(self, changes: dict) -> None:
        apply_defense(self.target.head, changes)

    def _run(self) -> None:
        serve_newest(self, self.camera, self._serve, self.target.features)

    def _serve(self, frame, encoding: str, header, t_rx: int) -> None:
        settings = self.stage.settings
        if settings.cut == pipeline.FRAME_CUT:   # checked, at the scale it is sent
            image = self.stage.frame_image(frame, encoding, settings)
            self.target.submit((image, encoding, settings, header, t_rx))
        else:
            x = self.stage.denoise(frame, encoding)
            self.target.submit((x, encoding, settings, header, t_rx))
            self.publish_denoised(x, header)
        self.stats.frame()


def compose(scheduler: Scheduler | None = None) -> list[Node]:
    """Return the edge nodes of one process: the target node, then the denoiser node."""
    target = TargetNode(scheduler=scheduler)
    return [target, DenoiserNode(target)]


def main(args=None) -> int:
    """Run ``edge_process``."""
    return run_nodes(compose, args, 'edge_process')


if __name__ == '__main__':
    sys.exit(main())
