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
The DADS partition (Hu et al., INFOCOM 2019): edge and host by a minimum s-t cut.

Where :mod:`.planner` weighs single-tensor cuts, :func:`min_cut` looks at
*all* edge sets closed under predecessors, from per-node times (a profile's
``nodes``, or :func:`.profiling.node_times`), so the best partition may send
several tensors across branches; :func:`.surgery.split_nodes` splits there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from .planner import Link, transfer_ms
from .profiling import Profile
from .surgery import Traced


@dataclass
class MinCut:
    """
    The DADS partition: the edge set of least latency over *all* node sets.

    ``sent`` are the tensors crossing the link (one for a single-tensor cut,
    several when the best partition crosses branches); ``single_cut`` names
    the equivalent :class:`.surgery.Cut` when one tensor is sent. ``best_single`` and
    ``best_single_ms`` are the best single-tensor cut under the same per-node
    model, ``edge_only_ms`` edge-only.
    """

    edge_nodes: list[str]
    sent: list[str]
    shapes: list[tuple]
    bytes: int
    edge_ms: float
    transfer_ms: float
    host_ms: float
    total_ms: float
    single_cut: str | None
    best_single: str
    best_single_ms: float
    edge_only_ms: float


def min_cut(traced: Traced, edge_ms: dict, host_ms: dict, link: Link = Link()) -> MinCut:
    """
    Partition the graph between edge and host by a minimum s-t cut (DADS, INFOCOM 2019).

    ``edge_ms`` / ``host_ms`` give each activation node's time on the edge
    and on the host (e.g. :func:`.profiling.node_times` scaled by the slowdowns). Each
    node costs its edge time if on the edge, its host time otherwise; each
    tensor produced on the edge and used on the host costs its float32
    bytes over the uplink, once however many host nodes use it; the edge
    side is closed under predecessors (nothing comes back). Non-tensor
    values (sizes) are never sent. The last layer runs on the host, which
    sends the result back (edge-only, no link at all, is ``edge_only_ms``).
    """
    nodes, dynamic, needed = traced.nodes, traced.dynamic, traced.needed
    out_node = nodes[-1]
    scale = 1e6                                          # ms -> integer nanoseconds

    def cap(ms):
        return int(round(ms * scale))

    g = nx.DiGraph()
    src, sink = ('edge',), ('host',)
    g.add_node(src)
    g.add_node(sink)
    active = [n for n in nodes if n in dynamic and (n in needed or n.op != 'output')]
    for n in active:
        if n.op == 'placeholder':
            g.add_edge(src, n)                           # infinite: the input is on the edge
        elif n is out_node or out_node in n.users:
            g.add_edge(n, sink)                          # infinite: the result comes from the host
        else:
            g.add_edge(src, n, capacity=cap(host_ms.get(n.name, 0.0)))
            g.add_edge(n, sink, capacity=cap(edge_ms.get(n.name, 0.0)))
        users = [u for u in n.users if u in dynamic]
        for u in users:
            g.add_edge(u, n)                             # infinite: no edge node after a host one
        if users:
            aux = ('send', n.name)
            if n in traced.shapes:
                nbytes = 4 * math.prod(traced.shapes[n])
                g.add_edge(n, aux, capacity=cap(transfer_ms(nbytes, link.uplink_mbps)))
            else:
                g.add_edge(n, aux)                       # infinite: sizes are never sent
            for u in users:
                g.add_edge(aux, u)
    _, (edge_side, _) = nx.minimum_cut(g, src, sink)
    on_edge = [n for n in active if n in edge_side]
    result_ms = transfer_ms(link.result_bytes, link.downlink_mbps) + link.rtt_ms
    sent = [n for n in on_edge if any(u in dynamic and u not in edge_side for u in n.users)]
    nbytes = sum(4 * math.prod(traced.shapes[n]) for n in sent)
    e = sum(edge_ms.get(n.name, 0.0) for n in on_edge)
    h = sum(host_ms.get(n.name, 0.0) for n in active if n not in edge_side)
    t = transfer_ms(nbytes, link.uplink_mbps) + result_ms
    single = None
    if len(sent) == 1:
        single = next((c.name for c in traced.cuts if traced._node_of[c.name] is sent[0]), None)
    # The best single-tensor cut under the same per-node model.
    best, best_ms = None, math.inf
    pos = {n: i for i, n in enumerate(nodes)}
    for c in traced.cuts:
        p = pos[traced._node_of[c.name]]
        head = sum(edge_ms.get(n.name, 0.0) for n in active if pos[n] <= p)
        tail = sum(host_ms.get(n.name, 0.0) for n in active if pos[n] > p)
        ms = head + tail + transfer_ms(c.bytes, link.uplink_mbps) + result_ms
        if ms < best_ms:
            best, best_ms = c.name, ms
    return MinCut(edge_nodes=[n.name for n in on_edge], sent=[n.name for n in sent],
                  shapes=[traced.shapes[n] for n in sent], bytes=nbytes, edge_ms=e,
                  transfer_ms=t, host_ms=h, total_ms=e + t + h, single_cut=single,
                  best_single=best, best_single_ms=best_ms,
                  edge_only_ms=sum(edge_ms.get(n.name, 0.0) for n in active))


def profile_min_cut(traced: Traced, edge: Profile, host: Profile | None = None,
                    edge_slowdown: float = 1.0, host_slowdown: float = 1.0,
                    link: Link = Link()) -> MinCut:
    """Run :func:`min_cut` on the per-node times of an edge and a host profile."""
    host = host or edge
    if not edge.nodes or not host.nodes:
        raise ValueError('the profiles have no per-node times (measure them again)')
    return min_cut(traced, {k: edge_slowdown * v for k, v in edge.nodes.items()},
                   {k: host_slowdown * v for k, v in host.nodes.items()}, link)
