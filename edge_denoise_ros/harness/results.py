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
The README's result blocks, rendered from ``docs/results/*.json``.

Each block of the README between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``
is rendered by ``BLOCKS[NAME]`` from the result files (JSON in, markdown out; nothing is
measured here). ``make results`` (``python -m edge_denoise_ros.harness.results --write``)
rewrites the blocks; ``test/test_readme_results.py`` fails when the README differs from
what its files say. Each result file is an ``edge-denoise ... --json`` result and carries
``provenance``: the command, the commit and the machine that made it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Callable, Mapping

REPO = Path(__file__).resolve().parents[2]
README = REPO / 'README.md'
RESULTS_DIR = REPO / 'docs' / 'results'

# A block on lines of its own (a newline after the opening marker), or inline in a sentence.
BLOCK = re.compile(r'<!-- results:(?P<name>[\w-]+) -->(?P<nl>\n?)(?P<body>.*?)'
                   r'<!-- /results:(?P=name) -->', re.S)
OPEN = re.compile(r'<!-- results:([\w-]+) -->')
CLOSE = re.compile(r'<!-- /results:([\w-]+) -->')

Results = Mapping[str, dict]


def load_results(folder: Path | str = RESULTS_DIR) -> dict[str, dict]:
    """Read every ``*.json`` in ``folder``, keyed by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(folder).glob('*.json'))}


def _file(results: Results, name: str) -> dict:
    if name not in results:
        raise ValueError(f'docs/results/{name}.json is missing; its block cannot be rendered')
    return results[name]


# Number formats: one place, so the README and its test agree on the rounding.

def _int(v: float) -> str:
    return f'{int(round(v)):,}'


def _pct(fraction: float, digits: int = 2) -> str:
    return f'{100 * fraction:.{digits}f}'


def _ms(seconds: float) -> str:
    ms = 1000 * seconds
    return f'{ms:.0f} ms' if ms >= 100 else f'{ms:.1f} ms'


def _times(ratio: float) -> str:
    """Format a ratio to three significant digits: 0.85×, 64.3×, 112×."""
    digits = 0 if ratio >= 100 else 1 if ratio >= 10 else 2
    return f'{ratio:.{digits}f}×'


def _one(v: float | None) -> str:
    return '–' if v is None else f'{v:.1f}'


def _source(results: Results, name: str) -> str:
    """Name a file's command (from its own provenance) and link the file."""
    command = _file(results, name)['provenance']['command']
    return f'`{command}` → [`{name}.json`](docs/results/{name}.json)'


def _and(items: list[str]) -> str:
    """Join as 'a', 'a and b', 'a, b and c'."""
    return ' and '.join(filter(None, (', '.join(items[:-1]), items[-1]))) if items else ''


def _sources(results: Results, *names: str) -> str:
    return '; '.join(_source(results, n) for n in names)


# The blocks.

def render_machine(results: Results) -> str:
    """Describe the machine the results ran on, as the freshest accuracy run recorded it."""
    m = _file(results, 'eval')['provenance']['machine']
    machines = [r['provenance']['machine'] for r in results.values() if 'provenance' in r]
    cuda = [one['cuda'] for one in machines if one.get('cuda') is not None]
    gpus = sorted({one['gpu'] for one in machines if one.get('gpu')})
    gpu = f', GPU {", ".join(gpus)}' if gpus else ', no GPU' if cuda and not any(cuda) else ''
    return (f'Measured on this project\'s development machine: {m["cpu_count"]} CPUs '
            f'({m["cpu_model"]}{gpu}), {m["os"]}, Python {m["python"]}, torch {m["torch"]}; '
            f'ROS 2 Kilted wheels with Fast DDS. Benchmarks measure ratios side by side in one '
            f'run.')


def _tucker_parts(macs: dict, layer: str) -> tuple[dict, list[dict], list[int]]:
    """Find a DUNET conv, the convs DUNET_D replaced it by (1×1, k×k, 1×1), their ranks."""
    full = next(r for r in macs['dunet']['layers'] if r['name'] == layer)
    parts = [r for r in macs['dunet_d']['layers'] if r['name'].startswith(layer + '.')]
    return full, parts, macs['dunet_d']['ranks'][layer]


