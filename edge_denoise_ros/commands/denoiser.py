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
The denoiser commands: ``macs``, ``train denoiser``, ``train denoiser-d``, ``bench denoiser``.

``train denoiser`` runs HGD's guided training of DUNET against the frozen
target; ``train denoiser-d`` Tucker-decomposes the trained DUNET into DUNET_D
and fine-tunes it post hoc (eDenoizer). Both ship their weights in
``weights/`` with a provenance ``.json``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from torch import nn

from . import bundles, heldout
from .common import add_schedule_args, CliError, format_table, parse_list
from .common import nonnegative_float, pixel_budget, positive_int, ProgressBar
from .train import add_model_args, write_provenance
from ..core import bundle, data, dunet, evaluation, models, pipeline, training, tucker
from ..core.models import set_torch_threads

RULES = ('paper', 'vbmf', 'energy')


def register_macs(p) -> None:
    """Add ``macs``' arguments."""
    p.add_argument('--config', default='full', help='DUNET config: full (3x299x299) or small')
    p.add_argument('--rule', choices=RULES, default=None,
                   help="DUNET_D rank rule (default: the ranks of the shipped DUNET_D weights, "
                        "else the config's rule)")
    p.set_defaults(func=macs)


def register_train_denoiser(p) -> None:
    """Add ``train denoiser``'s arguments."""
    _training_args(p, epochs=6, lr=1e-3, n_train=20000)
    p.add_argument('--loss', choices=('lgd', 'fgd'), default='lgd',
                   help='LGD: L1 on the target logits; FGD: on its last feature map')
    p.add_argument('--width', type=float, default=0.25,
                   help="bundles: DUNET widths as a share of HGD's (1.0: HGD's full DUNET)")
    p.add_argument('--continue', dest='continue_dunet', action='store_true',
                   help="bundles: start from the bundle's DUNET (same widths) instead of "
                        'fresh weights, for a new schedule; its card entry is kept under '
                        'continued_from')
    p.add_argument('--out', default=None,
                   help='a bundle folder (with --data, or one that has a card), or a weights '
                        'file; default: weights/dunet_small.pt')
    p.set_defaults(func=train_denoiser)


def register_train_denoiser_d(p) -> None:
    """Add ``train denoiser-d``'s arguments."""
    _training_args(p, epochs=2, lr=2e-4, n_train=20000)
    p.add_argument('--rule', choices=RULES, default=None,
                   help="rank rule (default: the config's, paper)")
    p.add_argument('--dunet', default=None,
                   help='trained DUNET weights; default: the shipped weights/dunet_small.pt '
                        "(bundles: the bundle's DUNET)")
    p.add_argument('--out', default=None,
                   help="a bundle folder (its DUNET is decomposed), or a weights file; "
                        'default: weights/dunet_d_small.pt')
    p.set_defaults(func=train_denoiser_d)


def register_bench_denoiser(p) -> None:
    """Add ``bench denoiser``'s arguments."""
    p.add_argument('--configs', default='full,small',
                   help='comma-separated configs; full runs 1x3x299x299, small a batch')
    p.add_argument('--batch-size', type=positive_int, default=64, help='batch of the small run')
    p.add_argument('--repeats', type=positive_int, default=9, help='timed runs per model')
    p.add_argument('--threads', type=positive_int, default=1,
                   help='torch intra-op threads (1 is steady on a shared machine)')
    p.add_argument('--channels-last', action='store_true',
                   help='run both models in the channels-last memory format')
    p.add_argument('--device', default='cpu', help="torch device, e.g. 'cpu' or 'cuda'")
    p.set_defaults(func=bench_denoiser)


def register_bench_layout(p) -> None:
    """Add ``bench layout``'s arguments."""
    p.add_argument('--bundle', required=True, help="a bundle: its DUNET and target are timed")
    p.add_argument('--batch-size', type=positive_int, default=64,
                   help='images per step (train denoiser\'s default batch)')
    p.add_argument('--repeats', type=positive_int, default=5, help='timed steps per layout')
    p.add_argument('--threads', type=positive_int, default=2, help='torch intra-op threads')
    p.add_argument('--seed', type=int, default=0, help='seed of the images')
    p.set_defaults(func=bench_layout)


