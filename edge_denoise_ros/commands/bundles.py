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
A user's target, data and bundle: what ``train denoiser | denoiser-d | host-finetune`` share.

``--out BUNDLE`` names the bundle; its target is the one already in it, or the
``--model`` (registry name with ``--weights``, or a ``.pt2``) written into it
first. Data come from ``--data`` (an ImageFolder) or the bundle's card; the
held-out data from ``--test-data``, the card, a ``test`` folder beside
``train``, or else a seeded fifth of ``--data`` kept out of training.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
import time
from pathlib import Path

import torch

from .common import CliError, command_of, format_table, parse_list, ProgressBar, warn_stale
from ..core import bundle, codecs, datasets, dunet, evaluation, frames, models, pipeline
from ..core import tails, training, tucker, wire
from .heldout import read_context, shuffled, UserContext
from ..harness import labelled_frames

HOLDOUT = 0.2               # the share of --data held out when there is no test folder
TRAIN_EPS = (2 / 255, 4 / 255, 8 / 255, 12 / 255, 16 / 255)   # HGD's training mix, bundles


def bundle_mode(args) -> bool:
    """Return whether a training command works on a bundle (else: the shipped 1x28x28 set)."""
    return bool(getattr(args, 'data', None)) or (
        bool(getattr(args, 'out', None)) and (Path(args.out) / bundle.CARD).is_file())


def _write_target(b: bundle.Bundle, args) -> None:
    """Put ``--model`` (and ``--weights``) into a bundle as its target."""
    if not args.data:
        raise CliError('a new bundle needs --data (an ImageFolder) to name its classes')
    classes = datasets.folder_classes(Path(args.data))
    b.root.mkdir(parents=True, exist_ok=True)
    model = str(args.model)
    if model.endswith('.pt2'):
        shutil.copyfile(model, b.path('target.pt2'))
        spec = {'model': 'target.pt2', 'weights': None}
        b.record_file('target.pt2', source=model)
    else:
        if not args.weights and not models.has_own_normalize(model):
            raise CliError(f'{model} needs trained weights: --weights FILE, or train it first '
                           f'(edge-denoise train target --model {model} --data ... '
                           f'--out {b.root})')
        spec = {'model': model, 'weights': bundle.TARGET}
        source = args.weights or models.weights_path(models.DEFAULT_WEIGHTS)
        shutil.copyfile(source, b.path(bundle.TARGET))
        b.record_file(bundle.TARGET, source=str(source))
    shape = datasets.parse_input(args.input) if args.input else models.input_shape(model)
    prep = frames.Preparation(args.resize, args.channel_order, tuple(args.mean),
                              tuple(args.std)).channels(shape[0])
    b.card['target'] = {**spec, 'num_classes': len(classes), 'input': list(shape),
                        'preparation': prep.as_dict(),
                        'normalize_in_model': models.has_own_normalize(model)}
    datasets.write_labels(b.path(bundle.LABELS), classes)
    b.card['labels'] = bundle.LABELS
    b.record_file(bundle.LABELS)
    b.save()


def _test_source(args, b: bundle.Bundle, train_dir: str) -> str | None:
    if getattr(args, 'test_data', None):
        return args.test_data
    recorded = b.card.get('data', {}).get('test')
    if recorded and recorded != train_dir and Path(recorded).is_dir():
        return recorded
    sibling = Path(train_dir).parent / 'test'
    if Path(train_dir).name == 'train' and sibling.is_dir():
        return str(sibling)
    return None


