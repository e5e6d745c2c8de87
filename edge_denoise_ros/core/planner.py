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

The accuracy guard (:func:`screen`): given an accuracy profile (``cut/codec/q``
-> held-out accuracy and its drop from the unsplit target, as
:meth:`.bundle.Bundle.accuracy_profile` returns it; a host-only frame codec's
also under attack, through the host's defense), the planner never picks a
lossy candidate whose measured drop (the worse of the two) exceeds
``max_accuracy_drop`` percentage points, nor a lossy one without a
measurement; lossless codecs and edge-only
are always allowed. A ``codec`` asked for (the node's ``codec`` parameter) and a
``codecs`` allow-list narrow the choice further. Every excluded candidate stays
in the plan's rows with its reason.

The camera stream (:class:`.stream.Stream`): a robot's camera sends frames at its own
rate, and the edge pays for each one it receives (DDS, deserialization), served
or dropped while busy. Given the rate, the planner picks what serves the most
frames a second, each stage (edge, uplink, host) working on its own frame
(:meth:`Candidate.served_fps`); among those within ``FPS_TOLERANCE`` of the
most, the least latency. An edge node measures its stream as it runs
(:class:`.stream.StreamMeter`: the camera rate, and the edge time per received frame
beyond serving it) and re-plans. Without a rate (0), one frame's latency alone.

Typical use on an edge node::

    p = planner.make_planner(model, (1, 28, 28), planner.Link(uplink_mbps=45),
                             edge_profile='edge.json',   # or edge_slowdown=10
                             accuracy_profile=target.bundle.accuracy_profile(target.hash))
    choice = p.choice                       # Candidate: .kind .cut .codec .total_ms(link)
    head, _ = surgery.split(model, choice.cut, x)       # when choice.kind == 'split'
    choice = p.update(uplink_mbps=estimate)             # re-plan, with hysteresis
    choice = p.configure(codec='lossless')              # what it may pick (or ValueError)
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from typing import Callable, Mapping, Sequence

import numpy as np
from torch import nn

from .accuracy_entries import accuracy_drop, accuracy_entry, attacked_drop
from .codecs import codec_quality, DEFAULT_QUALITY
from . import profiling
from .profiling import check_codecs, load_profile, measure_profile, Profile
from .stream import Stream, transfer_ms
from .surgery import EDGE_ONLY, HOST_ONLY, SPLIT

# The seed's classification result: 25 bytes for ResNet50.
RESULT_BYTES = 25
# Held-out accuracy (percentage points) a lossy (cut, codec, quality) may cost at most.
DEFAULT_MAX_ACCURACY_DROP = 1.0
# Codecs that deliver exactly what the edge computed (core.codecs: float32 raw and lossless
# features, a raw camera frame): they cost no accuracy and are never screened for it.
LOSSLESS_CODECS = ('raw', 'lossless')
EDGE_ONLY_CODEC = 'raw'     # edge-only sends its logits raw (pipeline: the output cut)


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


# Frames/s within this fraction of the most a candidate serves count as equal: the least
# latency decides among them.
FPS_TOLERANCE = 0.05
STAGES = ('camera', 'edge', 'link', 'host')


@dataclass(frozen=True)
class Candidate:
    """
    One way to run the model: ``kind`` is 'split', 'host_only' or 'edge_only'.

    ``cut`` is the cut's node name (what :func:`.surgery.split` takes; None unless
    split), ``label`` its wire name, ``codec`` the feature codec (split) or frame
    codec (host-only), ``quality`` the JPEG quality it sends (``jpeg`` only),
    ``scale`` the size a host-only frame goes up at (``camera`` as captured,
    ``model`` resized on the edge to the model's input); ``bytes`` go up the
    link. ``edge_ms`` is everything on the edge (preprocess, [defense,] head,
    encode), ``host_ms`` everything on the host (decode, [preprocess,
    defense,] tail), both already scaled to their machines. ``excluded``
    says why the planner may not pick it ('' = it may; see :func:`screen`),
    ``drop_pt`` its measured accuracy drop where the accuracy profile has one.
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
    quality: int | None = None
    excluded: str = ''
    drop_pt: float | None = None
    scale: str = 'camera'

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

    def stage_fps(self, link: Link, stream: Stream) -> dict[str, float]:
        """
        Return the frames/s each stage can sustain: camera, edge, link (uplink), host.

        Each stage works on its own frame (the edge takes the next while the
        link sends this one). The edge's second is what the stream's intake
        leaves of it; a stage with nothing to do sustains any rate (``inf``).
        """
        free = 1000.0 - stream.camera_fps * stream.intake_ms
        edge = (max(0.0, free) / self.edge_ms) if self.edge_ms > 0 else math.inf
        up = transfer_ms(self.bytes, link.uplink_mbps) if self.uses_link() else 0.0
        return {'camera': stream.camera_fps, 'edge': edge,
                'link': 1000.0 / up if up > 0 else math.inf,
                'host': 1000.0 / self.host_ms if self.host_ms > 0 else math.inf}

    def served_fps(self, link: Link, stream: Stream) -> float:
        """Return the frames/s of the stream this candidate serves: its slowest stage's."""
        return min(self.stage_fps(link, stream).values())

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
                     frame_codecs: Sequence[str] | None = None,
                     accuracy_profile: Mapping[str, dict] | None = None,
                     max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
                     allowed: Sequence[str] | None = None, codec: str | None = None,
                     quality: int | None = None,
                     frame_quality: int | None = None) -> list[Candidate]:
    """
    Return every candidate: edge-only, host-only per frame codec, each cut x codec.

    Edge times come from ``edge`` times ``edge_slowdown``, host times from
    ``host`` (default: the same profile) times ``host_slowdown``; payload
    bytes from the edge profile (the edge encodes). ``quality`` and
    ``frame_quality``: the JPEG qualities the edge sends with the ``jpeg``
    feature and frame codecs (default: those the edge profile was measured
    at, else the codec's own). ``accuracy_profile``, ``max_accuracy_drop``,
    ``allowed`` and ``codec`` mark what the planner may not pick (:func:`screen`;
    no accuracy profile: latency alone).
    """
    if not (edge_slowdown > 0 and host_slowdown > 0):
        raise ValueError(f'slowdowns must be > 0, got edge {edge_slowdown}, host {host_slowdown}')
    host = host or edge
    _match_profiles(edge, host)
    ke, kh = float(edge_slowdown), float(host_slowdown)
    q_features = _quality(quality, edge.machine.get('jpeg_quality'))
    q_frames = _quality(frame_quality, edge.machine.get('frame_jpeg_quality'))
    have = tuple(dict.fromkeys(f['codec'] for f in edge.features))
    codecs = check_codecs(codecs, have, 'feature (profiled)')
    have_images = tuple(i['codec'] for i in edge.images)
    frame_codecs = check_codecs(frame_codecs, have_images, 'image (profiled)')
    host_features = {(f['cut'], f['codec']): f for f in host.features}
    host_images = {(i['codec'], i.get('scale', 'camera')): i for i in host.images}
    # Each side: timed whole where the profile has it, else the sum of its stages.
    edge_only = _either(edge.edge_only_ms, edge.preprocess_ms + edge.full_ms)
    out = [Candidate(name=EDGE_ONLY, kind=EDGE_ONLY, cut=None, codec=None, shape=(),
                     bytes=0, edge_ms=ke * edge_only, host_ms=0.0)]
    for img in edge.images:
        if img['codec'] not in frame_codecs:
            continue
        scale = img.get('scale', 'camera')
        himg = host_images.get((img['codec'], scale), img)
        dec, enc = himg['decode_ms'] * kh, img['encode_ms'] * ke
        out.append(Candidate(
            name=f"{HOST_ONLY}/{img['codec']}" + ('' if scale == 'camera' else f'@{scale}'),
            kind=HOST_ONLY, cut=None, codec=img['codec'], scale=scale,
            shape=tuple(img.get('shape') or edge.frame_shape), bytes=int(img['bytes']),
            edge_ms=ke * _either(img.get('edge_ms'), img['encode_ms']),
            host_ms=kh * _either(himg.get('host_ms'), himg['decode_ms'] + host.preprocess_ms
                                 + host.full_ms), encode_ms=enc, decode_ms=dec,
            quality=codec_quality(img['codec'], q_frames)))
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
            label=c.get('label', ''), quality=codec_quality(f['codec'], q_features)))
    return screen(out, accuracy_profile, max_accuracy_drop, allowed, codec)


