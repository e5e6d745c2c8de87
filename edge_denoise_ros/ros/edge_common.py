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
The edge's parameters and head control, shared by ``edge_node`` and ``edge_process``.

- ``CAMERA_PARAMS`` (camera input, defense) and ``HEAD_PARAMS`` (target,
  cut, codec, link, features QoS): ``edge_node`` declares both,
  ``edge_process`` gives each to its own node.
- :class:`HeadControl`: the head/encoder parameters and the
  :class:`core.pipeline.EdgeStage` settings they mean (``cut: auto`` plans,
  within the accuracy profile's bounds); the cut, codec and quality in use are
  published on ``~/plan`` (latched) and in the node's diagnostics.
  With ``measure_uplink`` it paces and plans with the uplink measured from
  the host's receipts (:class:`core.stream.UplinkMeter`).

The camera intake and what the edge publishes are in :mod:`.edge_io`.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import functools
import json
import math
import threading
import time
from typing import Callable

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from . import dds
from .common import declare_parameters, FEATURES_QOS_PARAMS, ParamSpec, pub_events, TARGET_PARAMS
from ..core import pipeline, planner, surgery, tails, wire
from ..core.bundle import key as accuracy_key
from ..core.codecs import codec_quality
from ..core.defenses import defense_names
from ..core.frames import FRAME_SCALES, profile_frame
from ..core.fxguard import FX_GUARD
from ..core.models import set_torch_threads
from ..core.scheduled_model import ScheduledModel
from ..core.scheduler import Scheduler
from ..core.stream import LinkWindow, Stream, StreamMeter, UplinkMeter, UplinkPacer

AUTO = 'auto'
LINK = planner.Link()   # the declared link's defaults
# The plan in use, for late joiners too: reliable, the last one kept.
PLAN_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)