def open_context(args, n_train: int | None = None) -> UserContext:
    """Open (or start) the bundle ``--out``, load its target and data."""
    b = bundle.Bundle.open_or_create(args.out)
    b.command = command_of(args)
    named = args.model if args.model != models.DEFAULT_MODEL or 'target' not in b.card else None
    if 'target' not in b.card or (named and named != b.target.get('model')):
        if not args.model:
            raise CliError(f'{args.out} has no target yet: pass --model (and --weights)')
        _write_target(b, args)
    target = pipeline.Target(bundle=args.out)
    train_dir = args.data or b.card.get('data', {}).get('train')
    if not train_dir:
        raise CliError(f'no training data: pass --data (the card of {args.out} names none)')

    def prepare(img, shape):
        return frames.prepare_pixels(img, shape, target.preparation)

    test_dir = _test_source(args, b, train_dir)
    # Data: an ImageFolder, or a bag with ground truth in the demo bag's layout.
    n_folder = labelled_frames.count_images(train_dir)
    if test_dir is not None:          # only the images trained on are read
        train = labelled_frames.load_images(train_dir, target.input_shape, prepare,
                                            target.labels, limit=n_train, seed=args.seed)
        test = labelled_frames.load_images(test_dir, target.input_shape, prepare, target.labels)
        test = shuffled(test, seed=0)     # a folder is sorted by class: any first N is a sample
    else:
        full = labelled_frames.load_images(train_dir, target.input_shape, prepare, target.labels)
        train, test = datasets.split_holdout(full, HOLDOUT, seed=0)
        test = shuffled(test, seed=0)
        if n_train is not None and n_train < len(train):
            train = datasets.subset(train, n_train, seed=args.seed)
    if target.labels and len(train.classes) != len(target.labels):
        raise CliError(f'{train_dir} has {len(train.classes)} classes, the target '
                       f'{len(target.labels)}')
    b.card['data'] = {'train': str(train_dir), 'test': test_dir,
                      'holdout': None if test_dir else HOLDOUT,
                      'n_train': n_folder if test_dir else n_folder - len(test),
                      'n_test': len(test)}
    made = datasets.generator_record(train_dir)
    if made is not None:          # generated data: a fresh machine can make it again
        b.card['data']['generator'] = made
    return UserContext(b, target, train, test)


def _mix(args, recorded: dict | None = None) -> training.AdversarialMix:
    """
    Return HGD's training mix from ``--train-eps`` and ``--attack-mix``.

    What they leave out comes from ``recorded`` (a card entry's ``train_mix``
    and ``train_eps``: DUNET_D is fine-tuned on its DUNET's own set), else the
    defaults.
    """
    recorded = recorded or {}
    shares = {k: recorded['train_mix'][k] for k in training.ATTACK_KINDS
              if k in recorded.get('train_mix', {})}
    if args.attack_mix is not None:
        if len(args.attack_mix) != len(training.ATTACK_KINDS):
            raise CliError(f'--attack-mix takes {len(training.ATTACK_KINDS)} shares '
                           f'(clean,fgsm,pgd), got {len(args.attack_mix)}')
        shares = dict(zip(training.ATTACK_KINDS, args.attack_mix))
    eps = args.train_eps or recorded.get('train_eps') or TRAIN_EPS
    try:
        return training.AdversarialMix(eps=tuple(eps), **shares)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _mix_record(mix: training.AdversarialMix) -> dict:
    """Return how a card records a training mix: the shares of each kind and the budgets."""
    return {'train_mix': {k: getattr(mix, k) for k in training.ATTACK_KINDS},
            'train_eps': list(mix.eps)}


def _run_key(ctx: UserContext, *inputs) -> str:
    """Return a digest of the bundle's target, its training images and ``inputs``."""
    if 'train' not in ctx.digests:      # hashed once: the set and the checkpoint both need it
        ctx.digests['train'] = hashlib.sha256(ctx.train.x.numpy().tobytes()
                                              + ctx.train.y.numpy().tobytes()).hexdigest()
    key = hashlib.sha256(repr((ctx.target.hash, ctx.digests['train']) + inputs).encode())
    return key.hexdigest()[:16]


def _checkpoint(ctx: UserContext, kind: str, *inputs) -> training.Checkpoint:
    """
    Return the checkpoint of one training run, named by all that shapes its result.

    The name holds :func:`_run_key` of the run's settings and starting weights
    (``inputs``), so a run resumes only its own state: after the target, the
    images or a setting changed, it trains afresh instead of resuming (or, when
    finished, returning) weights that were made for something else.
    """
    return training.Checkpoint(ctx.bundle.root / 'checkpoints'
                               / f'{kind}_{_run_key(ctx, *inputs)}.ckpt')