def render_denoiser(results: Results) -> str:
    """Render MACs, time and accuracy of DUNET and DUNET_D; undefended and JPEG accuracy."""
    macs, timing, ev = (_file(results, n) for n in ('macs', 'denoiser', 'eval'))
    acc = ev['accuracy']
    attacks = [a for a in ('clean', 'fgsm', 'pgd') if a in acc['none']]
    shape = '×'.join(map(str, macs['input_shape']))
    layer, parts, ranks = _tucker_parts(macs, 'back3.0.conv')
    ho, wo = layer['out']
    kernels = ', '.join('×'.join(map(str, p['kernel'])) for p in parts)

    def accuracy(defense: str) -> str:
        return ' / '.join(_pct(acc[defense][a]) for a in attacks) + ' %'

    def wall(cfg: dict) -> tuple[str, str]:
        return _ms(cfg['dunet_s']), f'{_ms(cfg["dunet_d_s"])} ({_times(cfg["time_ratio"])})'

    full, small = timing['full'], timing['small']
    rows = [
        (f'MACs, {macs["config"]} config {shape}', _int(macs['dunet']['total']),
         f'{_int(macs["dunet_d"]["total"])} (−{_pct(macs["reduction"], 1)} %)'),
        (f'back3.0 ({layer["ci"]}→{layer["co"]} @{ho}×{wo})', _int(layer['macs']),
         f'{" + ".join(_int(p["macs"]) for p in parts)} ({kernels}; ranks {ranks[0]}, '
         f'{ranks[1]})'),
        (f'wall time, full config batch {full["batch"]}, {timing["threads"]} thread '
         f'(median of {timing["repeats"]})', *wall(full)),
        (f'wall time, small config batch {small["batch"]}, {small["weights"]}', *wall(small)),
        (f'{" / ".join(a.upper() if a != "clean" else a for a in attacks)} accuracy '
         f'(n = {_int(ev["n"])})', accuracy('dunet'), accuracy('dunet_d')),
    ]
    table = '\n'.join(['| | DUNET | DUNET_D |', '|---|---|---|']
                      + ['| ' + ' | '.join(r) + ' |' for r in rows])
    fgsm, pgd = ev['attacks']['fgsm'], ev['attacks']['pgd']
    start = 'a seeded random start' if pgd.get('random_start') else 'the clean image'
    return (
        f'**Denoiser** ({_sources(results, "macs", "denoiser", "eval")}):\n\n{table}\n\n'
        f'Undefended: {accuracy("none")}; JPEG re-encoding with the DeepN-JPEG table as the '
        f'input defense (Feature Distillation style): {accuracy("jpeg")}. Attacks are made '
        f'against the target alone (HGD\'s gray-box setting), L∞ on [0, 1] images: FGSM with '
        f'ε = {fgsm["eps"]:g}, and PGD with ε = {pgd["eps"]:g}, {pgd["steps"]} steps of '
        f'{pgd["step_size"]:g} from {start}; every defense sees the same adversarial '
        f'examples.')


def _candidate(plan: dict, name: str) -> dict:
    return next(r for r in plan['candidates'] if r['name'] == name)


def _describe(row: dict) -> str:
    if row['kind'] == 'edge_only':
        return 'edge-only'
    if row['kind'] == 'host_only':
        scale = ' of the frame resized to the model input' if row['name'].endswith('@model') \
            else ''
        return f'host-only {row["codec"].replace("_", "-").upper()}{scale}'
    return f'the split {row["cut"]}/{row["codec"]}'


def _plan_sentence(plan: dict, first: bool) -> str:
    choice = _candidate(plan, plan['choice'])
    edge = next(r for r in plan['candidates'] if r['kind'] == 'edge_only')
    splits = [r for r in plan['candidates'] if r['kind'] == 'split']
    picks = 'the planner picks ' if first else ''
    text = (f'at {plan["link"]["uplink_mbps"]:g} Mbit/s {picks}{_describe(choice)} '
            f'({choice["total_ms"]:.1f} ms; edge-only {edge["total_ms"]:.1f} ms')
    best_split = min(splits, key=lambda r: r['total_ms'], default=None)
    if best_split is not None and choice['kind'] != 'split':
        text += (f', the best split {best_split["cut"]}/{best_split["codec"]} '
                 f'{best_split["total_ms"]:.1f} ms')
        if best_split.get('excluded'):
            text += f' but excluded: {best_split["excluded"]}'
    return text + ')'


def _excluded(plan: dict) -> str:
    n = sum(1 for r in plan['candidates'] if r.get('excluded'))
    if not n:
        return ''
    return (f', {n} of them lossy with no accuracy measured for this model and so excluded '
            f'by the accuracy bound (`--max-accuracy-drop` {plan["max_accuracy_drop"]:g} pt)')


