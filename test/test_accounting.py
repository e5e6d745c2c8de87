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

"""Stream accounting: gaps, restarts and forged fields, judged on the receiver's clock."""

import time

import pytest

from edge_denoise_ros.core.accounting import (GAP_SLACK, latency_ms, MAX_SEQ, new_epoch,
                                              StreamAccount, StreamError)

A, B = 'a1b2c3d4e5f60718', '0f1e2d3c4b5a6978'


def test_consecutive_messages_lose_nothing():
    acc = StreamAccount()
    for seq in range(1, 11):
        verdict = acc.check(A, seq, now=seq / 30)
        assert (verdict.lost, verdict.before_join, verdict.restart) == (0, 0, False)
    assert acc.accepted == 10 and sum(acc.drops.values()) == 0


def test_gap_counts_lost_frames_exactly():
    acc = StreamAccount()
    acc.check(A, 1, now=0.0)
    assert acc.check(A, 5, now=0.2).lost == 3
    assert acc.drops['lost_in_transit'] == 3


def test_joining_late_counts_what_was_sent_before():
    """A host started (or restarted) mid-stream accounts the frames it never saw."""
    acc = StreamAccount()
    verdict = acc.check(A, 29, now=100.0)
    assert verdict.before_join == 28 and not verdict.restart
    assert acc.drops['before_join'] == 28


def test_edge_restart_is_a_new_epoch_served_at_once():
    """A restarted edge counts from 1 again; its first message is served, not ignored."""
    acc = StreamAccount()
    for seq in range(1, 51):
        acc.check(A, seq, now=seq / 30)
    verdict = acc.check(B, 3, now=10.0)      # seq 1 and 2 of the new epoch were lost
    assert verdict.restart and verdict.before_join == 2
    assert acc.check(B, 4, now=10.03).lost == 0
    assert acc.snapshot()['epochs'] == 2


@pytest.mark.parametrize('seq', [0, -1, 'x', '', 1.5, True, MAX_SEQ + 1, None])
def test_forged_seq_is_refused_and_counted(seq):
    acc = StreamAccount()
    with pytest.raises(StreamError) as info:
        acc.check(A, seq, now=0.0)
    assert info.value.kind == 'bad_seq'
    assert acc.refused['bad_seq'] == 1 and acc.accepted == 0


@pytest.mark.parametrize('epoch', ['', 'XYZ', 'a' * 33, 'abc', '../etc', None])
def test_forged_epoch_is_refused(epoch):
    with pytest.raises(StreamError) as info:
        StreamAccount().check(epoch, 1, now=0.0)
    assert info.value.kind == 'bad_epoch'


def test_huge_seq_jump_is_refused_and_changes_no_count():
    """One forged seq of 10**12 must not add 10**12 lost frames (it did before)."""
    acc = StreamAccount()
    acc.check(A, 1, now=0.0)
    with pytest.raises(StreamError) as info:
        acc.check(A, 10 ** 12, now=1.0)
    assert info.value.kind == 'seq_jump'
    assert acc.drops['lost_in_transit'] == 0
    # The honest stream goes on undisturbed.
    assert acc.check(A, 2, now=1.03).lost == 0


def test_jump_bound_follows_the_receivers_clock():
    acc = StreamAccount(max_rate_hz=100.0)
    acc.check(A, 1, now=0.0)
    assert acc.check(A, 1 + 100 * 10 + GAP_SLACK, now=10.0).lost == 100 * 10 + GAP_SLACK - 1
    with pytest.raises(StreamError):
        acc.check(A, 10 ** 9, now=10.5)


def test_replayed_or_old_seq_is_refused():
    acc = StreamAccount()
    acc.check(A, 7, now=0.0)
    for seq in (7, 3):
        with pytest.raises(StreamError) as info:
            acc.check(A, seq, now=0.1)
        assert info.value.kind == 'replayed'
    assert acc.refused['replayed'] == 2 and acc.last_seq == 7


def test_latency_only_when_plausible():
    now = time.time_ns()
    assert latency_ms(now - 12_000_000, now) == pytest.approx(12.0)
    assert latency_ms(0, now) is None                      # t_rx=0: 56 years old
    assert latency_ms(now + 10 ** 14, now) is None         # far future
    assert latency_ms('abc', now) is None and latency_ms(None, now) is None
    assert latency_ms(True, now) is None


def test_new_epochs_are_valid_and_distinct():
    epochs = {new_epoch() for _ in range(100)}
    assert len(epochs) == 100
    for epoch in epochs:
        StreamAccount().check(epoch, 1, now=0.0)


def test_one_forged_epoch_cannot_lock_out_the_honest_edge():
    """A message with a new valid epoch counts as one restart; the real edge goes on."""
    acc = StreamAccount()
    for seq in range(1, 10_001):
        acc.check(A, seq, now=seq / 30)
    forged = acc.check(B, 5, now=334.0)
    assert forged.restart and forged.before_join == 4
    honest = acc.check(A, 10_001, now=334.01)
    assert (honest.lost, honest.restart) == (0, False)
    assert acc.refused == {} and acc.drops['lost_in_transit'] == 0
    with pytest.raises(StreamError):                 # the forged epoch's own replays stay refused
        acc.check(B, 5, now=334.02)


def test_epochs_remembered_are_bounded():
    acc = StreamAccount()
    for i in range(20):
        acc.check(f'{i:016x}', 1, now=float(i))
    assert len(acc.recent) <= 4