def defended(candidates: Sequence[Candidate], defense_ms: Mapping[str, Mapping[str, float]],
             defense: str | None) -> list[Candidate]:
    """
    Return the candidates with the input defense's time on the side that runs it.

    The edge defends before its head (edge-only and split candidates), the host
    before the whole model of a host-only frame. ``defense_ms``: ``{'edge':
    {name: ms}, 'host': {name: ms}}`` already scaled to each machine (profiles'
    :attr:`.profiling.Profile.defense_ms`); ``defense`` None or ``none``: no
    time. A defense a side's profile did not time raises ValueError.
    """
    if defense in (None, 'none'):
        return list(candidates)
    times = {}
    for side in ('edge', 'host'):
        have = defense_ms.get(side) or {}
        if defense not in have:
            raise ValueError(f'the {side} profile has no time for defense {defense!r} '
                             f'(profiled: {", ".join(sorted(have)) or "none"}); measure the '
                             f'profile again (edge-denoise profile times every defense of the '
                             f'target; --bundle for a bundle\'s denoisers)')
        times[side] = float(have[defense])
    return [replace(c, host_ms=c.host_ms + times['host']) if c.kind == HOST_ONLY
            else replace(c, edge_ms=c.edge_ms + times['edge']) for c in candidates]


def defense_times(edge: Profile, host: Profile | None = None, edge_slowdown: float = 1.0,
                  host_slowdown: float = 1.0) -> dict[str, dict[str, float]]:
    """Return ``{'edge': {name: ms}, 'host': {name: ms}}`` of two profiles, scaled by slowdowns."""
    host = host or edge
    return {'edge': {k: v * edge_slowdown for k, v in (edge.defense_ms or {}).items()},
            'host': {k: v * host_slowdown for k, v in (host.defense_ms or {}).items()}}


