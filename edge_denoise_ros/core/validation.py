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
The planner checked against measurement: every candidate run end to end, head to head.

:func:`measure_end_to_end` runs each candidate (edge-only, host-only per
frame codec, each cut x codec) with its real head, encode, decode and tail,
timing its two sides; :func:`validate` compares the planner's choice with the
measured best at several uplink speeds (``edge-denoise bench planner``).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, replace
from typing import Sequence

import numpy as np
import torch
from torch import nn

from . import codecs
from .frames import frame_for, preprocess
from .planner import build_candidates, Candidate, Link, plan
from .profiling import (auto_burst, frame_codec, gc_paused, get_clock, host_only_sides,
                        ProfileSession, run_rounds, run_sides, summarize_times)
from .surgery import EDGE_ONLY, HOST_ONLY, split_traced, trace


class _EndToEndSession:
    """The state of one end-to-end measurement; see :func:`measure_end_to_end`."""

    def __init__(self, model, frame, input_shape, candidates, burst, traced=None,
                 clock='wall', stat='median', halves=None):
        self.clock = get_clock(clock)
        self.stat = stat
        shape = [int(d) for d in input_shape[-3:]]
        x = preprocess(frame, shape)
        with torch.no_grad():
            self.reference = model(x)
            traced = traced or trace(model, x)
        self.runs, halves = {}, dict(halves or {})
        for c in candidates:
            if c.kind == EDGE_ONLY:
                def edge():
                    return model(preprocess(frame, shape))
                host = None
            elif c.kind == HOST_ONLY:
                edge, host = host_only_sides(model, frame, shape,
                                             frame_codec(c.codec, c.quality), c.scale)
            else:
                if c.cut not in halves:
                    halves[c.cut] = split_traced(traced, c.cut)
                head, tail = halves[c.cut]

                def edge(head=head, codec=c.codec):
                    return codecs.encode(head(preprocess(frame, shape)), codec)

                def host(sent, tail=tail):
                    return tail(codecs.decode(*sent))
            self.runs[c.name] = (edge, host)
        self.samples = {name: ([], []) for name in self.runs}
        self.sizes, self.errors = {}, {}
        self.burst = burst or auto_burst(model, x)
        self.every, self.calls = 1, 0  # run on every `every`-th round only

    @torch.no_grad()
    def round(self, record: bool) -> None:
        self.calls += 1
        if self.calls % self.every and record:
            return
        for name, (edge, host) in self.runs.items():
            edge_ms, host_ms, sent, out = run_sides(edge, host, self.burst, self.clock)
            if record:
                self.samples[name][0].extend(edge_ms)
                self.samples[name][1].extend(host_ms or [0.0])
            if name not in self.sizes:
                self.sizes[name] = len(sent[0]) if host is not None else 0
                self.errors[name] = float((out - self.reference).abs().max())

    @torch.no_grad()
    def burst_sample(self, name: str) -> tuple[float, float]:
        """Run one candidate (:func:`run_sides`); return the median (edge_ms, host_ms)."""
        edge, host = self.runs[name]
        e, h, _, _ = run_sides(edge, host, self.burst, self.clock)
        return statistics.median(e), statistics.median(h or [0.0])

    def result(self) -> dict:
        return {name: {'edge_ms': summarize_times(e, self.stat),
                       'host_ms': summarize_times(h, self.stat),
                       'bytes': self.sizes[name], 'max_error': self.errors[name]}
                for name, (e, h) in self.samples.items()}


def measure_end_to_end(model: nn.Module, frame: np.ndarray, input_shape: Sequence[int],
                       candidates: Sequence[Candidate], repeats: int = 10, warmup: int = 2,
                       burst: int | None = None, clock: str = 'wall', stat: str = 'median',
                       progress=None) -> dict:
    """
    Run every candidate end to end in this process and time its two sides.

    Edge side: preprocess, head, encode (host-only: encode the frame);
    host side: decode, tail (host-only: decode, preprocess, the whole model).
    Returns ``{name: {'edge_ms', 'host_ms', 'bytes', 'max_error'}}``: medians
    over ``repeats`` rounds (each candidate runs ``burst`` times in a row per
    round, the first untimed; see :func:`.profiling.measure_profile`), the real payload
    size, and the largest deviation of the output from ``model(x)`` (0 for
    exact paths).
    """
    session = _EndToEndSession(model, frame, input_shape, candidates, burst, clock=clock,
                               stat=stat)
    run_rounds([session], repeats, warmup, progress)
    return session.result()


def _measured_totals(candidates, measured, link, edge_slowdown, host_slowdown) -> dict:
    """Return ``{name: ms}``: measured sides scaled, real bytes over the link."""
    totals = {}
    for c in candidates:
        if c.name in measured:
            m = measured[c.name]
            totals[c.name] = (edge_slowdown * m['edge_ms'] + replace(c, bytes=m['bytes'])
                              .link_ms(link) + host_slowdown * m['host_ms'])
    return totals


def _paired(session: _EndToEndSession, pairs: set, rounds: int, progress=None) -> dict:
    """
    Time each pair ``(a, b)`` in alternating bursts; return ``{(a, b): [(ta, tb), ...]}``.

    Both bursts of a pair run within milliseconds of each other, in turn
    first, so a shared machine's load, which drifts over seconds, weighs on
    both alike: the ratio of a pair is far steadier than that of two
    separate medians.
    """
    samples = {pair: [] for pair in pairs}
    for r in range(rounds + 1):
        with gc_paused():
            for a, b in sorted(pairs):
                first, second = (a, b) if r % 2 else (b, a)
                t = {first: session.burst_sample(first)}
                t[second] = session.burst_sample(second)
                if r > 0:  # round 0 warms up
                    samples[(a, b)].append((t[a], t[b]))
        if progress is not None:
            progress(r + 1, rounds + 1, {'round': 'paired'})
    return samples


