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
A weak edge planned as it runs: model-size host-only frames, the defense's time, sustained times.

- ``frame_scale: model``: the edge sends the frame already at the model's input
  size; the host gives the model the very pixels the in-process path gives it
  (raw codec: the same logits), for 1- and 3-channel targets and every resize
  policy, and the payload is a fraction of the camera frame's.
- The planner puts the input defense's time on the side that runs it (the edge
  before its head, the host before a host-only frame's model) and refuses a
  defense its profiles did not time.
- A profile times every defense and both frame scales; a sustained profile is
  CPU time at the CPU share this process gets, and that share is what a cgroup
  quota grants.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from edge_denoise_ros.core import frames, pipeline, planner, profiling
from edge_denoise_ros.core.frames import Preparation
from edge_denoise_ros.core.surgery import EDGE_ONLY, HOST_ONLY, SPLIT
from edge_denoise_ros.harness.cpuquota import CpuQuota, unavailable


def _frame(h=480, w=640, seed=0):
    return frames.example_frame((h, w), seed, gray=False)


def _host_logits(target, out):
    host = pipeline.HostStage(target)
    logits, meta = host.process(out.payload, out.meta)
    return logits, meta


@pytest.mark.parametrize('resize', ['stretch', 'crop', 'letterbox'])
def test_model_scale_frames_give_the_host_the_in_process_pixels(resize, one_thread):
    torch.manual_seed(0)
    target = pipeline.Target('squeezenet1_1', num_classes=5,
                             preparation=Preparation(resize=resize))     # 3x224x224
    frame = _frame()
    stage = pipeline.EdgeStage(target, pipeline.EdgeSettings(
        defense='none', cut=pipeline.FRAME_CUT, codec='raw', frame_scale='model'))
    out = stage.process(frame, 'bgr8')
    assert tuple(out.meta['shape']) == (224, 224, 3) and len(out.payload) == 224 * 224 * 3
    logits, _ = _host_logits(target, out)
    with torch.no_grad():
        expected = target.model(target.preprocess(frame, 'bgr8'))[0]
    assert torch.equal(logits, expected)


def test_model_scale_frames_of_the_default_gray_target_and_jpeg_are_small(one_thread):
    target = pipeline.Target()                      # 1x28x28, gray
    frame = _frame()
    camera = pipeline.EdgeStage(target, pipeline.EdgeSettings(
        defense='none', cut=pipeline.FRAME_CUT, codec='jpeg', frame_quality=90))
    model = pipeline.EdgeStage(target, pipeline.EdgeSettings(
        defense='none', cut=pipeline.FRAME_CUT, codec='jpeg', frame_quality=90,
        frame_scale='model'))
    big, small = camera.process(frame, 'bgr8'), model.process(frame, 'bgr8')
    assert tuple(small.meta['shape'][:2]) == (28, 28)
    assert len(small.payload) * 20 < len(big.payload)
    raw = pipeline.EdgeStage(target, pipeline.EdgeSettings(
        defense='none', cut=pipeline.FRAME_CUT, codec='raw', frame_scale='model'))
    logits, meta = _host_logits(target, raw.process(frame, 'bgr8'))
    with torch.no_grad():
        assert torch.equal(logits, target.model(target.preprocess(frame, 'bgr8'))[0])
    # A frame the host could not prepare is refused on the edge at either scale.
    for stage in (camera, model):
        with pytest.raises(pipeline.PipelineError) as err:
            stage.process(np.zeros((4, 4, 2), np.uint8), 'bgr8')
        assert err.value.kind == 'bad_image'


def test_unknown_frame_scale_is_refused():
    stage = pipeline.EdgeStage(pipeline.Target())
    with pytest.raises(ValueError, match='frame_scale'):
        stage.configure(pipeline.EdgeSettings(defense='none', frame_scale='half'))


def _candidates():
    common = {'shape': (1,), 'bytes': 1000}
    return [planner.Candidate(name=EDGE_ONLY, kind=EDGE_ONLY, cut=None, codec=None,
                              shape=(), bytes=0, edge_ms=10.0, host_ms=0.0),
            planner.Candidate(name='layer1/raw', kind=SPLIT, cut='layer1', codec='raw',
                              edge_ms=4.0, host_ms=6.0, **common),
            planner.Candidate(name='host_only/raw@model', kind=HOST_ONLY, cut=None,
                              codec='raw', edge_ms=1.0, host_ms=15.0, scale='model', **common)]


