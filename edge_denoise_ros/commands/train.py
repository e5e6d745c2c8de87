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

"""``edge-denoise train ...``: seeded training runs whose outputs ship in ``weights/``."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

from .common import add_schedule_args, positive_int, ProgressBar
from ..core import data, evaluation, models, training
from ..core.models import set_torch_threads


def register_target(p) -> None:
    """Add ``train target``'s arguments."""
    add_schedule_args(p, 15, 128, 0.1, 'peak one-cycle learning rate')
    p.add_argument('--limit', type=positive_int, default=None,
                   help='train on the first N training images only (quick runs)')
    p.add_argument('--threads', type=positive_int, default=None, help='torch intra-op threads')
    p.add_argument('--out', default=None,
                   help=f'weights file; default: the shipped weights/{models.DEFAULT_WEIGHTS}')
    p.set_defaults(func=train_target)


def write_provenance(path: Path, record: dict) -> Path:
    """Write ``<weights>.json`` beside a weights file: how it was made and what it scored."""
    meta = path.with_suffix('.json')
    record = {'command': ' '.join(['edge-denoise'] + sys.argv[1:]),
              'python': platform.python_version(), **record, 'weights': path.name}
    meta.write_text(json.dumps(record, indent=2) + '\n')
    return meta


def train_target(args) -> dict:
    """Train the default target, save it, report test accuracy."""
    set_torch_threads(args.threads)
    x, y = data.load_split_tensors('train', args.limit)
    xt, yt = data.load_split_tensors('test')
    cfg = training.TargetTrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                                     lr=args.lr, seed=args.seed)
    training.seed_everything(cfg.seed)  # the initial weights too
    model = models.SmallResNet()
    start = time.monotonic()
    training.train_target(model, x, y, cfg, progress=ProgressBar('train target'))
    seconds = time.monotonic() - start
    acc = evaluation.accuracy(model, xt, yt)
    out = Path(args.out) if args.out else models.weights_path(models.DEFAULT_WEIGHTS)
    models.save_state_dict(model, out)
    result = {'weights': str(out), 'bytes': out.stat().st_size, 'test_accuracy': acc,
              'n_test': len(yt), 'seconds': round(seconds, 1), 'epochs': cfg.epochs,
              'seed': cfg.seed, 'hash': models.state_hash(model),
              'torch': torch.__version__, 'threads': torch.get_num_threads()}
    write_provenance(out, result)
    print(f'test accuracy {acc:.4f} on {len(yt)} images; saved {out} '
          f'({result["bytes"] / 1e3:.0f} kB) in {seconds:.0f} s')
    return result
