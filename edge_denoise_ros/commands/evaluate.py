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
``edge-denoise eval``: accuracy of the target under each defense and attack.

Without ``--bundle``: the default 1x28x28 target on the Fashion-MNIST test
split at L-inf eps 0.1. With ``--bundle B``: B's target, its defenses and its
held-out data (read back from the card, never written) at eps 8/255. The
gray-box attacks are made against the target alone; ``pgd_whitebox`` (on by
default) is the same PGD made per defense against target(defense(x)): exact
gradients through DUNET and DUNET_D, BPDA (the identity backward) through JPEG.
"""

from __future__ import annotations

import argparse

from .heldout import DEFAULT_EPS as BUNDLE_EPS, EVAL_LIMIT, read_context
from .common import CliError, format_table, parse_list, pixel_budget
from .common import positive_int, ProgressBar
from ..core import attacks, data, defenses, evaluation, models, pipeline
from ..core.models import set_torch_threads


def register(p) -> None:
    """Add ``eval``'s arguments."""
    p.add_argument('--model', default=models.DEFAULT_MODEL,
                   help='target model name (without --bundle)')
    p.add_argument('--bundle', default=None,
                   help="a bundle folder: its target, defenses and held-out data")
    p.add_argument('--limit', type=positive_int, default=None,
                   help=f'N test images only (default: {EVAL_LIMIT} held-out frames of a '
                        f'bundle, else all 10,000 of the test split)')
    p.add_argument('--eps', type=pixel_budget, default=None,
                   help=f'L-inf budget on [0, 1] pixels (default: {BUNDLE_EPS:.4f} = 8/255 with '
                        f'--bundle, else {evaluation.DEFAULT_EPS})')
    p.add_argument('--defenses', type=parse_list, default=None,
                   help='comma-separated defenses (default: all the target can use)')
    p.add_argument('--attacks', type=parse_list, default=None,
                   help='comma-separated gray-box attacks (default: all known)')
    p.add_argument('--whitebox', action=argparse.BooleanOptionalAction, default=True,
                   help=f'also {evaluation.WHITEBOX_PGD}: PGD through each defense and the '
                        f'target together (BPDA through defenses without gradients: jpeg)')
    p.add_argument('--batch-size', type=positive_int, default=250, help='images per batch')
    p.add_argument('--threads', type=positive_int, default=None, help='torch intra-op threads')
    p.set_defaults(func=run)


def _setup(args):
    """Return the target's name and model, its defenses by name, test images and labels, source."""
    if args.bundle is None:
        names = args.defenses or list(defenses.defense_names())
        x, y = data.load_split_tensors('test', args.limit)
        return (args.model, models.build_target(args.model),
                {d: defenses.build_defense(d) for d in names}, x, y,
                {'source': 'Fashion-MNIST', 'split': 'test'})
    if args.model != models.DEFAULT_MODEL:
        raise CliError('pass --model or --bundle, not both (a bundle names its target)')
    ctx = read_context(args.bundle, args.limit or EVAL_LIMIT)
    names = args.defenses or list(pipeline.defenses_for(ctx.target))
    built = {d: pipeline.build_defense(d, ctx.target) for d in names}
    source = dict(ctx.bundle.card.get('data', {}))     # the card's record of its data
    return (ctx.bundle.target['model'], ctx.target.model, built, ctx.test.floats(), ctx.test.y,
            source)


def _numbers(attack) -> dict:
    """Return an attack's numeric settings (eps, steps, ...), as the JSON records them."""
    return {k: v for k, v in getattr(attack, 'keywords', {}).items()
            if isinstance(v, (bool, int, float))}


def run(args) -> dict:
    """Evaluate and print the accuracy table."""
    set_torch_threads(args.threads)
    eps = args.eps or (BUNDLE_EPS if args.bundle else evaluation.DEFAULT_EPS)
    known_attacks = evaluation.eval_attacks(eps=eps)
    names_a = args.attacks or list(known_attacks)
    unknown = [a for a in names_a if a not in known_attacks]
    if unknown:
        raise ValueError(f'unknown attack {unknown[0]!r}; expected one of {tuple(known_attacks)}'
                         f' (the white-box one: --whitebox)')
    name, model, built, x, y, source = _setup(args)
    whitebox = evaluation.whitebox_attacks(eps=eps) if args.whitebox else {}
    acc = evaluation.evaluate(model, x, y, built, {a: known_attacks[a] for a in names_a},
                              batch_size=args.batch_size, progress=ProgressBar('eval'),
                              whitebox=whitebox)
    rows = [{'defense': d, **{a: round(v, 4) for a, v in row.items()}} for d, row in acc.items()]
    print(format_table(rows))
    where = f'held-out images of bundle {args.bundle}' if args.bundle else 'test images'
    print(f'{len(y)} {where}, model {name}, L-inf eps {eps:.4f}')
    settings = {a: _numbers(known_attacks[a]) for a in names_a}
    white = None
    if whitebox:
        gradients = {d: 'exact' if attacks.passes_gradient(m, x[:1]) else 'bpda'
                     for d, m in built.items()}
        settings.update({a: _numbers(make()) for a, make in whitebox.items()})
        white = {'attacks': list(whitebox), 'gradients': gradients,
                 'against': 'target(defense(x)), made per defense; the gray-box pgd settings '
                            'and seed; bpda: the defense forward, the identity backward'}
        print(f'{", ".join(whitebox)}: PGD through each defense and the target together '
              f'(gradients: ' + ', '.join(f'{d} {g}' for d, g in gradients.items()) + ')')
    return {'model': name, 'n': len(y), 'accuracy': acc, 'attacks': settings,
            'bundle': args.bundle, 'eps': eps, 'data': source, 'whitebox': white}