def _adversarial(ctx: UserContext, mix: training.AdversarialMix, seed: int, run: str):
    """
    Return HGD's training set ``(x_adv, x_clean, counts, made_s, spent_s)``, made once.

    The set is cached under ``checkpoints/`` keyed by the target's hash, the
    images (their hash), the mix and the seed, so DUNET_D's fine-tuning, a
    resumed run and a ``--continue`` run with the same mix reuse it instead of
    attacking again. ``made_s`` is the time its attacks took when it was made;
    ``spent_s`` is the part of it that the run named ``run`` (its checkpoint's
    name) counts as its own: all of it for the run that made it (resumed or
    not), none for another run that reuses it (a set cached before the maker
    was recorded counts for whoever loads it).
    """
    x = ctx.train.floats()
    cache = ctx.bundle.root / 'checkpoints' / f'adversarial_{_run_key(ctx, mix, seed)}.pt'
    if cache.is_file():
        saved = torch.load(cache, map_location='cpu', weights_only=True)
        made = float(saved.get('seconds', 0.0))
        own = saved.get('run') in (None, run)
        return saved['x_adv'].float(), x, saved['counts'], made, made if own else 0.0
    start = time.monotonic()
    g = training.seed_everything(seed)
    x_adv, kind, _ = training.make_adversarial_set(
        ctx.target.model, x, ctx.train.y, mix, g, batch_size=250,
        progress=ProgressBar('attack train set'))
    counts = {k: int((kind == i).sum()) for i, k in enumerate(training.ATTACK_KINDS)}
    seconds = time.monotonic() - start
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'x_adv': x_adv, 'counts': counts, 'seconds': seconds, 'run': run}, cache)
    return x_adv, x, counts, seconds, seconds


def report(ctx: UserContext, defended: dict, limit: int, eps: float, seed: int = 0) -> dict:
    """Print and return accuracy[defense][attack] on the bundle's held-out data."""
    n = min(limit, len(ctx.test))
    x, y = ctx.test.floats(slice(0, n)), ctx.test.y[:n]
    acc = evaluation.evaluate(ctx.target.model, x, y, defended,
                              evaluation.eval_attacks(seed, eps=eps), progress=ProgressBar('eval'))
    rows = [{'defense': d, **{a: round(v, 4) for a, v in row.items()}} for d, row in acc.items()]
    print(format_table(rows))
    print(f'{n} held-out images, L-inf eps {eps:.4f}')
    return acc


def _save_denoiser(ctx: UserContext, kind: str, model, cfg: dunet.DUNetConfig, seed: int,
                   **figures) -> dict:
    name = f'{kind}.pt'
    models.save_state_dict(model, ctx.bundle.path(name))
    ctx.bundle.card.setdefault('denoisers', {})[kind] = {'weights': name,
                                                         'config': cfg.as_dict()}
    entry = ctx.bundle.record_file(name, seed=seed, target_sha256=_target_sha(ctx), **figures)
    ctx.bundle.save()
    print(f'saved {ctx.bundle.path(name)} ({entry["bytes"] / 1e6:.2f} MB)')
    warn_stale(ctx.bundle)
    return {'bundle': str(ctx.bundle.root), 'file': name, 'trained': True, **figures}