def _either(measured, composed) -> float:
    return composed if measured is None else measured


def _quality(asked: int | None, measured: int | None) -> int:
    """Return the JPEG quality the edge sends: asked, else the profile's, else the codec's own."""
    return int(next(q for q in (asked, measured, DEFAULT_QUALITY) if q is not None))


# ----------------------------------------------------------------------- accuracy guard

def _sends(c: Candidate) -> str | None:
    return EDGE_ONLY_CODEC if c.kind == EDGE_ONLY else c.codec


def screen(candidates: Sequence[Candidate], accuracy_profile: Mapping[str, dict] | None = None,
           max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
           allowed: Sequence[str] | None = None, codec: str | None = None) -> list[Candidate]:
    """
    Return the candidates with ``excluded`` set to why the planner may not pick each.

    - ``codec`` (a codec asked for): only candidates that send it (edge-only
      sends raw logits);
    - ``allowed`` (an allow-list of codecs; None or empty: all): edge-only is
      always allowed;
    - ``accuracy_profile`` (None: accuracy is not weighed): a lossy candidate
      is excluded when its measured drop exceeds ``max_accuracy_drop``
      (percentage points) or when it has no measurement; lossless codecs
      (``LOSSLESS_CODECS``) and edge-only are always allowed.

    A candidate already excluded keeps its reason. A ``codec`` outside the
    allow-list raises ValueError.
    """
    if not max_accuracy_drop >= 0:
        raise ValueError(f'max_accuracy_drop must be >= 0 percentage points, got '
                         f'{max_accuracy_drop}')
    allowed = tuple(allowed) if allowed else None
    if codec is not None and allowed is not None and codec not in allowed:
        raise ValueError(f'codec {codec} is not in the codecs allow-list '
                         f'({", ".join(allowed)})')
    out = []
    for c in candidates:
        entry = None if accuracy_profile is None else accuracy_entry(accuracy_profile, c)
        drop = None if entry is None else accuracy_drop(entry)
        why = c.excluded or _exclusion(c, accuracy_profile, entry, drop,
                                       float(max_accuracy_drop), allowed, codec)
        out.append(replace(c, excluded=why, drop_pt=drop if drop is not None else c.drop_pt))
    return out


