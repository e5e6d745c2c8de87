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
A peer process for the ROS smoke test: publish or receive one seeded Image.

``python image_peer.py pub`` publishes a seeded bgr8 frame (made with
cv_bridge) every 100 ms until interrupted; ``python image_peer.py sub`` waits
for one frame, checks it against the same seeded frame and prints ``OK`` or
``MISMATCH``. Both exit after ``--timeout`` seconds at most.
"""

import argparse
import sys
import time

import numpy as np


def seeded_frame() -> np.ndarray:
    """Return the frame both peers agree on."""
    return np.random.default_rng(1234).integers(0, 256, (120, 160, 3), dtype=np.uint8)


def main() -> int:
    """Run one peer."""
    parser = argparse.ArgumentParser()
    parser.add_argument('role', choices=('pub', 'sub'))
    parser.add_argument('--timeout', type=float, default=30.0)
    args = parser.parse_args()

    import rclpy
    from cv_bridge import CvBridge
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node(f'smoke_{args.role}')
    bridge = CvBridge()
    frame = seeded_frame()
    received = []
    if args.role == 'pub':
        pub = node.create_publisher(Image, 'image_raw', qos_profile_sensor_data)
        msg = bridge.cv2_to_imgmsg(frame, encoding='bgr8')
        msg.header.frame_id = 'camera'
        node.create_timer(0.1, lambda: pub.publish(msg))
    else:
        node.create_subscription(Image, 'image_raw', received.append, qos_profile_sensor_data)
    deadline = time.monotonic() + args.timeout
    code = 0
    try:
        while time.monotonic() < deadline and not (args.role == 'sub' and received):
            rclpy.spin_once(node, timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    if args.role == 'sub':
        if not received:
            print('TIMEOUT')
            code = 2
        else:
            msg = received[0]
            got = bridge.imgmsg_to_cv2(msg, desired_encoding='passthrough')
            same = (msg.encoding == 'bgr8' and msg.header.frame_id == 'camera'
                    and got.shape == frame.shape and np.array_equal(got, frame))
            print('OK' if same else 'MISMATCH')
            code = 0 if same else 1
    node.destroy_node()
    rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
