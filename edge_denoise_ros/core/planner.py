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
The split planner: cost every way to run the model over a link, pick one, re-plan online.

The planner follows the seed's transfer model with measured parts::

    T = edge(cut) + encode + bytes / uplink + decode + host(cut)
        + result / downlink + rtt

over every (cut, codec) pair, plus *host-only* (send the camera frame, raw
or as an image codec) and *edge-only* (no link at all). Edge and host times
come from measured profiles (:mod:`core.profiling`; median of repeats,
warm-up excluded): one measured here and declared ``k`` times slower, or one
measured on the robot itself (``edge-denoise profile``). The DADS min-cut over
all node sets, which may cut across branches, is :mod:`.mincut`.

Typical use on an edge node::

    p = planner.make_planner(model, (1, 28, 28), planner.Link(uplink_mbps=45),
                             edge_profile='edge.json')  # or edge_slowdown=10
    choice = p.choice                       # Candidate: .kind .cut .codec .total_ms(link)
    head, _ = surgery.split(model, choice.cut, x)       # when choice.kind == 'split'
    choice = p.update(uplink_mbps=estimate)             # re-plan, with hysteresis
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np
from torch import nn

from .profiling import check_codecs, load_profile, measure_profile, Profile
from .surgery import EDGE_ONLY, HOST_ONLY, SPLIT

# The seed's classification result: 25 bytes for ResNet50.
RESULT_BYTES = 25


@dataclass(frozen=True)
class Link:
    """The link between edge and host: speeds in Mbit/s, round trip in ms."""

    uplink_mbps: float = 45.0
    downlink_mbps: float = 100.0
    rtt_ms: float = 0.0
    result_bytes: int = RESULT_BYTES

    def __post_init__(self):
        if not (self.uplink_mbps > 0 and self.downlink_mbps > 0):
            raise ValueError(f'link speeds must be > 0 Mbit/s, got up {self.uplink_mbps}, '
                             f'down {self.downlink_mbps}')
        if not (self.rtt_ms >= 0 and self.result_bytes >= 0):
            raise ValueError(f'rtt_ms and result_bytes must be >= 0, got {self.rtt_ms}, '
                             f'{self.result_bytes}')


def transfer_ms(nbytes: float, mbps: float) -> float:
    """Return the time in ms to send ``nbytes`` at ``mbps`` Mbit/s (SI: 1 Mbit = 1e6 bit)."""
    return nbytes * 8.0 / (mbps * 1e3)


@dataclass(frozen=True)
class Candidate:
    """
    One way to run the model: ``kind`` is 'split', 'host_only' or 'edge_only'.

    ``cut`` is the cut's node name (what :func:`.surgery.split` takes; None unless
    split), ``codec`` the feature codec (split) or frame codec (host-only);
    ``bytes`` go up the link. ``edge_ms`` is everything on the edge
    (preprocess, head, encode), ``host_ms`` everything on the host (decode,
    [preprocess,] tail), both already scaled to their machines.
    """

    name: str
    kind: str
    cut: str | None
    codec: str | None
    shape: tuple[int, ...]
    bytes: int
    edge_ms: float
    host_ms: float
    encode_ms: float = 0.0
    decode_ms: float = 0.0
    label: str = ''

    def uses_link(self) -> bool:
        """Return True unless the candidate is edge-only."""
        return self.kind != EDGE_ONLY

    def total_ms(self, link: Link) -> float:
        """Return the predicted end-to-end latency over ``link``."""
        return self.edge_ms + self.link_ms(link) + self.host_ms

    def link_ms(self, link: Link) -> float:
        """Return uplink + result downlink + round trip (0 for edge-only)."""
        if not self.uses_link():
            return 0.0
        return (transfer_ms(self.bytes, link.uplink_mbps)
                + transfer_ms(link.result_bytes, link.downlink_mbps) + link.rtt_ms)

    def min_uplink_mbps(self, link: Link, edge_only_ms: float) -> float | None:
        """
        Return the uplink speed above which this candidate beats edge-only.

        The seed's "minimum speed" of a wound. None when no speed is enough
        (the rest of its time alone reaches edge-only), 0 when no uplink
        bytes are needed.
        """
        if not self.uses_link():
            return None
        rest = (self.edge_ms + self.host_ms + link.rtt_ms
                + transfer_ms(link.result_bytes, link.downlink_mbps))
        slack = edge_only_ms - rest
        if slack <= 0:
            return None
        return self.bytes * 8.0 / (slack * 1e3)


