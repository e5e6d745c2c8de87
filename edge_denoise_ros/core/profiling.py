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
Measured stage times and sizes of a model on one machine: :class:`Profile`.

A profile times every cut's head and tail, every feature codec's encode and
decode at every cut, the host-only frame path per image codec, the whole
model and each graph node (medians of repeats, warm-up excluded). One
measured on the robot is the planner's edge profile, one measured on the host
its host profile (:mod:`core.planner`); ``edge-denoise profile`` writes one.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from . import codecs, wire
from .frames import frame_for, FRAME_SCALES, preprocess, sent_image
from .surgery import EDGE_ONLY, example_args, HOST_ONLY, split_traced, trace, Traced

PROFILE_FORMAT = 'edge_denoise/profile/1'


@dataclass
class Profile:
    """
    Measured times of one model on one machine (milliseconds, medians).

    ``cuts``: per cut ``name, label, index, shape, bytes, head_ms, tail_ms``;
    ``features``: per (cut, codec) ``cut, codec, bytes, encode_ms, decode_ms``
    (bytes of the real payload) and ``edge_ms``, ``host_ms``: each side of
    that pipeline timed whole (preprocess + head + encode; decode + tail),
    when measured; ``images``: per image codec and ``scale`` of the host-only
    path (the frame as captured, ``camera``, or already at the model's size,
    ``model``) ``codec, scale, shape, bytes, encode_ms, decode_ms, edge_ms,
    host_ms``; ``full_ms`` the
    whole model, ``preprocess_ms`` camera frame to model input,
    ``edge_only_ms`` both timed whole; ``nodes`` each graph node's time (for
    :func:`.mincut.min_cut`); ``defense_ms`` each input defense's time on
    one model input (the edge runs it before the head, the host before the
    whole model of a host-only frame). A profile measured on the
    robot serves as the edge profile (heads, encoders), one measured on the
    host as the host profile (tails, decoders).
    """

    model: str
    input_shape: list[int]
    frame_shape: list[int]
    full_ms: float
    preprocess_ms: float
    cuts: list[dict]
    features: list[dict]
    images: list[dict]
    repeats: int = 0
    warmup: int = 0
    machine: dict = field(default_factory=dict)
    nodes: dict = field(default_factory=dict)
    edge_only_ms: float | None = None
    defense_ms: dict = field(default_factory=dict)
    format: str = PROFILE_FORMAT

    def as_dict(self) -> dict:
        """Return a JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Profile:
        """Build a profile from :meth:`as_dict` output; raise ValueError if malformed."""
        if not isinstance(d, dict) or d.get('format') != PROFILE_FORMAT:
            raise ValueError(f'not a surgery profile (expected format {PROFILE_FORMAT!r})')
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except TypeError as exc:
            raise ValueError(f'malformed profile: {exc}') from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the profile as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=1) + '\n')
        return path

    def cut(self, name: str) -> dict:
        """Return the record of one cut; raise ValueError if the profile has none."""
        for c in self.cuts:
            if c['name'] == name:
                return c
        raise ValueError(f'profile of {self.model} has no cut {name!r}')


def load_profile(path: str | os.PathLike) -> Profile:
    """Read a profile written by :meth:`Profile.save` (``edge-denoise profile --out``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'profile not found: {path}')
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f'{path}: not JSON ({exc})') from None
    return Profile.from_dict(d)


def machine_info() -> dict:
    """Describe this machine for a profile."""
    return {'node': platform.node(), 'machine': platform.machine(),
            'processor': platform.processor() or platform.machine(),
            'cpus': os.cpu_count(), 'torch': torch.__version__,
            'threads': torch.get_num_threads(), 'python': platform.python_version()}


# Wall time, or this process's CPU time: with one intra-op thread, the CPU time of a
# computation is its latency on an unloaded machine, and other tenants of a shared machine
# do not inflate it (they do inflate wall time, by whole multiples when cores are short).
CLOCKS = {'wall': time.perf_counter_ns, 'cpu': time.process_time_ns}