def render_surgery(results: Results) -> str:
    """Render the planner's picks at 2 and 45 Mbit/s (and its end-to-end check)."""
    plans = [_file(results, n) for n in ('plan_2mbps', 'plan_45mbps')]
    first = plans[0]
    shape = '×'.join(map(str, first['input']))
    text = (f'**DNN surgery** ({_sources(results, "plan_2mbps", "plan_45mbps")}): the test '
            f'suite checks that head and tail reproduce the model at every valid cut of the '
            f'default model and at sampled cuts of ResNet-50, Inception-v3, MobileNetV2, '
            f'VGG-19, SqueezeNet and ShuffleNetV2 (`test/test_surgery.py`). For '
            f'{first["model"]} ({shape}) with a {first["edge_slowdown"]:g}× slower edge '
            f'({len(first["candidates"])} candidates{_excluded(first)}): '
            + '; '.join(_plan_sentence(p, i == 0) for i, p in enumerate(plans)) + '.')
    if 'planner' in results:
        text += ' ' + _planner_sentence(results)
    return text


def _planner_sentence(results: Results) -> str:
    bench = results['planner']
    worst = max((row for m in bench['models'] for row in m['rows']), key=lambda r: r['ratio'])
    models = _and([m['model'] for m in bench['models']])
    rates = _and([f'{u:g}' for u in bench['uplinks']])
    head = (f'Run end to end ({_source(results, "planner")}; {models}, a '
            f'{bench["edge_slowdown"]:g}× slower edge, {bench["clock"]} clock), the planner\'s '
            f'choice')
    if worst['ratio'] <= 1.0:
        return f'{head} was the measured best candidate at {rates} Mbit/s.'
    return (f'{head} took at most {worst["ratio"]:.2f}× the measured best candidate\'s time at '
            f'{rates} Mbit/s ({worst["model"]} at {worst["uplink_mbps"]:g} Mbit/s).')


def _codec_row(codecs: dict, cut: str, codec: str, quality=None, dtype='float32') -> dict:
    return next(r for r in codecs['rows'] if r['cut'] == cut and r['codec'] == codec
                and r['quality'] == quality and r['dtype'] == dtype)


def _drop(pts: float) -> str:
    return '0' if pts == 0 else f'{pts:.2f} pt'


def _speed(row: dict) -> str:
    return f'{row["encode_MBps"]:.0f} / {row["decode_MBps"]:.0f}'


def render_codecs(results: Results) -> str:
    """Render compression, accuracy drop and speed of the feature codecs; DeepN-JPEG."""
    codecs = _file(results, 'codecs')
    lossless = _codec_row(codecs, 'stem', 'lossless')
    zstd = _codec_row(codecs, 'stem', 'zstd-3')
    q8 = _codec_row(codecs, 'layer1', 'q8')
    q10 = _codec_row(codecs, 'layer1', 'jpeg', 10)
    tuned = next(f for f in codecs['finetuned'] if f['used'])
    q5 = _codec_row(codecs, tuned['cut'], tuned['codec'], tuned['quality'])
    rows = [
        ('lossless (zero bitmap + byte planes + zstd), stem',
         f'{_times(lossless["ratio"])} (zstd-3 alone {_times(zstd["ratio"])}, '
         f'{zstd["encode_MBps"]:.0f} MB/s)', _drop(lossless['drop_pts']), _speed(lossless)),
        ('8-bit, layer1', _times(q8['ratio']), _drop(q8['drop_pts']), _speed(q8)),
        ('JPEG-tiled q10, layer1', _times(q10['ratio']), _drop(q10['drop_pts']), _speed(q10)),
        (f'JPEG-tiled q{tuned["quality"]}, {tuned["cut"]}, fine-tuned tail (the default)',
         _times(tuned['ratio']),
         f'{_drop(tuned["drop_pts_finetuned"])} ({_drop(tuned["drop_pts_plain"])} with the '
         f'plain tail: {_pct(tuned["accuracy_plain_tail"])} → '
         f'{_pct(tuned["accuracy_finetuned"])} % fine-tuned)', _speed(q5)),
    ]
    table = '\n'.join(['| codec at cut | compression vs float32 | accuracy drop '
                       '| encode / decode MB/s |', '|---|---|---|---|']
                      + ['| ' + ' | '.join(r) + ' |' for r in rows])
    dn = codecs['deepn_jpeg']
    verdict = 'did *not* beat' if dn['ratio'] < 1 else 'beat'
    return (
        f'**Feature codecs** ({_source(results, "codecs")}; all {_int(codecs["n"])} test '
        f'images through encode → decode → tail; `edge-denoise bench codecs` sweeps every cut '
        f'and quality):\n\n{table}\n\n'
        f'DeepN-JPEG\'s table {verdict} standard JPEG here: '
        f'{dn["deepn_jpeg"]["bytes_per_image"]:.1f} vs {dn["jpeg"]["bytes_per_image"]:.1f} '
        f'bytes per image at equal accuracy ({dn["ratio"]:.2f}×).')


def _chain(entry: dict) -> str:
    return (f'{entry["isolated_p99_ms"]:.1f} → {entry["loaded_p99_ms"]:.1f} ms '
            f'({_times(entry["ratio"])})')


