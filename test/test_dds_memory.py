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

# A sink as the nodes start (give_large_samples_back before rclpy; the pool filled once it is
# built), reporting its memory and the page faults that the large messages cost.
SINK = r'''
import json, resource, sys, time
from edge_denoise_ros.ros import dds, entry
done = dds.give_large_samples_back() if sys.argv[1] != 'plain' else []
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
        dds.fill_message_pool()
        base, faults = rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        pub.publish(CompressedImage(format='ready'))
for _ in range(20):
    rclpy.spin_once(node, timeout_sec=0.02)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({'set': done, 'big': sum(1 for s in sizes if s > 1e6),
                  'growth_mb': rss_mb() - (base or 0.0), 'small': small(), 'faults': faults}))
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


def burst(mode: str, n: int = 8, pool_mb: int = 0) -> dict:
    """Send ``n`` large messages to a sink started as ``mode`` ('node' or 'plain')."""
    with lease_domain() as lease:
        env = dds.profile_env(isolated_env(lease.domain_id))
        env.pop(dds.QOS_FROM_XML_ENV, None)
        sink_env = {**env, entry.MESSAGE_POOL_ENV: str(pool_mb)}
        sink_env.pop('GLIBC_TUNABLES', None)
        sink_env = entry.malloc_tunables('node', sink_env) or sink_env   # as a node starts
        sink = subprocess.Popen([sys.executable, '-c', SINK, mode], env=sink_env,
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


@pytest.mark.ros
def test_a_node_with_a_message_pool_takes_large_messages_without_fresh_pages():
    result = burst('node', pool_mb=entry.MESSAGE_POOL_MB['host_node'])
    assert result['big'] >= 4 and result['small'] >= 6, result
    assert 'message pool 48 MB' in result['set'], result
    # all eight 17 MB messages together touch fewer fresh pages than one of them has
    # (without the pool: ~10,000 faults), and the node's own memory stays where it was
    assert result['faults'] < BIG_MB * 1e6 / 4096, result
    assert result['growth_mb'] < BIG_MB / 4, result


def test_nodes_start_with_huge_pages_and_a_message_pool_unless_told_otherwise():
    pool = entry.MESSAGE_POOL_MB['host_node'] << 20
    env = entry.malloc_tunables('host_node', {'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2',
                                              'X': '1'})
    assert env['GLIBC_TUNABLES'] == ('glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1:'
                                     f'glibc.malloc.mmap_max=0:glibc.malloc.top_pad={pool}:'
                                     f'glibc.malloc.trim_threshold={pool}')    # theirs stays
    assert env['X'] == '1' and entry.message_pool_bytes(env) == pool
    assert entry.malloc_tunables('host_node', env) is None     # started again: as it is
    edge = entry.malloc_tunables('edge_process', {})
    assert entry.message_pool_bytes(edge) == entry.MESSAGE_POOL_MB['edge_process'] << 20
    assert 'glibc.malloc.arena_max=1' in edge['GLIBC_TUNABLES']
    none = entry.malloc_tunables('host_node', {entry.MESSAGE_POOL_ENV: '0'})
    assert none['GLIBC_TUNABLES'] == 'glibc.malloc.hugetlb=1'
    assert entry.message_pool_bytes(none) == 0
    assert entry.message_pool_bytes(entry.malloc_tunables('edge_node', {
        entry.MESSAGE_POOL_ENV: '16'})) == 16 << 20
    assert entry.malloc_tunables('host_node', {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0',
                                               entry.MESSAGE_POOL_ENV: '0'}) is None
    assert entry.malloc_tunables('host_node', {entry.NO_HUGETLB_ENV: '1'}) is None
    for bad in ('lots', '-1', '1e9'):
        with pytest.raises(ValueError, match=entry.MESSAGE_POOL_ENV):
            entry.message_pool_mb('host_node', {entry.MESSAGE_POOL_ENV: bad})


def test_a_bad_message_pool_size_is_one_line_and_status_2():
    out = subprocess.run([sys.executable, '-m', 'edge_denoise_ros.ros.entry', 'host_node'],
                         env={**os.environ, entry.MESSAGE_POOL_ENV: 'lots'},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    assert out.stderr.strip() == (f"host_node: error: {entry.MESSAGE_POOL_ENV} must be a whole "
                                  "number of MB from 0 to 4096, got 'lots'"), out


def test_a_node_process_runs_with_the_tunables():
    # the entry point starts itself again with the tunables: the node sees them in its
    # environment, and its message pool (here 16 MB) is what dds reads from them
    code = ('import os, sys; from edge_denoise_ros.ros import entry; '
            'entry.NODES["probe"] = "dds"; entry.MESSAGE_POOL_MB["probe"] = 16; '
            'import edge_denoise_ros.ros.dds as d; '
            'd.main = lambda args: print(os.environ.get("GLIBC_TUNABLES", ""), '
            'd.fill_message_pool()) or 0; '
            'entry.run("probe")')
    env = {k: v for k, v in os.environ.items()
           if k not in ('GLIBC_TUNABLES', entry.MESSAGE_POOL_ENV)}
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    pool = 16 << 20
    assert out.stdout.split() == [f'glibc.malloc.hugetlb=1:glibc.malloc.arena_max=1:'
                                  f'glibc.malloc.mmap_max=0:glibc.malloc.top_pad={pool}:'
                                  f'glibc.malloc.trim_threshold={pool}', str(pool)], out
