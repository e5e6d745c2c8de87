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

"""The uplink meter against a simulated link: a FIFO queue of a fixed speed behind the edge."""

import statistics

import pytest

from edge_denoise_ros.core.stream import transfer_ms, UplinkMeter, UplinkPacer

MS = 1_000_000   # ns


def run_link(declared: float, capacity, seconds: float = 40.0, *, measure: bool = True,
             frame_bytes: int = 20_000, fps: float = 30.0, window_s: float = 2.0,
             offset_ns: int = 0, one_way_ms: float = 5.0):
    """
    Send a camera stream paced by the meter's estimate (or the declaration) over the link.

    ``capacity``: the link's Mbit/s, or a function of the time (ms) giving it.

    Returns ``(windows, queues)``: each window's :class:`LinkWindow` (measure) and
    each frame's time in the link's queue (ms) by the second it was sent in.
    """
    meter, pacer = UplinkMeter(declared), UplinkPacer()
    link_free = 0.0                   # ms: when the link has sent all it holds
    pending = []                      # (edge ms the receipt reaches the edge, seq, host ns)
    windows, queues, seq = [], {}, 0
    next_window = window_s * 1e3
    for i in range(int(seconds * fps)):
        now = i * 1e3 / fps
        while pending and pending[0][0] <= now:
            _, s, host_ns = pending.pop(0)
            meter.received(s, host_ns)
        if now >= next_window:
            if measure:
                windows.append(meter.sample())
                if windows[-1].verdict == 'full':
                    pacer.queued(windows[-1].in_flight_bytes, meter.mbps, now)
            next_window += window_s * 1e3
        mbps = meter.mbps if measure else declared
        if not pacer.ready(now):
            meter.held()
            continue
        seq += 1
        meter.sent(seq, frame_bytes, int(now * MS))
        pacer.sent(frame_bytes, mbps, now)
        start = max(now, link_free)
        speed = capacity(now) if callable(capacity) else capacity
        link_free = start + transfer_ms(frame_bytes, speed)
        queues.setdefault(int(now // 1000), []).append(start - now)
        arrival = link_free + one_way_ms
        pending.append((arrival + one_way_ms, seq, int(arrival * MS) + offset_ns))
    return windows, queues


def last_seconds(queues: dict, n: int) -> list[float]:
    return [q for s in sorted(queues)[-n:] for q in queues[s]]


def percentile(values: list[float], p: float) -> float:
    return sorted(values)[int(p * (len(values) - 1))]


def test_a_link_slower_than_declared_is_found_and_its_queue_drained():
    # Declared 10 Mbit/s, the link carries 2: the camera's 4.8 Mbit/s fits the declaration,
    # so the declared pacer sends it all and the queue grows by seconds.
    _, blind = run_link(10.0, 2.0, measure=False)
    assert statistics.median(last_seconds(blind, 5)) > 10_000
    windows, queues = run_link(10.0, 2.0, seconds=60.0)
    assert windows[0].verdict == 'full' and windows[0].in_flight_bytes > 0
    # It keeps about the link's speed (probing a little past it now and then), and the queue
    # the declaration built drains within seconds and stays short.
    assert 1.7 <= statistics.median(w.mbps for w in windows[5:]) <= 2.2
    assert statistics.median(last_seconds(queues, 20)) < 50
    assert percentile(last_seconds(queues, 40), 0.99) < 250


def test_a_link_that_slows_down_is_followed():
    windows, queues = run_link(4.0, lambda ms: 4.0 if ms < 30_000 else 1.5, seconds=70.0)
    assert 3.4 <= windows[12].mbps <= 4.4          # at 26 s: the first speed
    assert 1.3 <= statistics.median(w.mbps for w in windows[-10:]) <= 1.7
    assert statistics.median(last_seconds(queues, 20)) < 50


def test_a_link_faster_than_declared_is_used():
    # Declared 0.5 Mbit/s, the link carries 4: the pacer holds frames back, the link shows no
    # queue, so the estimate rises to where the link is nearly filled (4.8 Mbit/s asked).
    windows, queues = run_link(0.5, 4.0, seconds=60.0)
    assert windows[0].verdict == 'probe' and windows[0].held_back > 0
    assert windows[-1].mbps >= 3.0
    sent_last = len(last_seconds(queues, 10)) / 10
    assert sent_last * 20_000 * 8 / 1e6 >= 3.0          # Mbit/s actually carried
    assert statistics.median(last_seconds(queues, 10)) < 100


def test_a_link_with_room_keeps_the_declaration():
    # 1.6 Mbit/s asked of a 10 Mbit/s link declared 10: no queue, nothing held back.
    windows, _ = run_link(10.0, 10.0, frame_bytes=6_667)
    assert {w.verdict for w in windows} == {'steady'}
    assert all(w.mbps == 10.0 for w in windows)
    assert windows[-1].delivered_mbps == pytest.approx(1.6, rel=0.05)


def test_clock_offset_between_edge_and_host_cancels():
    same, _ = run_link(10.0, 2.0, seconds=20.0)
    shifted, _ = run_link(10.0, 2.0, seconds=20.0, offset_ns=3_600 * 1_000 * MS)
    behind, _ = run_link(10.0, 2.0, seconds=20.0, offset_ns=-7 * 1_000 * MS)
    assert [w.mbps for w in same] == [w.mbps for w in shifted] == [w.mbps for w in behind]


def test_receipts_it_did_not_send_are_ignored_and_quiet_windows_change_nothing():
    meter = UplinkMeter(5.0)
    assert meter.received(7, 10 * MS) is False           # another edge's, or a stale one
    meter.sent(1, 1000, 0)
    assert meter.received(1, 3 * MS) is True
    assert meter.received(1, 4 * MS) is False            # a duplicate
    w = meter.sample()
    assert (w.verdict, w.receipts, w.mbps, w.queue_ms) == ('quiet', 1, 5.0, None)
    meter.held(3)
    assert meter.sample().held_back == 3 and meter.mbps == 5.0
    meter.reset(2.0)
    assert meter.mbps == 2.0 and meter.received(1, 0) is False
    for bad in (0.0, -1.0, float('nan'), float('inf')):
        with pytest.raises(ValueError, match='declared_mbps'):
            meter.reset(bad)
    with pytest.raises(ValueError, match='slow_probe'):
        UplinkMeter(1.0, slow_probe=0.5)