def train_denoiser(args) -> dict:
    """Train a DUNET with HGD's guided loss for a bundle's target on the user's data."""
    ctx = open_context(args, args.n_train)
    c, h, _ = ctx.target.input_shape
    cfg = dunet.DUNetConfig.scaled(c, h, args.width)
    mix = _mix(args)
    tcfg = training.DenoiserTrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                                        lr=args.lr, loss=args.loss, seed=args.seed,
                                        channels_last=args.channels_last)
    earlier, start_from = (_continued_dunet(ctx, cfg, args.width) if args.continue_dunet
                           else (None, None))
    if earlier is not None:
        done = _continuation_done(ctx, earlier, cfg, tcfg, mix)
        if done is not None:
            print(f'{ctx.bundle.root}: its DUNET already holds this run ({done["command"]}); '
                  f'nothing to train')
            return {'bundle': str(ctx.bundle.root), 'file': 'dunet.pt', 'trained': False}
    ckpt = _checkpoint(ctx, 'dunet', cfg, tcfg, mix,
                       *([earlier['sha256']] if earlier else []))
    x_adv, x_clean, counts, attack_seconds, attack_spent = _adversarial(
        ctx, mix, args.seed, ckpt.path.name)
    start = time.monotonic()
    training.seed_everything(args.seed)
    model = dunet.build_dunet(cfg)
    if start_from is not None:
        model.load_state_dict(models.load_state_dict(start_from))
    training.train_denoiser(model, ctx.target.model, x_adv, x_clean, tcfg,
                            progress=ProgressBar('train DUNET'), checkpoint=ckpt)
    seconds = attack_spent + ckpt.seconds_since(start)
    acc = report(ctx, {'none': torch.nn.Identity(), 'dunet': model}, args.eval_limit, args.eps)
    n_eval = min(args.eval_limit, len(ctx.test))
    change = dunet.mean_change(model, ctx.test.floats(slice(0, n_eval)))
    if change < dunet.IDLE_LEVELS:
        print(f'warning: DUNET changes the held-out images by {change:.2f} of 255 levels on '
              f'average: it passes them through almost unchanged (train longer, or with more '
              f'attacked images in --attack-mix)')
    return _save_denoiser(
        ctx, 'dunet', model, cfg, args.seed, width=args.width, loss=args.loss,
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        channels_last=args.channels_last, n_train=len(x_clean),
        train_set=counts, **_mix_record(mix), seconds=round(seconds, 1),
        attack_seconds=round(attack_seconds, 1), attack_seconds_counted=round(attack_spent, 1),
        eval_n=n_eval,
        eval_eps=args.eps, macs=tucker.total_macs(model, cfg.input_shape), accuracy=acc,
        mean_change_levels=round(change, 3), continued_from=earlier, run=ckpt.path.name)


def _target_sha(ctx: UserContext) -> str | None:
    """Return the sha256 the card records for the bundle's target weights."""
    return ctx.bundle.file_sha(ctx.bundle.target.get('weights', bundle.TARGET))


def _continued_dunet(ctx: UserContext, cfg: dunet.DUNetConfig,
                     width: float) -> tuple[dict, Path]:
    """
    Return the card entry and the checked file of the DUNET ``--continue`` starts from.

    The DUNET must have ``cfg``'s widths and have been trained for the
    bundle's current target (a DUNET made for another target is refused),
    both checked before any attack is made.
    """
    entry = ctx.bundle.denoiser('dunet')
    if dunet.DUNetConfig.from_dict(entry['config']) != cfg:
        raise CliError(f"--continue: the DUNET of {ctx.bundle.root} has other widths than "
                       f"--width {width} makes; pass its width")
    record = dict(ctx.bundle.file_entry(entry['weights']))
    if record.get('target_sha256') != _target_sha(ctx):
        raise CliError(f'--continue: the DUNET of {ctx.bundle.root} was trained for another '
                       f'target; train a fresh one (without --continue)')
    path = ctx.bundle.check_file(entry['weights'])
    print(f"continuing from {entry['weights']} ({record.get('command', 'no command recorded')})")
    return record, path


def _continuation_done(ctx: UserContext, entry: dict, cfg: dunet.DUNetConfig,
                       tcfg: training.DenoiserTrainConfig, mix) -> dict | None:
    """
    Return the entry in the DUNET's history that this ``--continue`` run made, or None.

    Each entry records its run (``run``: the checkpoint name, keyed by the
    settings and the weights it started from), so running a recipe of
    continuations again (``make next-bundle`` after a stop) trains only the
    steps not yet in the history instead of continuing the finished ones.
    """
    while entry.get('continued_from'):
        start = entry['continued_from']
        name = _checkpoint(ctx, 'dunet', cfg, tcfg, mix, start.get('sha256')).path.name
        if entry.get('run') == name:
            return entry
        entry = start
    return None