def test_the_defense_time_lands_on_the_side_that_runs_it():
    times = {'edge': {'dunet_d': 100.0}, 'host': {'dunet_d': 5.0}}
    got = {c.name: c for c in planner.defended(_candidates(), times, 'dunet_d')}
    assert got[EDGE_ONLY].edge_ms == 110.0 and got[EDGE_ONLY].host_ms == 0.0
    assert got['layer1/raw'].edge_ms == 104.0 and got['layer1/raw'].host_ms == 6.0
    assert got['host_only/raw@model'].edge_ms == 1.0
    assert got['host_only/raw@model'].host_ms == 20.0
    assert planner.defended(_candidates(), times, 'none') == _candidates()
    with pytest.raises(ValueError, match="no time for defense 'jpeg'"):
        planner.defended(_candidates(), times, 'jpeg')

    # The planner's choice follows the defense in use, and moves back (past its hysteresis).
    p = planner.Planner(_candidates(), planner.Link(uplink_mbps=100.0), defense_ms=times)
    assert p.choice.name == EDGE_ONLY
    assert p.configure(defense='dunet_d').name == 'host_only/raw@model'
    assert p.choice.scale == 'model'
    assert p.configure(defense='none').name == EDGE_ONLY
    with pytest.raises(ValueError, match='no time for defense'):
        p.configure(defense='jpeg')
    assert p.rules['defense'] == 'none'    # refused: nothing changed


def test_a_profile_times_every_defense_and_both_frame_scales(one_thread):
    target = pipeline.Target()
    prof = profiling.measure_profile(target.model, _frame(), target.input_shape, 'small',
                                     repeats=1, warmup=0, frame_quality=90,
                                     defenses=pipeline.defense_modules(target))
    assert set(prof.defense_ms) == {'jpeg', 'dunet', 'dunet_d'}
    assert all(v > 0 for v in prof.defense_ms.values())
    images = {(i['codec'], i['scale']): i for i in prof.images}
    assert images[('jpeg', 'model')]['shape'] == [28, 28]
    assert images[('jpeg', 'camera')]['shape'] == [480, 640, 3]
    assert images[('raw', 'model')]['bytes'] == 28 * 28
    assert images[('jpeg', 'model')]['bytes'] * 20 < images[('jpeg', 'camera')]['bytes']
    names = {c.name for c in planner.build_candidates(prof)}
    assert {'host_only/jpeg', 'host_only/jpeg@model', 'host_only/raw@model'} <= names

    # Sustained: every time over the CPU share, the share noted; sizes unchanged.
    slow = profiling.sustained(prof, 0.25)
    assert slow.full_ms == pytest.approx(4 * prof.full_ms)
    assert slow.defense_ms['dunet_d'] == pytest.approx(4 * prof.defense_ms['dunet_d'])
    assert slow.cuts[3]['head_ms'] == pytest.approx(4 * prof.cuts[3]['head_ms'])
    assert slow.images[0]['bytes'] == prof.images[0]['bytes']
    assert slow.machine['cpu_share'] == 0.25 and slow.machine['sustained'] is True
    with pytest.raises(ValueError):
        profiling.sustained(prof, 0.0)


def test_a_planner_made_here_plans_with_the_defense_it_was_told(one_thread):
    target = pipeline.Target()
    p = planner.make_planner(target.model, target.input_shape, planner.Link(uplink_mbps=45),
                             repeats=1, warmup=0, defenses=pipeline.defense_modules(target),
                             defense='dunet_d', sustained=True)
    assert p.edge_profile.machine['sustained'] and 0 < p.edge_profile.machine['cpu_share']
    rows = {r['name']: r for r in p.plan().rows}
    own = p.edge_profile
    assert rows[EDGE_ONLY]['edge_ms'] >= own.defense_ms['dunet_d']


@pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))
def test_the_cpu_share_under_a_quarter_core_quota_is_a_quarter():
    code = ('import json; from edge_denoise_ros.core.profiling import cpu_share; '
            'print(json.dumps(cpu_share(1.0)))')
    with CpuQuota(0.25) as quota:
        proc = subprocess.run([*quota.prefix(), sys.executable, '-c', code],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    share = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 0.1 < share < 0.4, share       # 25 ms of every 100 ms period, whatever the load
    assert 0 < profiling.cpu_share(0.3) <= 1.05