def summarize_times(values: Sequence[float], stat: str = 'median') -> float:
    """
    Return one figure of repeated timings: ``'median'``, or ``'pNN'`` the NN-th percentile.

    On a machine shared with other work, timings spread upwards; a low percentile
    (``'p20'``) is the time when undisturbed and varies far less from run to run.
    """
    if not values:
        raise ValueError('no timings to summarize')
    if stat == 'median':
        return statistics.median(values)
    if stat.startswith('p') and stat[1:].isdigit() and 0 <= int(stat[1:]) <= 100:
        return float(np.percentile(values, int(stat[1:])))
    raise ValueError(f"unknown statistic {stat!r}; expected 'median' or 'p0'..'p100'")


def cpu_share(seconds: float = 1.0) -> float:
    """
    Return the CPU time one busy thread of this process gets per second of wall time.

    Measured by spinning for ``seconds``: about 1.0 on an idle core, the quota
    under a cgroup CPU quota (0.25 for a quarter core: the thread runs 25 ms of
    every 100 ms period), less on a machine busy with other work. Spans
    several quota periods (100 ms) by default.
    """
    if seconds <= 0:
        raise ValueError(f'seconds must be > 0, got {seconds}')
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    while time.perf_counter() - wall0 < seconds:
        sum(range(1000))
    return (time.thread_time() - cpu0) / (time.perf_counter() - wall0)


def sustained(profile: Profile, share: float) -> Profile:
    """
    Return a CPU-time profile as the wall time each stage takes at a CPU ``share``.

    A stage of ``t`` ms of CPU time takes ``t / share`` ms on average when the
    thread gets ``share`` of a core (:func:`cpu_share`, measured on the same
    machine): under a CPU quota a short stage mostly runs at full speed and now
    and then waits out the rest of the period, and frames at camera rate get
    the average, not the median of wall times (which skips the waits).
    """
    if not 0 < share <= 1.5:
        raise ValueError(f'CPU share must be in (0, 1.5], got {share}')
    k = 1.0 / share

    def scale(record):
        return {key: (v * k if key.endswith('_ms') and isinstance(v, (int, float)) else v)
                for key, v in record.items()}
    d = profile.as_dict()
    d.update({key: d[key] * k for key in ('full_ms', 'preprocess_ms')})
    if d['edge_only_ms'] is not None:
        d['edge_only_ms'] *= k
    for part in ('cuts', 'features', 'images'):
        d[part] = [scale(r) for r in d[part]]
    d['defense_ms'] = {name: v * k for name, v in d['defense_ms'].items()}
    d['nodes'] = {name: v * k for name, v in d['nodes'].items()}
    d['machine'] = {**d['machine'], 'cpu_share': round(share, 4), 'sustained': True}
    return Profile.from_dict(d)


def get_clock(name: str) -> Callable[[], int]:
    """Return the clock (nanoseconds) of a name in :data:`CLOCKS`."""
    if name not in CLOCKS:
        raise ValueError(f'unknown clock {name!r}; expected one of {tuple(CLOCKS)}')
    return CLOCKS[name]


def is_fast(model: nn.Module, x: torch.Tensor, limit_ms: float = 5.0) -> bool:
    """Return whether ``model(x)`` takes under ``limit_ms`` of CPU time here (best of 5)."""
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(5):
            t0 = time.process_time()
            model(x)
            times.append((time.process_time() - t0) * 1e3)
    return min(times) < limit_ms


def auto_burst(model, x) -> int:
    """Return how many runs of a side to make in a row: 3 (one to warm up), 1 over 5 ms."""
    return 3 if is_fast(model, x) else 1


class _Stopwatch:
    """Collect the durations of named stages (milliseconds) while ``recording``."""

    def __init__(self, clock=time.perf_counter_ns, stat: str = 'median'):
        self.samples = {}
        self.recording = True
        self.clock = clock
        self.stat = stat

    def __call__(self, key, fn, *args):
        t0 = self.clock()
        out = fn(*args)
        if self.recording:
            self.samples.setdefault(key, []).append((self.clock() - t0) / 1e6)
        return out

    def median(self, key, default: float | None = 0.0) -> float | None:
        values = self.samples.get(key)
        return summarize_times(values, self.stat) if values else default


class _NodeTimer(torch.fx.Interpreter):
    """Run the graph, timing every activation node."""

    def __init__(self, traced: Traced, clock):
        super().__init__(traced.module)
        self.dynamic = traced.dynamic
        self.samples = {}
        self.recording = False
        self.clock = clock

    def run_node(self, n):
        if n not in self.dynamic or n.op in ('placeholder', 'output'):
            return super().run_node(n)
        t0 = self.clock()
        out = super().run_node(n)
        if self.recording:
            self.samples.setdefault(n.name, []).append((self.clock() - t0) / 1e6)
        return out


