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
A bundle: everything one target needs, in one folder, with a card saying how it was made.

::

    BUNDLE/card.json      what every file is, and how it was made
    BUNDLE/labels.txt     one class name per line
    BUNDLE/target.pt      the target's weights (or card["target"]["model"] names a .pt2)
    BUNDLE/dunet.pt, dunet_d.pt           the denoisers
    BUNDLE/tail_<cut>_<codec>_q<Q>.pt     fine-tuned host tails
    BUNDLE/checkpoints/   resumable training state (not needed to serve)

``card.json`` keys: ``target`` (model, weights file, num_classes, input,
preparation), ``labels``, ``data`` (where train and test data came from),
``denoisers`` (kind -> file, config, ranks), ``tails`` (one entry per (cut,
codec, quality)), ``accuracy`` (one entry per (cut, codec, quality): the
held-out accuracy and its drop from the unsplit target), and ``files``: per
file its sha256, size, the command that wrote it, its seed and figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from . import heap
from .datasets import read_labels
from .models import weights_dir

CARD = 'card.json'
LABELS = 'labels.txt'
TARGET = 'target.pt'
FORMAT = 1
# the train subcommand that makes each denoiser kind
TRAIN_COMMAND = {'dunet': 'denoiser', 'dunet_d': 'denoiser-d'}


class BundleError(ValueError):
    """A bundle that is missing, malformed or inconsistent with what asks for it."""


def shipped() -> dict[str, Path]:
    """Return the bundles shipped with the package (``weights/<name>/card.json``), by name."""
    root = weights_dir()
    if not root.is_dir():
        return {}
    return {p.parent.name: p.parent for p in sorted(root.glob(f'*/{CARD}'))}


def resolve(root: str | os.PathLike) -> Path:
    """
    Return the folder a ``bundle`` parameter names.

    A path that exists is itself; a bare name that is no folder here but names a shipped
    bundle (``scenes``) is that bundle in the package's weights (the ament share folder
    of a colcon install), so ``bundle:=scenes`` works from any directory.
    """
    path = Path(root)
    name = str(root)
    if path.exists() or not name or '/' in name or '\\' in name or name in ('.', '..'):
        return path
    return shipped().get(name, path)


def _shipped_hint(name: str) -> str:
    names = sorted(shipped())
    return f' (shipped bundles, by name: {", ".join(names)})' if names else ''


