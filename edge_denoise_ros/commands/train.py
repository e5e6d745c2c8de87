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

import hashlib
import json
import platform
import time
from pathlib import Path

import torch

from .common import add_schedule_args, CliError, parse_list, positive_int, ProgressBar
from .common import command_of, warn_stale
from ..core import bundle, data, datasets, evaluation, frames, models, training
from ..core.models import set_torch_threads


def write_provenance(path: Path, record: dict, args) -> Path:
    """Write ``<weights>.json`` beside a weights file: how it was made and what it scored."""
    meta = path.with_suffix('.json')
    record = {'command': command_of(args),
              'python': platform.python_version(), **record, 'weights': path.name}
    meta.write_text(json.dumps(record, indent=2) + '\n')
    return meta


def register_target(p) -> None:
    """Add ``train target``'s arguments."""
    add_schedule_args(p, 15, 128, 0.1, 'peak one-cycle learning rate', layout=True)
    add_model_args(p)
    p.add_argument('--limit', type=positive_int, default=None,
                   help='train on N training images only (a seeded subset; quick runs)')
    p.add_argument('--threads', type=positive_int, default=None, help='torch intra-op threads')
    p.add_argument('--label-smoothing', type=float, default=0.0, help='cross-entropy smoothing')
    p.add_argument('--optimizer', choices=('sgd', 'adamw'), default='sgd',
                   help='SGD with Nesterov momentum, or AdamW (both on a one-cycle schedule)')
    p.add_argument('--weight-decay', type=float, default=5e-4, help='weight decay')
    p.add_argument('--out', default=None,
                   help='a bundle folder (written with --data or a non-default --model), or a '
                        f'weights file; default: the shipped weights/{models.DEFAULT_WEIGHTS}')
    p.set_defaults(func=train_target)


def add_model_args(p, model_default: str | None = models.DEFAULT_MODEL) -> None:
    """Add the arguments naming a user's model, data and frame preparation."""
    p.add_argument('--model', default=model_default,
                   help='registry name (small_resnet, a torchvision classifier) or a .pt2 file'
                        + ('' if model_default else "; default: the --out bundle's target"))
    p.add_argument('--weights', default=None,
                   help='state dict to start from (torchvision names; nothing is downloaded)')
    p.add_argument('--data', default=None,
                   help='training data: an ImageFolder (ROOT/<class>/<image>); default: '
                        'Fashion-MNIST from the Debian package')
    p.add_argument('--test-data', default=None,
                   help='held-out ImageFolder; default: DATA/../test when DATA ends in /train')
    p.add_argument('--input', default=None, help='model input CxHxW (default: the model\'s own)')
    p.add_argument('--resize', choices=frames.RESIZE_POLICIES, default='stretch',
                   help='how a frame of another size becomes the input')
    p.add_argument('--channel-order', choices=frames.CHANNEL_ORDERS, default='rgb',
                   help="the model's channel order")
    p.add_argument('--mean', type=lambda t: tuple(parse_list(t, float)),
                   default=frames.IMAGENET_MEAN, help='per-channel mean of [0, 1] pixels')
    p.add_argument('--std', type=lambda t: tuple(parse_list(t, float)),
                   default=frames.IMAGENET_STD, help='per-channel std of [0, 1] pixels')


def test_folder(args) -> Path:
    """Return the held-out ImageFolder of ``--data`` (``--test-data`` or the sibling ``test``)."""
    if args.test_data:
        return Path(args.test_data)
    data_dir = Path(args.data)
    sibling = data_dir.parent / 'test'
    if data_dir.name == 'train' and sibling.is_dir():
        return sibling
    raise CliError(f'no held-out data: pass --test-data (no {sibling} beside {data_dir})')


def load_user_data(args, shape, prep, limit=None):
    """Return ``(train, test)`` image sets of ``--data``, prepared for ``shape``."""
    def prepare(img, s):
        return frames.prepare_pixels(img, s, prep)

    train = datasets.load_image_folder(args.data, shape, prepare, limit=limit, seed=args.seed)
    test = datasets.load_image_folder(test_folder(args), shape, prepare)
    if test.classes != train.classes:
        raise CliError(f'train and test classes differ: {train.classes} vs {test.classes}')
    return train, test


