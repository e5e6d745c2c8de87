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
Every field checked before use, cost bounded before decoding (host stage, in process).

Seeded hostile messages of every class (:mod:`harness.fuzz_cases`) go through the
host's stage: each is refused with a kind or, if valid, classified; none costs more
than a bounded amount of CPU, and the valid variants (every JPEG quality, every cut)
neither grow the tail cache nor split the model again.
"""

import time
import zlib

import numpy as np
import pytest
import torch
import zstandard

from edge_denoise_ros.core import codecs, pipeline, tails, wire
from edge_denoise_ros.core.models import compute_threads
from edge_denoise_ros.core.pipeline import PipelineError
from edge_denoise_ros.harness.fuzz_cases import HostCases

ACCOUNTING = ['epoch=a1b2c3d4e5f60718', 'seq=7', 't_rx=1700000000000000000']
CASE_CPU_MS = 50.0


@pytest.fixture(scope='module')
def host():
    target = pipeline.Target()
    return pipeline.HostStage(target, tails=tails.finetuned_tails(target))


def _sealed(meta: dict, payload: bytes) -> dict:
    return {**meta, 'size': len(payload), 'crc32': f'{zlib.crc32(payload):08x}'}


def test_hostile_cases_are_refused_cheaply_and_valid_ones_classified(host):
    cases = HostCases(host.target, seed=5, frames=2)
    outcomes, worst = {}, {}
    with compute_threads(1):
        for _ in range(400):
            case = cases.case()
            start = time.process_time()
            try:
                logits, _ = host.process(case.payload, case.format_text(
                    ACCOUNTING if case.accounting else []))
                result = 'classified'
                assert logits.shape == (10,) and torch.isfinite(logits).all()
            except PipelineError as exc:
                result = exc.kind
            ms = (time.process_time() - start) * 1e3
            worst[case.kind] = max(worst.get(case.kind, 0.0), ms)
            outcomes.setdefault(case.kind, set()).add(result)
            if case.valid:
                assert result == 'classified', (case.kind, case.format_text())
            elif case.valid is False and case.kind != 'forged_accounting':
                assert result != 'classified', (case.kind, case.format_text())
    assert max(worst.values()) <= CASE_CPU_MS, worst
    assert {'shape_bomb', 'frame_bomb', 'inapplicable_key', 'valid_variant'} <= set(outcomes)


def test_valid_variants_do_not_grow_the_tail_cache(host):
    frame = np.zeros((28, 28, 3), np.uint8)
    cuts = host.target.cuts
    before = {c: host.target.halves(c) for c in cuts}
    stage = pipeline.EdgeStage(host.target, pipeline.EdgeSettings('none', 'layer1', 'jpeg'))
    for quality in range(1, 101, 9):
        stage.configure(pipeline.EdgeSettings('none', 'layer1', 'jpeg', quality))
        out = stage.process(frame, 'bgr8')
        host.process(out.payload, out.meta)
    assert len(host._tail_cache) <= pipeline.TAIL_CACHE
    assert host.tail('layer1', 'jpeg', 5).finetuned          # the shipped one
    assert host.tail('layer1', 'jpeg', 6) is before['layer1'][1]   # the plain one, shared
    assert {c: host.target.halves(c) for c in cuts} == before


@pytest.mark.parametrize('tokens,reason', [
    ('codec=raw shape=4 dtype=float32 quality=50', 'does not apply'),
    ('codec=raw shape=4 dtype=float32 zp=256', 'does not apply'),
    ('codec=q8 shape=4 dtype=float32 scale=nan zp=0', 'scale'),
    ('codec=q8 shape=4 dtype=float32 scale=1e39 zp=0', 'scale'),
    ('codec=q8 shape=4 dtype=float32 scale=0.1 zp=256', 'zp must be'),
    ('codec=raw shape=4 dtype=float32 robot=r1', 'does not apply'),
    ('codec=raw shape=4 dtype=float32 defense=none', 'does not apply'),
    ('codec=raw shape=4 dtype=float32 seq=0', 'seq must be'),
    ('codec=raw shape=4 dtype=float32 seq=-5', 'seq must be'),
    ('codec=raw shape=4 dtype=float32 epoch=XYZ', 'epoch must be'),
    ('codec=raw shape=4 dtype=float32 t_rx=-1', 't_rx must be'),
    ('codec=lossless shape=4 dtype=float32', 'missing key layout'),
    ('codec=jpeg shape=4x4 dtype=uint8', 'missing key quality'),
    ('codec=deepn_jpeg shape=4x4 dtype=uint8 quality=5', 'does not apply'),
])
def test_keys_that_do_not_apply_and_bad_values_are_refused(tokens, reason):
    with pytest.raises(wire.CodecError, match=reason):
        wire.parse_format(f'edge_denoise/1 {tokens} size=16 crc32=00000000')


def test_size_and_crc32_are_required():
    for missing in ('size', 'crc32'):
        text = 'edge_denoise/1 codec=raw shape=4 dtype=float32 size=16 crc32=00000000'
        text = ' '.join(t for t in text.split() if not t.startswith(missing + '='))
        with pytest.raises(wire.CodecError, match=f'missing key {missing}'):
            wire.parse_format(text)


def test_accounting_fields_parse_typed():
    meta = wire.parse_format('edge_denoise/1 codec=raw shape=4 dtype=float32 size=16 '
                             'crc32=00000000 ' + ' '.join(ACCOUNTING))
    assert (meta['epoch'], meta['seq'], meta['t_rx']) == ('a1b2c3d4e5f60718', 7,
                                                          1700000000000000000)


def test_declared_shape_is_checked_against_the_cut_before_decoding(host):
    n = 4096 * 4096
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(n))   # 64 MiB of zeros, ~2 KB
    meta = _sealed({'codec': 'q8', 'cut': 'layer1', 'model': host.target.hash,
                    'shape': (1, 4096, 4096), 'dtype': 'float32', 'scale': 0.1, 'zp': 0}, bomb)
    start = time.process_time()
    with pytest.raises(PipelineError) as err:
        host.process(bomb, meta)
    assert err.value.kind == 'shape_mismatch'
    right = _sealed({**meta, 'shape': (16, 28, 28)}, bomb)        # the cut's shape, a bomb
    with pytest.raises(PipelineError, match='claims'):
        host.process(bomb, right)
    assert time.process_time() - start < 0.05


def test_zstd_payloads_must_be_zstd_and_state_their_size():
    values = np.ones((2, 3, 4), np.float32)
    payload, meta = codecs.encode(values, 'q8')
    jpeg, _ = codecs.encode(np.zeros((8, 8), np.uint8), 'jpeg')
    with pytest.raises(wire.CodecError, match='is jpeg, not a zstd frame'):
        codecs.decode(jpeg, _sealed(meta, jpeg))
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(24))
    with pytest.raises(wire.CodecError, match='content size'):
        codecs.decode(unsized, _sealed(meta, unsized))


def test_frames_over_the_pixel_cap_are_refused_before_decoding(host):
    meta = {'codec': 'jpeg', 'cut': 'frame', 'model': host.target.hash,
            'shape': (2000, 2000, 3), 'dtype': 'uint8', 'quality': 90, 'defense': 'none'}
    with pytest.raises(PipelineError) as err:
        host.process(b'\xff\xd8\xff', _sealed(meta, b'\xff\xd8\xff'))
    assert err.value.kind == 'bad_image' and 'cap' in str(err.value)


def test_unknown_devices_are_refused_in_one_line():
    with pytest.raises(ValueError, match="'cpu', 'cuda' or 'cuda:N'"):
        pipeline.check_device('gpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='no CUDA GPU'):
            pipeline.check_device('cuda')
    assert pipeline.check_device('cpu') == torch.device('cpu')
