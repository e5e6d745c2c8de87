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
Codec commands: ``bench codecs``, ``train host-finetune``, ``train deepn-jpeg-table``.

``bench codecs`` measures, for every cut of the model and every codec
setting, the compression ratio against the cut tensor's float32 bytes, the
top-1 accuracy of encode -> decode -> tail on the test split, and the encode
and decode speeds (MB/s of float32 input, one message per image, one thread),
beside zstd-3 on the raw float32 bytes in the same run; then DeepN-JPEG
against standard JPEG on the host-only path at equal accuracy.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import zstandard

from .common import (add_schedule_args, CliError, format_table, jpeg_quality, parse_list,
                     positive_float, positive_int, ProgressBar)
from . import bundles
from .train import add_model_args, write_provenance
from ..core import codecs, data, deepn_jpeg, models, surgery, tails, training, wire
from ..core.evaluation import accuracy
from ..core.models import set_torch_threads

DEFAULT_QUALITIES = (5, 10, 20, 30, 50, 70, 90)
JPEG_SWEEP = (30, 50, 60, 70, 75, 80, 85, 90, 92, 94, 95, 96, 97, 98, 99, 100)
DEEPN_SWEEP = (0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0,
               1.5, 2.0)
DROP_TARGET_PTS = 0.5


def register_bench_codecs(p) -> None:
    """Add ``bench codecs``' arguments."""
    p.add_argument('--model', default=models.DEFAULT_MODEL, help='target model name')
    p.add_argument('--limit', type=positive_int, default=None,
                   help='the first N test images only (default: all 10,000)')
    p.add_argument('--cuts', default='blocks',
                   help="'blocks' (the input and every block's output: input, stem, layer1.0, "
                        "..., pool), 'all' (also pre-activation sums and normalisation: 20 "
                        "cuts, ~4x longer) or comma-separated cut names/labels")
    p.add_argument('--qualities', type=lambda t: parse_list(t, int),
                   default=list(DEFAULT_QUALITIES), help='JPEG qualities of the jpeg codec')
    p.add_argument('--huffman-limit', type=positive_int, default=1000,
                   help='images on which the lossless stage is compared with plain Huffman')
    p.add_argument('--timing-images', type=positive_int, default=500,
                   help='speeds: encode/decode this many messages, best of --repeats runs')
    p.add_argument('--repeats', type=positive_int, default=5, help='timing runs per setting')
    p.add_argument('--no-deepn', action='store_true', help='skip the DeepN-JPEG comparison')
    p.add_argument('--no-finetuned', dest='finetuned', action='store_false',
                   help='skip scoring the shipped fine-tuned tails (weights/host_tail_*.pt)')
    p.add_argument('--threads', type=positive_int, default=None, help='torch intra-op threads')
    p.add_argument('--out', default=None, help='also write the JSON result to this file')
    p.set_defaults(func=bench_codecs)


def register_host_finetune(p) -> None:
    """Add ``train host-finetune``'s arguments."""
    p.add_argument('--cut', required=True, help='cut name or label (e.g. layer2)')
    p.add_argument('--codec', default='jpeg', help='feature codec of the link')
    p.add_argument('--quality', type=jpeg_quality, default=None, help='JPEG quality')
    add_schedule_args(p, 3, 128, 0.01, 'peak learning rate')
    p.add_argument('--limit', type=positive_int, default=None,
                   help='train on the first N training images only (quick runs)')
    p.add_argument('--test-limit', type=positive_int, default=None,
                   help='score on the first N test images only (default: all 10,000)')
    p.add_argument('--threads', type=positive_int, default=None, help='torch intra-op threads')
    p.add_argument('--tune', type=lambda t: tuple(parse_list(t)), default=(),
                   help='train only these modules of the tail (names as in the model, e.g. '
                        'net.features.5,net.features.6); the file then holds only them and '
                        'the host takes the rest from the target (a smaller file); default: '
                        'the whole tail')
    p.add_argument('--out', default=None,
                   help='a bundle folder (with --data, or one that has a card), or a tail '
                        'file; default: weights/<the name host_tail() looks for>')
    add_model_args(p)
    p.set_defaults(func=train_host_finetune)


