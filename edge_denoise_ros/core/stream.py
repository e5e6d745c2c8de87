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
:func:`transfer_ms` is the link arithmetic they and the planner share.
"""

from __future__ import annotations

from dataclasses import dataclass
import math


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

    def backlog_ms(self, now_ms: float) -> float:
        """Return how long what was sent before ``now_ms`` still needs to cross the link."""
        return max(0.0, self._clear_ms - now_ms)

    def ready(self, now_ms: float) -> bool:
        """Return whether a frame may go up at ``now_ms`` (monotonic ms)."""
        return self.backlog_ms(now_ms) <= self.max_backlog_ms

    def sent(self, nbytes: int, mbps: float, now_ms: float) -> None:
        """Account ``nbytes`` sent at ``now_ms`` over an uplink of ``mbps`` Mbit/s."""
        self._clear_ms = max(self._clear_ms, now_ms) + transfer_ms(nbytes, mbps * self.headroom)