def _training_args(p, epochs: int, lr: float, n_train: int) -> None:
    p.add_argument('--config', default='small', help='DUNET config')
    add_schedule_args(p, epochs, 64, lr, 'Adam learning rate', layout=True)
    p.add_argument('--n-train', type=positive_int, default=n_train,
                   help='training images (the first N of the train split) to attack')
    p.add_argument('--eval-limit', type=positive_int, default=1000,
                   help='test images for the accuracy report after training')
    p.add_argument('--threads', type=positive_int, default=1,
                   help='torch intra-op threads (the shipped weights were made with 1; the '
                        'result is bitwise reproducible for a given thread count and CPU)')
    add_model_args(p, model_default=None)
    p.add_argument('--eps', type=pixel_budget, default=heldout.DEFAULT_EPS,
                   help='bundles: L-inf budget of the accuracy report after training')
    p.add_argument('--train-eps', type=lambda t: parse_list(t, pixel_budget), default=None,
                   help="bundles: HGD's training budgets, shares of the pixel range "
                        "(default: denoiser-d the DUNET's, as the card records them; else "
                        "2/255,4/255,8/255,12/255,16/255)")
    p.add_argument('--attack-mix', type=lambda t: parse_list(t, nonnegative_float),
                   default=None, metavar='CLEAN,FGSM,PGD',
                   help="bundles: shares of clean, FGSM and PGD images in HGD's training set "
                        "(default: denoiser-d the DUNET's; else 0.3,0.28,0.42)")


# --- macs -----------------------------------------------------------------------------------

def _dunet_d_ranks(config: str, rule: str | None) -> tuple[dict, str]:
    """Ranks of DUNET_D: those of the shipped weights, or by rule."""
    if rule is None:
        path = dunet.default_weights('dunet_d', config)
        if path.is_file():
            return dunet.tucker_ranks(dunet.load_denoiser('dunet_d', config)), \
                f'of the shipped {path.name}'
        rule = dunet.CONFIGS[config].rank_rule
    if rule == 'paper':
        return dunet.default_ranks(dunet.build_dunet(config), 'paper'), 'paper'
    path = dunet.default_weights('dunet', config)
    if not path.is_file():
        raise CliError(f'rank rule {rule!r} needs trained DUNET weights ({path} is missing); '
                       f'use --rule paper')
    return dunet.default_ranks(dunet.load_denoiser('dunet', config), rule), \
        f'{rule} on {path.name}'


def macs(args) -> dict:
    """Print per-layer MACs of DUNET and DUNET_D for a config."""
    if args.config not in dunet.CONFIGS:
        raise ValueError(f'unknown config {args.config!r}; expected one of '
                         f'{tuple(dunet.CONFIGS)}')
    shape = dunet.CONFIGS[args.config].input_shape
    base = dunet.build_dunet(args.config)
    ranks, rule = _dunet_d_ranks(args.config, args.rule)
    approx = dunet.build_dunet_d(args.config, ranks)
    rows = tucker.conv_rows(base, shape)
    rows_d = tucker.conv_rows(approx, shape)
    by_layer = {}
    for r in rows_d:                        # a decomposed conv's three parts sum into its row
        layer = next((n for n in ranks if r.name.startswith(n + '.')), r.name)
        by_layer[layer] = by_layer.get(layer, 0) + r.macs
    total, total_d = sum(r.macs for r in rows), sum(r.macs for r in rows_d)
    concat = set(base.concat_convs())
    table = [{'layer': r.name.removesuffix('.conv'), 'ci': r.ci, 'co': r.co,
              'out': f'{r.out_hw[0]}x{r.out_hw[1]}', 'dunet_macs': r.macs,
              'dunet_d_macs': by_layer[r.name],
              'ranks': '{}, {}'.format(*ranks[r.name]) if r.name in ranks else ''}
             for r in rows]
    print(format_table(table))
    concat_macs = sum(r.macs for r in rows if r.name in concat)
    print(f'{args.config} {"x".join(map(str, shape))}: DUNET {total:,} MACs '
          f'(concat convs {concat_macs / total:.2%}), DUNET_D {total_d:,} MACs '
          f'({1 - total_d / total:.2%} fewer; ranks {rule})')

    def layers(rs):
        return [{'name': r.name, 'ci': r.ci, 'co': r.co, 'kernel': list(r.kernel),
                 'out': list(r.out_hw), 'macs': r.macs} for r in rs]

    return {'config': args.config, 'input_shape': list(shape),
            'dunet': {'total': total, 'concat_convs': concat_macs,
                      'concat_share': concat_macs / total, 'layers': layers(rows)},
            'dunet_d': {'total': total_d, 'rank_rule': rule,
                        'ranks': {k: list(v) for k, v in ranks.items()},
                        'layers': layers(rows_d)},
            'ratio': total_d / total, 'reduction': 1 - total_d / total}


