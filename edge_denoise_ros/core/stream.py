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
The camera stream an edge serves, and the uplink it sends it over.

:class:`Stream` is what the planner plans for: the camera's frames a second,
and the edge time each received frame costs to take in, served or not.
:class:`StreamMeter` measures it from an edge process's own counters;
:class:`UplinkPacer` keeps what the edge sends within the declared uplink, so
frames go up at the rate the planner's uplink stage assumes.
:class:`UplinkMeter` measures that uplink from the host's receipts
(:func:`parse_receipt`), so pacing and planning can follow the link as it is
rather than as declared.
:func:`transfer_ms` is the link arithmetic they and the planner share.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import math
import threading


@dataclass(frozen=True)
class Stream:
    """
    The camera stream the edge serves: frames a second, and each one's cost to take in.

    ``camera_fps``: the camera's rate (0: unknown; the planner then weighs one
    frame's latency alone). ``intake_ms``: the edge time each received frame
    costs whether it is served or dropped while the edge is busy (receiving,
    deserializing, keeping it), in the edge profile's units (the wall time of
    a frame at the edge's CPU share, as ``Candidate.edge_ms``).
    """

    camera_fps: float = 0.0
    intake_ms: float = 0.0

    def __post_init__(self):
        for name in ('camera_fps', 'intake_ms'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f'{name} must be a finite number >= 0, got {value}')


# What an edge pacing its uplink (UplinkPacer) lets queue, and the share of the
# declared speed it fills with frames.
MAX_UPLINK_BACKLOG_MS = 100.0
PACING_HEADROOM = 0.95


def transfer_ms(nbytes: float, mbps: float) -> float:
    """Return the time in ms to send ``nbytes`` at ``mbps`` Mbit/s (SI: 1 Mbit = 1e6 bit)."""
    return nbytes * 8.0 / (mbps * 1e3)


class StreamMeter:
    """
    The camera stream an edge process serves, measured from its own counters.

    Each :meth:`sample` takes the process's CPU time and the frames received
    and served so far. Over the window since the previous sample it returns
    the camera rate and the edge time each received frame costs beyond
    serving: the process's time, less the served frames at the edge time the
    planner gives the candidate in use, over the frames received. So the plan
    in use is costed as it really ran, and every other candidate pays the
    same intake. ``share`` turns CPU time into the edge profile's units (the
    CPU share of a sustained profile; 1.0 for a profile of wall times).
    """

    def __init__(self, share: float = 1.0, min_frames: int = 10):
        if not (math.isfinite(share) and share > 0) or min_frames < 1:
            raise ValueError(f'need share > 0 and min_frames >= 1, got {share}, {min_frames}')
        self.share = float(share)
        self.min_frames = int(min_frames)
        self._last: tuple[float, float, int, int] | None = None

    def sample(self, wall_s: float, cpu_s: float, received: int, served: int,
               edge_ms: float) -> Stream | None:
        """
        Return the stream over the window since the last sample, or None.

        ``wall_s`` and ``cpu_s``: a monotonic clock and the process's CPU time
        (seconds); ``received`` and ``served``: frame counters; ``edge_ms``:
        the planner's edge time of the candidate in use. None for the first
        sample and for windows with fewer than ``min_frames`` frames received.
        """
        last, self._last = self._last, (wall_s, cpu_s, received, served)
        if last is None:
            return None
        wall, cpu = wall_s - last[0], cpu_s - last[1]
        n_in, n_out = received - last[2], served - last[3]
        if wall <= 0 or n_in < self.min_frames:
            return None
        spent = 1000.0 * max(0.0, cpu) / self.share
        intake = max(0.0, spent - max(0, n_out) * edge_ms) / n_in
        return Stream(camera_fps=n_in / wall, intake_ms=intake)