def _exclusion(c: Candidate, profile, entry, drop, max_drop, allowed, codec) -> str:
    if codec is not None and _sends(c) != codec:
        return f'not codec {codec} (asked for)'
    if allowed is not None and c.kind != EDGE_ONLY and c.codec not in allowed:
        return f'codec {c.codec} not in the codecs allow-list'
    if profile is None or c.kind == EDGE_ONLY or c.codec in LOSSLESS_CODECS:
        return ''
    if entry is None:
        return 'no accuracy measurement'
    if drop is None:
        return 'accuracy measurement without a drop'
    if drop > max_drop:
        under = ' under attack' if attacked_drop(entry) == drop else ''
        return f'accuracy drop{under} {drop:.2f} pt > {max_drop}'
    return ''


def none_allowed(candidates: Sequence[Candidate], codec: str | None = None) -> str:
    """Return why no candidate may be picked (those of ``codec`` where one was asked for)."""
    own = [c for c in candidates if codec is None or _sends(c) == codec]
    if not own:
        return f'codec {codec}: no candidate sends it'
    by_reason: dict[str, list[str]] = {}
    for c in own:
        by_reason.setdefault(c.excluded, []).append(c.name)
    parts = []
    for why, names in by_reason.items():
        more = f' and {len(names) - 3} more' if len(names) > 3 else ''
        parts.append(f'{", ".join(names[:3])}{more}: {why}')
    what = f'codec {codec} is allowed at no cut' if codec else 'no candidate may be picked'
    return f'{what} ({"; ".join(parts)})'


@dataclass
class Plan:
    """The candidates costed over one link, and the one the planner picks (see :func:`plan`)."""

    link: Link
    rows: list[dict]
    choice: Candidate
    stream: Stream = Stream()

    def row(self, name: str) -> dict:
        """Return the row of one candidate by name."""
        for r in self.rows:
            if r['name'] == name:
                return r
        raise ValueError(f'no candidate named {name!r}')

    @property
    def excluded(self) -> int:
        """Return how many candidates the planner may not pick."""
        return sum(1 for r in self.rows if r['excluded'])

    def as_dict(self) -> dict:
        """Return ``{'candidates': rows, 'choice': name, 'link': ..., 'stream': ..., ...}``."""
        return {'candidates': self.rows, 'choice': self.choice.name, 'link': asdict(self.link),
                'stream': asdict(self.stream), 'considered': len(self.rows),
                'excluded': self.excluded}


def best(candidates: Sequence[Candidate], link: Link, stream: Stream = Stream()) -> Candidate:
    """
    Return the allowed candidate the planner picks over ``link`` for ``stream``.

    With a camera rate: of those serving within ``FPS_TOLERANCE`` of the most
    frames/s, the least latency; without one, the least latency. Raises
    ValueError when none is allowed.
    """
    allowed = [c for c in candidates if not c.excluded]
    if not allowed:
        raise ValueError(none_allowed(candidates))
    if stream.camera_fps > 0:
        fps = [c.served_fps(link, stream) for c in allowed]
        top = max(fps)
        allowed = [c for c, f in zip(allowed, fps) if f >= (1.0 - FPS_TOLERANCE) * top]
    return min(allowed, key=lambda c: c.total_ms(link))


