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
Per-stream accounting of what an edge sent, from the fields it puts on the wire.

Every feature message carries the edge's ``epoch`` (a random boot id drawn when the
edge process starts) and ``seq`` (1, 2, ... within that epoch), plus ``t_rx``, the
edge's receipt time of the camera frame. A receiver keeps one :class:`StreamAccount`
per robot and asks it about each message *before* doing any work on it:

- a gap in ``seq`` counts the frames between as ``lost_in_transit``;
- a new epoch is a restart of the edge: the restart is counted, and the frames the new
  epoch sent before its first message arrived here (``seq - 1``) are counted as
  ``before_join`` — they went out while this receiver was not listening or was being
  restarted itself, so they are accounted, not silently forgotten;
- fields no honest edge sends are refused with a reason: a non-integer or non-positive
  ``seq``, a jump larger than the edge could have produced in the time since the last
  message (``max_rate_hz``), a repeated or older ``seq`` (replayed), a malformed epoch.

``t_rx`` is only used for the end-to-end latency, which is reported only when it is
plausible (``latency_window_s``); otherwise it is ``None`` and the reason is counted.
The account never trusts a field to size anything: counts grow by bounded amounts.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

EPOCH_PATTERN = re.compile(r'[0-9a-f]{8,32}\Z')
MAX_SEQ = (1 << 53) - 1                # what a JSON number / float64 still holds exactly
DEFAULT_MAX_RATE_HZ = 1000.0           # no camera + edge sends faster than this
GAP_SLACK = 64                         # frames a burst may add beyond the rate bound
LATENCY_WINDOW_S = (-1.0, 600.0)       # clock skew allowed below 0; older is not a latency
RECENT_EPOCHS = 4                      # epochs remembered, so one forged epoch cannot evict

DROP_REASONS = ('lost_in_transit', 'before_join')
REFUSALS = ('bad_seq', 'bad_epoch', 'seq_jump', 'replayed')


