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

"""A node gives a large message's memory back once it has taken it (shipped profile, malloc)."""

import json
import os
from pathlib import Path
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from edge_denoise_ros.harness.isolation import isolated_env, lease_domain
from edge_denoise_ros.ros import dds, entry

NS = '{http://www.eprosima.com}'
BIG_MB = 17                 # the size of an oversized features message in bench fuzz

# A sink as the nodes start (give_large_samples_back before rclpy), reporting its memory.
SINK = r'''
import json, sys, time
from edge_denoise_ros.ros import dds, entry
done = dds.give_large_samples_back() if sys.argv[1] == 'node' else []
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage

def rss_mb():      # private memory: the sender's shared-memory segment, mapped here, is not
    for line in open('/proc/self/status'):
        if line.startswith('RssAnon:'):
            return int(line.split()[1]) / 1024

rclpy.init()
node = rclpy.create_node('sink')
sizes = []
node.create_subscription(CompressedImage, 'big', lambda raw: sizes.append(len(raw)),
                         QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE), raw=True)
pub = node.create_publisher(CompressedImage, 'ready', 1)
small = lambda: sum(1 for s in sizes if s < 1e6)
deadline, base = time.monotonic() + 60, None
while time.monotonic() < deadline and small() < 6:
    rclpy.spin_once(node, timeout_sec=0.05)
    if base is None and small() >= 3:
        for _ in range(20):
            rclpy.spin_once(node, timeout_sec=0.02)
        base = rss_mb()
        pub.publish(CompressedImage(format='ready'))
for _ in range(20):
    rclpy.spin_once(node, timeout_sec=0.02)
print(json.dumps({'set': done, 'big': sum(1 for s in sizes if s > 1e6),
                  'growth_mb': rss_mb() - (base or 0.0), 'small': small()}))
'''

SOURCE = r'''
import sys, time
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage
rclpy.init()
node = rclpy.create_node('source')
ready = []
node.create_subscription(CompressedImage, 'ready', ready.append, 1)
pub = node.create_publisher(CompressedImage, 'big',
                            QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
small = CompressedImage(format='jpeg', data=bytes(1000))
big = CompressedImage(format='jpeg', data=bytes(int(float(sys.argv[1]) * 1e6)))
deadline = time.monotonic() + 60
while not ready and time.monotonic() < deadline:
    pub.publish(small)                 # until the sink is there and has its baseline
    rclpy.spin_once(node, timeout_sec=0.3)
for _ in range(int(sys.argv[2])):
    pub.publish(big)
    time.sleep(0.05)
for _ in range(3):
    pub.publish(small)
    time.sleep(0.2)
time.sleep(1.0)
'''


def burst(mode: str, n: int = 8) -> dict:
    """Send ``n`` large messages to a sink started as ``mode`` ('node' or 'plain')."""
    with lease_domain() as lease:
        env = dds.profile_env(isolated_env(lease.domain_id))
        env.pop(dds.QOS_FROM_XML_ENV, None)
        sink = subprocess.Popen([sys.executable, '-c', SINK, mode], env=env,
                                stdout=subprocess.PIPE, text=True)
        source = subprocess.Popen([sys.executable, '-c', SOURCE, str(BIG_MB), str(n)], env=env)
        try:
            out, _ = sink.communicate(timeout=90)
            source.wait(timeout=30)
        finally:
            for p in (sink, source):
                p.kill() if p.poll() is None else None
    return json.loads(out.strip().splitlines()[-1])


def test_shipped_profile_readers_free_a_sample_once_taken():
    root = ET.parse(dds.profile_path()).getroot()
    reader = root.find(f'{NS}profiles/{NS}data_reader')
    writer = root.find(f'{NS}profiles/{NS}data_writer')
    assert reader.get('is_default_profile') == writer.get('is_default_profile') == 'true'
    assert reader.findtext(f'{NS}historyMemoryPolicy') == 'DYNAMIC'
    # what ROS 2 sets when it does not read QoS from XML, written out for the writers
    assert writer.findtext(f'{NS}historyMemoryPolicy') == 'PREALLOCATED_WITH_REALLOC'
    assert writer.findtext(f'{NS}qos/{NS}data_sharing/{NS}kind') == 'OFF'


def test_qos_from_xml_is_set_for_the_shipped_profile_only(tmp_path):
    env = dds.profile_env({})
    assert f'{dds.QOS_FROM_XML_ENV}=1' in dds.give_large_samples_back(env)
    assert env[dds.QOS_FROM_XML_ENV] == '1'
    mine = dds.profile_env({dds.QOS_FROM_XML_ENV: '0'})        # the user's choice stays
    dds.give_large_samples_back(mine)
    assert mine[dds.QOS_FROM_XML_ENV] == '0'
    other = tmp_path / 'theirs.xml'
    other.write_text(Path(dds.profile_path()).read_text())
    theirs = dds.profile_env({}, other)                        # their profile: their rules
    dds.give_large_samples_back(theirs)
    assert dds.QOS_FROM_XML_ENV not in theirs
    assert dds.is_shipped_profile(dds.profile_path()) and not dds.is_shipped_profile(None)


@pytest.mark.ros
def test_a_burst_of_large_messages_leaves_no_memory_behind():
    result = burst('node')
    assert result['big'] >= 4 and result['small'] >= 6, result
    assert f'{dds.QOS_FROM_XML_ENV}=1' in result['set'], result
    # the node's own memory: not even one of them is kept (a plain process keeps its
    # history's five, ~97 MB; the pages of the sender's shared-memory segment are the sender's)
    assert result['growth_mb'] < BIG_MB, result


def test_nodes_start_with_huge_pages_for_malloc_unless_told_otherwise():
    env = entry.with_hugetlb({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2', 'X': '1'})
    assert env['GLIBC_TUNABLES'] == 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'
    assert env['X'] == '1'
    assert entry.with_hugetlb({})['GLIBC_TUNABLES'] == 'glibc.malloc.hugetlb=1'
    assert entry.with_hugetlb(env) is None                      # started again: as it is
    assert entry.with_hugetlb({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}) is None
    assert entry.with_hugetlb({entry.NO_HUGETLB_ENV: '1'}) is None


def test_a_node_process_runs_with_the_tunable():
    # the entry point starts itself again with the tunable: the node sees it in its environment
    code = ('import os, sys; from edge_denoise_ros.ros import entry; '
            'entry.NODES["probe"] = "dds"; '
            'import edge_denoise_ros.ros.dds as d; '
            'd.main = lambda args: print(os.environ.get("GLIBC_TUNABLES", "")) or 0; '
            'entry.run("probe")')
    env = {k: v for k, v in os.environ.items() if k != 'GLIBC_TUNABLES'}
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'glibc.malloc.hugetlb=1', out
