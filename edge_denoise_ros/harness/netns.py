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
Two test hosts on this machine: network namespaces joined by a shaped veth pair.

``LinkPair`` creates an edge and a host namespace (loopback up, one veth
each, a private /30 between them that routes nowhere else), shapes each
direction with ``tc qdisc tbf`` (netem is not available everywhere; tbf is
a real token bucket with a queue) and removes everything on exit, also on
failure. :meth:`LinkPair.dds_env` confines DDS to the pair: UDPv4 only (no
shared-memory shortcut around the link), discovery within the pair's subnet
with the other side as a unicast static peer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

SUBNET = '10.213.{n}.{h}'  # a /30 per pair: .1 edge, .2 host


def unavailable() -> str | None:
    """Return why namespaces cannot be made here (not root, tools missing), or None."""
    if os.geteuid() != 0:
        return 'needs root (network namespaces, veth and tc)'
    for tool in ('ip', 'tc'):
        if shutil.which(tool) is None:
            return f'{tool} not found (Debian: apt-get install iproute2)'
    return None


def _run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)}: {proc.stderr.strip() or proc.returncode}')
    return proc.stdout


def tbf_args(mbps: float) -> list[str]:
    """Return ``tbf`` settings for a rate: a 10 ms (at least 2-packet) bucket, a 0.5 s queue."""
    if not mbps > 0:
        raise ValueError(f'rate must be > 0 Mbit/s, got {mbps}')
    burst = max(int(mbps * 1e6 / 8 * 0.010), 3200)
    return ['rate', f'{mbps:g}mbit', 'burst', str(burst), 'latency', '500ms']


@dataclass
class LinkPair:
    """An edge and a host namespace joined by a veth pair; a context manager."""

    tag: str
    index: int = 0

    def __post_init__(self):
        self.edge_ns, self.host_ns = f'ednr_{self.tag}_edge', f'ednr_{self.tag}_host'
        self.edge_if, self.host_if = f've{self.tag}e'[:15], f've{self.tag}h'[:15]
        n = self.index % 250
        self.edge_ip, self.host_ip = SUBNET.format(n=n, h=1), SUBNET.format(n=n, h=2)
        self.created = False

    def __enter__(self) -> 'LinkPair':
        self.create()
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def create(self) -> None:
        """Make both namespaces and the veth pair (removing leftovers of the same tag)."""
        reason = unavailable()
        if reason:
            raise PermissionError(reason)
        self.remove()
        self.created = True
        for ns in (self.edge_ns, self.host_ns):
            _run('ip', 'netns', 'add', ns)
            _run('ip', '-n', ns, 'link', 'set', 'lo', 'up')
        _run('ip', 'link', 'add', self.edge_if, 'netns', self.edge_ns, 'type', 'veth',
             'peer', 'name', self.host_if, 'netns', self.host_ns)
        for ns, dev, ip in ((self.edge_ns, self.edge_if, self.edge_ip),
                            (self.host_ns, self.host_if, self.host_ip)):
            _run('ip', '-n', ns, 'addr', 'add', f'{ip}/30', 'dev', dev)
            _run('ip', '-n', ns, 'link', 'set', dev, 'up')

    def shape(self, uplink_mbps: float, downlink_mbps: float) -> None:
        """Shape edge->host at ``uplink_mbps`` and host->edge at ``downlink_mbps``."""
        for ns, dev, mbps in ((self.edge_ns, self.edge_if, uplink_mbps),
                              (self.host_ns, self.host_if, downlink_mbps)):
            _run('ip', 'netns', 'exec', ns, 'tc', 'qdisc', 'replace', 'dev', dev, 'root',
                 'tbf', *tbf_args(mbps))

    def stats(self) -> dict:
        """Return bytes sent and packets dropped by each direction's shaper."""
        out = {}
        for side, ns, dev in (('up', self.edge_ns, self.edge_if),
                              ('down', self.host_ns, self.host_if)):
            text = _run('ip', 'netns', 'exec', ns, 'tc', '-s', 'qdisc', 'show', 'dev', dev)
            words = text.split()
            sent = int(words[words.index('Sent') + 1]) if 'Sent' in words else 0
            dropped = int(words[words.index('(dropped') + 1].rstrip(',')) \
                if '(dropped' in words else 0
            out[side] = {'bytes': sent, 'dropped_packets': dropped}
        return out

    def prefix(self, side: str) -> list[str]:
        """Return the command prefix that runs a program on one side."""
        return ['ip', 'netns', 'exec', self.edge_ns if side == 'edge' else self.host_ns]

    def dds_env(self, side: str, domain_id: int, base: dict | None = None) -> dict:
        """Return the environment of a ROS process on one side of the pair."""
        env = dict(os.environ if base is None else base)
        peer = self.host_ip if side == 'edge' else self.edge_ip
        env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE='SUBNET',
                   ROS_STATIC_PEERS=peer, FASTDDS_BUILTIN_TRANSPORTS='UDPv4',
                   PYTHONUNBUFFERED='1')
        env.pop('ROS_LOCALHOST_ONLY', None)
        return env

    def remove(self) -> None:
        """Delete both namespaces (and with them the veth pair); never raises."""
        for ns in (self.edge_ns, self.host_ns):
            subprocess.run(['ip', 'netns', 'del', ns], capture_output=True, timeout=30)
        self.created = False