def train_denoiser_d(args) -> dict:
    """Tucker-decompose a bundle's DUNET into DUNET_D, fine-tune it post hoc, save it."""
    ctx = open_context(args, args.n_train)
    entry = ctx.bundle.denoiser('dunet')
    cfg = dunet.DUNetConfig.from_dict(entry['config'])
    base = dunet.load_denoiser('dunet', cfg, ctx.bundle.check_file(entry['weights']))
    base_sha = ctx.bundle.file_sha(entry['weights'])     # checked just now
    start = time.monotonic()
    rule = args.rule or cfg.rank_rule
    approx = dunet.decompose(base, rule)
    ranks = dunet.tucker_ranks(approx)
    shape = ctx.target.input_shape
    total, total_d = tucker.total_macs(base, shape), tucker.total_macs(approx, shape)
    print(f'ranks ({rule}): ' + ', '.join(f'{k}={v}' for k, v in ranks.items())
          + f'; MACs at {"x".join(map(str, shape))} {total:,} -> {total_d:,} '
            f'(ratio {total_d / total:.4f})')
    mix = _mix(args, ctx.bundle.file_entry(entry['weights']))
    tcfg = training.DenoiserTrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                                        lr=args.lr, seed=args.seed,
                                        channels_last=args.channels_last)
    ckpt = _checkpoint(ctx, 'dunet_d', base_sha, rule, tcfg, mix)
    # DUNET's set, seldom made here; when it is, ``seconds`` (from ``start``) holds its making.
    x_adv, x_clean, counts, _, _ = _adversarial(ctx, mix, args.seed, ckpt.path.name)
    training.train_denoiser(approx, ctx.target.model, x_adv, x_clean, tcfg,
                            progress=ProgressBar('fine-tune DUNET_D'), checkpoint=ckpt)
    seconds = ckpt.seconds_since(start)
    acc = report(ctx, {'dunet': base, 'dunet_d': approx}, args.eval_limit, args.eps)
    return _save_denoiser(
        ctx, 'dunet_d', approx, cfg, args.seed, rank_rule=rule,
        ranks={k: list(v) for k, v in ranks.items()}, dunet_macs=total, dunet_d_macs=total_d,
        mac_ratio=total_d / total, dunet_sha256=base_sha, epochs=args.epochs, lr=args.lr,
        batch_size=args.batch_size, channels_last=args.channels_last, n_train=len(x_clean),
        train_set=counts, **_mix_record(mix), seconds=round(seconds, 1),
        eval_n=min(args.eval_limit, len(ctx.test)), eval_eps=args.eps, accuracy=acc)


def reference(ctx: UserContext, n: int) -> float:
    """Return the unsplit target's accuracy on the first ``n`` held-out images (once per n)."""
    cache = ctx.references
    if n not in cache:
        cache[n] = evaluation.accuracy(ctx.target.model, ctx.test.x[:n], ctx.test.y[:n], 250)
    return cache[n]


def measure_setting(ctx: UserContext, cut: str, codec: str, quality: int | None, tail,
                    limit: int) -> dict:
    """Return the held-out accuracy of one (cut, codec, quality) through ``tail``."""
    head, _ = ctx.target.halves(cut)
    n = min(limit, len(ctx.test))
    opts = codecs.jpeg_options(codec, quality)
    hits = 0
    with torch.no_grad():
        for i in range(0, n, 250):
            x, y = ctx.test.floats(slice(i, min(i + 250, n))), ctx.test.y[i:min(i + 250, n)]
            sent = torch.from_numpy(codecs.roundtrip(head(x), codec, **opts)[0])
            hits += evaluation.top1_hits(tail(sent), y)
    acc, ref = hits / n, reference(ctx, n)
    return {'cut': cut, 'codec': codec, 'quality': quality, 'accuracy': acc,
            'reference': ref, 'drop_pt': round(100 * (ref - acc), 4), 'n': n,
            'target': ctx.target.hash}


def channel_of(codec: str, quality: int | None):
    """Return the link as a function: encode and decode every sample of a batch."""
    opts = codecs.jpeg_options(codec, quality)

    def channel(f):
        return torch.from_numpy(codecs.roundtrip(f, codec, **opts)[0])
    return channel


def finetune_config(args, tail) -> training.HostFinetuneConfig:
    """Return host-finetune's settings; a ``--tune`` naming no module of ``tail`` is refused."""
    try:
        training.tuned_params(tail, args.tune)
    except ValueError as exc:
        raise CliError(f'--tune: {exc}') from None
    return training.HostFinetuneConfig(epochs=args.epochs, batch_size=args.batch_size,
                                       lr=args.lr, seed=args.seed, tune=args.tune)