# --- training -------------------------------------------------------------------------------

def _adversarial_data(args, target):
    """Build the seeded HGD training set: (x_adv, x_clean, counts by attack kind)."""
    g = training.seed_everything(args.seed)
    x, y = data.load_split_tensors('train', args.n_train)
    x_adv, kind, _ = training.make_adversarial_set(
        target, x, y, training.AdversarialMix(), g, progress=ProgressBar('attack train set'))
    counts = {k: int((kind == i).sum()) for i, k in enumerate(training.ATTACK_KINDS)}
    return x_adv, x, counts


def _report_accuracy(target, defenses: dict, limit: int) -> dict:
    x, y = data.load_split_tensors('test', limit)
    acc = evaluation.evaluate(target, x, y, defenses, evaluation.eval_attacks(),
                              progress=ProgressBar('eval'))
    rows = [{'defense': d, **{a: round(v, 4) for a, v in row.items()}} for d, row in acc.items()]
    print(format_table(rows))
    print(f'{len(y)} test images')
    return acc


def _save(model, out: Path, record: dict, args) -> dict:
    models.save_state_dict(model, out)
    record = {'weights': str(out), 'bytes': out.stat().st_size, **record,
              'hash': models.state_hash(model), 'torch': torch.__version__,
              'threads': torch.get_num_threads()}
    write_provenance(out, record, args)
    print(f'saved {out} ({record["bytes"] / 1e3:.0f} kB)')
    return record


def _refuse_bundle_only(args) -> None:
    """Refuse the training-mix options on the shipped 1x28x28 DUNET (it keeps its recorded mix)."""
    given = [flag for flag, value in (('--train-eps', args.train_eps),
                                      ('--attack-mix', args.attack_mix)) if value is not None]
    if given:
        raise CliError(f'{" and ".join(given)} set a bundle\'s training mix (--data D --out '
                       f'BUNDLE); the shipped 1x28x28 DUNET keeps the mix its record names')


def train_denoiser(args) -> dict:
    """Train DUNET with HGD's guided loss; save it with its provenance (or into a bundle)."""
    set_torch_threads(args.threads)
    if bundles.bundle_mode(args):
        return bundles.train_denoiser(args)
    _refuse_bundle_only(args)
    target = models.build_model()
    start = time.monotonic()
    x_adv, x_clean, counts = _adversarial_data(args, target)
    attack_seconds = time.monotonic() - start
    training.seed_everything(args.seed)          # the initial weights
    model = dunet.build_dunet(args.config)
    cfg = training.DenoiserTrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                                       lr=args.lr, loss=args.loss, seed=args.seed,
                                       channels_last=args.channels_last)
    training.train_denoiser(model, target, x_adv, x_clean, cfg,
                            progress=ProgressBar('train DUNET'))
    seconds = time.monotonic() - start
    acc = _report_accuracy(target, {'none': nn.Identity(), 'dunet': model}, args.eval_limit)
    out = Path(args.out) if args.out else dunet.default_weights('dunet', args.config)
    return _save(model, out, {
        'kind': 'dunet', 'config': args.config, 'loss': args.loss, 'epochs': args.epochs,
        'batch_size': args.batch_size, 'lr': args.lr, 'channels_last': args.channels_last,
        'n_train': len(x_clean), 'train_set': counts, 'mix': training.AdversarialMix().__dict__,
        'seed': args.seed, 'seconds': round(seconds, 1),
        'attack_seconds': round(attack_seconds, 1), 'eval_n': args.eval_limit, 'accuracy': acc},
        args)