def register_deepn_table(p) -> None:
    """Add ``train deepn-jpeg-table``'s arguments."""
    p.add_argument('--limit', type=positive_int, default=None,
                   help='statistics of the first N training images only')
    p.add_argument('--calibration-images', type=positive_int, default=5000,
                   help='the last N training images: held out of the statistics, used to '
                        'pick the table scale')
    p.add_argument('--drop-pts', type=positive_float, default=DROP_TARGET_PTS,
                   help='calibration: coarsest scale within this many points of uncompressed')
    p.add_argument('--no-calibrate', dest='calibrate', action='store_false',
                   help='ship the PLM table as is (scale 1)')
    p.add_argument('--model', default=models.DEFAULT_MODEL, help='model of the calibration')
    p.add_argument('--out', default=None,
                   help='table file; default: the shipped weights/deepn_jpeg_table.json')
    p.set_defaults(func=train_deepn_table)


# ------------------------------------------------------------------------- bench

def _select_cuts(model, traced, spec: str):
    """Cuts to bench: 'all', 'blocks' (input, outputs of container modules, last) or names."""
    if spec == 'all':
        return list(traced.cuts)
    if spec == 'blocks':
        def is_block(label):
            try:
                return any(True for _ in model.get_submodule(label).children())
            except (AttributeError, ValueError):
                return False
        last = traced.cuts[-1]
        return [c for c in traced.cuts if c.label == 'input' or c is last or is_block(c.label)]
    return [traced.cut(name) for name in parse_list(spec)]


def _configs(qualities):
    yield 'raw', None, {'dtype': 'float32'}
    yield 'raw', None, {'dtype': 'float16'}
    yield 'lossless', None, {'dtype': 'float32'}
    yield 'lossless', None, {'dtype': 'float16'}
    yield 'q8', None, {}
    for q in qualities:
        yield 'jpeg', q, {'quality': q}