def host_finetune(args) -> dict:
    """Fine-tune a bundle target's tail at (cut, codec, quality); record tail and accuracy."""
    quality = codecs.codec_quality(args.codec, args.quality)
    ctx = open_context(args, args.limit)
    cut = ctx.target.check_cut(args.cut)
    head, plain = ctx.target.halves(cut)
    limit = args.test_limit or len(ctx.test)
    tail = copy.deepcopy(plain)
    cfg = finetune_config(args, tail)
    before = measure_setting(ctx, cut, args.codec, quality, plain, limit)
    start = time.monotonic()
    name = bundle.tail_file(cut, args.codec, quality)
    ckpt = _checkpoint(ctx, name, cfg)
    training.finetune_host_tail(head, tail, ctx.train.x, ctx.train.y,
                                channel_of(args.codec, quality), cfg,
                                progress=ProgressBar('host fine-tune'), checkpoint=ckpt)
    seconds = ckpt.seconds_since(start)
    after = measure_setting(ctx, cut, args.codec, quality, tail, limit)
    models.save_state(training.tuned_state(tail, plain, cfg.tune), ctx.bundle.path(name))
    ctx.bundle.put('tails', {'cut': cut, 'codec': args.codec, 'quality': quality,
                             'weights': name, 'base_hash': ctx.target.hash},
                   ('cut', 'codec', 'quality'))
    ctx.bundle.put('accuracy', {**after, 'tail': name}, ('cut', 'codec', 'quality'))
    ctx.bundle.record_file(name, seed=args.seed, cut=cut, codec=args.codec, quality=quality,
                           accuracy_before=before['accuracy'], accuracy_after=after['accuracy'],
                           reference=after['reference'], n_test=after['n'],
                           n_train=len(ctx.train), epochs=cfg.epochs, lr=cfg.lr,
                           tune=list(cfg.tune), seconds=round(seconds, 1))
    ctx.bundle.save()
    print(f'{args.codec} q={quality} at {cut}: held-out accuracy {before["accuracy"]:.4f} -> '
          f'{after["accuracy"]:.4f} (unsplit {after["reference"]:.4f}, n={after["n"]}); saved '
          f'{ctx.bundle.path(name)} in {seconds:.0f} s')
    return {'bundle': str(ctx.bundle.root), 'tail': name, 'before': before, 'after': after,
            'seconds': round(seconds, 1)}


# --- edge-denoise bundle accuracy | show ---------------------------------------------------

def register_accuracy(p) -> None:
    """Add ``bundle accuracy``'s arguments."""
    p.add_argument('--bundle', required=True, help='bundle folder')
    p.add_argument('--cuts', type=lambda t: parse_list(t), default=None,
                   help="cuts to measure (labels or node names; 'frame' = host-only); default: "
                        "every cut of the target and the frame")
    p.add_argument('--codecs', type=lambda t: parse_list(t), default=['q8', 'jpeg'],
                   help='lossy codecs to measure (feature codecs; jpeg/deepn_jpeg at the frame)')
    p.add_argument('--qualities', type=lambda t: parse_list(t, int), default=[5, 20, 50, 90],
                   help='JPEG qualities to measure')
    p.add_argument('--limit', type=int, default=2000, help='held-out frames per measurement')
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads')
    p.set_defaults(func=accuracy_profile)


def register_show(p) -> None:
    """Add ``bundle show``'s arguments."""
    p.add_argument('--bundle', required=True, help='bundle folder')
    p.set_defaults(func=show)


def _settings(cuts, codec_names, qualities):
    """Yield every (cut, codec, quality) to measure: image codecs at the frame, else feature."""
    for cut in cuts:
        allowed = wire.IMAGE_CODECS if cut == pipeline.FRAME_CUT else wire.FEATURE_CODECS
        for codec in codec_names:
            if codec not in allowed:
                continue
            if codec == 'jpeg':
                yield from ((cut, codec, q) for q in qualities)
            else:
                yield cut, codec, None


# The defense a host-only frame meets on the host, first found in the bundle: the edge's
# default (dunet_d), else dunet. A frame codec runs *before* it, on whatever the camera saw.
ATTACKED_DEFENSES = ('dunet_d', 'dunet')