def _match_profiles(edge: Profile, host: Profile) -> None:
    if edge is host:
        return
    if (list(edge.input_shape) != list(host.input_shape)
            or [c['name'] for c in edge.cuts] != [c['name'] for c in host.cuts]):
        raise ValueError(f'edge profile ({edge.model} {edge.input_shape}, {len(edge.cuts)} '
                         f'cuts) and host profile ({host.model} {host.input_shape}, '
                         f'{len(host.cuts)} cuts) are not of the same model and input')


def build_candidates(edge: Profile, host: Profile | None = None, edge_slowdown: float = 1.0,
                     host_slowdown: float = 1.0, codecs: Sequence[str] | None = None,
                     frame_codecs: Sequence[str] | None = None) -> list[Candidate]:
    """
    Return every candidate: edge-only, host-only per frame codec, each cut x codec.

    Edge times come from ``edge`` times ``edge_slowdown``, host times from
    ``host`` (default: the same profile) times ``host_slowdown``; payload
    bytes from the edge profile (the edge encodes).
    """
    if not (edge_slowdown > 0 and host_slowdown > 0):
        raise ValueError(f'slowdowns must be > 0, got edge {edge_slowdown}, host {host_slowdown}')
    host = host or edge
    _match_profiles(edge, host)
    ke, kh = float(edge_slowdown), float(host_slowdown)
    have = tuple(dict.fromkeys(f['codec'] for f in edge.features))
    codecs = check_codecs(codecs, have, 'feature (profiled)')
    have_images = tuple(i['codec'] for i in edge.images)
    frame_codecs = check_codecs(frame_codecs, have_images, 'image (profiled)')
    host_features = {(f['cut'], f['codec']): f for f in host.features}
    host_images = {i['codec']: i for i in host.images}
    # Each side: timed whole where the profile has it, else the sum of its stages.
    edge_only = _either(edge.edge_only_ms, edge.preprocess_ms + edge.full_ms)
    out = [Candidate(name=EDGE_ONLY, kind=EDGE_ONLY, cut=None, codec=None, shape=(),
                     bytes=0, edge_ms=ke * edge_only, host_ms=0.0)]
    for img in edge.images:
        if img['codec'] not in frame_codecs:
            continue
        himg = host_images.get(img['codec'], img)
        dec, enc = himg['decode_ms'] * kh, img['encode_ms'] * ke
        out.append(Candidate(
            name=f"{HOST_ONLY}/{img['codec']}", kind=HOST_ONLY, cut=None, codec=img['codec'],
            shape=tuple(edge.frame_shape), bytes=int(img['bytes']),
            edge_ms=ke * _either(img.get('edge_ms'), img['encode_ms']),
            host_ms=kh * _either(himg.get('host_ms'), himg['decode_ms'] + host.preprocess_ms
                                 + host.full_ms), encode_ms=enc, decode_ms=dec))
    cut_of = {c['name']: c for c in edge.cuts}
    for f in edge.features:
        if f['codec'] not in codecs:
            continue
        c = cut_of[f['cut']]
        hf = host_features.get((f['cut'], f['codec']))
        if hf is None:
            raise ValueError(f"host profile lacks codec {f['codec']} at cut {f['cut']}")
        enc, dec = ke * f['encode_ms'], kh * hf['decode_ms']
        edge_side = _either(f.get('edge_ms'), edge.preprocess_ms + c['head_ms'] + f['encode_ms'])
        host_side = _either(hf.get('host_ms'), hf['decode_ms'] + host.cut(c['name'])['tail_ms'])
        out.append(Candidate(
            name=f"{c.get('label') or c['name']}/{f['codec']}", kind=SPLIT, cut=c['name'],
            codec=f['codec'], shape=tuple(c['shape']), bytes=int(f['bytes']),
            edge_ms=ke * edge_side, host_ms=kh * host_side, encode_ms=enc, decode_ms=dec,
            label=c.get('label', '')))
    return out


