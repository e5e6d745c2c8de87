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

"""``edge-denoise demo``: the main job, edge and host as real processes on real DDS."""

from __future__ import annotations

from .common import add_command, CliError, format_table, positive_float, positive_int


def register(groups) -> None:
    """Add the ``demo`` command."""
    from ..core import pipeline
    from ..ros import bag

    p = add_command(groups[''], 'demo', run,
                    'replay the demo camera bag (half PGD-adversarial) through edge_process and '
                    'host_node on a private localhost DDS domain; account for every frame')
    p.add_argument('--bag', default=bag.DEFAULT_DEMO_BAG,
                   help='demo bag directory (made if missing or stale)')
    p.add_argument('--frames', type=positive_int, default=bag.DemoBagConfig.frames,
                   help='frames in a newly made demo bag')
    p.add_argument('--defense', default=pipeline.DEFAULT_DEFENSE,
                   choices=('none', 'dunet', 'dunet_d', 'jpeg'), help='edge defense')
    p.add_argument('--cut', default=pipeline.DEFAULT_CUT,
                   help='cut name, frame (host-only), output (edge-only) or auto')
    p.add_argument('--codec', default=pipeline.DEFAULT_CODEC, help='feature (or frame) codec')
    p.add_argument('--quality', type=positive_int, default=pipeline.DEFAULT_QUALITY,
                   help='JPEG quality')
    p.add_argument('--single-node', action='store_true',
                   help='run edge_node instead of edge_process (denoiser + target composed)')
    p.add_argument('--rate', type=positive_float, default=1.0, help='replay speed factor')
    p.add_argument('--log-dir', default=None, help='node logs (default: a temporary folder)')


def run(args):
    """Run the demo and print its summary."""
    from ..commands.common import ProgressBar
    from ..harness.demo import DemoConfig, run_demo

    cfg = DemoConfig(bag=args.bag, defense=args.defense, cut=args.cut, codec=args.codec,
                     quality=args.quality, composed=not args.single_node, rate=args.rate,
                     frames=args.frames, log_dir=args.log_dir)
    try:
        s = run_demo(cfg, progress=ProgressBar('replay'))
    except RuntimeError as exc:
        raise CliError(str(exc), code=1) from None
    acc, ref = s['accuracy'], s.get('reference', {})
    pct = (lambda v: '-' if v is None else f'{100 * v:.1f} %')
    print(f"\nframes: played {s['played']}, classified {s['classified']}, "
          f"dropped {s['dropped']}" + (f" {s['drop_reasons']}" if s['drop_reasons'] else ''))
    rows = [{'': f"pipeline ({s['defense']})", 'clean': pct(acc['clean']),
             'adversarial': pct(acc['adversarial'])}]
    if ref:
        rows.append({'': f"in-process, same frames ({s['defense']})",
                     'clean': pct(ref['defended']['clean']),
                     'adversarial': pct(ref['defended']['adversarial'])})
        rows.append({'': 'in-process, undefended', 'clean': pct(ref['undefended']['clean']),
                     'adversarial': pct(ref['undefended']['adversarial'])})
    print(format_table(rows))
    lat = s['latency_ms']
    print(f"latency (edge receipt -> host result): p50 {lat['p50']} ms, p99 {lat['p99']} ms")
    if s['bytes_per_frame']:
        print(f"bytes per frame: {s['bytes_per_frame']:.0f} sent vs {s['raw_bytes_per_frame']} "
              f"raw ({s['raw_bytes_per_frame'] / s['bytes_per_frame']:.0f}x smaller); cut "
              f"{s['cut']}, codec {s['codec']} q{s['quality']}, {s['edge']}")
    print(f"took {s['seconds']} s; node logs in {s['logs']}")
    failed = bool(s['crashed']) or any(c not in (0, None) for c in s['exit_codes'].values())
    if failed:
        print(f"a node crashed: {s['crashed'] or s['exit_codes']}")
    return s, (1 if failed else 0)
