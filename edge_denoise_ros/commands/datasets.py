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

"""``edge-denoise data scenes``: the realistic profile's camera-like data, as ImageFolders."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .common import positive_int, ProgressBar
from ..core import data, datasets, scenes


def register_scenes(p) -> None:
    """Add ``data scenes``'s arguments."""
    p.add_argument('--out', required=True,
                   help='folder to write: OUT/train/<class>/*.png, OUT/test/..., OUT/labels.txt')
    p.add_argument('--train', type=positive_int, default=60000,
                   help='train scenes (from Fashion-MNIST train items, cycling)')
    p.add_argument('--test', type=positive_int, default=10000,
                   help='test scenes (from Fashion-MNIST test items, cycling)')
    p.add_argument('--size', type=positive_int, default=96, help='scene side in pixels (>= 32)')
    p.add_argument('--seed', type=int, default=0, help='seed of every random choice')
    p.set_defaults(func=make_scenes)


def make_scenes(args) -> dict:
    """Write train and test scenes as ImageFolders, in chunks, with a progress bar."""
    cfg = scenes.SceneConfig(size=args.size)
    photos = scenes.load_photos()
    out = Path(args.out)
    start = time.monotonic()
    counts = {}
    for split, count in (('train', args.train), ('test', args.test)):
        bar = ProgressBar(f'scenes {split}')
        chunk = 2000
        for i in range(0, count, chunk):
            n = min(chunk, count - i)
            x, y = scenes.make_scenes(split, n, cfg, seed=args.seed, start=i, photos=photos)
            datasets.write_image_folder(out / split, x, y, data.CLASSES, start=i)
            bar(i + n, count)
        counts[split] = count
    datasets.write_labels(out / 'labels.txt', sorted(datasets.safe_class_dir(c)
                                                     for c in data.CLASSES))
    record = {'command': ' '.join(['edge-denoise'] + sys.argv[1:]), 'seed': args.seed,
              'size': args.size, 'photos': len(photos), 'counts': counts,
              'source': 'Fashion-MNIST items (train items -> train, test items -> test) over '
                        "scikit-image's photographs"}
    (out / 'scenes.json').write_text(json.dumps(record, indent=2) + '\n')
    print(f'wrote {counts["train"]} train and {counts["test"]} test scenes of '
          f'{args.size}x{args.size} to {out} in {time.monotonic() - start:.0f} s')
    return {'out': str(out), **record}