class UplinkPacer:
    """
    Keep what the edge sends within the uplink the planner plans with.

    A frame the link cannot carry is best not sent: it would queue behind the
    frames before it (in the sender, the network, a shaper) and be lost or
    late, and every frame after it with it. The pacer tracks when the frames
    sent so far will have crossed a link of the declared speed (at
    ``headroom`` of it: packet headers and the node's other traffic share the
    link); :meth:`ready` is False while more than ``max_backlog_ms`` of them
    is still on the way, so the edge skips a camera frame instead of
    computing it. Frames then go up at the rate the planner's uplink stage
    assumes, whatever the camera sends.
    """

    def __init__(self, max_backlog_ms: float = MAX_UPLINK_BACKLOG_MS,
                 headroom: float = PACING_HEADROOM):
        if not (max_backlog_ms >= 0 and 0 < headroom <= 1):
            raise ValueError(f'need max_backlog_ms >= 0 and 0 < headroom <= 1, got '
                             f'{max_backlog_ms}, {headroom}')
        self.max_backlog_ms = float(max_backlog_ms)
        self.headroom = float(headroom)
        self._clear_ms = -math.inf     # when what was sent has crossed the link
        self._lock = threading.Lock()  # the sender and the meter's window both move it

    def backlog_ms(self, now_ms: float) -> float:
        """Return how long what was sent before ``now_ms`` still needs to cross the link."""
        return max(0.0, self._clear_ms - now_ms)

    def ready(self, now_ms: float) -> bool:
        """Return whether a frame may go up at ``now_ms`` (monotonic ms)."""
        return self.backlog_ms(now_ms) <= self.max_backlog_ms

    def sent(self, nbytes: int, mbps: float, now_ms: float) -> None:
        """Account ``nbytes`` sent at ``now_ms`` over an uplink of ``mbps`` Mbit/s."""
        with self._lock:
            self._clear_ms = (max(self._clear_ms, now_ms)
                              + transfer_ms(nbytes, mbps * self.headroom))

    def queued(self, nbytes: int, mbps: float, now_ms: float) -> None:
        """
        Wait for ``nbytes`` known to be still on the way at ``now_ms`` (an :class:`UplinkMeter`'s).

        After a link turned out slower than paced for, what was sent at the
        old speed is still queued: nothing more goes up until it has crossed
        at ``mbps``.
        """
        with self._lock:
            self._clear_ms = max(self._clear_ms,
                                 now_ms + transfer_ms(nbytes, mbps * self.headroom))


# What the uplink meter takes for a full link: receipts whose one-way delay is
# FULL_QUEUE_MS above the least it saw (a queue in front of the link) and grew by
# GROWING of that within the window (a constant excess is a frame's own time on a
# slower link, or a queue draining, not one building). How it raises
# its estimate in a window where the pacer held frames back and the link showed
# no queue: by FAST_PROBE up to the speed the link last delivered when full, by
# SLOW_PROBE above it. The share of the delivered rate it keeps when full (the
# rest drains the queue); how long it remembers the least delay and that speed.
FULL_QUEUE_MS = 50.0
GROWING = 0.2
FAST_PROBE = 1.25
SLOW_PROBE = 1.02
DRAIN_FACTOR = 0.9
LINK_MEMORY_S = 30.0
MIN_UPLINK_MBPS = 0.01
MAX_UNANSWERED = 4096
MAX_RECEIPT_CHARS = 65536

VERDICTS = ('full', 'probe', 'steady', 'quiet')


@dataclass(frozen=True)
class LinkWindow:
    """
    One window of the uplink as the host's receipts showed it (:meth:`UplinkMeter.sample`).

    ``mbps``: the estimate after the window; ``verdict``: ``full`` (a queue:
    the estimate fell to what the link delivered), ``probe`` (frames were
    held back and no queue: it rose), ``steady`` or ``quiet`` (under two
    receipts: nothing to tell); ``receipts``: frames the host reported in the
    window; ``held_back``: camera frames the pacer held back in it;
    ``delivered_mbps``: the rate the receipts arrived at on the host's clock;
    ``queue_ms``: their median one-way delay over the least seen;
    ``in_flight_bytes``: what was sent after the newest receipt; ``growth_ms``:
    how much the one-way delay grew from the window's first half to its second.
    """

    mbps: float
    verdict: str
    receipts: int
    held_back: int
    delivered_mbps: float | None
    queue_ms: float | None
    in_flight_bytes: int
    growth_ms: float | None