# The camera/denoiser side and the head/encoder side: edge_node declares both,
# edge_process gives each to its own node.
CAMERA_PARAMS = (
    ParamSpec('input_transport', 'raw', 'camera input: raw = sensor_msgs/Image on image_raw, '
              'compressed = sensor_msgs/CompressedImage on image_raw/compressed',
              choices=('raw', 'compressed'), read_only=True),
    ParamSpec('max_frame_pixels', pipeline.MAX_FRAME_PIXELS, 'camera frames with more pixels '
              '(read from the image header, before decoding) are refused as bad_image',
              range=(1, 1 << 28), read_only=True),
    ParamSpec('defense', pipeline.DEFAULT_DEFENSE, 'input defense, applied at the edge (for '
              'cut=frame, named in the message and applied by the host)',
              choices=defense_names()),
    ParamSpec('publish_denoised', False, 'also publish the defended model input on '
              'denoised (sensor_msgs/Image, 32FC1)', read_only=True),
    ParamSpec('camera_qos', dds.DEFAULT_CAMERA_QOS, 'reliability of the camera subscription: '
              'best_effort matches every camera driver (frames of 640x480 and up need the '
              'shipped Fast DDS profile, config/fastdds_large_data.xml, in the camera driver '
              'and here); reliable matches only reliable publishers',
              choices=dds.CAMERA_RELIABILITY, read_only=True),
    ParamSpec('camera_qos_depth', dds.DEFAULT_CAMERA_DEPTH, 'history depth of the camera '
              'subscription (the edge keeps only the newest frame for inference)',
              range=(1, 1000), read_only=True),
)
HEAD_PARAMS = TARGET_PARAMS + (
    ParamSpec('cut', pipeline.DEFAULT_CUT, 'where the model is cut: a cut name (see '
              'edge-denoise plan), frame (host-only), output (edge-only), or auto (planned at '
              'start-up from the link speeds and the edge profile, within max_accuracy_drop). '
              f'Default: auto with a bundle (its target\'s cuts are its own), else '
              f'{pipeline.DEFAULT_CUT}', default_from=lambda declared: AUTO if declared.get(
                  'bundle') else pipeline.DEFAULT_CUT),
    ParamSpec('codec', AUTO, 'feature codec raw, lossless, q8 or jpeg; for cut=frame an '
              'image codec raw, jpeg or deepn_jpeg; auto: the planner picks it (cut=auto), '
              f'else {pipeline.DEFAULT_CODEC} (raw for cut=output). With cut=auto a named codec '
              'is honoured (the planner picks only cuts with it) or refused with the reason',
              choices=wire.CODECS + (AUTO,)),
    ParamSpec('quality', pipeline.DEFAULT_QUALITY, 'JPEG quality of the jpeg feature codec '
              '(the shipped host tail is fine-tuned for layer1 at 5)',
              range=wire.QUALITY_RANGE),
    ParamSpec('frame_quality', pipeline.DEFAULT_FRAME_QUALITY, 'JPEG quality of camera '
              'frames sent host-only (cut=frame, codec jpeg)', range=wire.QUALITY_RANGE),
    ParamSpec('frame_scale', 'camera', 'cut=frame (host-only): send the frame as captured '
              '(camera) or resized on the edge to the model\'s input by its preparation '
              '(model: a 96x96 model\'s frame goes up as 96x96 pixels); cut=auto plans both',
              choices=FRAME_SCALES),
    ParamSpec('profile_frame', '', 'the camera frame the start-up profile (cut=auto) is '
              'measured with, so the frame path and codec sizes are what they will be: an '
              'image file (a frame from this camera), WIDTHxHEIGHT (a synthetic frame of the '
              'camera\'s size), or "" (synthetic, the model input, at least 224x224)',
              read_only=True),
    ParamSpec('uplink_mbps', LINK.uplink_mbps, 'declared edge->host link speed in Mbit/s '
              '(cut=auto); set it live to re-plan', range=(0.001, 100000.0)),
    ParamSpec('downlink_mbps', LINK.downlink_mbps, 'declared host->edge link speed in Mbit/s '
              '(cut=auto)', range=(0.001, 100000.0)),
    ParamSpec('rtt_ms', LINK.rtt_ms, 'declared link round-trip time in ms (cut=auto)',
              range=(0.0, 100000.0)),
    ParamSpec('camera_fps', 0.0, 'the camera\'s frames/s cut=auto plans for at start-up: it '
              'picks what serves the most of them (0: one frame\'s latency alone); measured '
              'while running when stream_window_s > 0', range=(0.0, 10000.0)),
    ParamSpec('stream_window_s', 2.0, 'cut=auto: every this many seconds the edge measures its '
              'camera stream (frames/s received, its own time per received frame, served or '
              'not) and re-plans for the frames it can serve (0: never)',
              range=(0.0, 3600.0), read_only=True),
    ParamSpec('pace_uplink', True, 'cut=auto: send no more than uplink_mbps carries (95 % of '
              'it): while what was sent needs over 100 ms more to cross, a camera frame is '
              'skipped before it is computed, counted as dropped.uplink (fixed cuts send every '
              'frame)'),
    ParamSpec('measure_uplink', False, 'cut=auto: every stream_window_s, measure the uplink '
              'from the host\'s receipts (host_rx_ns of each classification record, in this '
              'namespace) and pace and plan with the speed measured, starting from '
              'uplink_mbps (set it to start over); needs stream_window_s > 0',
              read_only=True),
    ParamSpec('max_accuracy_drop', planner.DEFAULT_MAX_ACCURACY_DROP, 'cut=auto never picks a '
              'lossy (cut, codec, quality) whose accuracy drop on held-out data (percentage '
              'points, from the target\'s accuracy profile) exceeds this, nor a lossy one '
              'without a measurement', range=(0.0, 100.0)),
    ParamSpec('codecs', list(wire.CODECS), 'the codecs the edge may send (empty: all): '
              'cut=auto picks only among them, a codec parameter must be one of them '
              '(edge-only, cut=output, is always allowed)', choices=wire.CODECS),
    ParamSpec('edge_profile', '', 'edge profile file from edge-denoise profile ("" = measure '
              'here at start-up, scaled by edge_slowdown)', read_only=True),
    ParamSpec('host_profile', '', 'host profile file ("" = measured here)', read_only=True),
    ParamSpec('edge_slowdown', 1.0, 'how many times slower the edge is than its profile',
              range=(0.01, 1000.0), read_only=True),
    ParamSpec('emulate_slowdown', 1.0, 'emulate an edge k times slower than this machine: '
              'each model stage waits (k - 1) times its own run time (benchmarks)',
              range=(1.0, 1000.0), read_only=True),
) + FEATURES_QOS_PARAMS