def _frame_inputs(ctx: UserContext, pixels: torch.Tensor, codec: str | None,
                  quality: int | None) -> torch.Tensor:
    """
    Return the model inputs of 8-bit frames ``pixels`` (N, C, H, W) as the host gets them.

    Each frame goes as a camera sends it (bgr8 for a 3-channel RGB target), through
    the image ``codec`` (None: raw), and is prepared by the target's preprocessing.
    """
    opts = codecs.jpeg_options(codec, quality) if codec else {}
    out = []
    for img in pixels:
        frame = img.permute(1, 2, 0).numpy()
        frame = frame[:, :, ::-1] if ctx.target.input_shape[0] == 3 and \
            ctx.target.preparation.channel_order == 'rgb' else frame
        frame = frame.copy() if frame.shape[-1] == 3 else frame[:, :, 0].copy()
        if codec:
            payload, meta = codecs.encode(frame, codec, **opts)
            frame = codecs.decode(payload, meta)
        out.append(ctx.target.preprocess(frame, 'bgr8' if frame.ndim == 3 else 'mono8'))
    return torch.cat(out)


def attacked_frames(ctx: UserContext, n: int) -> torch.Tensor:
    """
    Return ``eval``'s gray-box PGD examples of the first ``n`` held-out frames, as 8-bit frames.

    The same attack, seed and batches as ``edge-denoise eval --bundle`` (L-inf 8/255
    against the target alone), rounded to the 8-bit pixels a camera delivers.
    Made once per context.
    """
    key = ('pgd', n)
    if key not in ctx.attacked:
        attack = evaluation.eval_attacks(eps=evaluation.BUNDLE_EPS)['pgd']
        models.eval_mode(ctx.target.model)
        parts = []
        for i in range(0, n, 250):
            x, y = ctx.test.floats(slice(i, min(i + 250, n))), ctx.test.y[i:min(i + 250, n)]
            xa = attack(ctx.target.model, x, y).detach()
            parts.append(xa.mul(255.0).round_().clamp_(0, 255).to(torch.uint8))
        ctx.attacked[key] = torch.cat(parts)
    return ctx.attacked[key]


def _frame_hits(ctx: UserContext, pixels: torch.Tensor, codec: str | None,
                quality: int | None, defense=None) -> int:
    """Return how many of the held-out frames ``pixels`` (first ones) the host classifies right."""
    hits = 0
    with torch.no_grad():
        for i in range(0, len(pixels), 250):
            x = _frame_inputs(ctx, pixels[i:i + 250], codec, quality)
            x = x if defense is None else defense(x)
            hits += evaluation.top1_hits(ctx.target.model(x), ctx.test.y[i:i + 250])
    return hits


def measure_frame_attacked(ctx: UserContext, codec: str, quality: int | None,
                           n: int) -> dict | None:
    """
    Host-only under attack: the defended accuracy of attacked frames sent with ``codec``.

    The frame codec runs before the host's defense, on the adversarial frame itself,
    so what it costs is not what it costs on clean frames (a JPEG reshapes the noise
    the denoiser was trained to remove). Reference: the same attacked frames sent raw
    through the same defense. None when the bundle has no denoiser.
    """
    have = set(pipeline.defenses_for(ctx.target))
    name = next((d for d in ATTACKED_DEFENSES if d in have), None)
    if name is None:
        return None
    defense = pipeline.build_defense(name, ctx.target).eval()
    pixels = attacked_frames(ctx, n)
    ref_key = ('pgd_reference', name, n)
    if ref_key not in ctx.attacked:
        ctx.attacked[ref_key] = _frame_hits(ctx, pixels, None, None, defense) / n
    ref = ctx.attacked[ref_key]
    acc = _frame_hits(ctx, pixels, codec, quality, defense) / n
    return {'attack': 'pgd', 'eps': round(evaluation.BUNDLE_EPS, 6), 'defense': name,
            'accuracy': acc, 'reference': ref, 'drop_pt': round(100 * (ref - acc), 4), 'n': n}