def plan(candidates: Sequence[Candidate], link: Link = Link(),
         accuracy_profile: Mapping[str, dict] | None = None,
         max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
         stream: Stream = Stream()) -> Plan:
    """
    Cost every candidate over ``link`` for ``stream`` and pick one (:func:`best`).

    Each row has ``name, kind, cut, codec, quality, shape, bytes, edge_ms,
    transfer_ms, host_ms, total_ms, min_uplink_mbps, drop_pt, excluded``
    (``transfer_ms`` is uplink + result downlink + round trip; ``total_ms``
    their sum with the edge and host times; ``excluded`` why the candidate
    may not be picked, '' if it may), and with a camera rate ``served_fps``
    and ``limited_by`` (the stage that sets it). An ``accuracy_profile``
    screens the candidates first (:func:`screen`). Raises ValueError when
    none is allowed.
    """
    if not candidates:
        raise ValueError('no candidates to plan with')
    if accuracy_profile is not None:
        candidates = screen(candidates, accuracy_profile, max_accuracy_drop)
    edge_only = next((c for c in candidates if c.kind == EDGE_ONLY), None)
    rows = []
    for c in candidates:
        rows.append({
            'name': c.name, 'kind': c.kind, 'cut': c.cut, 'codec': c.codec,
            'quality': c.quality, 'shape': list(c.shape), 'bytes': c.bytes,
            'edge_ms': c.edge_ms, 'transfer_ms': c.link_ms(link), 'host_ms': c.host_ms,
            'total_ms': c.total_ms(link),
            'min_uplink_mbps': (c.min_uplink_mbps(link, edge_only.edge_ms)
                                if edge_only is not None else None),
            'encode_ms': c.encode_ms, 'decode_ms': c.decode_ms, 'drop_pt': c.drop_pt,
            'excluded': c.excluded})
        if stream.camera_fps > 0:
            stages = c.stage_fps(link, stream)
            rows[-1]['served_fps'] = min(stages.values())
            rows[-1]['limited_by'] = min(STAGES, key=stages.__getitem__)
    return Plan(link=link, rows=rows, choice=best(candidates, link, stream), stream=stream)


def choose(candidates: Sequence[Candidate], link: Link, current: str | None = None,
           hysteresis: float = 0.1, min_gain_ms: float = 0.0,
           stream: Stream = Stream()) -> Candidate:
    """
    Return the candidate to use now: the best, unless ``current`` is nearly as good.

    The current candidate is kept while it serves at least ``1 - hysteresis``
    of the best's frames/s (with a camera rate) and the best beats its latency
    by no more than ``hysteresis`` (a fraction of the current total) and
    ``min_gain_ms``, so a noisy estimate does not flip between two near-equal
    cuts. Only allowed candidates (``excluded`` empty) are picked or kept.
    """
    if not 0 <= hysteresis < 1 or min_gain_ms < 0:
        raise ValueError(f'need 0 <= hysteresis < 1 and min_gain_ms >= 0, got {hysteresis}, '
                         f'{min_gain_ms}')
    top = best(candidates, link, stream)
    keep = next((c for c in candidates if c.name == current and not c.excluded), None)
    if keep is None or keep is top:
        return top
    if stream.camera_fps > 0 and \
            keep.served_fps(link, stream) < (1.0 - hysteresis) * top.served_fps(link, stream):
        return top
    now, gain = keep.total_ms(link), keep.total_ms(link) - top.total_ms(link)
    return top if gain > max(hysteresis * now, min_gain_ms) else keep