def render_scheduler(results: Results) -> str:
    """Render priority vs FIFO vs plain calls under load; pipelining on the CPU."""
    s = _file(results, 'scheduler')
    cfg, pipe = s['config'], s['pipeline']
    b = cfg['background_batches']
    same = all(p['outputs_match'] for p in pipe.values())
    return (
        f'**Scheduling** ({_source(results, "scheduler")}): a {cfg["rate_hz"]:g} Hz camera '
        f'chain (denoiser then target, high priority) against two low-priority background '
        f'models (DUNET small at batch {b[0]}, the ResNet at batch {b[1]}) that keep the device '
        f'busy. Chain p99 latency alone → loaded: {_chain(s["priority"])} with '
        f'priorities, {_chain(s["fifo"])} with FIFO (the same nodes and scheduler '
        f'on rclpy\'s `MultiThreadedExecutor`), {_chain(s["direct"])} with plain '
        f'torch calls in the callbacks. Pipelining denoiser (frame i+1) and target (frame i) on '
        f'this {cfg["cpus"]}-core CPU: {_times(pipe["small"]["pipelined_vs_sequential"])} '
        f'(small pair) and {_times(pipe["full"]["pipelined_vs_sequential"])} (DUNET_D full + '
        f'Inception-v3 at 299×299) the sequential frames/s, outputs '
        f'{"identical" if same else "NOT identical"}; the CUDA stream path is tested only '
        f'where a GPU exists.')


def _link_row(r: dict) -> str:
    size = '–' if r['bytes_per_frame'] is None else _int(r['bytes_per_frame'])
    where = f'{r["cut"] or "–"} / {r["codec"] or "–"}'
    return (f'| {r["rate_mbps"]:g} Mbit/s | {r["strategy"]} | {r["fps"]:.1f} | '
            f'{_one(r["p50_ms"])} | {_one(r["p99_ms"])} | {size} | '
            f'{r["dropped"]} / {r["played"]} | {where} |')


def render_link(results: Results) -> str:
    """Render every offloading strategy over a shaped link: table and findings."""
    link = _file(results, 'link')
    rows, cfg = link['rows'], link['config']
    table = '\n'.join(
        ['| uplink | strategy | frames/s | p50 ms | p99 ms | bytes/frame | dropped of played '
         '| cut / codec |', '|---|---|---|---|---|---|---|---|'] + [_link_row(r) for r in rows])
    rates = sorted({r['rate_mbps'] for r in rows})
    rates_text = _and([f'{r:g}' for r in rates])
    auto = [r for r in rows if r['strategy'] == 'auto']
    picks = sorted({f'{r["cut"]} / {r["codec"]}' for r in auto})
    best = [max((r for r in rows if r['rate_mbps'] == rate), key=lambda r: r['fps'])
            for rate in rates]
    auto_fps = _and([f'{r["fps"]:.1f}' for r in auto])
    best_fps = _and([f'{r["fps"]:.1f}' for r in best])
    text = (
        f'**Offloading over a shaped link** ({_source(results, "link")}, as root): edge and '
        f'host in two network namespaces joined by a veth shaped with `tc tbf`, the demo bag '
        f'replayed for {cfg["duration"]:g} s per strategy and rate, frames/s measured at the '
        f'robot.\n\n{table}\n\n'
        f'`auto` (the planner, from a profile measured at start-up and the declared link) '
        f'picked {" and ".join(picks)} at {rates_text} Mbit/s: '
        f'{auto_fps} frames/s; the best strategy\'s {best_fps}.')
    slow = [r for r in rows if r['rate_mbps'] == rates[0]]
    raw = next((r for r in slow if r['strategy'] == 'raw'), None)
    sized = next((r for r in rows if r['strategy'] == 'raw' and r['bytes_per_frame']), None)
    small = next((r for r in slow if r['strategy'] == 'split_jpeg'), None)
    if raw and sized and small and raw['fps'] == 0:
        text += (
            f' At {rates[0]:g} Mbit/s raw frames ({_int(sized["bytes_per_frame"])} bytes) '
            f'deliver nothing: each frame is many DDS fragments and the shaper\'s queue drops '
            f'some of nearly every one ({_int(raw["link_dropped_packets"])} packets dropped), '
            f'while `split_jpeg` sends {_int(small["bytes_per_frame"])} bytes a frame.')
    return text


FUZZ_BAR_MS = 50.0      # the bar: the worst bad message's CPU and memory
FUZZ_BAR_MB = 50.0
SOAK_BAR_PCT = 2.0      # RSS growth per node after warm-up
BIG_MESSAGE_CLASSES = {'oversize', 'raw_huge'}   # fuzz classes that are large on the wire