def scheduled_runner(scheduler: Scheduler | None, slowdown: float = 1.0) -> pipeline.Runner:
    """
    Return a runner that runs each module as scheduler jobs at the callback's priority.

    ``slowdown`` > 1 emulates a slower edge: after each stage the calling
    thread waits ``slowdown - 1`` times the stage's run time (the device is
    free meanwhile, as on a slower device it would be busy).
    """
    wrapped: dict[int, ScheduledModel] = {}

    def run(stage, module, x):
        start = time.perf_counter()
        if scheduler is None:
            with FX_GUARD.running():
                y = module(x)
        else:
            model = wrapped.get(id(module))
            if model is None:
                model = wrapped[id(module)] = ScheduledModel(module, scheduler, name=stage)
            y = model(x)
        if slowdown > 1.0:
            time.sleep((slowdown - 1.0) * (time.perf_counter() - start))
        return y
    return run


def accuracy_profile(target: pipeline.Target) -> dict[str, dict]:
    """
    Return the accuracy profile ``cut/codec/q -> entry`` the planner weighs for ``target``.

    The target's bundle's, where it has one; else what the target's shipped
    fine-tuned tails measured (:func:`core.tails.shipped_accuracy_profile`; the
    default target: layer1 / jpeg / 5); else none, so ``cut: auto`` picks only
    lossless codecs or edge-only. Nothing is computed at run time.
    """
    bundle = getattr(target, 'bundle', None)
    if bundle is not None:
        return bundle.accuracy_profile(target.hash)
    return tails.shipped_accuracy_profile(target)