class Planner:
    """
    Online planner for an edge node: the chosen candidate, re-planned on changes.

    A thin wrapper of :func:`defended`, :func:`screen`, :func:`plan` and
    :func:`choose` that remembers the link, the camera stream, the rules of what it may pick
    (``rules``: accuracy profile, max accuracy drop, codec allow-list, codec
    asked for) and the input defense in use (its time on the side that runs
    it, from ``defense_ms``), and the current choice. ``candidates`` are the
    screened ones; a candidate excluded before it came here stays excluded.
    """

    def __init__(self, candidates: Sequence[Candidate], link: Link = Link(),
                 hysteresis: float = 0.1, min_gain_ms: float = 0.0,
                 accuracy_profile: Mapping[str, dict] | None = None,
                 max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
                 allowed: Sequence[str] | None = None, codec: str | None = None,
                 defense_ms: Mapping[str, Mapping[str, float]] | None = None,
                 defense: str | None = None, stream: Stream = Stream()):
        self.base = list(candidates)
        self.defense_ms = dict(defense_ms or {})
        self.link = link
        self.stream = stream
        self.hysteresis = hysteresis
        self.min_gain_ms = min_gain_ms
        self.switches = 0
        self.rules = {'accuracy_profile': accuracy_profile,
                      'max_accuracy_drop': max_accuracy_drop, 'allowed': allowed,
                      'codec': codec, 'defense': defense}
        self.candidates = self._screened(self.rules)
        if all(c.excluded for c in self.candidates):
            raise ValueError(none_allowed(self.candidates, codec))
        self.choice = choose(self.candidates, link, None, hysteresis, min_gain_ms, stream)

    @classmethod
    def from_profiles(cls, edge: Profile, host: Profile | None = None,
                      edge_slowdown: float = 1.0, host_slowdown: float = 1.0,
                      link: Link = Link(), codecs: Sequence[str] | None = None,
                      frame_codecs: Sequence[str] | None = None,
                      hysteresis: float = 0.1, min_gain_ms: float = 0.0,
                      accuracy_profile: Mapping[str, dict] | None = None,
                      max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
                      allowed: Sequence[str] | None = None, codec: str | None = None,
                      quality: int | None = None, frame_quality: int | None = None,
                      defense: str | None = None, stream: Stream = Stream()) -> Planner:
        """Build a planner from an edge profile (and a host profile); see :func:`screen`."""
        return cls(build_candidates(edge, host, edge_slowdown, host_slowdown, codecs,
                                    frame_codecs, quality=quality, frame_quality=frame_quality),
                   link, hysteresis, min_gain_ms, accuracy_profile, max_accuracy_drop,
                   allowed, codec, defense_times(edge, host, edge_slowdown, host_slowdown),
                   defense, stream)

    def _screened(self, rules: dict) -> list[Candidate]:
        """Return the base candidates with the defense's time, screened by the rules."""
        timed = defended(self.base, self.defense_ms, rules['defense'])
        return screen(timed, **{k: v for k, v in rules.items() if k != 'defense'})

    def configure(self, **rules) -> Candidate:
        """
        Change what the planner may pick and re-plan; return the candidate to use now.

        ``rules``: any of ``accuracy_profile``, ``max_accuracy_drop``, ``allowed``,
        ``codec`` (None: any), ``defense`` (the input defense in use: its time
        moves with it). Raises ValueError with the reason, changing nothing,
        when the new rules leave no candidate (a codec asked for that is not
        allowed, or excluded by accuracy at every cut) or a defense has no time.
        """
        unknown = sorted(set(rules) - set(self.rules))
        if unknown:
            raise ValueError(f'unknown planner rule {unknown[0]!r}; expected one of '
                             f'{tuple(self.rules)}')
        new = {**self.rules, **rules}
        candidates = self._screened(new)
        if all(c.excluded for c in candidates):
            raise ValueError(none_allowed(candidates, new['codec']))
        choice = choose(candidates, self.link, self.choice.name, self.hysteresis,
                        self.min_gain_ms, self.stream)
        self.rules, self.candidates = new, candidates
        if choice.name != self.choice.name:
            self.switches += 1
        self.choice = choice
        return choice

    def plan(self, link: Link | None = None) -> Plan:
        """Cost every candidate over ``link`` (default: the current link) for the stream."""
        return plan(self.candidates, link or self.link, stream=self.stream)

    def update(self, uplink_mbps: float | None = None, downlink_mbps: float | None = None,
               rtt_ms: float | None = None, result_bytes: int | None = None,
               stream: Stream | None = None) -> Candidate:
        """Take a new link or stream estimate; return the candidate to use now (hysteresis)."""
        changes = {k: v for k, v in (('uplink_mbps', uplink_mbps),
                                     ('downlink_mbps', downlink_mbps), ('rtt_ms', rtt_ms),
                                     ('result_bytes', result_bytes)) if v is not None}
        link = replace(self.link, **changes)
        stream = self.stream if stream is None else stream
        new = choose(self.candidates, link, self.choice.name, self.hysteresis,
                     self.min_gain_ms, stream)
        self.link, self.stream = link, stream
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
                 frame_quality: int | None = None,
                 accuracy_profile: Mapping[str, dict] | None = None,
                 max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
                 allowed: Sequence[str] | None = None, codec: str | None = None,
                 defenses: Mapping[str, nn.Module] | Callable[[], Mapping[str, nn.Module]]
                 | None = None,
                 defense: str | None = None, sustained: bool = False,
                 stream: Stream = Stream()) -> Planner:
    """
    Build the planner an edge node (or ``edge-denoise plan``) starts with.

    ``edge_profile`` / ``host_profile`` are :class:`Profile` s or profile
    files (``edge-denoise profile --out``); a side without one is measured
    here (once, shared by both sides) and scaled by its slowdown. The
    planner's ``edge_profile`` and ``host_profile`` attributes hold what was
    used. ``quality`` / ``frame_quality``: the JPEG qualities the edge sends
    (see :func:`measure_profile`). ``accuracy_profile``,
    ``max_accuracy_drop``, ``allowed`` and ``codec``: what it may pick
    (:func:`screen`). ``defenses`` (name -> module, or a function that builds
    them, called only when a profile is measured here) are timed in that
    profile; ``defense`` is the one in use (see :func:`defended`).
    ``sustained``: a profile measured here takes CPU times and turns them into
    the wall time of frames in a row at the CPU share this process gets
    (:func:`.profiling.sustained`; a CPU quota's throttling included).
    ``stream``: the camera stream planned for (:class:`.stream.Stream`).
    """
    edge, host = _as_profile(edge_profile), _as_profile(host_profile)
    shape = [int(d) for d in input_shape[-3:]]
    for p in (edge, host):
        if p is not None and list(p.input_shape) != shape:
            raise ValueError(f'profile of {p.model} is for input {p.input_shape}, '
                             f'not {shape}')
    if edge is None or host is None:
        here = measure_profile(model, frame, shape, model_name, codecs, frame_codecs,
                               repeats, warmup, clock='cpu' if sustained else clock, stat=stat,
                               progress=progress, quality=quality, frame_quality=frame_quality,
                               defenses=defenses() if callable(defenses) else defenses)
        if sustained:
            here = profiling.sustained(here, profiling.cpu_share())
        edge, host = edge or here, host or here
    planner = Planner.from_profiles(edge, host, edge_slowdown, host_slowdown, link, codecs,
                                    frame_codecs, hysteresis, min_gain_ms, accuracy_profile,
                                    max_accuracy_drop, allowed, codec, quality, frame_quality,
                                    defense, stream)
    planner.edge_profile, planner.host_profile = edge, host
    return planner