def _bad_kinds(run: dict) -> dict:
    """Return the fuzz classes of bad messages (valid frames are not under the bar)."""
    return {k: v for k, v in run['by_kind'].items() if v.get('valid') is not True}


def _worst(run: dict, field: str) -> str:
    kind, k = max(_bad_kinds(run).items(), key=lambda kv: kv[1][field])
    return f'{k[field]:.1f} ({kind})'


def _fuzz_row(name: str, run: dict) -> str:
    return (f'| `{name}` | {_int(run["cases"])} | {run["crashes"]} | {_int(run["counted"])} / '
            f'{run["uncounted"]} | {_worst(run, "worst_ms")} | {_worst(run, "worst_mb")} | '
            f'{_pct(run["valid_classified_fraction"])} % | {run["rss_growth_pct"]:.1f} % |')


def _over(run: dict, field: str, bar: float) -> str:
    over = sorted(k for k, v in _bad_kinds(run).items() if v[field] > bar)
    return _and([f'`{k}` ({run["by_kind"][k][field]:.0f})' for k in over])


def render_robustness(results: Results) -> str:
    """Render bench fuzz (host, edge) and bench soak against the issue's bars."""
    runs = [(n, _file(results, n)) for n in ('fuzz_host', 'fuzz_edge')]
    table = '\n'.join(
        ['| file | cases | crashes | counted / uncounted | worst CPU ms (class) | worst MB '
         '(class) | valid classified | RSS growth |', '|---|---|---|---|---|---|---|---|'] +
        [_fuzz_row(n, r) for n, r in runs])
    text = (f'**Hostile messages** ({_sources(results, "fuzz_host", "fuzz_edge")}): every '
            f'case followed by a valid message, the node\'s own CPU time and peak memory per '
            f'case from `/proc` (less a valid message\'s median cost, and less what the idle '
            f'node\'s timers spend over the case\'s window); the worst columns are over the '
            f'bad messages, not the valid frames mixed in.\n\n{table}')
    big_only, medians, within = True, [], []
    for name, run in runs:
        slow, big = _over(run, 'worst_ms', FUZZ_BAR_MS), _over(run, 'worst_mb', FUZZ_BAR_MB)
        if slow or big:
            over = {k for k, v in _bad_kinds(run).items()
                    if v['worst_ms'] > FUZZ_BAR_MS or v['worst_mb'] > FUZZ_BAR_MB}
            text += (f'\n\n`{name}`: over the {FUZZ_BAR_MS:g} ms / {FUZZ_BAR_MB:g} MB bar: '
                     f'{_and([x for x in (slow and "CPU " + slow, big and "memory " + big) if x])}'
                     f'; every other class within it.')
            big_only = big_only and over <= BIG_MESSAGE_CLASSES
            medians += [f'`{k}` {v["median_ms"]:.1f} ms / {v["median_mb"]:.1f} MB'
                        for k, v in sorted(run['by_kind'].items())
                        if k in over and v.get('median_ms') is not None]
        else:
            within.append(f'`{name}`')
    if within:
        text += (f'\n\n{_and(within)}: every class of bad message within the '
                 f'{FUZZ_BAR_MS:g} ms / {FUZZ_BAR_MB:g} MB bar.')
    if medians and big_only:
        text += ('\n\nThose are messages larger than the caps (a 4K camera frame, a feature '
                 'message over `max_payload_bytes`): the nodes take them raw and refuse them '
                 'after reading their length, so the cost is the middleware receiving them, '
                 'which holds the serialized message up to three times before any callback '
                 'runs (Fast DDS\'s copy in the reader\'s history, rclpy\'s serialized buffer, '
                 'the Python bytes). The bar is not met for them; their median cost: '
                 f'{_and(medians)}.')
    bursts = [(name, b) for name, run in runs for b in run.get('burst', {}).values()]
    if bursts:
        text += ('\n\nBursts: ' + '; '.join([
            f'{_int(b["messages"])} `{b["kind"]}` back to back leave `{name}`\'s node '
            f'{b["rss_growth_mb"][0]:.1f} MB larger'
            + (f', the same burst again {b["rss_growth_mb"][1]:.1f} MB'
               if len(b['rss_growth_mb']) > 1 else '') for name, b in bursts])
            + ': a large sample\'s buffers come from the node\'s message pool (README: '
              'Fast DDS); a burst that holds more than the pool at once grows the heap by '
              'the difference once, and the same burst again reuses it.')
    for name in SOAK_RUNS:
        if name in results or name == 'soak':
            text += '\n\n' + _soak(results, name)
    return text


SOAK_RUNS = ('soak', 'soak_scenes')     # the default soak (the bar's command), a bundle's


