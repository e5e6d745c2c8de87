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

"""Feature and image codecs, the wire format, host tails and the JPEG defense."""

import copy
import io
import json
import math
import zlib

import cv2
import numpy as np
from PIL import Image
import pytest
import torch

from edge_denoise_ros.core import (codecs, data, deepn_jpeg, defenses, models, pipeline,
                                   surgery, tails, training, wire)
from edge_denoise_ros.core.wire import CodecError


@pytest.fixture(scope='module')
def model():
    return models.build_model()


@pytest.fixture(scope='module')
def images():
    x, y = data.load_split_tensors('test', 16)
    return x, y


@pytest.fixture(scope='module')
def real_features(model, images):
    """Real features of the default model: {cut label: (16, C, H, W) tensor}."""
    x, _ = images
    traced = surgery.trace(model, x[:1])
    out = {}
    with torch.no_grad():
        for label in ('input', 'stem', 'layer1', 'layer2.0', 'layer3', 'pool'):
            head, _ = surgery.split_traced(traced, label)
            out[label] = head(x)
    return out


def _bits(t: torch.Tensor) -> np.ndarray:
    a = t.numpy()
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint16)


def test_lossless_is_bit_exact_on_real_features(real_features):
    layouts = set()
    for label, feats in real_features.items():
        for f in feats:
            for dtype in ('float32', 'float16'):
                payload, meta = codecs.encode(f, 'lossless', dtype=dtype)
                layouts.add(meta['layout'])
                back = codecs.decode(payload, wire.format_string(meta))
                sent = f.to(torch.float16 if dtype == 'float16' else torch.float32)
                assert back.dtype == sent.dtype and back.shape == f.shape
                assert np.array_equal(_bits(back), _bits(sent)), (label, dtype)
    assert layouts == {'planes', 'words'}  # the stem's repeated values go as whole words


def test_lossless_is_bit_exact_on_awkward_values():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(8, 5, 7)).astype(np.float32) * 1e3
    a[0, 0, :4] = [-0.0, 1e-45, -3.4e38, 0.0]  # negative zero, subnormal, extremes
    a[1] = 0.0
    payload, meta = codecs.encode(a, 'lossless')
    assert np.array_equal(codecs.decode(payload, meta).numpy().view(np.uint32),
                          a.view(np.uint32))
    zeros = np.zeros((3, 4, 4), np.float32)
    payload, meta = codecs.encode(zeros, 'lossless')
    assert np.array_equal(codecs.decode(payload, meta).numpy(), zeros)


def test_lossless_exploits_relu_sparsity(real_features):
    feats = real_features['stem']
    raw = 4 * feats[0].numel() * len(feats)
    packed = sum(len(codecs.encode(f, 'lossless')[0]) for f in feats)
    assert raw / packed > 2.5


def test_raw_round_trip(real_features):
    f = real_features['layer2.0'][0]
    for dtype, torch_dtype in (('float32', torch.float32), ('float16', torch.float16)):
        payload, meta = codecs.encode(f, 'raw', dtype=dtype)
        assert len(payload) == f.numel() * (4 if dtype == 'float32' else 2)
        assert torch.equal(codecs.decode(payload, meta), f.to(torch_dtype))


def test_q8_error_bound(real_features):
    for label, feats in real_features.items():
        f = feats[3]
        payload, meta = codecs.encode(f, 'q8')
        back = codecs.decode(payload, meta)
        assert back.dtype == torch.float32 and back.shape == f.shape
        # ReLU features: the range starts at 0, so the error is at most half a step.
        assert (back - f).abs().max().item() <= meta['scale'] * 0.5 * (1 + 1e-5) + 1e-7, label


def test_q8_error_bound_with_negative_values():
    a = np.random.default_rng(1).normal(size=(4, 6, 6)).astype(np.float32)
    payload, meta = codecs.encode(a, 'q8')
    assert 0 < meta['zp'] < 255
    err = np.abs(codecs.decode(payload, meta).numpy() - a).max()
    assert err <= meta['scale'] * (1 + 1e-5)


