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
A user's model, data and bundle: scenes, frame preparation, resumable training, the card.

What a robotics engineer relies on when they bring their own classifier:
generated data are the same on every machine; a frame is prepared by the
documented policy; a stopped training run resumes to the very same weights;
a bundle's files are checked against its card; the host never uses a tail
made from another target, and says so; labels name the classes.
"""

import contextlib
import copy
import io
import json
import shutil

import cv2
from diagnostic_msgs.msg import DiagnosticStatus
import numpy as np
import pytest
from rclpy.parameter import Parameter
import torch
from torch import nn

from edge_denoise_ros import cli
from edge_denoise_ros.core import bundle, data, datasets, frames, models, pipeline, planner
from edge_denoise_ros.core import scenes, tails, training
from edge_denoise_ros.ros.common import status_values
from edge_denoise_ros.ros.edge_node import EdgeNode


def _run(*argv) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    lines = out.getvalue().strip().splitlines()
    result = json.loads(lines[-1]) if code == 0 and lines and lines[-1].startswith('{') else None
    return code, result, err.getvalue()


def test_background_photos_load_whole_and_quietly(capfd):
    # libpng complains about some photographs' ICC profiles; a user running make demo or
    # data scenes should not see that on the terminal.
    photos = scenes.load_photos()
    assert len(photos) == len(scenes.PHOTOS)
    assert all(p.ndim == 3 and p.shape[2] == 3 and p.dtype == np.uint8 for p in photos)
    assert 'libpng' not in capfd.readouterr().err


def test_scenes_are_the_same_for_any_slice_and_use_their_own_split():
    cfg = scenes.SceneConfig(size=40)
    x, y = scenes.make_scenes('test', 6, cfg)
    x2, y2 = scenes.make_scenes('test', 3, cfg, start=3)
    assert x.shape == (6, 40, 40, 3) and x.dtype == np.uint8
    assert np.array_equal(x[3:], x2) and np.array_equal(y[3:], y2)   # index i: one scene
    _, fashion_test = data.load_fashion_mnist('test')
    assert list(y) == list(fashion_test[:6])                          # test items, in order
    xt, _ = scenes.make_scenes('train', 6, cfg)
    assert not np.array_equal(x, xt)
    again, _ = scenes.remake({'size': 40, 'seed': 0}, 'test', 6)
    assert np.array_equal(again, x)
    assert x.std() > 20                                   # photographs, not a flat background
    with pytest.raises(ValueError):
        scenes.SceneConfig(size=16)


def test_items_are_the_scenes_items_alone_and_a_target_learns_them_first(tmp_path):
    x, y = scenes.make_items('test', 6)
    x2, y2 = scenes.make_items('test', 3, start=3)
    assert x.shape == (6, 28, 28, 3) and x.dtype == np.uint8
    assert np.array_equal(x[3:], x2) and np.array_equal(y[3:], y2)   # index i: one item
    items, fashion = data.load_fashion_mnist('test')
    assert list(y) == list(fashion[:6])
    assert not x[items[:6] == 0].any()                                # on black, no clutter
    bright = items[:6] > 200
    hues = [tuple(np.round(x[i][bright[i]].mean(0) / x[i][bright[i]].max(), 1)) for i in range(6)]
    assert len(set(hues)) > 1                                         # each in its own colour
    assert not np.array_equal(scenes.make_items('train', 6)[0], x)
    with pytest.raises(ValueError):
        scenes.make_items('val', 2)

    # The profile's two stages, as a user runs them: items first, then the scenes, one bundle.
    code, made, err = _run('data', 'items', '--out', str(tmp_path / 'items'), '--train', '20',
                           '--test', '10', '--json')
    assert code == 0, err
    assert made['counts'] == {'train': 20, 'test': 10}
    assert json.loads((tmp_path / 'items' / 'items.json').read_text())['seed'] == 0
    assert not (tmp_path / 'items' / 'scenes.json').exists()   # never remade as scenes
    code, _, err = _run('data', 'scenes', '--out', str(tmp_path / 'scenes'), '--train', '20',
                        '--test', '10', '--size', '32', '--json')
    assert code == 0, err
    out = tmp_path / 'B'
    common = ['--model', 'squeezenet1_1', '--input', '3x32x32', '--epochs', '1',
              '--batch-size', '10', '--optimizer', 'adamw', '--lr', '0.001', '--out', str(out),
              '--json']
    code, first, err = _run('train', 'target', '--data', str(tmp_path / 'items' / 'train'),
                            *common)
    assert code == 0, err
    code, second, err = _run('train', 'target', '--data', str(tmp_path / 'scenes' / 'train'),
                             '--weights', str(out / 'target.pt'), *common)
    assert code == 0, err
    card = json.loads((out / 'card.json').read_text())
    assert card['data']['generator']['size'] == 32                    # the scenes, last
    earlier = card['files']['target.pt']['continued_from']
    assert '--data ' + str(tmp_path / 'items' / 'train') in earlier['command']
    assert earlier['test_accuracy'] == first['test_accuracy']
    # Each stage says what it learnt from, and how that data was made (items, then scenes).
    assert earlier['data']['train'] == str(tmp_path / 'items' / 'train')
    assert earlier['data']['made']['command'].startswith('edge-denoise data items')
    assert card['files']['target.pt']['data']['made']['size'] == 32
    # A stage that starts from another bundle's target keeps how that target was made.
    common[common.index('--out') + 1] = str(tmp_path / 'C')
    code, _, err = _run('train', 'target', '--data', str(tmp_path / 'scenes' / 'train'),
                        '--weights', str(out / 'target.pt'), *common)
    assert code == 0, err
    card_c = json.loads((tmp_path / 'C' / 'card.json').read_text())
    assert card_c['files']['target.pt']['continued_from'] == card['files']['target.pt']
    assert card_c['files']['target.pt']['continued_from']['continued_from'] == earlier


@pytest.mark.parametrize('policy, expect', [
    ('stretch', lambda img: img[::2, ::4]),
    ('crop', lambda img: img[:, 20:60][::2, ::2]),
    ('letterbox', None),
])
def test_frame_preparation_policies(policy, expect):
    # A 40x80 BGR frame whose blue channel is a column ramp, green a row ramp.
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :, 0] = np.arange(80, dtype=np.uint8)[None, :] * 3
    img[:, :, 1] = np.arange(40, dtype=np.uint8)[:, None] * 6
    prep = frames.Preparation(resize=policy)
    out = frames.prepare_pixels(img, (3, 20, 20), prep)
    assert out.shape == (3, 20, 20) and out.dtype == np.uint8
    rgb = out.transpose(1, 2, 0)
    if policy == 'letterbox':       # 40x80 -> 10x20 in the middle, black bands above and below
        assert rgb[:5].max() == 0 and rgb[15:].max() == 0 and rgb[5:15].max() > 0
    else:
        want = cv2_area(img, policy)
        assert np.abs(rgb[:, :, ::-1].astype(int) - want.astype(int)).max() <= 1
    bgr = frames.prepare_pixels(img, (3, 20, 20), frames.Preparation(policy, 'bgr'))
    assert np.array_equal(bgr[::-1], out)                 # channel order is the only change
    gray = frames.prepare_pixels(img, (1, 20, 20), prep)
    assert gray.shape == (1, 20, 20)
    with pytest.raises(ValueError):
        frames.Preparation(resize='fit')


def cv2_area(img, policy):
    if policy == 'stretch':
        return cv2.resize(img, (20, 20), interpolation=cv2.INTER_AREA)
    scaled = cv2.resize(img, (40, 20), interpolation=cv2.INTER_AREA)   # short side to 20
    return scaled[:, 10:30]


def test_preparation_round_trips_through_a_card():
    prep = frames.Preparation('crop', 'bgr', (0.5, 0.4, 0.3), (0.2, 0.2, 0.25))
    assert frames.Preparation.from_dict(prep.as_dict()) == prep
    with pytest.raises(ValueError):
        frames.Preparation.from_dict({'resize': 'crop', 'gamma': 2})


@pytest.mark.parametrize('channels_last', (False, True))
def test_a_stopped_training_run_resumes_to_the_same_weights(tmp_path, channels_last):
    torch.manual_seed(0)
    x = torch.randint(0, 256, (48, 3, 16, 16), dtype=torch.uint8)
    y = torch.randint(0, 3, (48,))
    cfg = training.TargetTrainConfig(epochs=3, batch_size=16, lr=0.05, seed=1,
                                     channels_last=channels_last)

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    straight = training.train_target(model(), x, y, cfg)

    class Stop(Exception):
        pass

    def stop_in_epoch_two(step, total, info):
        if info['epoch'] == 2 and step == 4:
            raise Stop

    ckpt = training.Checkpoint(tmp_path / 'run.ckpt')
    with pytest.raises(Stop):
        training.train_target(model(), x, y, cfg, progress=stop_in_epoch_two, checkpoint=ckpt)
    first = torch.load(ckpt.path, weights_only=True)
    assert first['epoch'] == 1 and first['seconds'] > 0
    resumed = training.train_target(model(), x, y, cfg, checkpoint=ckpt)
    # The resumed run knows the first process's training time, and the file adds its own.
    assert ckpt.earlier_s == first['seconds']
    assert torch.load(ckpt.path, weights_only=True)['seconds'] > first['seconds']
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    # Trained channels-last or not, the weights come back in the default format.
    assert all(p.is_contiguous() for p in resumed.parameters())
    other = training.TargetTrainConfig(epochs=4, batch_size=16, lr=0.05, seed=1)
    with pytest.raises(ValueError, match='made for'):
        training.train_target(model(), x, y, other, checkpoint=ckpt)


def _folder(root, n=30, size=32):
    x, y = scenes.make_scenes('train', n, scenes.SceneConfig(size=size))
    datasets.write_image_folder(root, x, y, data.CLASSES)
    return root


@pytest.fixture(scope='module')
def tiny_bundle(tmp_path_factory):
    """Make a bundle with the CLI: random squeezenet weights, a DUNET trained for them."""
    root = tmp_path_factory.mktemp('bundle')
    folder = _folder(root / 'images')
    torch.manual_seed(0)
    net = models.build_model('squeezenet1_1', num_classes=10)
    models.save_state_dict(net, root / 'w.pt')
    out = root / 'B'
    code, result, err = _run('train', 'denoiser', '--model', 'squeezenet1_1', '--weights',
                             str(root / 'w.pt'), '--data', str(folder), '--input', '3x32x32',
                             '--out', str(out), '--epochs', '1', '--n-train', '16', '--width',
                             '0.125', '--batch-size', '8', '--eval-limit', '6', '--json')
    assert code == 0, err
    return out


def test_a_bundle_names_its_target_classes_and_files(tiny_bundle):
    b = bundle.Bundle.load(tiny_bundle)
    assert b.target['model'] == 'squeezenet1_1' and b.input_shape == (3, 32, 32)
    assert b.labels() == sorted(datasets.safe_class_dir(c) for c in data.CLASSES)
    for name, entry in b.card['files'].items():
        assert entry['sha256'] == bundle.sha256(b.path(name)), name
        assert entry['command'].startswith('edge-denoise train denoiser')
    target = pipeline.Target(bundle=str(tiny_bundle))
    frame = np.full((48, 64, 3), 90, np.uint8)
    with torch.no_grad():
        record = target.classify(target.model(target.preprocess(frame, 'bgr8'))[0])
    assert record['label'] in b.labels()                  # names, not numbers
    assert set(pipeline.defenses_for(target)) == {'none', 'dunet', 'jpeg'}
    assert isinstance(pipeline.build_defense('jpeg', target), nn.Module)


def test_bench_layout_times_a_bundles_dunet_training_step_in_both_layouts(tiny_bundle):
    code, result, err = _run('bench', 'layout', '--bundle', str(tiny_bundle), '--batch-size',
                             '4', '--repeats', '1', '--threads', '1', '--json')
    assert code == 0, err
    assert set(result['layouts']) == {'nchw', 'channels_last'}
    nchw = result['layouts']['nchw']
    assert nchw['step_s'] > 0 and 0 <= nchw['grad_error'] < 1e-3
    assert result['channels_last_time_ratio'] == pytest.approx(
        result['layouts']['channels_last']['step_s'] / nchw['step_s'])


def test_a_changed_file_is_refused_not_served(tiny_bundle, tmp_path):
    folder = tmp_path / 'B'
    shutil.copytree(tiny_bundle, folder)
    with open(folder / 'dunet.pt', 'ab') as f:
        f.write(b'\0')
    with pytest.raises(pipeline.PipelineError, match='does not match its card'):
        pipeline.build_defense('dunet', pipeline.Target(bundle=str(folder)))
    (folder / 'card.json').unlink()
    with pytest.raises(bundle.BundleError, match='not a bundle'):
        pipeline.Target(bundle=str(folder))


def test_a_rerun_resumes_its_own_run_and_a_new_target_trains_afresh(tiny_bundle, tmp_path):
    # make bundle after a target changed must not resume (or return) a DUNET made for the old one
    folder = tmp_path / 'B'
    shutil.copytree(tiny_bundle, folder)
    again = ('train', 'denoiser', '--out', str(folder), '--data',
             str(tiny_bundle.parent / 'images'), '--epochs', '1', '--n-train', '16', '--width',
             '0.125', '--batch-size', '8', '--eval-limit', '6', '--json')

    def dunet_sha():
        return bundle.Bundle.load(folder).card['files']['dunet.pt']['sha256']

    before = dunet_sha()
    first = bundle.Bundle.load(folder).card['files']['dunet.pt']
    assert _run(*again)[0] == 0
    assert dunet_sha() == before          # the finished run's own checkpoint: same weights
    runs = sorted((folder / 'checkpoints').glob('dunet_*.ckpt'))
    assert len(runs) == 1
    # Its card still counts the attacks and the training the first run did.
    entry = bundle.Bundle.load(folder).card['files']['dunet.pt']
    trained = torch.load(runs[0], weights_only=True)['seconds']
    assert entry['attack_seconds'] == first['attack_seconds']
    assert entry['seconds'] >= round(first['attack_seconds'] + trained, 1) - 0.1
    torch.manual_seed(1)
    models.save_state_dict(models.build_model('squeezenet1_1', num_classes=10),
                           folder / bundle.TARGET)
    b = bundle.Bundle.load(folder)
    b.record_file(bundle.TARGET)
    b.save()
    assert _run(*again)[0] == 0
    assert dunet_sha() != before          # trained for the new target, from the start
    assert len(list((folder / 'checkpoints').glob('dunet_*.ckpt'))) == 2


def test_a_denoiser_made_for_an_earlier_target_or_dunet_is_named_not_served_silently(
        tiny_bundle, tmp_path):
    folder = tmp_path / 'B'
    shutil.copytree(tiny_bundle, folder)
    common = ('--out', str(folder), '--data', str(tiny_bundle.parent / 'images'), '--epochs',
              '1', '--n-train', '16', '--batch-size', '8', '--eval-limit', '6', '--json')
    code, made, err = _run('train', 'denoiser-d', *common)
    assert code == 0, err
    files = bundle.Bundle.load(folder).card['files']
    assert files['dunet_d.pt']['dunet_sha256'] == files['dunet.pt']['sha256']
    assert files['dunet_d.pt']['target_sha256'] == files['target.pt']['sha256']
    assert _run('bundle', 'show', '--bundle', str(folder), '--json')[1]['stale'] == []
    # The DUNET trained again: DUNET_D still loads, and the bundle says what it was made from.
    assert _run('train', 'denoiser', *common, '--width', '0.125', '--seed', '1')[0] == 0
    stale = _run('bundle', 'show', '--bundle', str(folder), '--json')[1]['stale']
    assert stale == [f'dunet_d.pt was made from an earlier DUNET: run edge-denoise train '
                     f'denoiser-d --out {folder} again']
    # The target trained again: both denoisers defend the old one.
    b = _new_target(folder)
    lines = b.stale()
    assert [line.split(':')[0] for line in lines] == [
        'dunet.pt was trained for an earlier target', 'dunet_d.pt was trained for an earlier '
        'target', 'dunet_d.pt was made from an earlier DUNET']
    b.save()
    assert _run('bundle', 'show', '--bundle', str(folder), '--json')[1]['stale'] == lines


def _new_target(folder) -> bundle.Bundle:
    """Put other target weights into the bundle at ``folder`` (as training it again does)."""
    torch.manual_seed(2)
    models.save_state_dict(models.build_model('squeezenet1_1', num_classes=10),
                           folder / bundle.TARGET)
    b = bundle.Bundle.load(folder)
    b.record_file(bundle.TARGET)
    return b


@pytest.mark.ros
def test_an_edge_serving_a_stale_denoiser_says_so_in_its_diagnostics(
        tiny_bundle, tmp_path, rclpy_context):
    def diagnostics(folder):
        node = EdgeNode(context=rclpy_context, parameter_overrides=[
            Parameter('bundle', value=str(folder)), Parameter('defense', value='dunet')])
        try:
            return node.stats.status('edge')
        finally:
            node.destroy_node()

    fresh = diagnostics(tiny_bundle)
    assert fresh.level == DiagnosticStatus.OK and 'warning' not in fresh.message
    assert not any(k.startswith('warning.') for k in status_values(fresh))
    assert status_values(fresh)['features.subscribers'] == '0'     # and no host listens yet
    folder = tmp_path / 'B'
    shutil.copytree(tiny_bundle, folder)
    _new_target(folder).save()
    stale = diagnostics(folder)        # it still serves (the user decides), and says why not
    assert stale.level == DiagnosticStatus.WARN
    assert 'warnings: stale_denoiser' in stale.message
    assert status_values(stale)['warning.stale_denoiser'] == (
        f'dunet.pt was trained for an earlier target: run edge-denoise train denoiser --out '
        f'{folder} again')


def test_the_card_records_the_users_training_mix_and_layout(tiny_bundle, tmp_path):
    folder = tmp_path / 'B'
    shutil.copytree(tiny_bundle, folder)
    common = ('--out', str(folder), '--data', str(tiny_bundle.parent / 'images'), '--epochs',
              '1', '--n-train', '16', '--width', '0.125', '--batch-size', '8', '--eval-limit',
              '6', '--json')
    before = bundle.Bundle.load(folder).card['files']['dunet.pt']
    assert before['train_mix'] == {'clean': 0.3, 'fgsm': 0.28, 'pgd': 0.42}
    code, result, err = _run('train', 'denoiser', *common, '--attack-mix', '1,0,0',
                             '--train-eps', '4/255', '--channels-last')
    assert code == 0, err
    entry = bundle.Bundle.load(folder).card['files']['dunet.pt']
    assert entry['mean_change_levels'] == result['mean_change_levels'] >= 0   # pixel levels
    assert entry['train_set'] == {'clean': 16, 'fgsm': 0, 'pgd': 0}      # a new set, not reused
    assert entry['train_mix'] == {'clean': 1.0, 'fgsm': 0.0, 'pgd': 0.0}
    assert entry['train_eps'] == [4 / 255] and entry['sha256'] != before['sha256']
    assert entry['channels_last'] and not before['channels_last']
    # DUNET_D is fine-tuned on its DUNET's own set unless told otherwise: no flags needed.
    code, _, err = _run('train', 'denoiser-d', '--out', str(folder), '--epochs', '1',
                        '--n-train', '16', '--batch-size', '8', '--eval-limit', '6', '--json')
    assert code == 0, err
    d = bundle.Bundle.load(folder).card['files']['dunet_d.pt']
    assert (d['train_mix'], d['train_eps']) == (entry['train_mix'], entry['train_eps'])
    assert d['train_set'] == entry['train_set']
    for bad, reason in (('0.5,0.5', 'takes 3 shares'), ('0,0,0', 'positive sum')):
        code, _, err = _run('train', 'denoiser', *common, '--attack-mix', bad)
        assert code == 2 and reason in err and len(err.strip().splitlines()) == 1, err


def test_continue_starts_from_the_bundles_dunet_and_keeps_how_it_was_made(tiny_bundle,
                                                                          tmp_path):
    folder = tmp_path / 'B'
    shutil.copytree(tiny_bundle, folder)
    common = ('train', 'denoiser', '--out', str(folder), '--data',
              str(tiny_bundle.parent / 'images'), '--epochs', '1', '--n-train', '16',
              '--batch-size', '8', '--eval-limit', '6', '--json')
    first = bundle.Bundle.load(folder).card['files']['dunet.pt']
    before = models.load_state_dict(folder / 'dunet.pt')
    code, result, err = _run(*common, '--width', '0.125', '--continue', '--lr', '1e-6')
    assert code == 0 and result['trained'] is True, err
    entry = bundle.Bundle.load(folder).card['files']['dunet.pt']
    assert entry['continued_from'] == first and entry['sha256'] != first['sha256']
    # The set the first run attacked (same mix and seed) is reused: its time counts there only.
    assert first['attack_seconds_counted'] == first['attack_seconds'] > 0
    assert entry['attack_seconds'] == first['attack_seconds']
    assert entry['attack_seconds_counted'] == 0
    after = models.load_state_dict(folder / 'dunet.pt')
    # Two Adam steps of 1e-6 from the earlier weights, not a fresh network (batch-norm
    # statistics move with the images, not the learning rate).
    learned = [k for k in before if k.endswith(('.weight', '.bias'))]
    assert learned and max(float((after[k] - before[k]).abs().max()) for k in learned) < 1e-4
    code, _, err = _run(*common, '--width', '0.125', '--continue', '--seed', '1')
    assert code == 0, err
    chained = bundle.Bundle.load(folder).card['files']['dunet.pt']
    assert chained['continued_from']['continued_from'] == first
    assert chained['attack_seconds_counted'] == chained['attack_seconds']   # another seed: made
    # bundle show counts the training time of every run in the history, and the total.
    code, shown, err = _run('bundle', 'show', '--bundle', str(folder), '--json')
    runs = (chained, chained['continued_from'], first)
    assert code == 0 and shown['training']['files']['dunet.pt'] == {
        'seconds': round(sum(r['seconds'] for r in runs), 1), 'runs': 3}, err
    assert shown['training']['seconds'] == round(sum(
        t['seconds'] for t in shown['training']['files'].values()), 1)
    # A recipe of continuations run again (after a stop) trains only what is not in the history.
    for again in (('--lr', '1e-6'), ('--seed', '1')):
        code, result, err = _run(*common, '--width', '0.125', '--continue', *again)
        assert code == 0 and result['trained'] is False, err
    assert bundle.Bundle.load(folder).card['files']['dunet.pt'] == chained
    # Other widths, or a DUNET trained for an earlier target: refused in one line.
    code, _, err = _run(*common, '--width', '0.25', '--continue')
    assert code == 2 and 'other widths' in err and len(err.strip().splitlines()) == 1, err
    _new_target(folder).save()
    code, _, err = _run(*common, '--width', '0.125', '--continue')
    assert code == 2 and 'another target' in err and len(err.strip().splitlines()) == 1, err


def test_accuracy_measured_on_another_target_is_not_used_nor_kept(tiny_bundle, tmp_path):
    folder = tmp_path / 'B'
    shutil.copytree(tiny_bundle, folder)
    b = bundle.Bundle.load(folder)
    old = {'cut': 'frame', 'codec': 'jpeg', 'quality': 5, 'accuracy': 1.0, 'reference': 1.0,
           'drop_pt': 0.0, 'n': 6, 'target': 'another00000'}      # as if the target retrained
    b.put('accuracy', old, ('cut', 'codec', 'quality'))
    b.save()
    target = pipeline.Target(bundle=str(folder))
    assert bundle.key('frame', 'jpeg', 5) in target.bundle.accuracy_profile()
    assert bundle.key('frame', 'jpeg', 5) not in target.bundle.accuracy_profile(target.hash)
    code, _, err = _run('bundle', 'accuracy', '--bundle', str(folder), '--cuts', 'frame',
                        '--codecs', 'jpeg', '--qualities', '90', '--limit', '6', '--json')
    assert code == 0, err
    kept = bundle.Bundle.load(folder).card['accuracy']
    assert [(e['codec'], e['quality'], e['target']) for e in kept] == [('jpeg', 90, target.hash)]


def test_the_accuracy_profile_measures_host_only_frames_under_attack_too(tiny_bundle,
                                                                         tmp_path):
    folder = tmp_path / 'B'
    shutil.copytree(tiny_bundle, folder)
    code, result, err = _run('bundle', 'accuracy', '--bundle', str(folder), '--cuts', 'frame',
                             '--codecs', 'jpeg', '--qualities', '5,90', '--limit', '6', '--json')
    assert code == 0, err
    entries = {(e['codec'], e['quality']): e for e in bundle.Bundle.load(folder).card['accuracy']}
    assert set(entries) == {('jpeg', 5), ('jpeg', 90)}
    for e in entries.values():
        a = e['attacked']          # the frame codec runs before the host's defense: measured
        assert a['attack'] == 'pgd' and a['defense'] == 'dunet' and a['n'] == e['n'] == 6
        assert a['drop_pt'] == round(100 * (a['reference'] - a['accuracy']), 4)
        assert planner.accuracy_drop(e) == max(e['drop_pt'], a['drop_pt'])
    # both qualities are measured against the same attacked frames and raw reference
    assert entries['jpeg', 5]['attacked']['reference'] == \
        entries['jpeg', 90]['attacked']['reference']


def test_a_shipped_bundle_is_found_by_name_from_any_directory(tiny_bundle, tmp_path,
                                                              monkeypatch):
    # bundle:=scenes must work in a colcon install, where the node's cwd is anywhere
    shipped = tmp_path / 'share' / 'weights'
    shutil.copytree(tiny_bundle, shipped / 'mine')
    monkeypatch.setenv('EDGE_DENOISE_WEIGHTS', str(shipped))
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert bundle.Bundle.load('mine').root == shipped / 'mine'
    assert pipeline.Target(bundle='mine').bundle.root == shipped / 'mine'
    with pytest.raises(bundle.BundleError, match=r'shipped bundles, by name: mine'):
        bundle.Bundle.load('theirs')
    local = elsewhere / 'mine'           # a folder the user names wins over a shipped name
    local.mkdir()
    with pytest.raises(bundle.BundleError, match='not a bundle'):
        bundle.Bundle.load('mine')
    assert bundle.Bundle.load(str(shipped / 'mine')).root == shipped / 'mine'


def test_the_host_reports_which_tail_serves_and_never_uses_another_targets(tiny_bundle,
                                                                           tmp_path):
    folder = tmp_path / 'B'
    shutil.copytree(tiny_bundle, folder)
    target = pipeline.Target(bundle=str(folder))
    cut = [c for c in target.cuts if c.startswith('net.features')][2]
    _, tail = target.halves(cut)
    tuned = copy.deepcopy(tail)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.01)
    b = bundle.Bundle.load(folder)
    good, bad = bundle.tail_file(cut, 'jpeg', 20), bundle.tail_file(cut, 'jpeg', 50)
    for name in (good, bad):
        models.save_state_dict(tuned, b.path(name))
        b.record_file(name)
    b.put('tails', {'cut': cut, 'codec': 'jpeg', 'quality': 20, 'weights': good,
                    'base_hash': target.hash}, ('cut', 'codec', 'quality'))
    b.put('tails', {'cut': cut, 'codec': 'jpeg', 'quality': 50, 'weights': bad,
                    'base_hash': '0123456789ab'}, ('cut', 'codec', 'quality'))
    b.save()
    target = pipeline.Target(bundle=str(folder))
    lookup = tails.finetuned_tails(target)
    assert lookup.report[f'{cut}/jpeg/20'] == good
    assert '0123456789ab' in lookup.problems[f'{cut}/jpeg/50']
    assert lookup(cut, 'jpeg', 50) is None                 # the plain tail serves, not this
    served = lookup(cut, 'jpeg', 20)
    x = torch.rand(2, 3, 32, 32)
    head, plain = target.halves(cut)
    with torch.no_grad():
        f = head(x)
        assert torch.allclose(served(f), tuned(f)) and not torch.allclose(served(f), plain(f))


def test_a_tail_tuned_in_part_is_made_recorded_and_served(tiny_bundle, tmp_path):
    # train host-finetune --tune on a bundle: the file holds the tuned module alone, the card
    # says which, and the host serves that module over the target's own tail.
    folder = tmp_path / 'B'
    shutil.copytree(tiny_bundle, folder)
    common = ['train', 'host-finetune', '--out', str(folder), '--cut', 'net.features.9',
              '--codec', 'jpeg', '--quality', '20', '--epochs', '1', '--batch-size', '8',
              '--limit', '16', '--test-limit', '6']
    code, _, err = _run(*common, '--tune', 'net.features.3')
    assert code != 0 and '--tune' in err and 'net.features.3' in err
    assert len(err.strip().splitlines()) == 1 and not list(folder.glob('tail_*'))
    code, made, err = _run(*common, '--tune', 'net.features.10', '--json')
    assert code == 0, err
    name = made['tail']
    b = bundle.Bundle.load(folder)
    assert b.card['files'][name]['tune'] == ['net.features.10']
    state = models.load_state_dict(b.path(name))
    assert state and all(k.startswith('net.features.10.') for k in state)
    target = pipeline.Target(bundle=str(folder))
    head, plain = target.halves('net.features.9')
    served = tails.finetuned_tails(target)('net.features.9', 'jpeg', 20)
    own, mine = plain.state_dict(), served.state_dict()
    assert all(torch.equal(mine[k], own[k]) for k in own if k not in state)
    assert any(not torch.equal(mine[k], own[k]) for k in state)


def test_labels_file_names_the_classes_and_must_match_the_model(tmp_path):
    names = [f'part_{i}' for i in range(10)]
    path = datasets.write_labels(tmp_path / 'labels.txt', names)
    target = pipeline.Target(labels=str(path))
    record = target.classify(torch.arange(10.0))
    assert record['label'] == 'part_9' and record['top_k'][1]['label'] == 'part_8'
    datasets.write_labels(tmp_path / 'short.txt', names[:3])
    with pytest.raises(ValueError, match='3 labels for a model with 10 classes'):
        pipeline.Target(labels=str(tmp_path / 'short.txt'))


def test_three_channel_targets_take_pixels_and_normalise_themselves():
    target = pipeline.Target('squeezenet1_1')
    frame = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    x = target.preprocess(frame, 'bgr8')
    assert x.shape == (1, 3, 224, 224) and 0 <= x.min() and x.max() <= 1
    net = models.user_module(target.model)
    mean = torch.tensor(frames.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(frames.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(target.model(x), net((x - mean) / std), atol=1e-5)
    with pytest.raises(pipeline.PipelineError, match='use a bundle'):
        pipeline.build_defense('dunet', target)        # the shipped DUNET is for 1x28x28


def test_training_commands_refuse_what_they_cannot_do_in_one_line(tmp_path):
    folder = _folder(tmp_path / 'images', n=10)
    code, _, err = _run('train', 'denoiser', '--model', 'resnet18', '--data', str(folder),
                        '--input', '3x32x32', '--out', str(tmp_path / 'B'))
    assert code == 2 and 'needs trained weights' in err and len(err.strip().splitlines()) == 1
    code, _, err = _run('train', 'target', '--model', 'resnet18', '--data', str(folder),
                        '--input', '3x8x8x8', '--out', str(tmp_path / 'B'))
    assert code == 2 and 'CxHxW' in err
    for kind in ('denoiser', 'denoiser-d'):     # the shipped 1x28x28 DUNET: not silently ignored
        code, _, err = _run('train', kind, '--attack-mix', '1,0,0', '--out',
                            str(tmp_path / 'w.pt'))
        assert code == 2 and "a bundle's training mix" in err, err
        assert not (tmp_path / 'w.pt').exists()


def test_augment_keeps_every_channel_and_the_shipped_one_channel_draws():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x = torch.rand(5, 3, 12, 12)
    out = training.augment(x, g1, pad=2)
    assert out.shape == x.shape
    # Every output is the input shifted by the same (dx, dy) in all three channels.
    mono = torch.cat([training.augment(x[:, c:c + 1], torch.Generator().manual_seed(3), pad=2)
                      for c in range(3)], 1)
    assert torch.equal(out, mono)
    u8 = (x * 255).round().to(torch.uint8)
    assert torch.allclose(training.augment(u8, g2, pad=2),
                          training.augment(u8.float() / 255, torch.Generator().manual_seed(3),
                                           pad=2))