def _soak(results: Results, name: str) -> str:
    """Render one bench soak run: what was classified, dropped, memory and latency."""
    soak = _file(results, name)
    growth = soak['rss_growth_pct_by_node']
    drops = soak['dropped_by_reason']
    return (
        f'**Soak** ({_source(results, name)}): {_int(soak["frames"])} camera frames'
        f'{_soak_frames(soak)} at {soak["rate_hz"]:g} Hz through `edge_process` and '
        f'`host_node`{_soak_served(soak)}: '
        f'{_int(soak["classified"])} classified, '
        f'{_and([f"{_int(v)} {k}" for k, v in drops.items()]) or "none"} dropped; RSS growth '
        f'after {_int(soak["warmup"])} frames of warm-up '
        f'{_and([f"{n} {v:.2f} %" for n, v in growth.items()])} (bar {SOAK_BAR_PCT:g} %); p99 '
        f'latency {_one(soak["p99_first_ms"])} ms over the first {_int(soak["window"])} frames '
        f'after warm-up, {_one(soak["p99_last_ms"])} ms over the last.')


def _soak_frames(soak: dict) -> str:
    """Say which frames a soak played (older runs: 224x224 Fashion-MNIST, no profile)."""
    if 'frame_size' not in soak:
        return ' (224x224, without the Fast DDS profile)'
    where = f'the held-out scenes of `{soak["bundle"]}`' if soak.get('bundle') else \
        'Fashion-MNIST test images'
    profile = 'the shipped Fast DDS profile' if soak.get('fastdds_profile') else \
        'no Fast DDS profile'
    return f' ({soak["frame_size"]}, {where}; {profile})'


def _soak_served(soak: dict) -> str:
    return f' serving `{soak["bundle"]}`' if soak.get('bundle') else ''


CAMERA_RUNS = ('camera', 'camera_no_profile', 'camera_reliable_no_profile')


def _fastdds(run: dict) -> str:
    path = run['fastdds'].get('FASTDDS_DEFAULT_PROFILES_FILE')
    return f'`{Path(path).name}`' if path else 'default transports'


def render_camera(results: Results) -> str:
    """Render camera frames sent and received between two processes, per size and setting."""
    runs = [(n, _file(results, n)) for n in CAMERA_RUNS if n in results or n == 'camera']
    lines = ['| frames (rgb8) | Fast DDS | camera QoS | received of sent | p50 ms | p99 ms |',
             '|---|---|---|---|---|---|']
    for _, run in runs:
        qos = f'{run["config"]["reliability"]}, depth {run["config"]["depth"]}'
        for r in run['rows']:
            lines.append(f'| {r["size"].replace("x", "×")} | {_fastdds(run)} | {qos} | '
                         f'{r["received"]} / {r["sent"]} ({r["received_pct"]:.1f} %) | '
                         f'{_one(r["p50_ms"])} | {_one(r["p99_ms"])} |')
    cfg = _file(results, 'camera')['config']
    return (f'**Camera frames between two processes** '
            f'({_sources(results, *(n for n, _ in runs))}): a camera process publishes '
            f'{cfg["frames"]} frames per size at {cfg["rate"]:g} Hz on `image_raw`, a second '
            f'process subscribes as the edge does; latency from publish to the subscriber\'s '
            f'callback.\n\n' + '\n'.join(lines))


def _weak_row(r: dict) -> str:
    size = '–' if r['bytes_per_frame'] is None else _int(r['bytes_per_frame'])
    acc = '–' if r.get('accuracy') is None else f'{_pct(r["accuracy"], 1)} %'
    cpu = '–' if r.get('edge_cpu') is None else f'{r["edge_cpu"]:.2f}'
    return (f'| {r["rate_mbps"]:g} Mbit/s | {r["strategy"]} | {r["fps"]:.1f} | '
            f'{_one(r["p50_ms"])} | {_one(r["p99_ms"])} | {size} | {acc} | {cpu} | '
            f'{r["cut"] or "–"} / {r["codec"] or "–"} |')


