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
An accuracy profile's entries: what a (cut, codec, quality) costs in accuracy.

A bundle's accuracy profile (``card.json``, :func:`.bundle.key`) holds, per
``cut/codec/q``, the accuracy on held-out data against the uncut model's, and
for host-only frame codecs the same on attacked frames. These read it for a
planner candidate: its entry, and its drop in percentage points, the worse of
clean and under attack. The planner screens candidates by it.
"""

from __future__ import annotations

import math
from typing import Mapping

from .bundle import key as accuracy_key
from .codecs import codec_quality
from .pipeline import FRAME_CUT
from .surgery import EDGE_ONLY, HOST_ONLY


def accuracy_entry(profile: Mapping[str, dict], candidate) -> dict | None:
    """
    Return the accuracy profile's entry of a candidate's (cut, codec, quality), or None.

    ``candidate``: a :class:`.planner.Candidate` (its kind, cut, label, codec, quality).

    Entries are keyed ``cut/codec/q`` (:func:`.bundle.key`): a split candidate
    matches by its cut's label (the wire name, ``layer1``) or node name, a
    host-only one by the ``frame`` cut.
    """
    if candidate.kind == EDGE_ONLY:
        return None
    q = codec_quality(candidate.codec, candidate.quality)
    cuts = (FRAME_CUT,) if candidate.kind == HOST_ONLY else (candidate.label, candidate.cut)
    for cut in dict.fromkeys(c for c in cuts if c):
        entry = profile.get(accuracy_key(cut, candidate.codec, q))
        if entry is not None:
            return entry
    return None


def _measured_drop(entry: Mapping) -> float | None:
    drop = entry.get('drop_pt')
    if drop is None and entry.get('reference') is not None and entry.get('accuracy') is not None:
        drop = 100.0 * (float(entry['reference']) - float(entry['accuracy']))
    try:
        drop = float(drop)
    except (TypeError, ValueError):
        return None
    return drop if math.isfinite(drop) else None


def attacked_drop(entry: Mapping) -> float | None:
    """Return an entry's drop under attack (its ``attacked`` measurement), or None."""
    attacked = entry.get('attacked')
    return _measured_drop(attacked) if isinstance(attacked, Mapping) else None


def accuracy_drop(entry: Mapping) -> float | None:
    """
    Return an entry's drop in percentage points: the worse of clean and under attack.

    Clean: ``drop_pt``, else from its fractions. Under attack: the ``attacked``
    measurement's, where there is one (a host-only frame codec runs before the
    host's defense, so its cost on attacked frames is its own). None when the
    clean drop is missing.
    """
    drop = _measured_drop(entry)
    attacked = attacked_drop(entry)
    if drop is None or attacked is None:
        return drop
    return max(drop, attacked)