class UplinkMeter:
    """
    The uplink's speed as the host's receipts show it: what the edge paces and plans with.

    The edge reports each features message it sends (:meth:`sent`: its
    ``seq``, bytes and wall-clock time), each camera frame the pacer held
    back (:meth:`held`), and each receipt the host sends back on
    ``classification`` (:meth:`received`: the ``seq`` and the host's wall
    clock when the message arrived). Every window, :meth:`sample` looks at
    the window's receipts:

    - their one-way delay above the least seen in the last ``memory_s`` (the
      two clocks' offset cancels): the queue in front of the link;
    - the rate they arrived at on the host's clock (a full link delivers its
      speed; one with room, what was sent).

    A median queue over ``full_queue_ms`` that grew within the window (by
    ``GROWING`` of it from the first half to the second) means the link is
    full: the estimate falls to ``drain`` of the delivered rate (never rises), and the
    window says what is still on the way (``in_flight_bytes``) so the pacer
    can wait for it (:meth:`UplinkPacer.queued`). A window in which the pacer
    held frames back and the link showed no queue (under half of
    ``full_queue_ms``) raises the estimate: the link may carry more than
    declared; by ``fast_probe`` up to the speed a full link last delivered
    (within ``memory_s``), by ``slow_probe`` beyond it. Otherwise it stays.
    Thread-safe: sends, receipts and samples come from different callbacks.
    """

    def __init__(self, declared_mbps: float, full_queue_ms: float = FULL_QUEUE_MS,
                 fast_probe: float = FAST_PROBE, slow_probe: float = SLOW_PROBE,
                 drain: float = DRAIN_FACTOR, memory_s: float = LINK_MEMORY_S,
                 min_mbps: float = MIN_UPLINK_MBPS):
        if not (full_queue_ms > 0 and fast_probe >= slow_probe >= 1 and 0 < drain <= 1
                and memory_s > 0 and min_mbps > 0):
            raise ValueError(f'need full_queue_ms > 0, fast_probe >= slow_probe >= 1, '
                             f'0 < drain <= 1, memory_s > 0 and min_mbps > 0, got '
                             f'{full_queue_ms}, {fast_probe}, {slow_probe}, {drain}, '
                             f'{memory_s}, {min_mbps}')
        self.full_queue_ms = float(full_queue_ms)
        self.fast_probe, self.slow_probe = float(fast_probe), float(slow_probe)
        self.drain = float(drain)
        self.memory_ns = int(memory_s * 1e9)
        self.min_mbps = float(min_mbps)
        self._lock = threading.Lock()
        self.reset(declared_mbps)

    def reset(self, declared_mbps: float) -> None:
        """Start over from a declared speed (Mbit/s): forget what was sent and seen."""
        if not (math.isfinite(declared_mbps) and declared_mbps > 0):
            raise ValueError(f'declared_mbps must be a finite number > 0, got {declared_mbps}')
        with self._lock:
            self.mbps = max(self.min_mbps, float(declared_mbps))
            self._sent: dict[int, tuple[int, int]] = {}       # seq -> (edge ns, bytes)
            self._window: list[tuple[int, int, int]] = []    # (host ns, one-way ns, bytes)
            self._delays: list[tuple[int, int]] = []         # (host ns, one-way ns)
            self._held = 0
            self._newest = 0                                 # the newest seq received
            self._ceiling: tuple[int, float] | None = None   # (host ns, Mbit/s) when full
            self._was_full = False

    def sent(self, seq: int, nbytes: int, edge_ns: int) -> None:
        """Record features message ``seq`` of ``nbytes`` sent at ``edge_ns`` (wall clock)."""
        with self._lock:
            self._sent[int(seq)] = (int(edge_ns), int(nbytes))
            while len(self._sent) > MAX_UNANSWERED:    # receipts that never came: the oldest
                del self._sent[next(iter(self._sent))]

    def held(self, n: int = 1) -> None:
        """Count ``n`` camera frames the pacer held back (demand beyond the estimate)."""
        with self._lock:
            self._held += int(n)

    def received(self, seq: int, host_ns: int) -> bool:
        """
        Record the host's receipt of ``seq`` at ``host_ns`` (its wall clock).

        Returns False, recording nothing, for a ``seq`` this meter did not
        send or already saw received.
        """
        with self._lock:
            entry = self._sent.pop(int(seq), None)
            if entry is None:
                return False
            edge_ns, nbytes = entry
            one_way = int(host_ns) - edge_ns
            self._window.append((int(host_ns), one_way, nbytes))
            self._delays.append((int(host_ns), one_way))
            self._newest = max(self._newest, int(seq))
            return True

    def sample(self) -> LinkWindow:
        """Close the window: judge the link from its receipts, return the new estimate."""
        with self._lock:
            window, held = sorted(self._window), self._held
            self._window, self._held = [], 0
            in_flight = sum(b for s, (_, b) in self._sent.items() if s > self._newest)
            if len(window) < 2:
                return LinkWindow(self.mbps, 'quiet', len(window), held, None, None, in_flight,
                                  None)
            now = window[-1][0]
            self._delays = [d for d in self._delays if d[0] >= now - self.memory_ns]
            if self._ceiling is not None and self._ceiling[0] < now - self.memory_ns:
                self._ceiling = None
            least = min(d[1] for d in self._delays)
            queue_ms = _median([w[1] - least for w in window]) / 1e6
            half = len(window) // 2
            growth_ms = (_median([w[1] for w in window[half:]])
                         - _median([w[1] for w in window[:half]])) / 1e6
            span_ns = now - window[0][0]
            delivered = (sum(w[2] for w in window[1:]) * 8e3 / span_ns) if span_ns > 0 else None
            verdict = 'steady'
            if queue_ms > self.full_queue_ms and growth_ms > self.full_queue_ms * GROWING:
                verdict = 'full'
                if delivered is not None:       # in a run of full windows (a queue draining,
                    if self._was_full and self._ceiling is not None:    # the link idle at
                        delivered_max = max(delivered, self._ceiling[1])  # times) the most
                    else:
                        delivered_max = delivered
                    self._ceiling = (now, delivered_max)
                target = self.mbps / 2 if delivered is None else self.drain * delivered
                self.mbps = max(self.min_mbps, min(self.mbps, target))
            elif held > 0 and queue_ms < self.full_queue_ms / 2:
                verdict = 'probe'
                fast, slow = self.mbps * self.fast_probe, self.mbps * self.slow_probe
                ceiling = math.inf if self._ceiling is None else self._ceiling[1]
                self.mbps = max(slow, min(fast, ceiling))
            self._was_full = verdict == 'full'
            return LinkWindow(self.mbps, verdict, len(window), held, delivered, queue_ms,
                              in_flight, growth_ms)


def parse_receipt(text: str, epoch: str) -> tuple[int, int] | None:
    """
    Return ``(seq, host_rx_ns)`` of a host's ``classification`` record of stream ``epoch``.

    None for another stream's record (another edge's, an earlier run's) or
    one without the host's receipt time (a host from before ``host_rx_ns``);
    ValueError, with the reason, for text that is no such record.
    """
    if len(text) > MAX_RECEIPT_CHARS:
        raise ValueError(f'classification record of {len(text)} characters (at most '
                         f'{MAX_RECEIPT_CHARS})')
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f'classification record is no JSON: {exc}') from None
    if not isinstance(record, dict):
        raise ValueError(f'classification record is a JSON {type(record).__name__}, '
                         f'not an object')
    if record.get('epoch') != epoch or record.get('host_rx_ns') is None:
        return None
    seq, host_ns = record.get('seq'), record['host_rx_ns']
    if not (type(seq) is int and seq >= 1 and type(host_ns) is int and host_ns >= 0):
        raise ValueError(f'classification record with seq {seq!r} and host_rx_ns '
                         f'{host_ns!r}: integers (seq >= 1) expected')
    return seq, host_ns


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