def render_link_weak_edge(results: Results) -> str:
    """Render the strategies and the H.264 peer with the edge held to a CPU quota."""
    link = _file(results, 'link_weak_edge')
    cfg, quota, h264 = link['config'], link['edge_quota'], link['h264']
    table = '\n'.join(
        ['| uplink | strategy | frames/s | p50 ms | p99 ms | bytes/frame | accuracy | edge CPU '
         '(cores) | cut / codec |', '|---|---|---|---|---|---|---|---|---|']
        + [_weak_row(r) for r in link['rows']])
    w, h = cfg['frame_size'].split('x')
    return (f'**A really weak edge, and the H.264 peer** ({_source(results, "link_weak_edge")}, '
            f'as root): the same shaped link, {w}×{h} camera frames, the edge process held to '
            f'{quota["cpus"]:g} of a core by a cgroup {quota["cgroup"]} CPU quota '
            f'({quota["quota_us"]} µs per {quota["period_us"]} µs), {cfg["duration"]:g} s per '
            f'strategy and rate. `h264` is what FogROS2-style offloading sends: an H.264 stream '
            f'(libx264 `{h264["preset"]}`/`{h264["tune"]}`, crf {h264["crf"]}, '
            f'{"intra refresh" if h264["intra_refresh"] else "a key frame"} every '
            f'{h264["gop"]} frames) decoded '
            f'on the host, which runs the whole defended model. Accuracy is against the bag\'s '
            f'ground truth on the frames classified (half of them PGD-attacked); edge CPU is '
            f'what the edge process used over the replay.\n\n{table}')


LINK_SCENES = (('link_scenes_quarter', 'a quarter core'), ('link_scenes_one', 'one core'))


def _scenes_table(link: dict) -> str:
    rates = sorted({r['rate_mbps'] for r in link['rows']})
    head = ['| strategy | ' + ' | '.join(f'{r:g} Mbit/s' for r in rates) + ' |',
            '|---|' + '---|' * len(rates)]
    rows = []
    for strategy in dict.fromkeys(r['strategy'] for r in link['rows']):
        cells = {r['rate_mbps']: r for r in link['rows'] if r['strategy'] == strategy}
        rows.append(f'| {strategy} | ' + ' | '.join(
            '–' if rate not in cells else
            f'{cells[rate]["fps"]} fps, ' + ('-' if cells[rate]['accuracy'] is None
                                             else f'{_pct(cells[rate]["accuracy"])} %')
            for rate in rates) + ' |')
    return '\n'.join(head + rows)


def _auto_line(s: dict) -> str:
    paired = ('' if s.get('paired_difference_pt') is None else
              f', {s["paired_difference_pt"]} pt on the {s["paired_frames"]} frames both '
              f'classified ({_pct(s["auto_paired_accuracy"])} vs '
              f'{_pct(s["best_paired_accuracy"])} %)')
    return (f'{s["rate_mbps"]:g} Mbit/s: best {s["best"]} {s["best_fps"]} fps, auto '
            f'{s["auto_fps"]} fps ({s["auto_cut"]} / {s["auto_codec"]}), '
            f'{s["auto_vs_best"]}× the best{paired}')


def render_link_scenes(results: Results) -> str:
    """Render the realistic profile's link sweeps: every strategy, and auto against the best."""
    parts = []
    for name, what in LINK_SCENES:
        link = _file(results, name)
        lines = '; '.join(_auto_line(s) for s in link['summary'])
        parts.append(f'**The edge held to {what}** ({_source(results, name)}, '
                     f'[plot](docs/results/{name}.png)):\n\n{_scenes_table(link)}\n\n'
                     f'`auto` against the fastest fixed strategy, per uplink: {lines}.')
    return '\n\n'.join(parts)


HOSTS_RUNS = ('hosts', 'hosts_saturated')


def _hosts_cell(r: dict) -> str:
    missing = [f'{_int(r[k])} {k.replace("_", " ")}' for k in ('result_lost', 'unaccounted')
               if r.get(k)]
    return (f'{r["frames_per_s"]:.1f} | {_one(r["p50_ms"])} | {_one(r["p99_ms"])} | '
            f'{_int(r["dropped"])} / {_int(r["played"])}'
            + (f' ({", ".join(missing)})' if missing else ''))


def _hosts_point(p: dict) -> str:
    verdict = 'met' if p['met'] else 'not met'
    return (f'{p["robots"]} robots: {_times(p["ratio"])} the frames/s, p99 '
            f'{_one(p["p99_batched_ms"])} vs {_one(p["p99_unbatched_ms"])} ms ({verdict})')