def _best_time(fn, repeats: int) -> float:
    """Return the fastest of ``repeats`` wall-clock runs of ``fn()`` (robust to other load)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _codec_times(feats, codec: str, opts: dict, repeats: int) -> tuple[float, float]:
    """Return the best encode and decode seconds of one message per sample of ``feats``."""
    samples = list(feats)
    messages = [codecs.encode(f, codec, **opts) for f in samples]
    enc = _best_time(lambda: [codecs.encode(f, codec, **opts) for f in samples], repeats)
    dec = _best_time(lambda: [codecs.decode(p, m) for p, m in messages], repeats)
    return enc, dec


def bench_codecs(args) -> dict:
    """Run the codec benchmark and print its tables."""
    set_torch_threads(args.threads)
    model = models.build_target(args.model)
    if args.model != models.DEFAULT_MODEL:
        raise CliError('bench codecs uses the Fashion-MNIST test split: only the default '
                       f'model {models.DEFAULT_MODEL!r} fits it')
    x, y = data.load_split_tensors('test', args.limit)
    n = len(y)
    traced = surgery.trace(model, x[:1])
    selected = _select_cuts(model, traced, args.cuts)
    base = accuracy(model, x, y)
    cctx, dctx = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    rows, stages = [], []
    configs = list(_configs(args.qualities))
    bar = ProgressBar('bench codecs')
    total, step = len(selected) * (len(configs) + 1), 0
    k_time = min(n, args.timing_images)
    for cut in selected:
        head, tail = surgery.split_traced(traced, cut)
        with torch.no_grad():
            feats = torch.cat([head(x[i:i + 1000]) for i in range(0, n, 1000)])
        raw_bytes = 4 * feats[0].numel() * n
        time_bytes = 4 * feats[0].numel() * k_time
        label = cut.label or cut.name
        exact_acc = accuracy(tail, feats, y)  # no coding at this cut
        # zstd-3 on the raw float32 bytes: the reference speed and ratio.
        arrays = [np.ascontiguousarray(f.numpy()) for f in feats]
        packed = [cctx.compress(a) for a in arrays]
        enc = _best_time(lambda a=arrays[:k_time]: [cctx.compress(v) for v in a], args.repeats)
        dec = _best_time(lambda b=packed[:k_time]: [dctx.decompress(v) for v in b],
                         args.repeats)
        rows.append({'cut': label, 'codec': 'zstd-3', 'quality': None, 'dtype': 'float32',
                     'ratio': raw_bytes / sum(len(p) for p in packed), 'accuracy': exact_acc,
                     'drop_pts': 100 * (base - exact_acc), 'encode_MBps': time_bytes / enc / 1e6,
                     'decode_MBps': time_bytes / dec / 1e6,
                     'bytes': sum(len(p) for p in packed) / n, 'reference': True})
        del arrays, packed
        step += 1
        bar(step, total, {'cut': label})
        half = None  # (decoded, accuracy) of the first float16 codec: raw and lossless agree
        for codec, quality, opts in configs:
            decoded, sizes, _, _ = codecs.roundtrip(feats, codec, **opts)
            dtype = opts.get('dtype', 'float32')
            sent = feats.numpy().astype(dtype).astype(np.float32)
            exact = codec in ('raw', 'lossless') and \
                np.array_equal(decoded.view(np.uint32), sent.view(np.uint32))
            if exact and dtype == 'float32':
                acc = exact_acc
            elif exact and half is not None:
                acc = half
            else:
                acc = accuracy(tail, decoded, y)
                if exact:
                    half = acc
            enc, dec = _codec_times(feats[:k_time], codec, opts, args.repeats)
            row = {'cut': label, 'codec': codec, 'quality': quality, 'dtype': dtype,
                   'ratio': raw_bytes / int(sizes.sum()), 'accuracy': acc,
                   'drop_pts': 100 * (base - acc), 'encode_MBps': time_bytes / enc / 1e6,
                   'decode_MBps': time_bytes / dec / 1e6, 'bytes': float(sizes.mean())}
            if codec in ('raw', 'lossless'):
                row['bit_exact'] = bool(exact)
            if codec == 'lossless':
                k = min(n, args.huffman_limit)
                huff = sum(codecs.huffman_nbytes(s) for f in feats[:k]
                           for s in codecs.sparse_streams(f.numpy(), dtype))
                stages.append({'cut': label, 'dtype': dtype, 'images': k,
                               'zstd_ratio': 4 * feats[0].numel() * k / int(sizes[:k].sum()),
                               'huffman_ratio': 4 * feats[0].numel() * k / huff})
            rows.append(row)
            step += 1
            bar(step, total, {'cut': label, 'codec': codec})
    for r in rows:
        for k in ('ratio', 'accuracy', 'drop_pts', 'encode_MBps', 'decode_MBps', 'bytes'):
            r[k] = round(r[k], 4 if k in ('accuracy', 'drop_pts') else 2)
    result = {'model': args.model, 'n': n, 'base_accuracy': base, 'rows': rows,
              'lossless_stages': [{k: round(v, 3) if isinstance(v, float) else v
                                   for k, v in s.items()} for s in stages],
              'best': _best(rows)}
    if args.finetuned:
        result['finetuned'] = _score_finetuned(model, traced, x, y, base)
    if not args.no_deepn:
        result['deepn_jpeg'] = bench_deepn(model, args.limit)
    _print_bench(result)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + '\n')
    return result


def _best(rows) -> dict:
    """Return the best lossless ratio (0 drop) and the best jpeg ratio within 1 point."""
    out = {}
    for name, codec, dtype, ok in (
            ('lossless_float32', 'lossless', 'float32', lambda r: r['drop_pts'] <= 0),
            ('lossless_float16', 'lossless', 'float16', lambda r: r['drop_pts'] <= 0),
            ('jpeg_within_1pt', 'jpeg', 'float32', lambda r: r['drop_pts'] <= 1.0)):
        cand = [r for r in rows if r['codec'] == codec and r['dtype'] == dtype and ok(r)]
        if cand:
            best = max(cand, key=lambda r: r['ratio'])
            out[name] = {k: best[k] for k in ('cut', 'codec', 'quality', 'dtype', 'ratio',
                                              'drop_pts', 'encode_MBps', 'decode_MBps')}
    return out


def _score_finetuned(model, traced, x, y, base) -> list:
    """Accuracy of every shipped fine-tuned tail on its own link settings."""
    out = []
    for meta_path in sorted(models.weights_dir().glob('host_tail_*.json')):
        record = json.loads(meta_path.read_text())
        tail = tails.host_tail(model, traced, record['cut'], record['codec'],
                               record.get('quality'), model_name=record['model'])
        head, plain = surgery.split_traced(traced, record['cut'])
        with torch.no_grad():
            feats = torch.cat([head(x[i:i + 1000]) for i in range(0, len(x), 1000)])
        opts = {'quality': record['quality']} if record.get('quality') else {}
        decoded, sizes, _, _ = codecs.roundtrip(feats, record['codec'], **opts)
        before, after = accuracy(plain, decoded, y), accuracy(tail, decoded, y)
        out.append({'file': meta_path.with_suffix('.pt').name, 'used': bool(tail.finetuned),
                    'cut': record['cut'],
                    'codec': record['codec'], 'quality': record.get('quality'),
                    'ratio': round(4 * feats[0].numel() * len(y) / int(sizes.sum()), 2),
                    'accuracy_plain_tail': before, 'accuracy_finetuned': after,
                    'drop_pts_plain': round(100 * (base - before), 4),
                    'drop_pts_finetuned': round(100 * (base - after), 4)})
    return out


def _jpeg_header_nbytes(payload: bytes) -> int:
    """Bytes of a JPEG outside its entropy-coded scan: markers, tables, EOI."""
    i = 2
    while i + 4 <= len(payload):
        marker = payload[i + 1]
        seg = int.from_bytes(payload[i + 2:i + 4], 'big')
        i += 2 + seg
        if marker == 0xDA:
            return i + 2
    return len(payload)


def bench_deepn(model, limit=None) -> dict:
    """Bytes per image of DeepN-JPEG vs standard JPEG at equal accuracy (host-only path)."""
    images, labels = data.load_fashion_mnist('test')
    if limit:
        images, labels = images[:limit], labels[:limit]
    y = torch.from_numpy(labels)
    base = accuracy(model, data.to_tensor(images), y)
    table = codecs.load_table()
    record = codecs.table_record()
    plm_table = np.asarray(record.get('plm_table', table.tolist()))
    sweep = []
    bar = ProgressBar('bench deepn-jpeg')
    settings = [('jpeg', q) for q in JPEG_SWEEP] + [('deepn_jpeg', s) for s in DEEPN_SWEEP]
    for step, (codec, setting) in enumerate(settings, 1):
        out = np.empty_like(images)
        sizes = np.empty(len(images), np.int64)
        scan = np.empty(len(images), np.int64)
        t = deepn_jpeg.scale_table(plm_table, setting) if codec == 'deepn_jpeg' else None
        for i, image in enumerate(images):
            if t is None:
                payload, meta = codecs.encode(image, 'jpeg', quality=setting)
            else:
                payload, meta = codecs.encode(image, 'deepn_jpeg', qtable=t)
            out[i] = codecs.decode(payload, meta)
            sizes[i] = len(payload)
            scan[i] = len(payload) - _jpeg_header_nbytes(payload)
        acc = accuracy(model, data.to_tensor(out), y)
        sweep.append({'codec': codec, 'setting': setting, 'bytes_per_image': float(sizes.mean()),
                      'scan_bytes_per_image': float(scan.mean()), 'accuracy': acc,
                      'drop_pts': round(100 * (base - acc), 4)})
        bar(step, len(settings), {'codec': codec})
    target = base - DROP_TARGET_PTS / 100

    def cheapest(codec):
        ok = [s for s in sweep if s['codec'] == codec and s['accuracy'] >= target - 1e-12]
        return min(ok, key=lambda s: s['bytes_per_image']) if ok else None

    std, dn = cheapest('jpeg'), cheapest('deepn_jpeg')
    shipped = [s for s in sweep if s['codec'] == 'deepn_jpeg' and
               s['setting'] == record.get('scale')]
    result = {'images': 'Fashion-MNIST test, 28x28 gray (the model input)',
              'n': len(images), 'raw_bytes_per_image': int(images[0].size),
              'base_accuracy': base, 'drop_target_pts': DROP_TARGET_PTS,
              'jpeg': std, 'deepn_jpeg': dn,
              'ratio': round(std['bytes_per_image'] / dn['bytes_per_image'], 3)
              if std and dn else None,
              'scan_ratio': round(std['scan_bytes_per_image'] / dn['scan_bytes_per_image'], 3)
              if std and dn else None,
              'table_id': codecs.qtable_id(table), 'shipped_scale': record.get('scale'),
              'shipped': shipped[0] if shipped else None,
              'sweep': sweep}
    return result


def _print_bench(result) -> None:
    cols = ['cut', 'codec', 'quality', 'dtype', 'ratio', 'accuracy', 'drop_pts',
            'encode_MBps', 'decode_MBps', 'bytes']
    print(format_table(result['rows'], cols))
    print(f"{result['n']} test images, base accuracy {result['base_accuracy']:.4f}; "
          f"ratio vs the cut tensor's float32 bytes; MB/s of float32 input, one message per "
          f"image")
    print(format_table(result['lossless_stages']))
    for name, row in result['best'].items():
        print(f'best {name}: {row}')
    for row in result.get('finetuned', []):
        print(f'fine-tuned tail: {row}')
    dn = result.get('deepn_jpeg')
    if dn:
        print(format_table(dn['sweep']))
        print(f"DeepN-JPEG vs JPEG at <= {dn['drop_target_pts']} point drop: jpeg "
              f"{dn['jpeg']}, deepn {dn['deepn_jpeg']}, bytes ratio {dn['ratio']} "
              f"(scan only {dn['scan_ratio']})")


# ------------------------------------------------------------------------- training

def train_host_finetune(args) -> dict:
    """Fine-tune the tail at a cut on decoded features, save it, report before/after."""
    set_torch_threads(args.threads)
    if args.codec not in wire.FEATURE_CODECS:
        raise CliError(f'unknown feature codec {args.codec!r}; expected one of '
                       f'{wire.FEATURE_CODECS}')
    if args.codec == 'jpeg' and args.quality is None:
        raise CliError('--codec jpeg needs --quality')
    if bundles.bundle_mode(args):
        return bundles.host_finetune(args)
    quality = codecs.codec_quality(args.codec, args.quality)
    model = models.build_target(args.model)
    x, y = data.load_split_tensors('train', args.limit)
    xt, yt = data.load_split_tensors('test', args.test_limit)
    traced = surgery.trace(model, xt[:1])
    head, plain = surgery.split_traced(traced, args.cut)
    opts = codecs.jpeg_options(args.codec, quality)

    def channel(f):
        return torch.from_numpy(codecs.roundtrip(f, args.codec, **opts)[0])

    with torch.no_grad():
        test_feats = torch.cat([channel(head(xt[i:i + 1000])) for i in range(0, len(xt), 1000)])
        clean = accuracy(model, xt, yt)
    before = accuracy(plain, test_feats, yt)
    tail = copy.deepcopy(plain)
    cfg = bundles.finetune_config(args, tail)
    start = time.monotonic()
    training.finetune_host_tail(head, tail, x, y, channel, cfg,
                                progress=ProgressBar('host fine-tune'))
    seconds = time.monotonic() - start
    after = accuracy(tail, test_feats, yt)
    cut = tails.cut_label(traced, args.cut)
    out = Path(args.out) if args.out else models.weights_path(
        tails.tail_file_name(args.model, cut, args.codec, quality))
    models.save_state(training.tuned_state(tail, plain, cfg.tune), out)
    result = {'weights': str(out), 'bytes': out.stat().st_size, 'model': args.model,
              'base_hash': models.state_hash(model), 'cut': cut, 'codec': args.codec,
              'quality': quality, 'n_train': len(y), 'n_test': len(yt),
              'accuracy_uncompressed': clean, 'accuracy_before': before,
              'accuracy_after': after, 'drop_pts_before': round(100 * (clean - before), 4),
              'drop_pts_after': round(100 * (clean - after), 4), 'epochs': cfg.epochs,
              'lr': cfg.lr, 'batch_size': cfg.batch_size, 'seed': cfg.seed,
              'tune': list(cfg.tune), 'seconds': round(seconds, 1),
              'hash': models.state_hash(tail),
              'torch': torch.__version__, 'threads': torch.get_num_threads()}
    write_provenance(out, result, args)
    print(f'{args.codec} q={quality} at {cut}: test accuracy {before:.4f} -> {after:.4f} '
          f'(uncompressed {clean:.4f}); saved {out} in {seconds:.0f} s')
    return result


def train_deepn_table(args) -> dict:
    """Compute the DeepN-JPEG table from the train split's DCT statistics; calibrate; ship."""
    images, labels = data.load_fashion_mnist('train')
    held = slice(len(images) - args.calibration_images, len(images))
    stats = images[:held.start]
    if args.limit:
        stats = stats[:args.limit]
    record = deepn_jpeg.compute_table(stats)
    if args.calibrate:
        model = models.build_target(args.model)
        scale, sweep = deepn_jpeg.calibrate_scale(record['plm_table'], images[held],
                                                  labels[held], model, args.drop_pts)
        table = deepn_jpeg.scale_table(record['plm_table'], scale)
        record.update(table=table.tolist(), id=codecs.qtable_id(table), scale=scale,
                      calibration={'images': f'train[{held.start}:{held.stop}]',
                                   'model': args.model, 'base_hash': models.state_hash(model),
                                   'drop_pts': args.drop_pts, 'sweep': sweep})
    out = Path(args.out) if args.out else codecs.table_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + '\n')
    codecs.forget_default_table()
    print('DeepN-JPEG table (row-major):')
    print(np.asarray(record['table']).reshape(8, 8))
    print(f"id {record['id']}, scale {record['scale']} of the PLM table from "
          f"{len(stats)} training images -> {out}")
    return {'path': str(out), **record}