def _either(measured, composed) -> float:
    return composed if measured is None else measured


@dataclass
class Plan:
    """The candidates costed over one link, and the one of least total time."""

    link: Link
    rows: list[dict]
    choice: Candidate

    def row(self, name: str) -> dict:
        """Return the row of one candidate by name."""
        for r in self.rows:
            if r['name'] == name:
                return r
        raise ValueError(f'no candidate named {name!r}')

    def as_dict(self) -> dict:
        """Return ``{'candidates': rows, 'choice': name, 'link': ...}`` (JSON-able)."""
        return {'candidates': self.rows, 'choice': self.choice.name, 'link': asdict(self.link)}


def plan(candidates: Sequence[Candidate], link: Link = Link()) -> Plan:
    """
    Cost every candidate over ``link`` and pick the one of least total time.

    Each row has ``name, kind, cut, codec, shape, bytes, edge_ms,
    transfer_ms, host_ms, total_ms, min_uplink_mbps`` (``transfer_ms`` is
    uplink + result downlink + round trip; ``total_ms`` their sum with the
    edge and host times).
    """
    if not candidates:
        raise ValueError('no candidates to plan with')
    edge_only = next((c for c in candidates if c.kind == EDGE_ONLY), None)
    rows = []
    for c in candidates:
        rows.append({
            'name': c.name, 'kind': c.kind, 'cut': c.cut, 'codec': c.codec,
            'shape': list(c.shape), 'bytes': c.bytes, 'edge_ms': c.edge_ms,
            'transfer_ms': c.link_ms(link), 'host_ms': c.host_ms,
            'total_ms': c.total_ms(link),
            'min_uplink_mbps': (c.min_uplink_mbps(link, edge_only.edge_ms)
                                if edge_only is not None else None),
            'encode_ms': c.encode_ms, 'decode_ms': c.decode_ms})
    best = min(range(len(rows)), key=lambda i: rows[i]['total_ms'])
    return Plan(link=link, rows=rows, choice=candidates[best])


def choose(candidates: Sequence[Candidate], link: Link, current: str | None = None,
           hysteresis: float = 0.1, min_gain_ms: float = 0.0) -> Candidate:
    """
    Return the candidate to use now: the best, unless ``current`` is nearly as good.

    The current candidate is kept while the best beats it by no more than
    ``hysteresis`` (a fraction of the current total) and ``min_gain_ms``, so
    a noisy link estimate does not flip between two near-equal cuts.
    """
    if not 0 <= hysteresis < 1 or min_gain_ms < 0:
        raise ValueError(f'need 0 <= hysteresis < 1 and min_gain_ms >= 0, got {hysteresis}, '
                         f'{min_gain_ms}')
    best = plan(candidates, link).choice
    keep = next((c for c in candidates if c.name == current), None)
    if keep is None or keep is best:
        return best
    now, gain = keep.total_ms(link), keep.total_ms(link) - best.total_ms(link)
    return best if gain > max(hysteresis * now, min_gain_ms) else keep


