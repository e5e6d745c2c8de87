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
The host's tails: the plain split tail, or a shipped one fine-tuned on decoded features.

Ko et al. fine-tune the host part on the features as the link delivers them
(after a lossy codec), which wins back most of the accuracy the codec costs.
A fine-tuned tail ships as ``weights/host_tail_<model>_<cut>_<codec>[_q<N>].pt``
with a JSON card naming the model's state hash it was made from; the host uses
it only for messages with exactly those settings and only on that very model.
Tails are cut from a model already traced (:class:`pipeline.Target` holds the
trace), so nothing here traces the model again.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

from torch import nn

from . import models
from .bundle import key
from .codecs import codec_quality
from .pipeline import PipelineError, TailLookup, Target
from .surgery import Cut, split_traced, Traced

LOOKUP_CACHE = 1024     # (cut, codec, quality) settings whose tail file was looked up


def cut_label(traced: Traced, cut: str | Cut) -> str:
    """Return the label of a cut given by node name or label (``layer2_1_relu_1``: ``layer2``)."""
    found = traced.cut(cut)
    return found.label or found.name


def tail_file_name(model_name: str, cut: str, codec: str, quality: int | None) -> str:
    """File name of a fine-tuned host tail in ``weights/`` for these link settings."""
    q = f'_q{int(quality)}' if quality is not None else ''
    return f'host_tail_{model_name}_{cut}_{codec}{q}.pt'


def finetuned_tail_path(model: nn.Module, traced: Traced, model_name: str, cut: str,
                        codec: str, quality: int | None,
                        model_hash: str | None = None) -> Path | None:
    """
    Return the shipped fine-tuned tail for these settings and this exact model, or None.

    ``model_hash``: the model's :func:`models.state_hash` where the caller has it.
    """
    label = cut_label(traced, cut)
    quality = codec_quality(codec, quality)
    path = models.weights_path(tail_file_name(model_name, label, codec, quality))
    meta = path.with_suffix('.json')
    if not path.is_file() or not meta.is_file():
        return None
    try:
        record = json.loads(meta.read_text())
    except ValueError:
        return None
    if record.get('base_hash') != (model_hash or models.state_hash(model)) or \
            record.get('cut') != label or \
            record.get('codec') != codec or \
            record.get('quality') != quality:
        return None
    return path


def host_tail(model: nn.Module, traced: Traced, cut: str, codec: str, quality: int | None,
              model_name: str = models.DEFAULT_MODEL) -> nn.Module:
    """
    Return the host's tail for a message's ``(cut, codec, quality)``.

    ``traced`` is :func:`surgery.trace` of ``model``. The fine-tuned tail
    (Ko et al.) when a shipped ``weights/host_tail_*.pt`` matches the settings
    and was made from this very model (same state hash), else the plain split
    tail. The module's ``finetuned`` attribute names the file used (or is None).
    """
    _, tail = split_traced(traced, cut)
    path = finetuned_tail_path(model, traced, model_name, cut, codec, quality)
    if path is None:
        tail.finetuned = None
        return tail
    return _tuned(tail, path)


def _tuned(tail: nn.Module, path: Path) -> nn.Module:
    """
    Return a copy of ``tail`` holding the fine-tuned weights of ``path`` (``finetuned``).

    The file holds the whole tail's state, or that of the modules fine-tuning
    trained (``train host-finetune --tune``): the rest stays the target's own.
    An entry the tail does not have, or an empty file, raises RuntimeError.
    """
    tuned = copy.deepcopy(tail)
    state = models.load_state_dict(path)
    unknown = tuned.load_state_dict(state, strict=False).unexpected_keys
    if unknown or not state:
        raise RuntimeError(f'{path.name} does not fit this tail: '
                           + (f'{len(unknown)} unknown entries ({unknown[0]}, ...)' if unknown
                              else 'it holds no weights'))
    tuned.eval()
    tuned.finetuned = str(path)
    return tuned