def train_denoiser_d(args) -> dict:
    """Decompose the trained DUNET into DUNET_D, fine-tune it post hoc, save it."""
    set_torch_threads(args.threads)
    if bundles.bundle_mode(args):
        return bundles.train_denoiser_d(args)
    _refuse_bundle_only(args)
    target = models.build_model()
    base = dunet.load_denoiser('dunet', args.config, args.dunet)
    start = time.monotonic()
    rule = args.rule or base.cfg.rank_rule
    approx = dunet.decompose(base, rule)
    ranks = dunet.tucker_ranks(approx)
    shape = base.cfg.input_shape
    total, total_d = tucker.total_macs(base, shape), tucker.total_macs(approx, shape)
    print(f'ranks ({rule}): ' + ', '.join(f'{k}={v}' for k, v in ranks.items())
          + f'; MACs {total:,} -> {total_d:,} ({1 - total_d / total:.2%} fewer)')
    before = _report_accuracy(target, {'dunet': base, 'dunet_d': approx}, args.eval_limit)
    x_adv, x_clean, counts = _adversarial_data(args, target)
    cfg = training.DenoiserTrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                                       lr=args.lr, seed=args.seed,
                                       channels_last=args.channels_last)
    training.train_denoiser(approx, target, x_adv, x_clean, cfg,
                            progress=ProgressBar('fine-tune DUNET_D'))
    seconds = time.monotonic() - start
    after = _report_accuracy(target, {'dunet': base, 'dunet_d': approx}, args.eval_limit)
    out = Path(args.out) if args.out else dunet.default_weights('dunet_d', args.config)
    return _save(approx, out, {
        'kind': 'dunet_d', 'config': args.config, 'rank_rule': rule,
        'ranks': {k: list(v) for k, v in ranks.items()}, 'dunet_macs': total,
        'dunet_d_macs': total_d, 'mac_reduction': 1 - total_d / total,
        'dunet_hash': models.state_hash(base), 'epochs': args.epochs,
        'batch_size': args.batch_size, 'lr': args.lr, 'channels_last': args.channels_last,
        'n_train': len(x_clean), 'train_set': counts, 'seed': args.seed,
        'seconds': round(seconds, 1),
        'eval_n': args.eval_limit, 'accuracy_before_fine_tune': before, 'accuracy': after},
        args)


# --- benchmark ------------------------------------------------------------------------------