class Planner:
    """
    Online planner for an edge node: the chosen candidate, re-planned on link changes.

    A thin wrapper of :func:`plan` and :func:`choose` that remembers the link
    and the current choice.
    """

    def __init__(self, candidates: Sequence[Candidate], link: Link = Link(),
                 hysteresis: float = 0.1, min_gain_ms: float = 0.0):
        self.candidates = list(candidates)
        self.link = link
        self.hysteresis = hysteresis
        self.min_gain_ms = min_gain_ms
        self.switches = 0
        self.choice = choose(self.candidates, link, None, hysteresis, min_gain_ms)

    @classmethod
    def from_profiles(cls, edge: Profile, host: Profile | None = None,
                      edge_slowdown: float = 1.0, host_slowdown: float = 1.0,
                      link: Link = Link(), codecs: Sequence[str] | None = None,
                      frame_codecs: Sequence[str] | None = None,
                      hysteresis: float = 0.1, min_gain_ms: float = 0.0) -> Planner:
        """Build a planner from an edge profile (and a host profile)."""
        return cls(build_candidates(edge, host, edge_slowdown, host_slowdown, codecs,
                                    frame_codecs), link, hysteresis, min_gain_ms)

    def plan(self, link: Link | None = None) -> Plan:
        """Cost every candidate over ``link`` (default: the current link)."""
        return plan(self.candidates, link or self.link)

    def update(self, uplink_mbps: float | None = None, downlink_mbps: float | None = None,
               rtt_ms: float | None = None, result_bytes: int | None = None) -> Candidate:
        """Take a new link estimate; return the candidate to use now (with hysteresis)."""
        changes = {k: v for k, v in (('uplink_mbps', uplink_mbps),
                                     ('downlink_mbps', downlink_mbps), ('rtt_ms', rtt_ms),
                                     ('result_bytes', result_bytes)) if v is not None}
        self.link = replace(self.link, **changes)
        new = choose(self.candidates, self.link, self.choice.name, self.hysteresis,
                     self.min_gain_ms)
        if new.name != self.choice.name:
            self.switches += 1
        self.choice = new
        return new


def _as_profile(p) -> Profile | None:
    if p is None or isinstance(p, Profile):
        return p
    return load_profile(p)


def make_planner(model: nn.Module, input_shape: Sequence[int], link: Link = Link(),
                 edge_profile: Profile | str | os.PathLike | None = None,
                 host_profile: Profile | str | os.PathLike | None = None,
                 edge_slowdown: float = 1.0, host_slowdown: float = 1.0,
                 frame: np.ndarray | None = None, codecs: Sequence[str] | None = None,
                 frame_codecs: Sequence[str] | None = None, repeats: int = 5,
                 warmup: int = 1, hysteresis: float = 0.1, min_gain_ms: float = 0.0,
                 clock: str = 'wall', stat: str = 'median', model_name: str = '',
                 progress=None, quality: int | None = None,
                 frame_quality: int | None = None) -> Planner:
    """
    Build the planner an edge node (or ``edge-denoise plan``) starts with.

    ``edge_profile`` / ``host_profile`` are :class:`Profile` s or profile
    files (``edge-denoise profile --out``); a side without one is measured
    here (once, shared by both sides) and scaled by its slowdown. The
    planner's ``edge_profile`` and ``host_profile`` attributes hold what was
    used. ``quality`` / ``frame_quality``: the JPEG qualities the edge sends
    (see :func:`measure_profile`).
    """
    edge, host = _as_profile(edge_profile), _as_profile(host_profile)
    shape = [int(d) for d in input_shape[-3:]]
    for p in (edge, host):
        if p is not None and list(p.input_shape) != shape:
            raise ValueError(f'profile of {p.model} is for input {p.input_shape}, '
                             f'not {shape}')
    if edge is None or host is None:
        here = measure_profile(model, frame, shape, model_name, codecs, frame_codecs,
                               repeats, warmup, clock=clock, stat=stat, progress=progress,
                               quality=quality, frame_quality=frame_quality)
        edge, host = edge or here, host or here
    planner = Planner.from_profiles(edge, host, edge_slowdown, host_slowdown, link, codecs,
                                    frame_codecs, hysteresis, min_gain_ms)
    planner.edge_profile, planner.host_profile = edge, host
    return planner
