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

"""ROS smoke test: a cv_bridge Image crosses real DDS between two OS processes."""

import os
from pathlib import Path

import pytest

PEER = str(Path(__file__).with_name('image_peer.py'))


@pytest.mark.ros
def test_image_crosses_processes_intact(ros_domain, processes):
    env = ros_domain.env()
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert env['ROS_DOMAIN_ID'] == os.environ['ROS_DOMAIN_ID'] == str(ros_domain.domain_id)
    pub = processes.python(PEER, 'pub', '--timeout', '60', env=env)
    sub = processes.python(PEER, 'sub', '--timeout', '45', env=env)
    out, err = sub.communicate(timeout=60)
    processes.stop(pub)
    assert sub.returncode == 0, out + err
    assert out.strip().endswith('OK')


@pytest.mark.ros
def test_other_domains_do_not_hear_it(ros_domain, processes):
    """A subscriber on another private domain receives nothing: runs do not cross-talk."""
    from edge_denoise_ros.harness.isolation import lease_domain

    pub = processes.python(PEER, 'pub', '--timeout', '30', env=ros_domain.env())
    with lease_domain() as other:
        assert other.domain_id != ros_domain.domain_id
        sub = processes.python(PEER, 'sub', '--timeout', '6', env=other.env())
        out, err = sub.communicate(timeout=30)
    processes.stop(pub)
    assert sub.returncode == 2 and out.strip() == 'TIMEOUT', out + err