def run_sides(edge: Callable, host: Callable | None, burst: int, clock) -> tuple:
    """
    Run the edge side ``burst`` times in a row, then the host side on its output.

    As on two machines: each side follows itself (caches, branch predictors),
    not the other. Returns ``(edge_ms, host_ms, sent, out)``: the timings of
    each side (all but the first run, unless ``burst`` is 1), the edge's last
    output and the host's.
    """
    edge_ms, host_ms = [], []
    for b in range(burst):
        t0 = clock()
        sent = edge()
        if b or burst == 1:
            edge_ms.append((clock() - t0) / 1e6)
    out = sent
    for b in range(burst if host is not None else 0):
        t0 = clock()
        out = host(sent)
        if b or burst == 1:
            host_ms.append((clock() - t0) / 1e6)
    return edge_ms, host_ms, sent, out


def run_rounds(sessions: Sequence, repeats: int, warmup: int, progress=None) -> None:
    """Run the sessions' rounds interleaved: warm-up rounds first, untimed."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f'need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}')
    total = warmup + repeats
    for r in range(total):
        with gc_paused():
            for session in sessions:
                session.round(r >= warmup)
        if progress is not None:
            progress(r + 1, total, {'round': 'warm-up' if r < warmup else 'timed'})


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """As timeit does: no garbage collection inside timed code (young objects collected after)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.collect(0)


def frame_codec(codec: str, quality: int | None = None) -> tuple[Callable, Callable]:
    """Return ``(encode, decode)`` of the host-only path (``core.wire.FRAME_CODECS``)."""
    if codec not in wire.FRAME_CODECS:
        raise ValueError(f'unknown frame codec {codec!r}; expected one of {wire.FRAME_CODECS}')
    options = codecs.jpeg_options(codec, quality)
    return (lambda frame: codecs.encode(frame, codec, **options)), codecs.decode


def check_codecs(given, known, what) -> tuple[str, ...]:
    """Return the codecs ``given`` (default: all ``known``); raise ValueError on an unknown one."""
    given = tuple(known if given is None else given)
    unknown = [c for c in given if c not in known]
    if unknown:
        raise ValueError(f'unknown {what} codec {unknown[0]!r}; expected one of {known}')
    return given


