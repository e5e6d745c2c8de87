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
Accuracy-aware planning: the planner never picks what costs too much held-out accuracy.

The core (hand-made profiles): a lossy candidate beyond ``max_accuracy_drop`` or
without a measurement is excluded, with its reason in the plan's rows; a codec
asked for is honoured or refused with the reason. The edge node: ``cut: auto``
within the accuracy profile, the ``codec`` and ``codecs`` parameters, and the
cut, codec and quality in use on ``~/plan`` and in the diagnostics.
"""

import dataclasses
import json
import threading
import time
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray
import pytest
import rclpy.node
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import String

from edge_denoise_ros.core import frames, models, pipeline, planner, profiling, tails
from edge_denoise_ros.core.stream import FAST_PROBE
from edge_denoise_ros.ros.common import status_values
from edge_denoise_ros.ros.edge_common import PLAN_QOS
from edge_denoise_ros.ros import conversions
from edge_denoise_ros.ros.edge_node import EdgeNode
from edge_denoise_ros.ros.host_node import HostNode
from conftest import wait_for

MBPS = 1.0      # a slow uplink: small lossy payloads win on latency


def toy_profile() -> profiling.Profile:
    """Return a hand-made profile: three cuts, raw and jpeg features (q5), a raw frame."""
    cuts = [
        {'name': 'input', 'label': 'input', 'index': 0, 'shape': [1, 3, 8, 8],
         'bytes': 30000, 'head_ms': 0.0, 'tail_ms': 10.0},
        {'name': 'a_relu', 'label': 'stage_a', 'index': 3, 'shape': [1, 64, 8, 8],
         'bytes': 16384, 'head_ms': 3.0, 'tail_ms': 7.0},
        {'name': 'b', 'label': 'b_label', 'index': 6, 'shape': [1, 16], 'bytes': 4096,
         'head_ms': 9.0, 'tail_ms': 1.0},
    ]
    jpeg_bytes = {'input': 8000, 'a_relu': 200, 'b': 100}
    features = []
    for c in cuts:
        features.append({'cut': c['name'], 'codec': 'raw', 'bytes': c['bytes'],
                         'encode_ms': 0.1, 'decode_ms': 0.2})
        features.append({'cut': c['name'], 'codec': 'jpeg', 'bytes': jpeg_bytes[c['name']],
                         'encode_ms': 0.1, 'decode_ms': 0.2})
    images = [{'codec': 'raw', 'bytes': 60000, 'encode_ms': 0.0, 'decode_ms': 0.0},
              {'codec': 'jpeg', 'bytes': 5000, 'encode_ms': 0.5, 'decode_ms': 0.5}]
    return profiling.Profile(model='toy', input_shape=[3, 8, 8], frame_shape=[20, 50, 3],
                             full_ms=10.0, preprocess_ms=0.5, cuts=cuts, features=features,
                             images=images, machine={'jpeg_quality': 5,
                                                     'frame_jpeg_quality': 90})


def entry(cut, codec, quality, drop):
    """Return an accuracy entry as core.bundle.Bundle.accuracy_profile gives them."""
    reference = 0.9
    return {'cut': cut, 'codec': codec, 'quality': quality, 'accuracy': reference - drop / 100,
            'reference': reference, 'drop_pt': drop, 'n': 2000}


# Keyed as the bundle keys them: stage_a by its label, b by its node name.
ACCURACY = {'stage_a/jpeg/5': entry('stage_a', 'jpeg', 5, 3.0),
            'b/jpeg/5': entry('b', 'jpeg', 5, 0.5)}


def candidates(**rules):
    return planner.build_candidates(toy_profile(), edge_slowdown=10, **rules)


def test_latency_alone_picks_the_fastest_lossy_cut():
    """Without an accuracy profile, the cost model alone: stage_a/jpeg is the fastest."""
    result = planner.plan(candidates(), planner.Link(MBPS))
    assert result.choice.name == 'stage_a/jpeg' and result.choice.quality == 5
    assert result.excluded == 0


def test_a_cut_that_drops_3_points_is_never_picked_at_max_1_but_is_at_max_5():
    link = planner.Link(MBPS)
    strict = planner.plan(candidates(accuracy_profile=ACCURACY), link)
    assert strict.choice.name == 'b_label/jpeg'         # measured, 0.5 pt
    row = strict.row('stage_a/jpeg')
    assert row['excluded'] == 'accuracy drop 3.00 pt > 1.0' and row['drop_pt'] == 3.0
    assert strict.row('b_label/jpeg')['drop_pt'] == 0.5
    fastest = min(strict.rows, key=lambda r: r['total_ms'])
    assert fastest['name'] == 'stage_a/jpeg' and fastest['excluded']
    loose = planner.plan(candidates(accuracy_profile=ACCURACY, max_accuracy_drop=5.0), link)
    assert loose.choice.name == 'stage_a/jpeg' and not loose.row('stage_a/jpeg')['excluded']
    # The online planner re-plans when the bound changes.
    online = planner.Planner(candidates(), link, accuracy_profile=ACCURACY)
    assert online.choice.name == 'b_label/jpeg'
    assert online.configure(max_accuracy_drop=5.0).name == 'stage_a/jpeg'
    assert online.configure(max_accuracy_drop=1.0).name == 'b_label/jpeg'


def test_lossy_candidates_without_a_measurement_are_excluded():
    result = planner.plan(candidates(accuracy_profile={}), planner.Link(MBPS))
    for row in result.rows:
        lossy = row['codec'] not in planner.LOSSLESS_CODECS and row['kind'] != 'edge_only'
        assert (row['excluded'] == 'no accuracy measurement') == lossy, row
    assert result.choice.kind == 'edge_only' or result.choice.codec in planner.LOSSLESS_CODECS
    assert result.as_dict()['excluded'] == 4 and result.as_dict()['considered'] == 9
    # The profile given to plan() screens the same way.
    again = planner.plan(candidates(), planner.Link(MBPS), accuracy_profile={})
    assert [r['excluded'] for r in again.rows] == [r['excluded'] for r in result.rows]


def test_host_only_frames_match_the_frame_cut_at_the_frame_quality():
    measured = {'frame/jpeg/90': entry('frame', 'jpeg', 90, 0.2)}
    rows = planner.plan(candidates(accuracy_profile=measured), planner.Link(MBPS)).rows
    frame = next(r for r in rows if r['name'] == 'host_only/jpeg')
    assert frame['quality'] == 90 and not frame['excluded'] and frame['drop_pt'] == 0.2
    at_q5 = candidates(accuracy_profile=measured, frame_quality=5)
    assert next(c for c in at_q5 if c.name == 'host_only/jpeg').excluded == \
        'no accuracy measurement'


def test_a_frame_codec_that_only_hurts_under_attack_is_excluded():
    """JPEG q90 of an attacked frame, defended on the host: fine clean, 14 pt lost attacked."""
    clean_only = {'frame/jpeg/90': entry('frame', 'jpeg', 90, 0.6)}
    attacked = {'frame/jpeg/90': {**entry('frame', 'jpeg', 90, 0.6), 'attacked': {
        'attack': 'pgd', 'defense': 'dunet_d', 'accuracy': 0.34, 'reference': 0.48,
        'drop_pt': 14.0, 'n': 2000}}}
    link = planner.Link(MBPS)
    before = planner.plan(candidates(accuracy_profile=clean_only), link).row('host_only/jpeg')
    assert not before['excluded'] and before['drop_pt'] == 0.6
    row = planner.plan(candidates(accuracy_profile=attacked), link).row('host_only/jpeg')
    assert row['excluded'] == 'accuracy drop under attack 14.00 pt > 1.0'
    assert row['drop_pt'] == 14.0
    # an attacked measurement no worse than the clean one leaves the clean drop in charge
    mild = {'frame/jpeg/90': {**entry('frame', 'jpeg', 90, 0.6),
                              'attacked': {'drop_pt': -0.4}}}
    assert planner.accuracy_drop(mild['frame/jpeg/90']) == 0.6
    assert not planner.plan(candidates(accuracy_profile=mild), link).row(
        'host_only/jpeg')['excluded']


def test_a_codec_asked_for_is_honoured():
    link = planner.Link(MBPS)
    for codec in ('jpeg', 'raw'):
        online = planner.Planner(candidates(), link, accuracy_profile=ACCURACY, codec=codec)
        sends = 'raw' if online.choice.kind == 'edge_only' else online.choice.codec
        assert sends == codec
        for c in online.candidates:
            sent = 'raw' if c.kind == 'edge_only' else c.codec
            assert (sent == codec) or c.excluded == f'not codec {codec} (asked for)'
    assert planner.Planner(candidates(), link, accuracy_profile=ACCURACY,
                           codec='jpeg').choice.name == 'b_label/jpeg'
    # The allow-list: only its codecs, and edge-only, may be picked.
    online = planner.Planner(candidates(), link, allowed=['raw'])
    assert online.choice.kind == 'edge_only' or online.choice.codec == 'raw'
    assert 'not in the codecs allow-list' in online.plan().row('stage_a/jpeg')['excluded']


def test_a_codec_that_is_not_allowed_is_refused_with_the_reason():
    link = planner.Link(MBPS)
    with pytest.raises(ValueError, match=r'codec jpeg is not in the codecs allow-list \(raw\)'):
        planner.Planner(candidates(), link, allowed=['raw'], codec='jpeg')
    with pytest.raises(ValueError, match='codec jpeg is allowed at no cut') as info:
        planner.Planner(candidates(), link, accuracy_profile=ACCURACY, codec='jpeg',
                        max_accuracy_drop=0.25)
    assert 'accuracy drop 3.00 pt > 0.25' in str(info.value)
    assert 'no accuracy measurement' in str(info.value)
    # A refused change changes nothing.
    online = planner.Planner(candidates(), link, accuracy_profile=ACCURACY, codec='jpeg')
    before = (online.choice, online.rules, online.candidates)
    with pytest.raises(ValueError, match='allowed at no cut'):
        online.configure(max_accuracy_drop=0.1)
    with pytest.raises(ValueError, match='not in the codecs allow-list'):
        online.configure(allowed=['raw', 'lossless'])
    assert (online.choice, online.rules, online.candidates) == before
    with pytest.raises(ValueError, match='max_accuracy_drop must be >= 0'):
        planner.screen(online.base, ACCURACY, -1.0)


def test_the_default_target_ships_the_accuracy_of_its_fine_tuned_tail():
    """weights/host_tail_small_resnet_layer1_jpeg_q5.json: 93.34 % vs 93.83 % unsplit."""
    profile = tails.shipped_accuracy_profile(pipeline.Target())
    assert set(profile) == {'layer1/jpeg/5'}
    e = profile['layer1/jpeg/5']
    assert (e['cut'], e['codec'], e['quality'], e['n']) == ('layer1', 'jpeg', 5, 10000)
    assert e['drop_pt'] == pytest.approx(0.49) and planner.accuracy_drop(e) == e['drop_pt']
    assert planner.accuracy_drop({'accuracy': 0.9, 'reference': 0.93}) == pytest.approx(3.0)


# ------------------------------------------------------------------------- the edge node

@pytest.fixture(scope='module')
def profile_file(tmp_path_factory):
    """Return a profile file of the default target, measured once here (JPEG at quality 5)."""
    prof = profiling.measure_profile(models.build_model(), None, (1, 28, 28), 'small_resnet',
                                     repeats=1, warmup=0, quality=5, frame_quality=90)
    return str(prof.save(tmp_path_factory.mktemp('profile') / 'edge.json'))


class PlanWatcher:
    """Spin a node in a thread; a probe collects its ``~/plan`` and diagnostics."""

    def __init__(self, context, node):
        self.plans, self.diags = [], {}
        self.probe = rclpy.node.Node('plan_probe', context=context)
        self.probe.create_subscription(String, f'{node.get_fully_qualified_name()}/plan',
                                       lambda m: self.plans.append(json.loads(m.data)),
                                       PLAN_QOS)
        self.probe.create_subscription(
            DiagnosticArray, '/diagnostics',
            lambda m: self.diags.update({s.name: status_values(s) for s in m.status}), 10)
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        for n in (self.probe, node):
            self.executor.add_node(n)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self):
        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(timeout=5.0)
        self.probe.destroy_node()


def _edge(context, *params):
    return EdgeNode(context=context, parameter_overrides=[
        Parameter('defense', value='none'), *(Parameter(k, value=v) for k, v in params)])


def _auto(profile_file):
    return (('cut', 'auto'), ('uplink_mbps', 5.0), ('edge_profile', profile_file),
            ('host_profile', profile_file), ('edge_slowdown', 4.0))


@pytest.mark.ros
def test_auto_plan_and_diagnostics_name_the_cut_and_codec_in_use(rclpy_context, profile_file):
    node = _edge(rclpy_context, *_auto(profile_file))
    watch = PlanWatcher(rclpy_context, node)
    try:
        s = node.stage.settings
        assert wait_for(lambda: watch.plans), 'no plan on ~/plan'
        plan = watch.plans[-1]
        assert (plan['cut'], plan['codec'], plan['mode']) == (s.cut, s.codec, 'auto')
        assert plan['considered'] > plan['excluded'] > 0 and plan['codec_asked'] is None
        # Only what the shipped accuracy profile measured may be lossy: layer1 / jpeg / 5.
        assert plan['lossless'] or (s.cut, s.codec, plan['quality']) == ('layer1', 'jpeg', 5)
        assert plan['excluded_by']['no accuracy measurement'] >= 19
        name = 'edge_denoise_ros: edge_node'
        assert wait_for(lambda: watch.diags.get(name, {}).get('codec') == s.codec)
        assert watch.diags[name]['cut'] == s.cut and 'excluded' in watch.diags[name]['plan']

        # A codec without a measurement anywhere: refused, with the reason; nothing changes.
        result = node.set_parameters([Parameter('codec', value='q8')])[0]
        assert not result.successful and 'codec q8 is allowed at no cut' in result.reason
        assert 'no accuracy measurement' in result.reason and node.stage.settings == s

        # A lossless codec asked for: honoured, and the plan says so.
        assert node.set_parameters([Parameter('codec', value='lossless')])[0].successful
        assert node.stage.settings.codec == 'lossless'
        assert wait_for(lambda: watch.plans[-1]['codec_asked'] == 'lossless')
        assert watch.plans[-1]['codec'] == 'lossless'
        assert wait_for(lambda: watch.diags.get(name, {}).get('codec') == 'lossless')
        assert watch.diags[name]['accuracy_drop_pt'] == 'lossless'

        # jpeg is measured at layer1 q5 only (0.49 pt): asked for, that is the cut.
        assert node.set_parameters([Parameter('codec', value='jpeg')])[0].successful
        s = node.stage.settings
        assert (s.cut, s.codec, s.quality) == ('layer1', 'jpeg', 5)
        assert wait_for(lambda: watch.plans[-1]['codec_asked'] == 'jpeg')
        assert watch.plans[-1]['codec'] == 'jpeg' and watch.plans[-1]['cut'] == 'layer1'
        assert watch.plans[-1]['drop_pt'] == pytest.approx(0.49)
        # ... and refused once the bound is below what it costs.
        result = node.set_parameters([Parameter('max_accuracy_drop', value=0.4)])[0]
        assert not result.successful and 'accuracy drop 0.49 pt > 0.4' in result.reason
        # The allow-list: a codec asked for must be on it.
        result = node.set_parameters([Parameter('codecs', value=['raw', 'lossless'])])[0]
        assert not result.successful and 'not in the codecs allow-list' in result.reason
        assert node.stage.settings == s
        # Quality is planned at start-up with cut=auto.
        result = node.set_parameters([Parameter('quality', value=50)])[0]
        assert not result.successful and 'restart the node' in result.reason
    finally:
        watch.close()
        node.destroy_node()


@pytest.mark.ros
def test_a_codec_not_allowed_at_start_up_is_refused(rclpy_context, profile_file):
    with pytest.raises(ValueError, match='codec q8 is allowed at no cut'):
        _edge(rclpy_context, *_auto(profile_file), ('codec', 'q8'))
    with pytest.raises(ValueError, match=r'codec jpeg is not in the codecs allow-list'):
        _edge(rclpy_context, ('codecs', ['raw', 'lossless']))   # cut layer1: jpeg


@pytest.mark.ros
def test_a_fixed_cut_publishes_its_settings_and_their_measured_drop(rclpy_context):
    node = _edge(rclpy_context)                       # cut layer1, codec auto: jpeg q5
    watch = PlanWatcher(rclpy_context, node)
    try:
        assert wait_for(lambda: watch.plans)
        plan = watch.plans[-1]
        assert (plan['mode'], plan['cut'], plan['codec'], plan['quality']) == \
            ('fixed', 'layer1', 'jpeg', 5)
        assert plan['drop_pt'] == pytest.approx(0.49) and plan['considered'] is None
    finally:
        watch.close()
        node.destroy_node()


@pytest.fixture(scope='module')
def defended_profiles(tmp_path_factory, profile_file):
    """Return edge and host profile files in which the edge's DUNET_D is slow, the host's not."""
    folder = tmp_path_factory.mktemp('defended')
    prof = profiling.load_profile(profile_file)
    edge = dataclasses.replace(prof, defense_ms={'dunet_d': 500.0, 'jpeg': 0.1})
    host = dataclasses.replace(prof, defense_ms={'dunet_d': 1.0, 'jpeg': 0.1})
    return str(edge.save(folder / 'edge.json')), str(host.save(folder / 'host.json'))


@pytest.mark.ros
def test_auto_replans_for_the_defense_in_use_and_sends_model_size_frames(
        rclpy_context, defended_profiles):
    edge_file, host_file = defended_profiles
    node = EdgeNode(context=rclpy_context, parameter_overrides=[
        Parameter(k, value=v) for k, v in (('defense', 'none'), ('cut', 'auto'),
                                           ('uplink_mbps', 5.0), ('edge_profile', edge_file),
                                           ('host_profile', host_file))])
    watch = PlanWatcher(rclpy_context, node)
    try:
        assert node.stage.settings.cut != pipeline.FRAME_CUT   # undefended: the edge computes
        # DUNET_D costs the edge 500 ms, the host 1 ms: the frame goes up, at the model's
        # size (raw: lossless; host-only JPEG has no accuracy measurement here).
        assert node.set_parameters([Parameter('defense', value='dunet_d')])[0].successful
        s = node.stage.settings
        assert (s.defense, s.cut, s.codec, s.frame_scale) == ('dunet_d', 'frame', 'raw', 'model')
        assert wait_for(lambda: watch.plans and watch.plans[-1]['frame_scale'] == 'model')
        assert watch.plans[-1]['choice'] == 'host_only/raw@model'
        frame = frames.example_frame((480, 640), gray=False)
        assert tuple(node.stage.process(frame, 'bgr8').meta['shape']) == (28, 28)
        # A defense the profiles did not time is refused, and nothing changes.
        result = node.set_parameters([Parameter('defense', value='dunet')])[0]
        assert not result.successful and "no time for defense 'dunet'" in result.reason
        assert node.stage.settings == s
        assert node.set_parameters([Parameter('defense', value='none')])[0].successful
        assert node.stage.settings.cut != pipeline.FRAME_CUT
    finally:
        watch.close()
        node.destroy_node()


@pytest.fixture(scope='module')
def stream_profiles(tmp_path_factory, profile_file):
    """
    Return edge and host profile files: DUNET_D costs the edge 200 ms, the host 250 ms.

    The model's own times (measured once here, a few ms, more on a loaded machine) are
    small beside them, so which candidate serves the most frames does not hang on them.
    """
    folder = tmp_path_factory.mktemp('stream')
    prof = profiling.load_profile(profile_file)
    edge = dataclasses.replace(prof, defense_ms={'dunet_d': 200.0})
    host = dataclasses.replace(prof, defense_ms={'dunet_d': 250.0})
    return str(edge.save(folder / 'edge.json')), str(host.save(folder / 'host.json'))


def auto_edge_node(context, profiles, **params) -> EdgeNode:
    """Return an edge_node planning cut=auto from ``profiles`` (edge, host files)."""
    edge_file, host_file = profiles
    params = {'cut': 'auto', 'edge_profile': edge_file, 'host_profile': host_file, **params}
    return EdgeNode(context=context, parameter_overrides=[
        Parameter(k, value=v) for k, v in params.items()])


@pytest.mark.ros
def test_auto_replans_for_the_camera_stream_it_measures(rclpy_context, stream_profiles):
    node = auto_edge_node(rclpy_context, stream_profiles, defense='dunet_d', uplink_mbps=5.0,
                          stream_window_s=3600.0)
    watch = PlanWatcher(rclpy_context, node)
    head, name = node.head, 'edge_denoise_ros: edge_node'
    try:
        # One frame's latency: defending on the edge (200 ms) beats sending the frame to the
        # host (250 ms there), so the edge defends and computes.
        assert node.stage.settings.cut != pipeline.FRAME_CUT
        assert head.measure_stream(100.0, 10.0, 0, 0) is None        # a baseline
        # 20 s: 60 frames in, none served, 12 s of CPU: 200 ms of the edge's time a frame.
        stream = head.measure_stream(120.0, 22.0, 60, 0)
        assert stream.camera_fps == pytest.approx(3) and stream.intake_ms == pytest.approx(200)
        # 400 ms a second left: the defended split serves under 2 frames/s, the model-size
        # frame all 3 (the host defends it).
        s = node.stage.settings
        assert (s.cut, s.codec, s.frame_scale) == (pipeline.FRAME_CUT, 'raw', 'model')
        assert wait_for(lambda: watch.plans and watch.plans[-1]['served_fps'] == 3)
        plan = watch.plans[-1]
        assert plan['choice'] == 'host_only/raw@model' and 'serves the most' in plan['reason']
        assert plan['stream'] == {'camera_fps': 3.0, 'intake_ms': 200.0}
        assert wait_for(lambda: watch.diags.get(name, {}).get('stream_fps') == '3.00')
        assert watch.diags[name]['stream_intake_ms'] == '200.00'
        # A stream that costs nothing to take in: every candidate serves all 3 frames/s,
        # latency decides again, and the edge defends.
        served = 60
        stream = head.measure_stream(140.0, 22.0 + served * head.planner.choice.edge_ms / 1e3,
                                     120, served)
        assert stream.intake_ms == pytest.approx(0, abs=1e-6)
        assert node.stage.settings.cut != pipeline.FRAME_CUT
        assert wait_for(lambda: watch.plans[-1]['choice'] != 'host_only/raw@model')
    finally:
        watch.close()
        node.destroy_node()


def frame_server(node: EdgeNode) -> Callable[[int], tuple[int, int]]:
    """
    Return ``serve(n)``: feed n camera frames to ``node``, count what came of them.

    Each frame goes in as the subscription hands it over, then the inference
    callback runs; ``serve`` returns the frames served and those the pacer dropped.
    """
    raw = serialize_message(conversions.bridge().cv2_to_imgmsg(
        frames.example_frame((480, 640), gray=False), encoding='bgr8'))

    def serve(n: int) -> tuple[int, int]:
        before = (node.stats.frames, node.stats.drops['uplink'])
        for _ in range(n):
            node.camera._on_frame(raw)
            node._infer()
        return node.stats.frames - before[0], node.stats.drops['uplink'] - before[1]
    return serve


@pytest.mark.ros
def test_auto_skips_frames_the_declared_uplink_cannot_carry(rclpy_context, stream_profiles):
    node = auto_edge_node(rclpy_context, stream_profiles, defense='none', uplink_mbps=0.01)
    serve = frame_server(node)
    try:
        # 10 kbit/s: any message takes over 100 ms to cross, so of ten frames back to back
        # the first goes up and the rest are dropped unread, before any decoding, each counted.
        assert serve(10) == (1, 9)
        # Unpaced, every frame is computed and sent, whatever the link.
        assert node.set_parameters([Parameter('pace_uplink', value=False)])[0].successful
        assert serve(10) == (10, 0)
        # A fixed cut sends every frame: the pacer follows only the plan it keeps.
        assert node.set_parameters([Parameter('pace_uplink', value=True),
                                    Parameter('cut', value='layer1')])[0].successful
        assert serve(10) == (10, 0)
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_auto_paces_and_plans_with_the_uplink_it_measures(rclpy_context, stream_profiles):
    node = auto_edge_node(rclpy_context, stream_profiles, defense='none', uplink_mbps=0.01,
                          measure_uplink=True, stream_window_s=3600.0)
    serve = frame_server(node)
    features, head = node.features, node.head

    def receipt(seq: int, epoch: str | None = None, **extra) -> None:
        features._on_receipt(String(data=json.dumps(
            {'epoch': epoch or features.epoch, 'seq': seq, 'host_rx_ns': time.time_ns(),
             **extra})))

    try:
        # The edge reads the host's receipts in its namespace.
        assert features.receipts.topic_name == '/classification'
        assert head.pacing_mbps() == 0.01
        # Declared 10 kbit/s: one frame goes up, the rest are held back. The host's receipts
        # show no queue, so the link may carry more: the estimate rises, the pacer and the
        # planner take it, and the diagnostics say so.
        assert serve(10)[0] == 1
        receipt(1)
        time.sleep(0.3)                  # the first message has crossed the declared link
        assert serve(5)[0] == 1
        receipt(2)
        window = head.measure_uplink(time.monotonic() * 1e3)
        assert (window.verdict, window.receipts) == ('probe', 2) and window.held_back >= 13
        assert window.mbps == pytest.approx(0.01 * FAST_PROBE)
        assert head.pacing_mbps() == window.mbps == head.planner.link.uplink_mbps
        notes = node.stats.notes
        assert (notes['uplink_verdict'], notes['uplink_measured_mbps']) == ('probe', '0.013')
        # Records that are no receipt are counted and the node goes on; another stream's
        # records and a host's without receipt times are not this edge's to measure.
        for bad in ('not json', '[1, 2]', json.dumps({'epoch': features.epoch, 'seq': 'x',
                                                      'host_rx_ns': 5})):
            features._on_receipt(String(data=bad))
        assert node.stats.errors['receipt'] == 3
        receipt(3, epoch='0123456789abcdef')
        features._on_receipt(String(data=json.dumps({'epoch': features.epoch, 'seq': 2})))
        assert head.measure_uplink(time.monotonic() * 1e3).verdict == 'quiet'
        # A new declaration starts the measurement over from it.
        assert node.set_parameters([Parameter('uplink_mbps', value=0.02)])[0].successful
        assert head.pacing_mbps() == 0.02 and head.link_meter.mbps == 0.02
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_the_edge_measures_its_uplink_from_a_real_hosts_receipts(rclpy_context, stream_profiles):
    edge = auto_edge_node(rclpy_context, stream_profiles, defense='none', uplink_mbps=0.01,
                          measure_uplink=True, stream_window_s=3600.0)
    host = HostNode(context=rclpy_context)
    probe = rclpy.node.Node('uplink_probe', context=rclpy_context)
    records = []
    probe.create_subscription(String, 'classification',
                              lambda m: records.append(json.loads(m.data)), 100)
    camera = probe.create_publisher(Image, 'image_raw', qos_profile_sensor_data)
    image = conversions.bridge().cv2_to_imgmsg(frames.example_frame((224, 224), gray=False),
                                               encoding='bgr8')
    executor = MultiThreadedExecutor(num_threads=4, context=rclpy_context)
    for node in (edge, host, probe):
        executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: camera.get_subscription_count() >= 1
                        and edge.features.receipts.get_publisher_count() >= 1)
        assert wait_for(lambda: edge.features.pub.get_subscription_count() >= 1)
        # Frames at 20 a second over a link declared at 10 kbit/s: a few go up, each comes
        # back in the host's classification with when it arrived there.
        end = time.monotonic() + 20.0
        while time.monotonic() < end and len(records) < 3:
            camera.publish(image)
            time.sleep(0.05)
        assert len(records) >= 3, records
        assert all(r['host_rx_ns'] >= r['edge_rx_ns'] > 0 for r in records)
        assert {r['epoch'] for r in records} == {edge.features.epoch}
        # The edge read them: no queue, frames held back, so the link may carry more.
        assert wait_for(lambda: edge.head.link_meter._newest >= records[-1]['seq'], 5.0)
        window = edge.head.measure_uplink(time.monotonic() * 1e3)
        assert window.receipts >= 3 and window.held_back > 0, window
        assert window.verdict == 'probe' and window.mbps > 0.01
        assert edge.stats.errors.get('receipt', 0) == 0
    finally:
        executor.shutdown(timeout_sec=5.0)
        thread.join(timeout=5.0)
        for node in (probe, host, edge):
            node.destroy_node()