def render_hosts(results: Results) -> str:
    """Render one host serving 1..N robots, one by one and batched, and the bar."""
    runs = [(name, _file(results, name)) for name in HOSTS_RUNS
            if name in results or name == 'hosts']
    cfg = runs[0][1]['config']
    lines = ['| file | robots | offered/s | one by one: frames/s | p50 ms | p99 ms | dropped of '
             'played | batched: frames/s | p50 ms | p99 ms | dropped of played | mean batch '
             '| host CPU ms/frame (one by one / batched) | load |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for name, run in runs:
        for n in sorted({r['robots'] for r in run['rows']}):
            one, many = (next(r for r in run['rows'] if r['robots'] == n and r['batched'] == b)
                         for b in (False, True))
            lines.append(f'| `{name}` | {n} | {one["offered_per_s"]:g} | {_hosts_cell(one)} | '
                         f'{_hosts_cell(many)} | {many["mean_batch"]:.1f} | '
                         f'{one["host_cpu_ms_per_frame"]:.2f} / '
                         f'{many["host_cpu_ms_per_frame"]:.2f} | '
                         f'{max(one["load_1min"] + many["load_1min"]):.1f} |')
    points = [p for _, run in runs for p in run['bar']['points']]
    settings = runs[0][1]['settings']
    text = (
        f'**One host, many robots** ({_sources(results, *(n for n, _ in runs))}): N simulated '
        f'robots replay feature messages encoded by the edge stage ({settings["cut"]}, '
        f'{settings["codec"]} q{settings["quality"]}, {_int(runs[0][1]["message_bytes"])} bytes '
        f'a message) at {cfg["rate_hz"]:g} Hz each into one fresh `host_node` per row, one by one '
        f'(`max_batch: 1`) and batched (`max_batch: {cfg["max_batch"]}`, '
        f'`max_batch_delay_ms: {cfg["max_batch_delay_ms"]:g}`) side by side on the same '
        f'messages, {cfg["duration"]:g} s each; frames/s and send → classification latency at '
        f'the robots after {cfg["warmup"]:g} s; every frame played is classified or dropped '
        f'with the host\'s reason. The last column is the 1-minute load average of this shared '
        f'machine during the row (other engineers\' jobs).\n\n' + '\n'.join(lines))
    if points:
        text += (f'\n\nWhere one by one falls behind the offered frames (the bar: batched ≥ '
                 f'{_times(runs[0][1]["bar"]["ratio_needed"])} the frames/s, p99 no worse): '
                 + '; '.join(_hosts_point(p) for p in points) + '.')
    return text


BLOCKS: dict[str, Callable[[Results], str]] = {
    'machine': render_machine,
    'denoiser': render_denoiser,
    'surgery': render_surgery,
    'codecs': render_codecs,
    'scheduler': render_scheduler,
    'link': render_link,
    'camera': render_camera,
    'link-weak-edge': render_link_weak_edge,
    'link-scenes': render_link_scenes,
    'robustness': render_robustness,
    'hosts': render_hosts,
}


def wrap(markdown: str, width: int = 99) -> str:
    """Fill the prose paragraphs of ``markdown`` to ``width``; tables stay as they are."""
    paragraphs = markdown.split('\n\n')
    return '\n\n'.join(
        p if p.lstrip().startswith(('|', '!', '<')) else
        textwrap.fill(' '.join(p.split()), width, break_long_words=False,
                      break_on_hyphens=False)
        for p in paragraphs)


def render_readme(text: str, results: Results) -> str:
    """Return ``text`` with every result block rendered afresh from ``results``."""
    opened, closed = OPEN.findall(text), CLOSE.findall(text)
    if sorted(opened) != sorted(closed) or len(set(opened)) != len(opened):
        raise ValueError(f'result markers do not pair up: opened {opened}, closed {closed}')
    unknown = sorted(set(opened) - set(BLOCKS))
    if unknown:
        raise ValueError(f'unknown result block {unknown[0]!r}; expected one of {tuple(BLOCKS)}')

    def block(match: re.Match) -> str:
        name, nl = match['name'], match['nl']
        body = BLOCKS[name](results).rstrip()
        body = wrap(body) if nl else body
        return f'<!-- results:{name} -->{nl}{body}{nl}<!-- /results:{name} -->'

    rendered, count = BLOCK.subn(block, text)
    if count != len(opened):
        raise ValueError('result blocks must not nest or overlap')
    return rendered


def main(argv: list[str] | None = None) -> int:
    """Check (default) or rewrite the README's result blocks; 1 when they are stale."""
    parser = argparse.ArgumentParser(
        prog='python -m edge_denoise_ros.harness.results',
        description='render the README result blocks from docs/results/*.json')
    parser.add_argument('--write', action='store_true', help='rewrite the README in place')
    parser.add_argument('--readme', type=Path, default=README, help='the README to render')
    parser.add_argument('--results', type=Path, default=RESULTS_DIR,
                        help='folder of result JSON files')
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    try:
        rendered = render_readme(text, load_results(args.results))
    except (ValueError, KeyError, StopIteration) as exc:
        print(f'results: error: {exc!r}', file=sys.stderr)
        return 2
    if rendered == text:
        print(f'{args.readme}: result blocks up to date')
        return 0
    if args.write:
        args.readme.write_text(rendered)
        print(f'{args.readme}: result blocks rewritten')
        return 0
    print(f'{args.readme}: result blocks differ from {args.results}; run make results',
          file=sys.stderr)
    return 1


if __name__ == '__main__':
    sys.exit(main())