class ProfileSession:
    """The state of one profile measurement; see :func:`measure_profile`."""

    def __init__(self, model, frame, input_shape, feature_codecs, frame_codecs, burst,
                 model_name, clock='wall', stat='median', quality=None, frame_quality=None,
                 defenses=None):
        self.quality, self.frame_quality = quality, frame_quality
        self.defenses = dict(defenses or {})
        self.clock = clock
        self.model, self.model_name = model, model_name
        self.input_shape = [int(d) for d in input_shape[-3:]]
        self.frame = frame_for(self.input_shape) if frame is None else frame
        self.codecs = check_codecs(feature_codecs, wire.FEATURE_CODECS, 'feature')
        self.encoders = {k: functools.partial(codecs.encode, **codecs.jpeg_options(k, quality))
                         for k in self.codecs}
        asked = frame_codecs is not None
        x = preprocess(self.frame, self.input_shape)              # (1, C, H, W)
        with torch.no_grad():
            self.traced = trace(model, x)
        self.halves = {c.name: split_traced(self.traced, c) for c in self.traced.cuts}
        self.sizes, self.frames = {}, {}
        self.scaled = {scale: sent_image(self.frame, 'bgr8', self.input_shape, scale)
                       for scale in FRAME_SCALES}
        for k in check_codecs(frame_codecs, wire.FRAME_CODECS, 'image'):
            try:
                coder = frame_codec(k, frame_quality)
                for scale in FRAME_SCALES:
                    self.sizes[(k, scale)] = len(coder[0](self.scaled[scale])[0])
                    self.frames[(k, scale)] = coder
            except wire.CodecError:
                if asked:
                    raise
                for scale in FRAME_SCALES:   # by default, those that work here
                    self.frames.pop((k, scale), None)
        self.burst = burst or auto_burst(model, x)
        summarize_times([1.0], stat)  # check it early
        self.watch = _Stopwatch(get_clock(clock), stat)
        self.node_timer = _NodeTimer(self.traced, get_clock(clock))
        self.rounds = 0

    @torch.no_grad()
    def round(self, record: bool) -> None:
        watch, frame, shape, enc, dec = (self.watch, self.frame, self.input_shape,
                                         self.encoders, codecs.decode)
        self.rounds += record
        clock, model, whole = watch.clock, self.model, self.burst > 1
        # Each stage timed once per round, in pipeline order (one head, every codec, one
        # tail per cut). Small models (burst > 1), where microseconds count: then each
        # side of every path runs `burst` times in a row, timed whole with plain calls,
        # as in service (the sum of stage medians can miss by a few microseconds).
        watch.recording = record
        watch('full', model, watch('preprocess', preprocess, frame, shape))
        for name, (head, tail) in self.halves.items():
            h = watch(('head', name), head, watch('preprocess', preprocess, frame, shape))
            decoded = h.clone()
            for k in self.codecs:
                payload, meta = watch(('encode', name, k), enc[k], h, k)
                self.sizes[(name, k)] = len(payload)
                decoded = watch(('decode', name, k), dec, payload, meta)
            watch(('tail', name), tail, decoded)
        x = preprocess(frame, shape)
        for name, defense in self.defenses.items():
            watch(('defense', name), defense, x)
        for key, (frame_enc, frame_dec) in self.frames.items():
            sent = watch(('frame_encode',) + key,
                         lambda scale=key[1]: frame_enc(sent_image(frame, 'bgr8', shape, scale)))
            got = watch(('frame_decode',) + key, frame_dec, *sent)
            watch('full', model, watch('preprocess', preprocess, got, shape, _encoding(got)))
        self.node_timer.recording = record  # node by node, for the min-cut
        self.node_timer.run(preprocess(frame, shape))
        if not whole:
            return

        def sides(key, edge, host):
            edge_ms, host_ms, _, _ = run_sides(edge, host, self.burst, clock)
            if record:
                watch.samples.setdefault(('edge_side',) + key, []).extend(edge_ms)
                watch.samples.setdefault(('host_side',) + key, []).extend(host_ms)

        sides((EDGE_ONLY,), lambda: model(preprocess(frame, shape)), None)
        for name, (head, tail) in self.halves.items():
            for k in self.codecs:
                sides((name, k), lambda k=k, head=head: enc[k](head(preprocess(frame, shape)), k),
                      lambda sent, tail=tail: tail(dec(*sent)))
        for key, coder in self.frames.items():
            sides((HOST_ONLY,) + key, *host_only_sides(model, frame, shape, coder, key[1]))

    def result(self, warmup: int = 0) -> Profile:
        ms, cuts = self.watch.median, self.traced.cuts
        return Profile(
            model=self.model_name or type(self.model).__name__, input_shape=self.input_shape,
            frame_shape=list(self.frame.shape), full_ms=ms('full'),
            preprocess_ms=ms('preprocess'),
            cuts=[{**c.as_dict(), 'head_ms': ms(('head', c.name)),
                   'tail_ms': ms(('tail', c.name))} for c in cuts],
            features=[{'cut': c.name, 'codec': k, 'bytes': self.sizes.get((c.name, k), 0),
                       'encode_ms': ms(('encode', c.name, k)),
                       'decode_ms': ms(('decode', c.name, k)),
                       'edge_ms': ms(('edge_side', c.name, k), None),
                       'host_ms': ms(('host_side', c.name, k), None)}
                      for c in cuts for k in self.codecs],
            images=[{'codec': k, 'scale': scale, 'bytes': self.sizes[(k, scale)],
                     'shape': list(self.scaled[scale].shape),
                     'encode_ms': ms(('frame_encode', k, scale)),
                     'decode_ms': ms(('frame_decode', k, scale)),
                     'edge_ms': ms(('edge_side', HOST_ONLY, k, scale), None),
                     'host_ms': ms(('host_side', HOST_ONLY, k, scale), None)}
                    for k, scale in self.frames],
            edge_only_ms=ms(('edge_side', EDGE_ONLY), None),
            defense_ms={name: ms(('defense', name)) for name in self.defenses},
            repeats=self.rounds, warmup=warmup,
            machine={**machine_info(), 'burst': self.burst, 'clock': self.clock,
                     'stat': self.watch.stat, 'jpeg_quality': self.quality,
                     'frame_jpeg_quality': self.frame_quality},
            nodes={k: summarize_times(v, self.watch.stat)
                   for k, v in self.node_timer.samples.items()})