def bundle_tails(target: Target) -> TailLookup:
    """
    Return the tail lookup of a bundle's target: the card's fine-tuned tails, checked.

    A tail serves its ``(cut, codec, quality)`` only when its file matches the
    card's hash and it was made from this very target (``base_hash``); every
    other entry is listed in ``lookup.problems`` (key -> reason) and never used.
    ``lookup.report`` says, per key, which file serves it or why none does.
    """
    served, problems = {}, {}
    for k, entry in target.bundle.tails().items():
        try:
            cut = target.check_cut(entry['cut'])
            quality = codec_quality(entry['codec'], entry.get('quality'))
            path = target.bundle.check_file(entry['weights'])
        except (ValueError, KeyError, PipelineError) as exc:
            problems[k] = f'unusable tail: {exc}'
            continue
        if entry.get('base_hash') != target.hash:
            problems[k] = (f'{entry["weights"]} was made from target {entry.get("base_hash")}, '
                           f'this target is {target.hash}')
            continue
        served[(cut, entry['codec'], quality)] = path

    def lookup(cut: str, codec: str, quality: int | None) -> nn.Module | None:
        path = served.get((cut, codec, codec_quality(codec, quality)))
        return None if path is None else _tuned(target.halves(cut)[1], path)
    lookup.shipped = tuple(served)
    lookup.problems = problems
    lookup.report = {**{f'{c}/{k}/{"-" if q is None else q}': p.name
                        for (c, k, q), p in served.items()}, **problems}
    return lookup


def finetuned_tails(target: Target) -> TailLookup:
    """
    Return a tail lookup for a target: its shipped fine-tuned tail for the settings, or None.

    A target from a bundle takes the bundle's tails (:func:`bundle_tails`).
    Which settings have a tail is looked up once per setting (file names and cards, by
    the target's own hash) and remembered for at most ``LOOKUP_CACHE`` settings, so a
    message costs no file system work or model split; None tells the host to use the
    plain split tail it already holds.
    """
    if target.bundle is not None:
        return bundle_tails(target)

    @functools.lru_cache(maxsize=LOOKUP_CACHE)
    def path_for(cut: str, codec: str, quality: int | None) -> Path | None:
        return finetuned_tail_path(target.model, target.traced, target.name, cut, codec,
                                   quality, model_hash=target.hash)

    def lookup(cut: str, codec: str, quality: int | None) -> nn.Module | None:
        path = path_for(cut, codec, codec_quality(codec, quality))
        return None if path is None else _tuned(target.halves(cut)[1], path)
    lookup.shipped = shipped_settings(target)
    lookup.problems = {}
    lookup.report = {f'{c}/{k}/{"-" if q is None else q}':
                     tail_file_name(target.name, c, k, q) for c, k, q in lookup.shipped}
    return lookup


def shipped_settings(target: Target) -> tuple[tuple[str, str, int | None], ...]:
    """Return the ``(cut, codec, quality)`` of every tail shipped for this very target."""
    found = []
    for card in sorted(models.weights_dir().glob(f'host_tail_{target.name}_*.json')):
        try:
            record = json.loads(card.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or record.get('base_hash') != target.hash or \
                not card.with_suffix('.pt').is_file():
            continue
        cut, codec = record.get('cut'), record.get('codec')
        if cut in target.cuts and isinstance(codec, str):
            try:
                found.append((cut, codec, codec_quality(codec, record.get('quality'))))
            except ValueError:   # a card with a bad quality ships nothing
                continue
    return tuple(found)


def shipped_accuracy_profile(target: Target) -> dict[str, dict]:
    """
    Return the accuracy measured for this very target's shipped tails, by ``cut/codec/q``.

    Each shipped tail's card records the target's held-out accuracy through the
    split with that tail (``accuracy_after``), unsplit (``accuracy_uncompressed``),
    and the test set's size: entries as :meth:`.bundle.Bundle.accuracy_profile`
    gives them, measured with the fine-tuned tail the host serves them with
    (host parameter ``finetuned_tails``). Nothing is computed here.
    """
    found = {}
    for card in sorted(models.weights_dir().glob(f'host_tail_{target.name}_*.json')):
        try:
            record = json.loads(card.read_text())
            cut, codec = record['cut'], record['codec']
            quality = codec_quality(codec, record.get('quality'))
            accuracy, reference = float(record['accuracy_after']), \
                float(record['accuracy_uncompressed'])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if record.get('base_hash') != target.hash or not isinstance(cut, str) or \
                cut not in target.cuts or not card.with_suffix('.pt').is_file():
            continue
        found[key(cut, codec, quality)] = {
            'cut': cut, 'codec': codec, 'quality': quality, 'accuracy': accuracy,
            'reference': reference, 'drop_pt': round(100.0 * (reference - accuracy), 4),
            'n': record.get('n_test'), 'source': card.name}
    return found
