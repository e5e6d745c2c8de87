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

"""``edge-denoise eval``: accuracy of the target under each defense and attack."""

from __future__ import annotations

from .common import format_table, parse_list, positive_int, ProgressBar
from ..core import data, defenses, evaluation, models
from ..core.models import set_torch_threads


def register(p) -> None:
    """Add ``eval``'s arguments."""
    p.add_argument('--model', default=models.DEFAULT_MODEL, help='target model name')
    p.add_argument('--limit', type=positive_int, default=None,
                   help='the first N test images only (default: all 10,000)')
    p.add_argument('--defenses', type=parse_list, default=None,
                   help='comma-separated defenses (default: all known)')
    p.add_argument('--attacks', type=parse_list, default=None,
                   help='comma-separated attacks (default: all known)')
    p.add_argument('--batch-size', type=positive_int, default=250, help='images per batch')
    p.add_argument('--threads', type=positive_int, default=None, help='torch intra-op threads')
    p.set_defaults(func=run)


def run(args) -> dict:
    """Evaluate and print the accuracy table."""
    set_torch_threads(args.threads)
    known_attacks = evaluation.eval_attacks()
    names_d = args.defenses or list(defenses.defense_names())
    names_a = args.attacks or list(known_attacks)
    unknown = [a for a in names_a if a not in known_attacks]
    if unknown:
        raise ValueError(f'unknown attack {unknown[0]!r}; expected one of {tuple(known_attacks)}')
    model = models.build_target(args.model)
    built = {d: defenses.build_defense(d) for d in names_d}
    x, y = data.load_split_tensors('test', args.limit)
    acc = evaluation.evaluate(model, x, y, built, {a: known_attacks[a] for a in names_a},
                              batch_size=args.batch_size, progress=ProgressBar('eval'))
    rows = [{'defense': d, **{a: round(v, 4) for a, v in row.items()}} for d, row in acc.items()]
    print(format_table(rows))
    print(f'{len(y)} test images, model {args.model}')
    settings = {a: {k: v for k, v in getattr(known_attacks[a], 'keywords', {}).items()
                    if isinstance(v, (bool, int, float))} for a in names_a}
    return {'model': args.model, 'n': len(y), 'accuracy': acc, 'attacks': settings}