def test_jpeg_error_bounds(real_features):
    f = real_features['layer1'][0]
    errs = {}
    for q in (20, 90, 100):
        payload, meta = codecs.encode(f, 'jpeg', quality=q)
        back = codecs.decode(payload, meta)
        assert back.shape == f.shape and back.dtype == torch.float32
        err = (back - f).abs() / meta['scale']  # in 8-bit steps
        errs[q] = (err.mean().item(), err.max().item())
    assert errs[100][1] <= 4 and errs[100][0] <= 1.0
    assert errs[90][0] <= 3 and errs[90][0] < errs[20][0]


def test_jpeg_payload_is_a_plain_jpeg(real_features):
    f = real_features['layer2.0'][0]  # 32 x 14 x 14
    payload, meta = codecs.encode(f, 'jpeg', quality=50, cut='layer2.0')
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED)
    rows, cols = meta['grid']
    th, tw = meta['tile']
    assert image is not None and image.shape == (rows * th, cols * tw) and rows * cols >= 32
    with Image.open(io.BytesIO(payload)) as pil:
        assert pil.format == 'JPEG' and pil.size == (cols * tw, rows * th)
    # the mosaic's tiles are the channels: tile 0 is channel 0
    q, scale, zp = codecs.quantize8(f.numpy())
    assert np.abs(image[:14, :14].astype(int) - q[0].astype(int)).mean() < 8


def test_jpeg_tile_alignment_option(real_features):
    f = real_features['layer3'][0]  # 64 x 7 x 7
    _, meta1 = codecs.encode(f, 'jpeg', quality=50)
    payload, meta8 = codecs.encode(f, 'jpeg', quality=50, align=8)
    assert meta1['tile'] == (7, 7) and meta8['tile'] == (8, 8) and meta8['grid'] == (8, 8)
    assert codecs.decode(payload, meta8).shape == f.shape


def test_wire_format_round_trip(real_features):
    f = real_features['layer2.0'][0]
    payload, meta = codecs.encode(f, 'jpeg', quality=30, cut='layer2.0', model='b9efda7ed79c')
    text = wire.format_string(meta)
    assert text.startswith('edge_denoise/1 codec=jpeg cut=layer2.0 model=b9efda7ed79c '
                           'shape=32x14x14 dtype=float32 scale=')
    parsed = wire.parse_format(text)
    assert parsed == wire.check_meta(meta)
    assert parsed['scale'] == meta['scale'] and parsed['quality'] == 30
    assert wire.format_string(parsed) == text
    assert torch.equal(codecs.decode(payload, text), codecs.decode(payload, meta))


@pytest.mark.parametrize('text, reason', [
    ('edge_denoise/2 codec=raw shape=4 dtype=float32', 'unsupported wire version'),
    ('jpeg', 'not an edge_denoise message'),
    ('', 'empty format'),
    ('edge_denoise/1 codec=zip shape=4 dtype=float32', 'unknown codec'),
    ('edge_denoise/1 shape=4 dtype=float32', 'missing key codec'),
    ('edge_denoise/1 codec=raw dtype=float32', 'missing key shape'),
    ('edge_denoise/1 codec=q8 shape=4 dtype=float32 zp=0', 'missing key scale'),
    ('edge_denoise/1 codec=q8 shape=4 dtype=float32 scale=nan zp=0', 'scale must be'),
    ('edge_denoise/1 codec=q8 shape=4 dtype=float32 scale=1 zp=300', 'zp must be'),
    ('edge_denoise/1 codec=raw shape=4x0 dtype=float32', 'shape must be'),
    ('edge_denoise/1 codec=raw shape=4 shape=4 dtype=float32', 'duplicate key'),
    ('edge_denoise/1 codec=raw shape=99999x99999 dtype=float32', 'over the cap'),
    ('edge_denoise/1 codec=raw shape=4 dtype=float64', 'unknown dtype'),
    ('edge_denoise/1 codec=raw shape=4 dtype=float32 junk', 'bad key=value'),
    ('edge_denoise/1 codec=raw shape=4 dtype=float32 cut=caf\u00e9', 'not ASCII'),
])
def test_malformed_format_strings(text, reason):
    with pytest.raises(CodecError) as err:
        wire.parse_format(text)
    assert reason in str(err.value) and '\n' not in str(err.value)