class HeadControl:
    """
    The head/encoder parameters of a node and the stage settings they mean.

    With ``cut: auto`` a planner (:func:`core.planner.make_planner`) picks the
    cut and codec at start-up, never a lossy one beyond ``max_accuracy_drop``
    of the target's accuracy profile (:func:`accuracy_profile`) nor one outside
    the ``codecs`` allow-list; a named ``codec`` is honoured (only cuts with it)
    or refused with the reason. Later changes of the declared link, of these
    rules or of the codec re-plan (with the planner's hysteresis), and so does
    the camera stream the node measures every ``stream_window_s``
    (:meth:`watch_stream`): with a camera rate the planner picks what serves
    the most frames, then the least latency. The cut,
    codec and quality in use go out on ``~/plan`` (std_msgs/String, one JSON
    object, latched) whenever they change, and into the diagnostics of the
    node's ``stats`` (where it has one).
    """

    def __init__(self, node: Node, scheduler=None, defense: str | None = None):
        self.node = node
        self.params = declare_parameters(node, HEAD_PARAMS, self._apply)
        p = self.params
        set_torch_threads(p['torch_threads'])
        target = pipeline.Target(p['model'], p['weights'] or None, p['device'],
                                 bundle=p['bundle'] or None, labels=p['labels'] or None)
        if scheduler is not None and not isinstance(scheduler, Scheduler):
            scheduler = scheduler(p['device'])   # run_nodes' DeviceScheduler: made for it
        self.stage = pipeline.EdgeStage(
            target, pipeline.EdgeSettings(cut=pipeline.OUTPUT_CUT, codec='raw', defense='none'),
            scheduled_runner(scheduler, p['emulate_slowdown']))
        self.accuracy = accuracy_profile(target)
        self.stats = getattr(node, 'stats', None)
        stale = target.bundle.stale() if target.bundle is not None else []
        for line in stale:
            node.get_logger().warning(line)       # it still serves: the user decides
        if stale and self.stats is not None:
            self.stats.warn('stale_denoiser', '; '.join(stale))
        self.planner = None
        self.meter = None
        self.lock = threading.RLock()      # parameter callbacks and the stream's re-plans
        self.planned_quality = (p['quality'], p['frame_quality'])
        _check_allowed(p)
        if p['cut'] == AUTO:
            link = planner.Link(p['uplink_mbps'], p['downlink_mbps'], p['rtt_ms'])
            try:
                self.planner = planner.make_planner(
                    target.model, target.input_shape, link=link,
                    edge_profile=p['edge_profile'] or None,
                    host_profile=p['host_profile'] or None, edge_slowdown=p['edge_slowdown'],
                    frame=profile_frame(p['profile_frame'], target.input_shape),
                    model_name=target.name, quality=p['quality'],
                    frame_quality=p['frame_quality'], accuracy_profile=self.accuracy,
                    defenses=functools.partial(pipeline.defense_modules, target), sustained=True,
                    defense=defense, stream=Stream(camera_fps=p['camera_fps']),
                    **_rules(p))
            except ValueError as exc:
                raise ValueError(f'cut=auto, codec={p["codec"]}: {exc}') from None
            self._log_choice('planned')
        self.pacer = UplinkPacer()
        self.link_meter = None
        if p['measure_uplink']:
            if self.planner is not None and p['stream_window_s'] > 0:
                self.link_meter = UplinkMeter(p['uplink_mbps'])
            else:
                node.get_logger().warning('measure_uplink needs cut=auto and stream_window_s '
                                          '> 0: the declared uplink_mbps is used')
        self.stage.configure(self._settings(p, self.stage.settings))
        self.plan_pub = node.create_publisher(String, '~/plan', PLAN_QOS,
                                              event_callbacks=pub_events())
        self._published = None
        self.publish_plan()

    def _settings(self, p: dict, base: pipeline.EdgeSettings) -> pipeline.EdgeSettings:
        s = dataclasses.replace(base, quality=p['quality'], frame_quality=p['frame_quality'],
                                frame_scale=p['frame_scale'])
        if p['cut'] != AUTO:
            return dataclasses.replace(s, cut=p['cut'], codec=_fixed_codec(p))
        c = self.planner.choice
        if c.kind == surgery.EDGE_ONLY:
            return dataclasses.replace(s, cut=pipeline.OUTPUT_CUT, codec='raw')
        if c.kind == surgery.HOST_ONLY:
            return dataclasses.replace(s, cut=pipeline.FRAME_CUT, codec=c.codec,
                                       frame_scale=c.scale)
        return dataclasses.replace(s, cut=c.cut, codec=c.codec)

    def _apply(self, changes: dict) -> None:
        with self.lock:
            self._apply_locked(changes)

    def _apply_locked(self, changes: dict) -> None:
        p = {**self.params, **changes}
        if p['cut'] == AUTO and self.planner is None:
            raise ValueError('cut=auto is chosen at start-up (it measures a profile); '
                             'restart the node with it')
        if p['cut'] == AUTO and (p['quality'], p['frame_quality']) != self.planned_quality:
            raise ValueError(f'cut=auto plans for quality {self.planned_quality[0]} and '
                             f'frame_quality {self.planned_quality[1]}, set at start-up (JPEG '
                             f'sizes and accuracy are per quality); restart the node to change '
                             f'them')
        _check_allowed(p)
        saved = copy.copy(self.planner)
        before = None if self.planner is None else self.planner.choice.name
        try:
            if p['cut'] == AUTO:
                self.planner.configure(**_rules(p))
                link = {k: v for k, v in changes.items()
                        if k in ('uplink_mbps', 'downlink_mbps', 'rtt_ms')}
                if 'camera_fps' in changes:
                    link['stream'] = dataclasses.replace(self.planner.stream,
                                                         camera_fps=changes['camera_fps'])
                if link:
                    self.planner.update(**link)
            self.stage.configure(self._settings(p, self.stage.settings))
        except pipeline.PipelineError as exc:
            self.planner = saved
            raise ValueError(str(exc)) from None
        except ValueError as exc:
            self.planner = saved
            raise ValueError(f'{_name(changes)}: {exc}') from None
        self.params = p
        if self.link_meter is not None and 'uplink_mbps' in changes:
            self.link_meter.reset(p['uplink_mbps'])      # a new declaration: start from it
        if p['cut'] == AUTO and self.planner.choice.name != before:
            self._log_choice(f're-planned (was {before})')
        self.publish_plan()

    def set_defense(self, name: str) -> None:
        """
        Re-plan for the input defense now in use (its time moves the best cut).

        Raises ValueError, changing nothing, when the planner's profiles did
        not time it. Without ``cut: auto`` there is nothing to re-plan.
        """
        with self.lock:
            self._set_defense_locked(name)

    def _set_defense_locked(self, name: str) -> None:
        if self.planner is None or self.planner.rules['defense'] == name:
            return
        before, saved = self.planner.choice.name, copy.copy(self.planner)
        try:
            self.planner.configure(defense=name)
            self.stage.configure(self._settings(self.params, self.stage.settings))
        except ValueError as exc:            # a PipelineError too
            self.planner = saved
            raise ValueError(f'defense {name}: {exc}') from None
        if self.planner.choice.name != before:
            self._log_choice(f're-planned for defense {name} (was {before})')
        self.publish_plan()

    def watch_stream(self, received: Callable[[], int]) -> None:
        """
        Re-plan (cut=auto) every ``stream_window_s`` for the camera stream as measured.

        ``received()``: the camera frames received so far (by the node that
        takes them in); the frames served are this node's, the time the
        process's CPU time (:meth:`measure_stream`).
        """
        window = self.params['stream_window_s']
        if self.planner is None or window <= 0 or self.stats is None:
            return
        machine = self.planner.edge_profile.machine
        share = machine.get('cpu_share', 1.0) if machine.get('sustained') else 1.0
        self.meter = StreamMeter(share=share)

        def sample() -> None:
            self.measure_stream(time.monotonic(), time.process_time(), received(),
                                self.stats.frames)
            if self.link_meter is not None:
                self.measure_uplink(time.monotonic() * 1e3)
        sample()                                # the baseline
        self.node.create_timer(window, sample)

    def measure_stream(self, wall_s: float, cpu_s: float, received: int,
                       served: int) -> Stream | None:
        """
        Take one sample of the stream (:class:`core.stream.StreamMeter`) and re-plan for it.

        Returns the stream measured since the last sample (None: too few frames
        to tell); it goes into the diagnostics (``stream_fps``,
        ``stream_intake_ms``), and a new choice onto ``~/plan`` and the log.
        """
        with self.lock:
            stream = self.meter.sample(wall_s, cpu_s, received, served,
                                       self.planner.choice.edge_ms)
            if stream is None or self.params['cut'] != AUTO:
                return stream
            self.stats.note(stream_fps=f'{stream.camera_fps:.2f}',
                            stream_intake_ms=f'{stream.intake_ms:.2f}')
            self._replan('the camera stream', stream=stream)
            return stream

    def measure_uplink(self, now_ms: float) -> LinkWindow:
        """
        Close the uplink meter's window (``measure_uplink``) and pace and plan with its speed.

        The window (:class:`core.stream.LinkWindow`) goes into the diagnostics
        (``uplink_measured_mbps``, ``uplink_verdict``, ``uplink_queue_ms``); a
        full link makes the pacer wait for what is still on the way; a new
        speed re-plans (with the planner's hysteresis).
        """
        with self.lock:
            w = self.link_meter.sample()
            self.stats.note(uplink_measured_mbps=f'{w.mbps:.3f}', uplink_verdict=w.verdict,
                            uplink_queue_ms='-' if w.queue_ms is None else f'{w.queue_ms:.1f}')
            if w.verdict == 'full':
                self.pacer.queued(w.in_flight_bytes, w.mbps, now_ms)
            if self.params['cut'] == AUTO and not math.isclose(w.mbps,
                                                               self.planner.link.uplink_mbps):
                self._replan(f'the uplink measured ({w.verdict})', uplink_mbps=w.mbps)
            return w

    def _replan(self, what: str, **update) -> None:
        """Update the planner (a measured stream or link); a new choice is configured."""
        before, saved = self.planner.choice.name, copy.copy(self.planner)
        self.planner.update(**update)
        if self.planner.choice.name == before:
            return
        try:
            self.stage.configure(self._settings(self.params, self.stage.settings))
        except ValueError as exc:          # a PipelineError too: keep what runs
            self.node.get_logger().warning(f're-plan for {what} to '
                                           f'{self.planner.choice.name} refused: {exc}')
            self.planner = saved
            return
        self._log_choice(f're-planned for {what} (was {before})')
        self.publish_plan()

    def pacing_mbps(self) -> float | None:
        """
        Return the uplink speed features are paced at (cut=auto, ``pace_uplink``), or None.

        The measured speed with ``measure_uplink``, else the declared one.
        """
        p = self.params
        if p['cut'] != AUTO or not p['pace_uplink']:
            return None
        return self.link_meter.mbps if self.link_meter is not None else p['uplink_mbps']

    def _log_choice(self, what: str) -> None:
        c, link, stream = self.planner.choice, self.planner.link, self.planner.stream
        rate = '' if not stream.camera_fps else (
            f', {c.served_fps(link, stream):.1f} of {stream.camera_fps:.1f} camera frames/s '
            f'(intake {stream.intake_ms:.1f} ms a frame)')
        self.node.get_logger().info(f'{what}: {c.name} at {link.uplink_mbps:g} Mbit/s up, '
                                    f'predicted {c.total_ms(link):.1f} ms per frame{rate}')

    def plan_record(self) -> dict:
        """Return what ``~/plan`` carries: the cut, codec and quality in use, and why."""
        s, p = self.stage.settings, self.params
        quality = codec_quality(s.codec, s.frame_quality if s.cut == pipeline.FRAME_CUT
                                else s.quality)
        entry = _entry(self.accuracy, self.stage.target, s.cut, s.codec, quality)
        record = {'cut': s.cut, 'codec': s.codec, 'quality': quality,
                  'frame_scale': s.frame_scale if s.cut == pipeline.FRAME_CUT else None,
                  'lossless': s.cut == pipeline.OUTPUT_CUT or s.codec in planner.LOSSLESS_CODECS,
                  'drop_pt': None if entry is None else planner.accuracy_drop(entry),
                  'max_accuracy_drop': p['max_accuracy_drop'], 'codecs': list(p['codecs']),
                  'codec_asked': p['codec'] if p['codec'] != AUTO else None,
                  'accuracy_entries': len(self.accuracy)}
        if p['cut'] != AUTO:
            return {**record, 'mode': 'fixed',
                    'reason': f'set by the parameters cut={p["cut"]}, codec={p["codec"]}',
                    'considered': None, 'excluded': None}
        result = self.planner.plan()
        c, link, stream = self.planner.choice, self.planner.link, self.planner.stream
        reasons = collections.Counter(r['excluded'] for r in result.rows if r['excluded'])
        allowed = len(result.rows) - result.excluded
        served = c.served_fps(link, stream) if stream.camera_fps else None
        why = (f'fastest allowed of {allowed}' if served is None else
               f'serves the most of {stream.camera_fps:.1f} camera frames/s of {allowed} '
               f'allowed ({served:.1f}), then the fastest')
        return {**record, 'mode': AUTO, 'choice': c.name, 'drop_pt': c.drop_pt,
                'predicted_ms': round(c.total_ms(link), 3),
                'served_fps': None if served is None else round(served, 2),
                'reason': f'{why} at {link.uplink_mbps:g} Mbit/s up (predicted '
                          f'{c.total_ms(link):.1f} ms per frame)',
                'considered': len(result.rows), 'excluded': result.excluded,
                'excluded_by': dict(reasons.most_common()), 'link': result.as_dict()['link'],
                'stream': {k: round(v, 2) for k, v in result.as_dict()['stream'].items()}}

    def publish_plan(self) -> None:
        """Publish ``~/plan`` and note the settings in the diagnostics, if they changed."""
        record = self.plan_record()
        text = json.dumps(record, sort_keys=True)
        if text == self._published:
            return
        self._published = text
        if self.stats is not None:
            self.stats.note(cut=record['cut'], codec=record['codec'],
                            quality='-' if record['quality'] is None else record['quality'],
                            plan=record['mode'] if record['mode'] == 'fixed'
                            else f'{record["mode"]}: {record["excluded"]} of '
                                 f'{record["considered"]} candidates excluded',
                            accuracy_drop_pt=_drop_text(record))
        self.plan_pub.publish(String(data=text))