class StreamError(ValueError):
    """A message whose accounting fields no honest edge would send; ``kind`` names why."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def parse_seq(value) -> int:
    """Return ``value`` as a sequence number in [1, MAX_SEQ], or raise :class:`StreamError`."""
    if isinstance(value, bool):
        raise StreamError('bad_seq', f'seq must be an integer, got {value!r}')
    try:
        seq = int(value)
    except (TypeError, ValueError):
        raise StreamError('bad_seq', f'seq must be an integer, got {value!r}') from None
    if isinstance(value, float) and value != seq:
        raise StreamError('bad_seq', f'seq must be an integer, got {value!r}')
    if not 1 <= seq <= MAX_SEQ:
        raise StreamError('bad_seq', f'seq must be in [1, {MAX_SEQ}], got {seq}')
    return seq


def parse_epoch(value) -> str:
    """Return ``value`` as an epoch (8-32 lowercase hex digits), or raise :class:`StreamError`."""
    text = str(value)
    if not EPOCH_PATTERN.match(text):
        raise StreamError('bad_epoch', f'epoch must be 8-32 lowercase hex digits, got {text!r}')
    return text


def new_epoch() -> str:
    """Draw a fresh epoch (64 random bits as 16 hex digits) for an edge process."""
    return secrets.token_hex(8)


def latency_ms(t_rx_ns, now_ns: int | None = None,
               window_s: tuple[float, float] = LATENCY_WINDOW_S) -> float | None:
    """Return ``now - t_rx`` in ms when ``t_rx_ns`` is an integer inside the window, else None."""
    if isinstance(t_rx_ns, bool):
        return None
    try:
        t_rx = int(t_rx_ns)
    except (TypeError, ValueError):
        return None
    now = time.time_ns() if now_ns is None else now_ns
    age_s = (now - t_rx) / 1e9
    if not window_s[0] <= age_s <= window_s[1]:
        return None
    return (now - t_rx) / 1e6


@dataclass
class Verdict:
    """What one accepted message means for the account."""

    seq: int
    epoch: str
    lost: int = 0            # frames counted lost_in_transit because of this message
    before_join: int = 0     # frames of a new epoch sent before its first message arrived
    restart: bool = False    # this message starts a new epoch of a known stream


@dataclass
class StreamAccount:
    """The (epoch, seq) accounting of one robot's stream; not thread-safe (one per robot)."""

    max_rate_hz: float = DEFAULT_MAX_RATE_HZ
    epoch: str | None = None
    last_seq: int | None = None
    last_seen: float | None = None
    epochs_seen: int = 0
    drops: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    accepted: int = 0
    recent: OrderedDict = field(default_factory=OrderedDict)   # epoch -> (last seq, last seen)

    def check(self, epoch, seq, now: float | None = None) -> Verdict:
        """
        Validate a message's fields and account for it; raise :class:`StreamError` if refused.

        ``now`` is this receiver's monotonic clock (seconds); the sender's clock is never used
        to bound anything.
        """
        now = time.monotonic() if now is None else now
        try:
            verdict = self._judge(parse_epoch(epoch), parse_seq(seq), now)
        except StreamError as exc:
            self.refused[exc.kind] += 1
            raise
        self.epoch, self.last_seq, self.last_seen = verdict.epoch, verdict.seq, now
        self.recent[verdict.epoch] = (verdict.seq, now)
        self.recent.move_to_end(verdict.epoch)
        while len(self.recent) > RECENT_EPOCHS:
            self.recent.popitem(last=False)
        self.accepted += 1
        self.drops['lost_in_transit'] += verdict.lost
        self.drops['before_join'] += verdict.before_join
        return verdict

    def _judge(self, epoch: str, seq: int, now: float) -> Verdict:
        if epoch != self.epoch and epoch in self.recent:
            # An epoch seen lately goes on from its own state: a message of another epoch
            # in between (a forged one, or a duplicate edge) does not make it a restart.
            last_seq, last_seen = self.recent[epoch]
            return self._next(epoch, seq, last_seq, last_seen, now)
        if epoch != self.epoch:
            # A stream joined now, or an edge that restarted: a new epoch counts from 1.
            # Every frame of the new epoch was sent after the last message of the old one.
            restart = self.epoch is not None
            self._check_jump(seq - 1, self.last_seen, now)
            self.epochs_seen += 1
            return Verdict(seq, epoch, before_join=seq - 1, restart=restart)
        return self._next(epoch, seq, self.last_seq, self.last_seen, now)

    def _next(self, epoch: str, seq: int, last_seq: int, last_seen: float, now: float):
        """Judge ``seq`` as the successor of ``last_seq`` in a known epoch."""
        if seq <= last_seq:
            raise StreamError('replayed', f'seq {seq} is not after {last_seq} in epoch {epoch}')
        gap = seq - last_seq - 1
        self._check_jump(gap, last_seen, now)
        return Verdict(seq, epoch, lost=gap)

    def _check_jump(self, gap: int, since: float | None, now: float) -> None:
        """Refuse a jump larger than an edge could produce since ``since`` (None: first sight)."""
        if since is None:
            # First sight of a stream (or of this receiver): bounded by a day at the max rate.
            limit = int(self.max_rate_hz * 86400)
        else:
            limit = int(self.max_rate_hz * max(0.0, now - since)) + GAP_SLACK
        if gap > limit:
            raise StreamError('seq_jump', f'seq jumps by {gap} frames, more than the '
                                          f'{limit} an edge could send in that time')

    def snapshot(self) -> dict:
        """Return the counts for diagnostics: accepted, drops, refusals, epochs."""
        return {'accepted': self.accepted, 'epoch': self.epoch, 'last_seq': self.last_seq,
                'epochs': self.epochs_seen, 'drops': {k: v for k, v in self.drops.items() if v},
                'refused': dict(self.refused)}