def test_malformed_payloads(real_features):
    f = real_features['layer3'][0]
    for codec, opts in (('raw', {}), ('lossless', {}), ('q8', {}), ('jpeg', {'quality': 50})):
        payload, meta = codecs.encode(f, codec, **opts)
        bare = {k: v for k, v in meta.items() if k not in ('size', 'crc32')}
        cases = [
            (payload[:-5], meta, 'bytes, the meta data says'),
            (payload[:1] + bytes([payload[1] ^ 0x40]) + payload[2:], meta, 'checksum'),
            (payload, {**meta, 'shape': (64, 7, 8)}, ''),
            (payload, {**bare, 'shape': (64, 7, 8)}, ''),
            (payload[:len(payload) // 2], bare, ''),
            (b'', meta, 'empty payload'),
            (payload, bare, 'missing key size'),
            (payload, {k: v for k, v in meta.items() if k != 'crc32'}, 'missing key crc32'),
            (payload, {**meta, 'codec': 'nope'}, 'unknown codec'),
            (payload, {k: v for k, v in meta.items() if k != 'dtype'}, 'missing key dtype'),
        ]
        for data_, meta_, reason in cases:
            with pytest.raises(CodecError) as err:
                codecs.decode(data_, meta_)
            assert reason in str(err.value) and '\n' not in str(err.value), (codec, err.value)


def test_payload_cap_and_nan(real_features):
    f = real_features['layer3'][0]
    payload, meta = codecs.encode(f, 'raw')
    with pytest.raises(CodecError, match='over the cap'):
        codecs.decode(payload, meta, max_bytes=1000)
    bad = f.clone()
    bad[0, 0, 0] = float('nan')
    for codec in wire.FEATURE_CODECS:
        with pytest.raises(CodecError, match='NaN'):
            codecs.encode(bad, codec)
    nan = np.full(f.numel(), np.nan, np.float32).tobytes()
    with pytest.raises(CodecError, match='NaN'):
        codecs.decode(nan, {**meta, 'crc32': f'{zlib.crc32(nan):08x}'})
    with pytest.raises(CodecError, match='overflow float16'):
        codecs.encode(f * 1e6, 'lossless', dtype='float16')


def test_encode_rejects_bad_input():
    with pytest.raises(CodecError, match='unknown codec'):
        codecs.encode(np.zeros(4, np.float32), 'png')
    with pytest.raises(CodecError, match='uint8 images'):
        codecs.encode(np.zeros((4, 4), np.float32), 'deepn_jpeg')
    with pytest.raises(CodecError, match='float features'):
        codecs.encode(np.zeros((4, 4), np.uint8), 'q8')
    with pytest.raises(CodecError, match='unknown option'):
        codecs.encode(np.zeros(4, np.float32), 'raw', qualty=3)
    with pytest.raises(CodecError, match='quality'):
        codecs.encode(np.zeros((2, 4, 4), np.float32), 'jpeg', quality=0)
    with pytest.raises(CodecError, match='cut must be'):
        codecs.encode(np.zeros(4, np.float32), 'raw', cut='a b')


def test_image_codecs_round_trip():
    images, _ = data.load_fashion_mnist('test')
    gray = images[0]
    for codec in wire.IMAGE_CODECS:
        payload, meta = codecs.encode(gray, codec)
        back = codecs.decode(payload, wire.format_string(meta))
        assert back.shape == gray.shape and back.dtype == np.uint8
        assert np.abs(back.astype(int) - gray).mean() < 6
        assert cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED) is not None
    frame = data.sample_to_frame(gray, 56, 'bgr8')
    payload, meta = codecs.encode(frame, 'jpeg', quality=90)
    assert codecs.decode(payload, meta).shape == (56, 56, 3)


def test_deepn_jpeg_writes_its_table():
    table = codecs.default_table()
    gray = data.load_fashion_mnist('test')[0][1]
    payload, meta = codecs.encode(gray, 'deepn_jpeg')
    assert meta['table'] == codecs.qtable_id(table)
    with Image.open(io.BytesIO(payload)) as pil:
        assert list(pil.quantization[0]) == table.tolist()
    custom = deepn_jpeg.scale_table(table, 3)
    payload, _ = codecs.encode(gray, 'deepn_jpeg', qtable=custom)
    with Image.open(io.BytesIO(payload)) as pil:
        assert list(pil.quantization[0]) == custom.tolist()


def test_deepn_table_from_band_statistics():
    # The orthonormal 8x8 DCT of a constant block is 8 x its level-shifted value at DC.
    block = np.full((1, 8, 8), 138, np.uint8)
    c = deepn_jpeg.block_dct(block)
    assert c.shape == (1, 8, 8) and abs(c[0, 0, 0] - 80.0) < 1e-3
    assert np.abs(c[0]).sum() - abs(c[0, 0, 0]) < 1e-3
    std = np.linspace(100, 0, 64).reshape(8, 8)
    table = deepn_jpeg.plm_table(std)
    assert table[0] == 5 and table[-1] == 255 and (np.diff(table) >= 0).all()
    assert (deepn_jpeg.standard_table(50) == deepn_jpeg.STANDARD_LUMA).all()


def test_huffman_size_is_near_the_entropy():
    rng = np.random.default_rng(0)
    sym = rng.choice(4, size=8000, p=[0.5, 0.25, 0.125, 0.125]).astype(np.uint8)
    # entropy 1.75 bits/symbol, and the dyadic code reaches it
    assert codecs.huffman_nbytes(sym.tobytes()) == 16 + 4 + math.ceil(
        sum({0: 1, 1: 2, 2: 3, 3: 3}[s] for s in sym.tolist()) / 8)


def test_host_tail_plain_and_finetuned(model, images, tmp_path, monkeypatch):
    x, _ = images
    traced = surgery.trace(model, x[:1])
    tail = tails.host_tail(model, traced, 'layer2', 'jpeg', 7)
    head, _ = surgery.split_traced(traced, 'layer2')
    assert tail.finetuned is None
    with torch.no_grad():
        assert torch.equal(tail(head(x)), model(x))
    # a matching file in the weights folder is used; a different quality is not
    monkeypatch.setenv('EDGE_DENOISE_WEIGHTS', str(tmp_path))
    tuned = copy.deepcopy(tail)
    with torch.no_grad():
        for p in tuned.parameters():
            p.mul_(0.5)
    name = tails.tail_file_name('small_resnet', 'layer2', 'jpeg', 7)
    models.save_state_dict(tuned, tmp_path / name)
    (tmp_path / name).with_suffix('.json').write_text(json.dumps(
        {'base_hash': models.state_hash(model), 'cut': 'layer2', 'codec': 'jpeg',
         'quality': 7}))
    got = tails.host_tail(model, traced, 'layer2_1_relu_1', 'jpeg', 7)
    assert got.finetuned and got.finetuned.endswith(name)
    with torch.no_grad():
        assert torch.equal(got(head(x)), tuned(head(x)))
    assert tails.host_tail(model, traced, 'layer2', 'jpeg', 8).finetuned is None
    assert tails.host_tail(model, traced, 'layer2', 'q8', None).finetuned is None


def test_the_host_traces_the_model_once(monkeypatch):
    """Tails are cut from the target's own trace: one trace per process, however many tails."""
    calls = []
    real_trace = surgery.trace

    def counting_trace(*args, **kwargs):
        calls.append(args[0])
        return real_trace(*args, **kwargs)

    monkeypatch.setattr(surgery, 'trace', counting_trace)
    target = pipeline.Target()
    host = pipeline.HostStage(target, tails=tails.finetuned_tails(target))
    for cut, codec, quality in (('layer1', 'jpeg', 5), ('layer2', 'q8', None),
                                ('layer1', 'jpeg', 7), ('stem', 'raw', None)):
        host.tail(cut, codec, quality)
        frame = np.zeros((28, 28, 3), np.uint8)
        edge = pipeline.EdgeStage(target, pipeline.EdgeSettings('none', cut, codec, quality or 5))
        out = edge.process(frame, 'bgr8')
        logits, _ = host.process(out.payload, out.meta)
        assert logits.shape == (10,)
    assert len(calls) == 1


def test_finetune_host_tail_leaves_the_model_alone(model, images):
    x, y = data.load_split_tensors('train', 128)
    before = models.state_hash(model)
    head, plain = surgery.split(model, 'layer3', x[:1])
    tail = copy.deepcopy(plain)

    def channel(f):
        return torch.from_numpy(codecs.roundtrip(f, 'jpeg', quality=10)[0])

    cfg = training.HostFinetuneConfig(epochs=1, batch_size=64, lr=0.01)
    training.finetune_host_tail(head, tail, x, y, channel, cfg)
    assert models.state_hash(model) == before
    assert not tail.training
    assert not torch.equal(tail.fc.weight, plain.fc.weight)


def test_a_tail_tuned_in_part_ships_only_that_part(model, tmp_path):
    # train host-finetune --tune: the modules named train, the rest (batch-norm statistics
    # included) stays the target's, so the file holds the tuned part alone and the host,
    # loading it over the target's own tail, serves exactly the tail that was measured.
    x, y = data.load_split_tensors('train', 128)
    head, plain = surgery.split(model, 'layer2', x[:1])
    tail = copy.deepcopy(plain)

    def channel(f):
        return torch.from_numpy(codecs.roundtrip(f, 'jpeg', quality=10)[0])

    cfg = training.HostFinetuneConfig(epochs=1, batch_size=64, lr=0.01, tune=('layer3.1', 'fc'))
    training.finetune_host_tail(head, tail, x, y, channel, cfg)
    state = training.tuned_state(tail, plain, cfg.tune)   # raises if anything else moved
    assert state and all(k.startswith(('layer3.1.', 'fc.')) for k in state)
    assert not torch.equal(state['fc.weight'], plain.fc.weight)
    bn = 'layer3.0.bn1.running_mean'
    assert torch.equal(tail.state_dict()[bn], plain.state_dict()[bn])
    path = models.save_state(state, tmp_path / 'part.pt')
    full = models.save_state_dict(tail, tmp_path / 'full.pt')
    assert path.stat().st_size < 0.7 * full.stat().st_size
    served = tails._tuned(plain, path)
    with torch.no_grad():
        f = channel(head(x[:8]))
        assert torch.equal(served(f), tail(f))
    with pytest.raises(ValueError, match='layer1.*under fc, layer3'):
        training.tuned_params(plain, ('layer1',))        # before the cut: not in the tail
    models.save_state({'layer9.weight': torch.zeros(1)}, tmp_path / 'alien.pt')
    with pytest.raises(RuntimeError, match='does not fit this tail'):
        tails._tuned(plain, tmp_path / 'alien.pt')


def test_jpeg_defense(images):
    x, _ = images
    assert 'jpeg' in defenses.defense_names()
    d = defenses.build_defense('jpeg')
    out = d(x[:4])
    assert out.shape == x[:4].shape and out.dtype == x.dtype
    assert 0 <= out.min().item() and out.max().item() <= 1
    assert (out - x[:4]).abs().mean().item() < 0.05
