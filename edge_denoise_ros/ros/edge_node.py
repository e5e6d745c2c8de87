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
``edge_node``: camera -> defense -> head -> encoded features on ``features``, in one node.

``edge_process`` (see :mod:`.edge_process`) composes the same work as a
denoiser node and a target node in one process on the
:class:`PriorityExecutor`; both drive one :class:`core.pipeline.EdgeStage`
through the pieces of :mod:`.edge_common` and :mod:`.edge_io`. The node only holds parameters,
converts messages and counts.
"""

from __future__ import annotations

import sys

from rclpy.node import Node

from .common import declare_parameters, diagnostics_timer, NodeStats, run_nodes
from .edge_common import apply_defense, CAMERA_PARAMS, HeadControl
from .edge_io import CameraInput, denoised_publisher, FeaturesOutput, serve_newest
from .executor import priority_group
from ..core.scheduler import Scheduler


class EdgeNode(Node):
    """Camera -> defense -> head -> features, all in one node (``edge_node``)."""

    def __init__(self, node_name: str = 'edge_node', *, scheduler: Scheduler | None = None,
                 **kwargs):
        super().__init__(node_name, **kwargs)
        self.stats = NodeStats()
        self.camera_params = declare_parameters(self, CAMERA_PARAMS, self._apply_camera)
        self.head = HeadControl(self, scheduler, self.camera_params['defense'])
        self.stage = self.head.stage
        self._apply_camera(self.camera_params)
        group = priority_group(self, 'inference', default=50)
        self.camera = CameraInput(self, self.camera_params['input_transport'], group,
                                  self._infer, self.stats)
        self.features = FeaturesOutput(self, self.head, self.stats)
        self.head.watch_stream(lambda: self.stats.counts['received'])
        self.publish_denoised = denoised_publisher(self, self.camera_params['publish_denoised'])
        diagnostics_timer(self, [(node_name, self.stats)])
        s = self.stage.settings
        self.get_logger().info(f'edge ready: model {self.stage.target.name} '
                               f'({self.stage.target.hash}), defense {s.defense}, cut {s.cut}, '
                               f'codec {s.codec}, quality {s.quality}')

    def _apply_camera(self, changes: dict) -> None:
        apply_defense(self.head, changes)

    def _infer(self) -> None:
        serve_newest(self, self.camera, self._serve, self.features)

    def _serve(self, frame, encoding: str, header, t_rx: int) -> None:
        out = self.stage.process(frame, encoding)
        self.features.publish(out, header, t_rx)
        self.publish_denoised(out.denoised, header)


def main(args=None) -> int:
    """Run ``edge_node``."""
    return run_nodes(lambda scheduler: [EdgeNode(scheduler=scheduler)], args, 'edge_node')


if __name__ == '__main__':
    sys.exit(main())