def measure_frame_setting(ctx: UserContext, codec: str, quality: int | None,
                          limit: int) -> dict:
    """
    Host-only: the held-out accuracy of frames sent with an image codec.

    ``attacked`` adds the same under attack, with the host's defense
    (:func:`measure_frame_attacked`); the planner screens with the worse drop.
    """
    n = min(limit, len(ctx.test))
    acc, ref = _frame_hits(ctx, ctx.test.x[:n], codec, quality) / n, reference(ctx, n)
    entry = {'cut': pipeline.FRAME_CUT, 'codec': codec, 'quality': quality, 'accuracy': acc,
             'reference': ref, 'drop_pt': round(100 * (ref - acc), 4), 'n': n,
             'target': ctx.target.hash}
    attacked = measure_frame_attacked(ctx, codec, quality, n)
    if attacked is not None:
        entry['attacked'] = attacked
    return entry


def accuracy_profile(args) -> dict:
    """Measure held-out accuracy per (cut, codec, quality) with the tail the host would use."""
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = read_context(args.bundle)
    lookup = tails.finetuned_tails(ctx.target)
    cuts = [ctx.target.check_cut(c) for c in args.cuts] if args.cuts else \
        [pipeline.FRAME_CUT] + [c for c in ctx.target.cuts if c != 'input']
    rows = []
    bar = ProgressBar('accuracy')
    todo = list(_settings(cuts, args.codecs, args.qualities))
    for i, (cut, codec, q) in enumerate(todo, 1):
        if cut == pipeline.FRAME_CUT:
            entry = measure_frame_setting(ctx, codec, q, args.limit)
        else:
            tuned = lookup(cut, codec, q)
            tail = tuned if tuned is not None else ctx.target.halves(cut)[1]
            entry = measure_setting(ctx, cut, codec, q, tail, args.limit)
            if tuned is not None:
                entry['tail'] = Path(tuned.finetuned).name
        ctx.bundle.put('accuracy', entry, ('cut', 'codec', 'quality'))
        keys = ('cut', 'codec', 'quality', 'accuracy', 'drop_pt', 'n', 'tail')
        rows.append({k: entry.get(k) for k in keys})
        bar(i, len(todo))
    before = len(ctx.bundle.card.get('accuracy', []))
    ctx.bundle.card['accuracy'] = list(ctx.bundle.accuracy_profile(ctx.target.hash).values())
    stale = before - len(ctx.bundle.card['accuracy'])
    ctx.bundle.save()
    print(format_table(rows))
    if stale:
        print(f'dropped {stale} entries measured for another target than {ctx.target.hash}')
    return {'bundle': str(ctx.bundle.root), 'entries': rows}


def show(args) -> dict:
    """Print what a bundle holds: target, files and sizes, denoisers, tails, accuracy."""
    b = bundle.Bundle.load(args.bundle)
    files = [{'file': k, 'bytes': v.get('bytes'), 'command': v.get('command', '')[:80]}
             for k, v in sorted(b.card.get('files', {}).items())]
    print(f"target {b.target['model']} input {'x'.join(map(str, b.input_shape))}, "
          f"{b.target.get('num_classes')} classes")
    print(format_table(files))
    total = sum(f['bytes'] or 0 for f in files)
    print(f'{total / 1e6:.2f} MB in {len(files)} files')
    trained = b.training_seconds()
    seconds = round(sum(t['seconds'] for t in trained.values()), 1)
    if trained:
        print('training: ' + ', '.join(f"{k} {t['seconds']:.1f} s ({t['runs']} run"
                                       f"{'s' if t['runs'] > 1 else ''})"
                                       for k, t in trained.items())
              + f'; {seconds:.1f} s ({seconds / 3600:.2f} h) in all')
    stale = warn_stale(b)
    acc = sorted(b.accuracy_profile().values(), key=lambda a: (a['cut'], a['codec'],
                                                               a.get('quality') or 0))
    if acc:
        print(format_table([{k: a.get(k) for k in ('cut', 'codec', 'quality', 'accuracy',
                                                   'drop_pt', 'tail')} for a in acc]))
    return {'bundle': str(b.root), 'card': b.card, 'bytes': total, 'stale': stale,
            'training': {'files': trained, 'seconds': seconds, 'hours': round(seconds / 3600, 2)}}