def validate(model: nn.Module, input_shape: Sequence[int], uplinks: Sequence[float],
             frame: np.ndarray | None = None, edge_slowdown: float = 10.0,
             host_slowdown: float = 1.0, link: Link = Link(),
             codecs: Sequence[str] | None = None, frame_codecs: Sequence[str] | None = None,
             repeats: int = 10, warmup: int = 2, burst: int | None = None,
             finalists: int = 4, pairs: int | None = None, clock: str = 'wall',
             stat: str = 'median', model_name: str = '', progress=None) -> dict:
    """
    Check the planner against measurement at several uplink speeds.

    1. Two measurements run interleaved, round by round (the second every
       other round), so both meet the same load: a profile (each stage timed apart, as
       :func:`.profiling.measure_profile`), from which the planner picks a candidate per
       speed, and every candidate run end to end (:func:`measure_end_to_end`),
       whose measured latency is ``edge_slowdown * edge side + real bytes /
       uplink + result / downlink + rtt + host_slowdown * host side`` (the
       edge emulated ``k`` times slower than this machine).
    2. Near-equal candidates abound and the least of many noisy medians is
       biased low, so the planner's choice then runs head to head, in
       alternating bursts (``pairs`` rounds, default ``3 * repeats``), with
       each of the ``finalists`` best measured candidates of its speed: both
       of a pair meet the same load. The measured time of the choice over
       that of the measured best is the largest of these ratios (1 when the
       choice beats them all).

    Returns, per speed, the planner's choice and the measured best with their
    times and ``ratio`` = measured(choice) / measured(best). ``clock`` and
    ``stat`` (of the profile and the first run) as in :func:`.profiling.measure_profile`.
    """
    input_shape = [int(d) for d in input_shape[-3:]]
    if frame is None:
        frame = frame_for(input_shape)
    if finalists < 1:
        raise ValueError(f'finalists must be >= 1, got {finalists}')
    prof = ProfileSession(model, frame, input_shape, codecs, frame_codecs, burst, model_name,
                          clock, stat)
    skeleton = build_candidates(prof.result(), None, edge_slowdown, host_slowdown, codecs,
                                frame_codecs)
    e2e = _EndToEndSession(model, frame, input_shape, skeleton, prof.burst, prof.traced, clock,
                           stat, prof.halves)
    e2e.every = 2  # this run only picks the finalists: half the rounds do
    run_rounds([prof, e2e], repeats, warmup, progress)
    profile = prof.result(warmup)
    candidates = build_candidates(profile, None, edge_slowdown, host_slowdown, codecs,
                                  frame_codecs)
    by_name = {c.name: c for c in candidates}
    measured = e2e.result()
    links = [replace(link, uplink_mbps=float(up)) for up in uplinks]
    plans = [plan(candidates, lk) for lk in links]
    first = [_measured_totals(candidates, measured, lk, edge_slowdown, host_slowdown)
             for lk in links]
    wanted = set()
    for p, totals in zip(plans, first):
        rivals = [n for n in sorted(totals, key=totals.get) if n != p.choice.name]
        wanted.update((p.choice.name, n) for n in rivals[:finalists])
    paired = _paired(e2e, wanted, pairs or 3 * repeats, progress)

    def total(name, sample, lk):
        sent = replace(by_name[name], bytes=measured[name]['bytes'])
        return edge_slowdown * sample[0] + sent.link_ms(lk) + host_slowdown * sample[1]

    speeds = []
    for lk, p, totals in zip(links, plans, first):
        pick = p.choice.name
        ratios, mine = {}, []
        for (a, b), runs in paired.items():
            if a == pick:
                ratios[b] = (summarize_times([total(a, ta, lk) for ta, _ in runs], stat)
                             / summarize_times([total(b, tb, lk) for _, tb in runs], stat))
                mine += [total(a, ta, lk) for ta, _ in runs]
        rival = max(ratios, key=ratios.get)
        ratio = max(1.0, ratios[rival])
        best = rival if ratios[rival] > 1.0 else pick
        pick_ms = summarize_times(mine, stat)
        speeds.append({'uplink_mbps': lk.uplink_mbps, 'choice': pick,
                       'predicted_ms': p.row(pick)['total_ms'],
                       'choice_measured_ms': pick_ms, 'best': best,
                       'best_measured_ms': pick_ms / ratio, 'ratio': ratio,
                       'paired_ratios': ratios,
                       'first_best': min(totals, key=totals.get),
                       'first_choice_ms': totals[pick], 'first_best_ms': min(totals.values()),
                       'edge_only_measured_ms': totals[EDGE_ONLY]})
    return {'model': profile.model, 'input_shape': input_shape,
            'edge_slowdown': edge_slowdown, 'host_slowdown': host_slowdown,
            'link': asdict(link), 'candidates': len(candidates), 'repeats': repeats,
            'pairs': pairs or 3 * repeats, 'burst': prof.burst, 'clock': clock, 'stat': stat,
            'speeds': speeds, 'measured': measured, 'profile': profile}
