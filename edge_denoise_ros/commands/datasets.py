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

"""``edge-denoise data scenes | items``: the realistic profile's data, as ImageFolders."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .common import command_of, positive_int, ProgressBar
from ..core import data, datasets, scenes


def _register_splits(p, what: str) -> None:
    p.add_argument('--out', required=True,
                   help='folder to write: OUT/train/<class>/*.png, OUT/test/..., OUT/labels.txt')
    p.add_argument('--train', type=positive_int, default=60000,
                   help=f'train {what} (from Fashion-MNIST train items, cycling)')
    p.add_argument('--test', type=positive_int, default=10000,
                   help=f'test {what} (from Fashion-MNIST test items, cycling)')
    p.add_argument('--seed', type=int, default=0, help='seed of every random choice')


def register_scenes(p) -> None:
    """Add ``data scenes``'s arguments."""
    _register_splits(p, 'scenes')
    p.add_argument('--size', type=positive_int, default=96, help='scene side in pixels (>= 32)')
    p.set_defaults(func=make_scenes)


def register_items(p) -> None:
    """Add ``data items``'s arguments."""
    _register_splits(p, 'items')
    p.set_defaults(func=make_items)


def _write(args, what: str, make) -> dict:
    """Write ``make(split, n, start)``'s images for both splits as ImageFolders, in chunks."""
    out = Path(args.out)
    counts = {}
    for split, count in (('train', args.train), ('test', args.test)):
        bar = ProgressBar(f'{what} {split}')
        chunk = 2000
        for i in range(0, count, chunk):
            n = min(chunk, count - i)
            x, y = make(split, n, i)
            datasets.write_image_folder(out / split, x, y, data.CLASSES, start=i)
            bar(i + n, count)
        counts[split] = count
    datasets.write_labels(out / 'labels.txt', sorted(datasets.safe_class_dir(c)
                                                     for c in data.CLASSES))
    return {'command': command_of(args), 'seed': args.seed,
            'counts': counts}


def make_scenes(args) -> dict:
    """Write train and test scenes as ImageFolders, in chunks, with a progress bar."""
    cfg = scenes.SceneConfig(size=args.size)
    photos = scenes.load_photos()
    start = time.monotonic()
    record = _write(args, 'scenes', lambda split, n, i: scenes.make_scenes(
        split, n, cfg, seed=args.seed, start=i, photos=photos))
    record.update(size=args.size, photos=len(photos),
                  source='Fashion-MNIST items (train items -> train, test items -> test) over '
                         "scikit-image's photographs")
    (Path(args.out) / 'scenes.json').write_text(json.dumps(record, indent=2) + '\n')
    print(f'wrote {args.train} train and {args.test} test scenes of '
          f'{args.size}x{args.size} to {args.out} in {time.monotonic() - start:.0f} s')
    return {'out': args.out, **record}


def make_items(args) -> dict:
    """Write train and test items alone (the scenes' first stage) as ImageFolders."""
    start = time.monotonic()
    record = _write(args, 'items', lambda split, n, i: scenes.make_items(
        split, n, seed=args.seed, start=i))
    record.update(size=28, source='Fashion-MNIST items alone, upright on black in a random '
                                  'colour (train items -> train, test items -> test)')
    # items.json, not scenes.json: what is made from a generator record is always scenes.
    (Path(args.out) / 'items.json').write_text(json.dumps(record, indent=2) + '\n')
    print(f'wrote {args.train} train and {args.test} test items of 28x28 to {args.out} in '
          f'{time.monotonic() - start:.0f} s')
    return {'out': args.out, **record}