def _time_pair(models_by_name: dict, x, repeats: int) -> dict:
    """Time each model on ``x``, the models interleaved run by run: (median, min) seconds."""
    sync = torch.cuda.synchronize if x.device.type == 'cuda' else (lambda: None)
    times = {name: [] for name in models_by_name}
    with torch.no_grad():
        for m in models_by_name.values():         # warm-up
            m(x)
        for _ in range(repeats):
            for name, m in models_by_name.items():
                sync()
                t0 = time.perf_counter()
                m(x)
                sync()
                times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def bench_denoiser(args) -> dict:
    """Time DUNET against DUNET_D: full at 1x3x299x299, small at a batch."""
    set_torch_threads(args.threads)
    device = torch.device(args.device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    configs = [c.strip() for c in args.configs.split(',') if c.strip()]
    unknown = [c for c in configs if c not in dunet.CONFIGS]
    if unknown or not configs:
        raise ValueError(f'unknown config {unknown[:1]}; expected some of {tuple(dunet.CONFIGS)}')
    results, rows = {}, []
    for config in configs:
        shape = dunet.CONFIGS[config].input_shape
        if dunet.default_weights('dunet_d', config).is_file():
            base, approx, source = (dunet.load_denoiser('dunet', config),
                                    dunet.load_denoiser('dunet_d', config), 'shipped weights')
        else:
            torch.manual_seed(0)
            base = dunet.build_dunet(config).eval()
            ranks = dunet.default_ranks(base, 'paper')
            approx, source = dunet.build_dunet_d(config, ranks).eval(), 'random weights'
        m, m_d = tucker.total_macs(base, shape), tucker.total_macs(approx, shape)
        base, approx = (net.to(device, memory_format=memory_format) for net in (base, approx))
        batch = 1 if config == 'full' else args.batch_size
        x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0))
        x = x.to(device).contiguous(memory_format=memory_format)
        t = _time_pair({'dunet': base, 'dunet_d': approx}, x, args.repeats)
        (med, low), (med_d, low_d) = t['dunet'], t['dunet_d']
        results[config] = {
            'batch': batch, 'input_shape': list(shape), 'weights': source,
            'dunet_s': med, 'dunet_d_s': med_d, 'dunet_min_s': low, 'dunet_d_min_s': low_d,
            'time_ratio': med_d / med, 'speedup': med / med_d,
            'faster_pct': 100 * (1 - med_d / med), 'mac_ratio': m_d / m}
        rows.append({'config': config, 'input': f'{batch}x' + 'x'.join(map(str, shape)),
                     'dunet_ms': 1e3 * med, 'dunet_d_ms': 1e3 * med_d,
                     'time_ratio': med_d / med, 'min_ratio': low_d / low, 'mac_ratio': m_d / m})
    print(format_table(rows))
    layout = 'channels-last' if args.channels_last else 'NCHW'
    print(f'median (and min) of {args.repeats} runs each, interleaved; device {device}, '
          f'{torch.get_num_threads()} threads, {layout}')
    return {'device': str(device), 'threads': torch.get_num_threads(), 'repeats': args.repeats,
            'channels_last': args.channels_last, **results}


def bench_layout(args) -> dict:
    """Time a bundle DUNET's training step in NCHW and channels-last; check the gradients."""
    set_torch_threads(args.threads)
    b = bundle.Bundle.load(args.bundle)
    entry = b.denoiser('dunet')
    cfg = dunet.DUNetConfig.from_dict(entry['config'])
    denoiser = dunet.load_denoiser('dunet', cfg, b.check_file(entry['weights']))
    target = pipeline.Target(bundle=args.bundle).model
    g = torch.Generator().manual_seed(args.seed)
    x = torch.rand(args.batch_size, *cfg.input_shape, generator=g)
    noise = (torch.rand(x.shape, generator=g) * 2 - 1) * evaluation.BUNDLE_EPS
    found = training.compare_layouts(denoiser, target, (x + noise).clamp(0, 1), x, args.repeats)
    base = found['nchw']['step_s']
    print(format_table([{'layout': name, 'step_ms': 1e3 * r['step_s'],
                         'min_ms': 1e3 * r['min_step_s'], 'time_vs_nchw': r['step_s'] / base,
                         'grad_error': f"{r['grad_error']:.1e}",
                         'worst_param': f"{r['worst_param_error']:.1e} ({r['worst_param']})"}
                        for name, r in found.items()]))
    print(f'one train denoiser step ({args.batch_size} images of '
          f"{'x'.join(map(str, cfg.input_shape))}, the guided loss through {b.target['model']}), "
          f'median of {args.repeats} interleaved; grad_error: relative distance of the DUNET\'s '
          f'gradient from the same step in float64 (worst_param: of its worst parameter); '
          f'{torch.get_num_threads()} threads')
    return {'bundle': str(b.root), 'batch_size': args.batch_size, 'repeats': args.repeats,
            'threads': torch.get_num_threads(), 'layouts': found,
            'channels_last_time_ratio': found['channels_last']['step_s'] / base}