def _drop_text(record: dict) -> str:
    if record['lossless']:
        return 'lossless'
    return 'unmeasured' if record['drop_pt'] is None else f'{record["drop_pt"]:.2f}'


def _fixed_codec(p: dict) -> str:
    """Return the codec a fixed cut sends: the parameter, or for auto the cut's usual one."""
    if p['codec'] != AUTO:
        return p['codec']
    return 'raw' if p['cut'] == pipeline.OUTPUT_CUT else pipeline.DEFAULT_CODEC


def _rules(p: dict) -> dict:
    """Return the planner's rules from the parameters (see :func:`core.planner.screen`)."""
    return {'max_accuracy_drop': p['max_accuracy_drop'], 'allowed': p['codecs'] or None,
            'codec': None if p['codec'] == AUTO else p['codec']}


def _check_allowed(p: dict) -> None:
    """Refuse a codec outside the ``codecs`` allow-list (edge-only needs none)."""
    allowed = p['codecs']
    if not allowed or p['cut'] == pipeline.OUTPUT_CUT:
        return
    codec = p['codec'] if p['cut'] == AUTO else _fixed_codec(p)
    if codec != AUTO and codec not in allowed:
        raise ValueError(f'codec {codec} is not in the codecs allow-list '
                         f'({", ".join(allowed)})')


def _name(changes: dict) -> str:
    return 'parameter ' + ', '.join(sorted(changes)) if changes else 'parameters'


def _entry(profile: dict, target: pipeline.Target, cut: str, codec: str,
           quality: int | None) -> dict | None:
    """Return the accuracy entry of settings in use, by the cut's label or node name."""
    if cut == pipeline.OUTPUT_CUT or codec in planner.LOSSLESS_CODECS:
        return None
    found = target.cuts.get(cut)
    for name in dict.fromkeys((cut, found.name if found is not None else cut)):
        entry = profile.get(accuracy_key(name, codec, quality))
        if entry is not None:
            return entry
    return None


def apply_defense(head: HeadControl, changes: dict) -> None:
    """
    Apply a ``defense`` parameter change to the head's stage, and re-plan for it.

    A bad one is refused with the reason, and nothing changes.
    """
    if 'defense' not in changes:
        return
    stage = head.stage
    before = stage.settings
    try:
        stage.configure(dataclasses.replace(before, defense=changes['defense']))
        head.set_defense(changes['defense'])
    except ValueError as exc:                # a PipelineError too: the reason, one line
        stage.configure(before)
        raise ValueError(str(exc)) from None