def sha256(path: Path) -> str:
    """Return the sha256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def tail_file(cut: str, codec: str, quality: int | None) -> str:
    """Return the file name of a fine-tuned tail."""
    q = '' if quality is None else f'_q{int(quality)}'
    return f'tail_{cut.replace("/", "-")}_{codec}{q}.pt'


def key(cut: str, codec: str, quality: int | None) -> str:
    """Return the ``cut/codec/q`` key of an accuracy or tail entry."""
    return f'{cut}/{codec}/{"-" if quality is None else int(quality)}'


class Bundle:
    """A bundle folder and its card; :meth:`save` rewrites the card atomically."""

    def __init__(self, root: str | os.PathLike, card: dict | None = None):
        self.root = Path(root)
        self.card = card if card is not None else {'format': FORMAT}
        self.command = ' '.join(['edge-denoise'] + sys.argv[1:])   # what files are made by

    @classmethod
    def load(cls, root: str | os.PathLike) -> 'Bundle':
        """Read a bundle's card; a missing folder or card is a one-line error."""
        root = resolve(root)
        path = root / CARD
        if not path.is_file():
            raise BundleError(f'not a bundle: {path} is missing'
                              + _shipped_hint(str(root)))
        try:
            card = json.loads(path.read_text(encoding='utf-8'))
        except (OSError, ValueError) as exc:
            raise BundleError(f'{path}: unreadable card ({exc})') from None
        if not isinstance(card, dict) or card.get('format') != FORMAT or 'target' not in card:
            raise BundleError(f'{path}: not a format-{FORMAT} bundle card with a target')
        return cls(root, card)

    @classmethod
    def open_or_create(cls, root: str | os.PathLike) -> 'Bundle':
        """Return the bundle at ``root``, or a new empty one there."""
        root = Path(root)
        return cls.load(root) if (root / CARD).is_file() else cls(root)

    def path(self, name: str) -> Path:
        """Return the path of a file of the bundle (names never leave the folder)."""
        if not name or '/' in name or '\\' in name or name in ('.', '..'):
            raise BundleError(f'bad file name in bundle card: {name!r}')
        return self.root / name

    def save(self) -> Path:
        """Write the card (sorted keys, atomically)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / CARD
        tmp = path.with_suffix('.tmp')
        tmp.write_text(json.dumps(self.card, indent=2, sort_keys=True) + '\n', encoding='utf-8')
        tmp.replace(path)
        return path

    def record_file(self, name: str, seed: int | None = None, **figures) -> dict:
        """
        Record how a file of the bundle was made: hash, size, command, seed, figures.

        ``malloc``: the allocator settings the making process kept its freed
        memory with (:func:`.heap.keep_freed_memory`), when it did: they change
        its time, not its file.
        """
        path = self.path(name)
        entry = {'sha256': sha256(path), 'bytes': path.stat().st_size,
                 'command': self.command, 'seed': seed, **figures}
        kept = heap.held()
        if kept:
            entry['malloc'] = kept
        self.card.setdefault('files', {})[name] = entry
        return entry

    def file_entry(self, name: str | None) -> dict:
        """Return the card's record of a file (how it was made, its hash), or {} if none."""
        entry = self.card.get('files', {}).get(name)
        return entry if isinstance(entry, dict) else {}

    def file_sha(self, name: str | None) -> str | None:
        """Return the sha256 the card records for a file, or None when it records none."""
        return self.file_entry(name).get('sha256')

    @classmethod
    def record_of(cls, path: str | os.PathLike, sha: str | None) -> dict | None:
        """
        Return the card entry that made the file at ``path``, or None.

        That is: the file lies in a bundle whose card records it with hash
        ``sha`` (a run that starts from another bundle's target keeps how that
        target was made).
        """
        path = Path(path)
        if sha is None or not (path.parent / CARD).is_file():
            return None
        try:
            entry = cls.load(path.parent).file_entry(path.name)
        except BundleError:
            return None
        return entry if entry.get('sha256') == sha else None

    def training_seconds(self) -> dict[str, dict]:
        """
        Return the training time behind each file the card records: seconds and runs.

        A file's seconds add up every run in its history (``continued_from``),
        so a DUNET trained on with ``--continue`` counts all its runs, as a
        target trained in stages does. Files made without training (labels)
        are left out. Each run counts what its card entry's ``seconds`` holds
        (an attacked set reused from another run counts only in the run that
        made it, since ``attack_seconds_counted`` was recorded).
        """
        out = {}
        for name, entry in sorted(self.card.get('files', {}).items()):
            seconds, runs = 0.0, 0
            while isinstance(entry, dict) and entry.get('seconds') is not None:
                seconds, runs = seconds + float(entry['seconds']), runs + 1
                entry = entry.get('continued_from')
            if runs:
                out[name] = {'seconds': round(seconds, 1), 'runs': runs}
        return out

    def check_file(self, name: str) -> Path:
        """Return a recorded file's path after checking its hash against the card."""
        path = self.path(name)
        if not path.is_file():
            raise BundleError(f'{self.root}: {name} is missing')
        want = self.file_sha(name)
        if want and sha256(path) != want:
            raise BundleError(f'{self.root}: {name} does not match its card (sha256 differs)')
        return path

    # --- sections -----------------------------------------------------------------------------

    @property
    def target(self) -> dict:
        """Return the target section (model, weights, num_classes, input, preparation)."""
        return self.card['target']

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Return the target's ``(C, H, W)``."""
        return tuple(int(d) for d in self.target['input'])

    def labels(self) -> list[str] | None:
        """Return the class names, or None when the bundle has no labels file."""
        name = self.card.get('labels')
        return read_labels(self.check_file(name)) if name else None

    def denoiser(self, kind: str) -> dict:
        """Return a denoiser's entry (file, config), or raise naming the missing kind."""
        entry = self.card.get('denoisers', {}).get(kind)
        if entry is None:
            command = TRAIN_COMMAND.get(kind, kind)
            raise BundleError(f'{self.root}: no {kind} in this bundle (train it with '
                              f'edge-denoise train {command} --out {self.root})')
        return entry

    def stale(self) -> list[str]:
        """
        Return one line per denoiser made from another file than the bundle now holds.

        A DUNET is trained for one target and DUNET_D is decomposed from one
        DUNET (their card entries hold those files' hashes). After the target
        or the DUNET is trained again, what was made from the old one still
        loads and runs, but it defends, and its figures describe, the old one.
        """
        denoisers = self.card.get('denoisers', {})
        target = self.file_sha(self.target.get('weights', TARGET))
        base = self.file_sha(denoisers.get('dunet', {}).get('weights'))
        lines = []
        for kind, entry in sorted(denoisers.items()):
            made = self.file_entry(entry.get('weights'))
            command = TRAIN_COMMAND.get(kind, kind)
            redo = f'run edge-denoise train {command} --out {self.root} again'
            if made.get('target_sha256') not in (None, target):
                lines.append(f"{entry['weights']} was trained for an earlier target: {redo}")
            if kind == 'dunet_d' and made.get('dunet_sha256') not in (None, base):
                lines.append(f"{entry['weights']} was made from an earlier DUNET: {redo}")
        return lines

    def tails(self) -> dict[str, dict]:
        """Return the fine-tuned tails by ``cut/codec/q`` key."""
        return {key(t['cut'], t['codec'], t.get('quality')): t for t in self.card.get('tails', [])}

    def accuracy_profile(self, target_hash: str | None = None) -> dict[str, dict]:
        """
        Return the held-out accuracy entries by ``cut/codec/q`` key.

        With ``target_hash``, none measured on another target: after the
        target is trained again, what was measured on the old one is no
        measurement of it (the planner treats the setting as unmeasured). An
        entry that names no target (a card written by hand) is kept.
        """
        return {key(a['cut'], a['codec'], a.get('quality')): a
                for a in self.card.get('accuracy', [])
                if target_hash is None or a.get('target', target_hash) == target_hash}

    def put(self, section: str, entry: dict, match: tuple[str, ...]) -> None:
        """Insert ``entry`` into a list section, replacing the one equal on ``match`` keys."""
        items = [e for e in self.card.get(section, [])
                 if any(e.get(k) != entry.get(k) for k in match)]
        items.append(entry)
        self.card[section] = items