def measure_profile(model: nn.Module, frame: np.ndarray | None = None,
                    input_shape: Sequence[int] | None = None, model_name: str = '',
                    codecs: Sequence[str] | None = None,
                    frame_codecs: Sequence[str] | None = None,
                    repeats: int = 10, warmup: int = 2, burst: int | None = None,
                    clock: str = 'wall', stat: str = 'median', progress=None,
                    quality: int | None = None, frame_quality: int | None = None,
                    defenses: dict[str, nn.Module] | None = None) -> Profile:
    """
    Measure a model on this machine: every cut's head and tail, codecs, the frame path.

    ``frame`` is a ``bgr8`` camera frame (default :func:`frame_for` the
    input); ``input_shape`` the model's ``(C, H, W)``;
    ``codecs`` the feature codecs (default all of ``core.codecs``),
    ``frame_codecs`` those of the host-only path (default ``raw`` and the
    image codecs that work here). Each round times every stage once, in
    pipeline order (preprocess, head, each codec's encode and decode, tail;
    each frame codec then the whole model), and every node of the graph
    (:attr:`Profile.nodes`). For models under 5 ms (default ``burst`` 3;
    1 above), where microseconds count, each side of every path (edge:
    preprocess, head, encode; host: decode, tail) then runs ``burst`` times
    in a row, the first untimed, timed whole as it runs in service
    (:func:`run_sides`): these side times are what the planner uses. Times
    are medians over ``repeats`` rounds after ``warmup`` rounds, by the
    ``clock`` 'wall' or 'cpu' (this process's CPU time: latency on an
    unloaded machine when torch runs one thread); ``stat`` may ask for a low
    percentile instead of the median (see :func:`summarize_times`). ``quality`` and
    ``frame_quality`` are the JPEG qualities of the ``jpeg`` feature and frame
    codecs (default: the codec's own), as the edge will send them: sizes, and
    so transfer times, depend on them. ``defenses`` (name -> module): each is
    timed on the model input (:attr:`Profile.defense_ms`); the frame path is
    timed at both :data:`.frames.FRAME_SCALES`.
    """
    if input_shape is None:
        raise ValueError('input_shape (C, H, W) is required')
    session = ProfileSession(model, frame, input_shape, codecs, frame_codecs, burst,
                             model_name, clock, stat, quality, frame_quality, defenses)
    run_rounds([session], repeats, warmup, progress)
    return session.result(warmup)


def _encoding(image: np.ndarray) -> str:
    return 'mono8' if image.ndim == 2 else 'bgr8'


def host_only_sides(model: nn.Module, frame: np.ndarray, input_shape: Sequence[int],
                    coder: tuple[Callable, Callable], scale: str) -> tuple[Callable, Callable]:
    """
    Return ``(edge, host)`` of the host-only path of a frame (:func:`frame_codec`'s coder).

    Edge: the image at ``scale``, encoded; host: decoded, prepared, the whole
    model (the defense is timed apart, :attr:`Profile.defense_ms`).
    """
    encode, decode = coder

    def edge():
        return encode(sent_image(frame, 'bgr8', input_shape, scale))

    def host(sent):
        image = decode(*sent)
        return model(preprocess(image, input_shape, _encoding(image)))
    return edge, host


@torch.no_grad()
def node_times(traced: Traced, example_input, repeats: int = 5, warmup: int = 1,
               clock: str = 'wall') -> dict:
    """
    Return ``{node name: ms}``: each activation node's median time here (Neurosurgeon-style).

    Nodes run one by one in an ``fx.Interpreter``, so the sum is a little above
    the model's own time (a few microseconds per node).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f'need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}')
    timer = _NodeTimer(traced, get_clock(clock))
    args = example_args(example_input)
    for r in range(warmup + repeats):
        timer.recording = r >= warmup
        timer.run(*args)
    return {name: statistics.median(v) for name, v in timer.samples.items()}