def train_target(args) -> dict:
    """Train a target (the default, or a user's model on their data), save it, report accuracy."""
    set_torch_threads(args.threads)
    cfg = training.TargetTrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                                     lr=args.lr, seed=args.seed,
                                     label_smoothing=args.label_smoothing,
                                     optimizer_name=args.optimizer,
                                     weight_decay=args.weight_decay,
                                     channels_last=args.channels_last)
    if args.data is None and args.model == models.DEFAULT_MODEL and \
            not (args.out and Path(args.out).suffix == ''):
        return train_default_target(args, cfg)
    if args.data is None:
        raise CliError('a user\'s model needs --data (an ImageFolder)')
    if str(args.model).endswith('.pt2'):
        raise CliError('train target trains registry models; a .pt2 is already trained '
                       '(use it with --model in host-finetune, denoiser, eval)')
    shape = datasets.parse_input(args.input) if args.input else models.input_shape(args.model)
    prep = frames.Preparation(args.resize, args.channel_order, args.mean, args.std
                              ).channels(shape[0])
    if not args.out:
        raise CliError('--out BUNDLE is required with --data')
    out = Path(args.out)
    init_sha = bundle.sha256(Path(args.weights)) if args.weights else None   # before any save
    train, test = load_user_data(args, shape, prep, args.limit)
    training.seed_everything(cfg.seed)  # the initial weights too
    target = models.build_target(args.model, args.weights, len(train.classes), prep.mean,
                                 prep.std, pretrained=False)
    start = time.monotonic()
    ckpt = training.Checkpoint(out / 'checkpoints' / run_name(args, init_sha))
    training.train_target(target, train.x, train.y, cfg, progress=ProgressBar('train target'),
                          checkpoint=ckpt)
    seconds = ckpt.seconds_since(start)
    acc = evaluation.accuracy(target, test.x, test.y, batch_size=250)
    b = bundle.Bundle.open_or_create(out)
    b.command = command_of(args)
    models.save_state_dict(models.user_module(target), b.path(bundle.TARGET))
    datasets.write_labels(b.path(bundle.LABELS), train.classes)
    b.card['target'] = {'model': args.model, 'weights': bundle.TARGET,
                        'num_classes': len(train.classes), 'input': list(shape),
                        'preparation': prep.as_dict(),
                        'normalize_in_model': models.has_own_normalize(args.model)}
    b.card['labels'] = bundle.LABELS
    b.card['data'] = {'train': str(args.data), 'test': str(test_folder(args)),
                      'n_train': len(train), 'n_test': len(test)}
    made = datasets.generator_record(args.data)
    if made is not None:          # generated data: a fresh machine can make it again
        b.card['data']['generator'] = made
    # Started from a bundle's target (this one's or another's): keep how that one was made.
    # The card on disk is still the one from before this run (saved below).
    continued = bundle.Bundle.record_of(args.weights, init_sha) if args.weights else None
    b.record_file(bundle.TARGET, seed=cfg.seed, test_accuracy=acc, n_test=len(test),
                  seconds=round(seconds, 1), epochs=cfg.epochs, lr=cfg.lr,
                  batch_size=cfg.batch_size, channels_last=cfg.channels_last,
                  torch=torch.__version__,
                  threads=torch.get_num_threads(), continued_from=continued,
                  data={'train': str(args.data), 'n_train': len(train),
                        'made': datasets.made_record(args.data)})
    b.record_file(bundle.LABELS)
    b.save()
    print(f'test accuracy {acc:.4f} on {len(test)} images; bundle {out} '
          f'(target {b.path(bundle.TARGET).stat().st_size / 1e6:.1f} MB) in {seconds:.0f} s')
    warn_stale(b)      # the bundle's DUNET and DUNET_D were trained for the target before
    return {'bundle': str(out), 'test_accuracy': acc, 'n_test': len(test),
            'seconds': round(seconds, 1)}


def run_name(args, init_sha: str | None) -> str:
    """Return a training run's checkpoint file name: one per settings (a rerun resumes it)."""
    keys = ('model', 'data', 'input', 'limit', 'epochs', 'batch_size', 'lr', 'optimizer',
            'weight_decay', 'label_smoothing', 'seed', 'resize', 'channel_order', 'mean', 'std')
    text = repr([getattr(args, k, None) for k in keys] + [init_sha]
                + (['channels_last'] if getattr(args, 'channels_last', False) else []))
    return f'target_{hashlib.sha256(text.encode()).hexdigest()[:12]}.ckpt'


def train_default_target(args, cfg) -> dict:
    """Train the default target on Fashion-MNIST, save it beside its provenance."""
    x, y = data.load_split_tensors('train', args.limit)
    xt, yt = data.load_split_tensors('test')
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
    write_provenance(out, result, args)
    print(f'test accuracy {acc:.4f} on {len(yt)} images; saved {out} '
          f'({result["bytes"] / 1e3:.0f} kB) in {seconds:.0f} s')
    return result
