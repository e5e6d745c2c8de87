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
The split pipeline's two stages, shared by the ROS nodes, the demo and the benchmarks.

Edge: camera frame -> preprocess -> defense -> head (up to the cut) -> encode.
Host: decode -> check -> tail (from the cut named in the message) -> class scores.

Besides the target's own cuts (:func:`core.surgery.cuts`; ``input`` sends
the preprocessed, defended model input), two wire cuts name the ends:

- ``frame`` (host-only): the edge sends the camera frame itself, encoded with
  an image codec (``raw``, ``jpeg``, ``deepn_jpeg``); the host preprocesses it
  and applies the defense named in the message;
- ``output`` (edge-only): the edge runs the whole model and sends the logits.

Every message carries the target's hash (``model=``); the host refuses a
message from another model. Errors are :class:`PipelineError` with a
``kind`` that the nodes count in their diagnostics.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import codecs, data, defenses, models, surgery, wire
from .bundle import Bundle
from .datasets import read_labels
from .frames import FRAME_SCALES, Preparation, preprocess, sent_image

FRAME_CUT = 'frame'
OUTPUT_CUT = 'output'
DEFAULT_DEFENSE = 'dunet_d'
DEFAULT_CODEC = 'jpeg'
DEFAULT_CUT = 'layer1'
DEFAULT_QUALITY = 5          # with the shipped fine-tuned tail: 112x at -0.49 pt (layer1)
DEFAULT_FRAME_QUALITY = 90    # host-only: JPEG of the camera frame
ERROR_KINDS = ('bad_image', 'codec', 'unknown_cut', 'model_mismatch', 'shape_mismatch',
               'bad_defense', 'inference')
MAX_FRAME_PIXELS = 1920 * 1200  # camera frames larger than this are refused (edge and host)
TAIL_CACHE = 8                  # fine-tuned tails a host keeps loaded
DENOISER_INPUT = (1, data.INPUT_SIZE, data.INPUT_SIZE)   # what the shipped denoisers take
_DEVICE = re.compile(r'(cpu|cuda(:[0-9]{1,2})?)\Z')

# A module runner: (stage name, module, input) -> output. The nodes pass one that
# submits the module's blocks to the scheduler at their callback group's priority.
Runner = Callable[[str, nn.Module, torch.Tensor], torch.Tensor]
# A tail lookup: (cut, codec, quality) -> the host's fine-tuned tail, or None where none is
# shipped for these settings (the plain split tail serves them; see core.tails).
TailLookup = Callable[[str, str, int | None], nn.Module | None]


class PipelineError(ValueError):
    """A frame or message the pipeline cannot serve; ``kind`` is one of ``ERROR_KINDS``."""

    def __init__(self, kind: str, reason: str):
        if kind not in ERROR_KINDS:
            raise ValueError(f'unknown error kind {kind!r}; expected one of {ERROR_KINDS}')
        super().__init__(' '.join(str(reason).split()))
        self.kind = kind


def _direct(stage: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


def check_device(device: str) -> torch.device:
    """
    Return ``device`` (``cpu``, ``cuda`` or ``cuda:N``) as a torch device, if this machine has it.

    Raises ValueError with a one-line reason otherwise (not a device name, no CUDA
    GPU visible to torch, no GPU of that index).
    """
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if device.startswith('cuda'):
        if not torch.cuda.is_available():
            raise ValueError(f'device {device!r} asked for, but torch sees no CUDA GPU here')
        index = int(device.split(':')[1]) if ':' in device else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f'device {device!r} asked for, but torch sees '
                             f'{torch.cuda.device_count()} CUDA GPU(s)')
    return torch.device(device)


class Target:
    """
    The target classifier with its cuts and hash; both stages hold one.

    Head/tail pairs are split once per cut and cached (thread-safe).
    """

    def __init__(self, name: str = models.DEFAULT_MODEL, weights: str | None = None,
                 device: str = 'cpu', bundle: str | None = None, labels: str | None = None,
                 preparation: Preparation | None = None, num_classes: int | None = None):
        """
        Load a target by name (registry or ``.pt2``) and weights, or from a ``bundle`` folder.

        A bundle names the model, its weights (hash-checked), class count, input
        shape, frame preparation and labels; ``labels`` (a file, one per line)
        overrides the bundle's or the default target's class names.
        """
        self.bundle = Bundle.load(bundle) if bundle else None
        if self.bundle is not None:
            spec = self.bundle.target
            name = spec['model']
            if name.endswith('.pt2'):
                name = str(self.bundle.check_file(name))
            weights = str(self.bundle.check_file(spec['weights'])) if spec.get('weights') \
                else None
            num_classes = spec.get('num_classes')
            preparation = Preparation.from_dict(spec.get('preparation', {}))
            shape = tuple(int(d) for d in spec['input'])
        else:
            shape = tuple(models.input_shape(name))
        self.name = name
        self.device = check_device(device)
        self.input_shape = shape
        self.preparation = (preparation or Preparation()).channels(shape[0])
        self.model = models.build_target(name, weights or None, num_classes,
                                         self.preparation.mean, self.preparation.std)
        self.model = models.eval_mode(self.model.to(self.device))   # a .pt2's refuses .eval()
        self.hash = models.state_hash(self.model)
        example = torch.zeros(1, *self.input_shape, device=self.device)
        self.traced = surgery.trace(self.model, example)
        self.cuts = {(c.label or c.name): c for c in self.traced.cuts}  # by label: layer1
        self._halves: dict[str, tuple[nn.Module, nn.Module]] = {}
        self._lock = threading.Lock()
        if labels:
            self.labels = tuple(read_labels(labels))
        elif self.bundle is not None:
            self.labels = tuple(self.bundle.labels() or ()) or None
        else:
            self.labels = data.CLASSES if name == models.DEFAULT_MODEL else None
        n_out = int(self.traced.output_shape[-1])
        if self.labels is not None and len(self.labels) != n_out:
            raise ValueError(f'{len(self.labels)} labels for a model with {n_out} classes')

    def wire_cuts(self) -> tuple[str, ...]:
        """Return every cut a message may name: frame, the model's cuts, output."""
        return (FRAME_CUT, *self.cuts, OUTPUT_CUT)

    def check_cut(self, cut: str) -> str:
        """Return the wire name (label) of ``cut`` (a node name or label); raise if unknown."""
        if cut in (FRAME_CUT, OUTPUT_CUT):
            return cut
        try:
            found = self.traced.cut(cut)
            return found.label or found.name
        except ValueError as exc:
            raise PipelineError('unknown_cut', f'{cut!r} is not a cut of {self.name}: '
                                               f'{exc}') from None

    def halves(self, cut: str) -> tuple[nn.Module, nn.Module]:
        """Return ``(head, tail)`` at a model cut (``tail(head(x)) == model(x)``)."""
        cut = self.check_cut(cut)
        if cut == OUTPUT_CUT:
            return self.model, nn.Identity()
        if cut == FRAME_CUT:
            return nn.Identity(), self.model
        with self._lock:
            if cut not in self._halves:
                head, tail = surgery.split_traced(self.traced, cut)
                self._halves[cut] = (head.eval(), tail.eval())
            return self._halves[cut]

    def feature_shape(self, cut: str) -> tuple[int, ...]:
        """Return the shape of one sample's tensor at a cut (no batch dimension)."""
        cut = self.check_cut(cut)
        if cut == OUTPUT_CUT:
            return tuple(self.traced.output_shape[1:])
        if cut == FRAME_CUT:
            raise ValueError('the frame cut carries an image of any size')
        return tuple(self.cuts[cut].shape[1:])

    def preprocess(self, frame: np.ndarray, encoding: str) -> torch.Tensor:
        """Turn a camera frame into the model input ``(1, C, H, W)``."""
        try:
            x = preprocess(frame, self.input_shape, encoding, self.preparation)
        except ValueError as exc:
            raise PipelineError('bad_image', str(exc)) from None
        return x.to(self.device)

    def classify(self, logits: torch.Tensor, top_k: int = 3) -> dict:
        """Return ``class_id``, ``label``, ``score`` and ``top_k`` of one sample's logits."""
        probs = torch.softmax(logits.reshape(-1).float(), 0)
        k = min(top_k, probs.numel())
        scores, ids = probs.topk(k)
        label = (lambda i: self.labels[i] if self.labels else str(i))
        top = [{'class_id': int(i), 'label': label(int(i)), 'score': round(float(s), 5)}
               for s, i in zip(scores, ids)]
        return {'class_id': top[0]['class_id'], 'label': top[0]['label'],
                'score': top[0]['score'], 'top_k': top}


def build_defense(name: str, target: Target) -> nn.Module:
    """
    Build a defense for a target: ``jpeg`` for any input; the denoisers from its bundle.

    Without a bundle, the shipped denoisers serve the default 1x28x28 input only.
    """
    try:
        module = defenses.build_defense(name, bundle=target.bundle)
    except (ValueError, FileNotFoundError) as exc:
        raise PipelineError('bad_defense', str(exc)) from None
    if name in ('dunet', 'dunet_d'):
        c = module.cfg.in_channels
        if c != target.input_shape[0] or (target.bundle is None and
                                          target.input_shape != DENOISER_INPUT):
            raise PipelineError('bad_defense', f'defense {name} here takes {c}-channel '
                                               f'{module.cfg.input_size}-pixel inputs, the '
                                               f'target {target.name} takes '
                                               f'{target.input_shape}; use a bundle trained '
                                               f'for it (edge-denoise train denoiser --out B)')
    return module.to(target.device).eval()


def defenses_for(target: Target) -> tuple[str, ...]:
    """Return the defenses a target can use: its bundle's denoisers, jpeg and none."""
    return usable_defenses(target.input_shape, target.bundle)


def usable_defenses(input_shape: Sequence[int], bundle: Bundle | None = None
                    ) -> tuple[str, ...]:
    """
    Return the defenses an input can use: jpeg, none and the denoisers that fit it.

    The denoisers are ``bundle``'s; without one, the shipped ones, at 1x28x28 only.
    """
    names = []
    for name in defenses.defense_names():
        if name in ('dunet', 'dunet_d'):
            if bundle is not None:
                if name not in bundle.card.get('denoisers', {}):
                    continue
            elif tuple(input_shape) != DENOISER_INPUT:
                continue
        names.append(name)
    return tuple(names)


def defense_modules(target: Target) -> dict[str, nn.Module]:
    """Return every defense the target can use but ``none``, built: what profiles time."""
    return {name: build_defense(name, target) for name in defenses_for(target) if name != 'none'}


@dataclass(frozen=True)
class EdgeSettings:
    """What the edge does with a frame: defense, cut, codec, JPEG qualities."""

    defense: str = DEFAULT_DEFENSE
    cut: str = DEFAULT_CUT
    codec: str = DEFAULT_CODEC
    quality: int = DEFAULT_QUALITY              # features (codec jpeg)
    frame_quality: int = DEFAULT_FRAME_QUALITY  # camera frames (cut frame, codec jpeg)
    frame_scale: str = 'camera'  # cut frame: send the frame as captured, or at the model's size


@dataclass
class EdgeOutput:
    """One frame's result at the edge: the payload and its meta data."""

    payload: bytes
    meta: dict
    denoised: torch.Tensor | None = None


class EdgeStage:
    """Camera frame -> defense -> head -> encode, with settings that may change live."""

    def __init__(self, target: Target, settings: EdgeSettings = EdgeSettings(),
                 runner: Runner = _direct):
        self.target = target
        self.runner = runner
        self._defenses: dict[str, nn.Module] = {}
        self.settings = EdgeSettings()
        self.configure(settings)

    def configure(self, settings: EdgeSettings) -> EdgeSettings:
        """Check and apply new settings (raises PipelineError/ValueError, keeps the old)."""
        cut = self.target.check_cut(settings.cut)
        known = wire.FRAME_CODECS if cut == FRAME_CUT else wire.FEATURE_CODECS
        if settings.codec not in known:
            raise ValueError(f'codec {settings.codec!r} cannot carry cut {cut!r}; expected one '
                             f'of {known}')
        if cut == OUTPUT_CUT and settings.codec != 'raw':
            raise ValueError('the output cut (edge-only) sends logits with codec raw')
        for q in (settings.quality, settings.frame_quality):
            wire.check_quality(q)
        if settings.frame_scale not in FRAME_SCALES:
            raise ValueError(f'frame_scale must be one of {FRAME_SCALES}, got '
                             f'{settings.frame_scale!r}')
        if settings.defense not in self._defenses:
            self._defenses[settings.defense] = build_defense(settings.defense, self.target)
        self.target.halves(cut)  # split now, not on the first frame
        self.settings = EdgeSettings(settings.defense, cut, settings.codec, int(settings.quality),
                                     int(settings.frame_quality), settings.frame_scale)
        return self.settings

    @property
    def defense(self) -> nn.Module:
        """Return the current defense module."""
        return self._defenses[self.settings.defense]

    @torch.no_grad()
    def denoise(self, frame: np.ndarray, encoding: str) -> torch.Tensor:
        """Preprocess and defend one frame: the denoiser's part, ``(1, C, H, W)``."""
        x = self.target.preprocess(frame, encoding)
        if self.settings.cut == FRAME_CUT:
            return x  # host-only: the host defends
        return self.runner('denoiser', self.defense, x)

    @torch.no_grad()
    def head_encode(self, x: torch.Tensor, settings: EdgeSettings | None = None) -> EdgeOutput:
        """Run the head on a defended input and encode the cut's tensor."""
        s = settings or self.settings
        head, _ = self.target.halves(s.cut)
        feature = self.runner('target', head, x)[0]
        options = codecs.jpeg_options(s.codec, s.quality)
        return self._encode(feature, s, options)

    def frame_image(self, frame: np.ndarray, encoding: str,
                    settings: EdgeSettings | None = None) -> np.ndarray:
        """
        Host-only: the image the edge sends, as OpenCV holds it.

        ``frame_scale`` camera: the frame as captured (checked that the host's
        preparation can use it); model: already at the model's input size by
        the target's preparation (:func:`.frames.model_size_image`), so a 96x96
        model's frame goes up as 96x96 pixels whatever the camera's size.
        """
        s = settings or self.settings
        t = self.target
        try:
            return sent_image(frame, encoding, t.input_shape, s.frame_scale, t.preparation)
        except ValueError as exc:
            raise PipelineError('bad_image', str(exc)) from None

    def encode_frame(self, frame: np.ndarray, encoding: str,
                     settings: EdgeSettings | None = None) -> EdgeOutput:
        """Host-only: encode the camera frame (at ``frame_scale``) with an image codec."""
        s = settings or self.settings
        return self.encode_image(self.frame_image(frame, encoding, s), s)

    def encode_image(self, image: np.ndarray, settings: EdgeSettings | None = None) -> EdgeOutput:
        """Host-only: encode an image :meth:`frame_image` returned."""
        s = settings or self.settings
        out = self._encode(image, s, codecs.jpeg_options(s.codec, s.frame_quality))
        out.meta['defense'] = s.defense
        return out

    def process(self, frame: np.ndarray, encoding: str) -> EdgeOutput:
        """Run the whole edge stage on one camera frame."""
        s = self.settings
        if s.cut == FRAME_CUT:
            return self.encode_frame(frame, encoding, s)
        x = self.denoise(frame, encoding)
        out = self.head_encode(x, s)
        out.denoised = x
        return out

    def _encode(self, value, s: EdgeSettings, options: dict) -> EdgeOutput:
        try:
            payload, meta = codecs.encode(value, s.codec, cut=s.cut, model=self.target.hash,
                                          **options)
        except wire.CodecError as exc:
            raise PipelineError('codec', str(exc)) from None
        return EdgeOutput(payload, meta)


_IDENTITY = nn.Identity()


class HostStage:
    """
    Check -> decode -> tail -> class scores, for messages of any cut of one target.

    :meth:`process` is three steps that a batching host may run apart:
    :meth:`check` (the format, the model, the cut, the declared shape against
    the cut's, the frame size cap: nothing decoded yet), :meth:`prepare` (the
    payload decoded into one sample on the target's device) and
    :meth:`tail_for` (the module that finishes it). Everything a message may
    select is built at start (every cut's tail, every defense, the shipped
    fine-tuned tails), so no message costs a build; the fine-tuned tails in
    use are cached, at most ``TAIL_CACHE`` of them.
    """

    def __init__(self, target: Target, max_bytes: int | None = None,
                 tails: TailLookup | None = None,
                 max_frame_pixels: int = MAX_FRAME_PIXELS):
        self.target = target
        self.max_bytes = max_bytes
        self.max_frame_pixels = max_frame_pixels
        self._tail_cache: OrderedDict[tuple, nn.Module] = OrderedDict()
        names = defenses_for(target)
        self._frame_models = {name: nn.Sequential(build_defense(name, target), target.model)
                              for name in names}
        self._warm(target.wire_cuts(), [(name,) for name in names])
        self.set_tails(tails)

    @torch.no_grad()
    def _warm(self, cuts, frame_models) -> None:
        """Split every cut and run every module once: no message pays a first-use cost."""
        x = torch.zeros(1, *self.target.input_shape, device=self.target.device)
        for cut in cuts:
            if cut not in (FRAME_CUT, OUTPUT_CUT):
                head, tail = self.target.halves(cut)
                tail(head(x))
        for (name,) in frame_models:
            self._frame_models[name](x)

    def set_tails(self, tails: TailLookup | None) -> None:
        """Change the tail lookup (None: the plain split tails); load what it ships."""
        self._tails = tails
        self._tail_cache = OrderedDict()
        x = torch.zeros(1, *self.target.input_shape, device=self.target.device)
        for cut, codec, quality in getattr(tails, 'shipped', ()):
            with torch.no_grad():
                self.tail(cut, codec, quality)(self.target.halves(cut)[0](x))

    def tail(self, cut: str, codec: str, quality: int | None) -> nn.Module:
        """Return the tail for a message's settings (a fine-tuned one where shipped)."""
        if self._tails is None or cut in (FRAME_CUT, OUTPUT_CUT):
            return self.target.halves(cut)[1]
        key = (cut, codec, codecs.codec_quality(codec, quality))
        if key in self._tail_cache:
            self._tail_cache.move_to_end(key)
            return self._tail_cache[key]
        tail = self._tails(*key)
        if tail is None:            # nothing shipped for these settings: the plain tail
            return self.target.halves(cut)[1]
        self._tail_cache[key] = tail.to(self.target.device).eval()
        while len(self._tail_cache) > TAIL_CACHE:
            self._tail_cache.popitem(last=False)
        return self._tail_cache[key]

    def check(self, fmt: str | Mapping) -> dict:
        """Return a message's checked meta data; nothing of the payload is touched."""
        try:
            meta = wire.parse_format(fmt) if isinstance(fmt, (str, bytes)) else \
                wire.check_meta(fmt)
        except wire.CodecError as exc:
            raise PipelineError('codec', str(exc)) from None
        if meta.get('model') != self.target.hash:
            raise PipelineError('model_mismatch', f'message from model {meta.get("model")}, '
                                                  f'this host runs {self.target.hash}')
        if 'cut' not in meta:
            raise PipelineError('unknown_cut', 'message names no cut')
        cut = meta['cut'] = self.target.check_cut(meta['cut'])
        shape = tuple(meta['shape'])
        if cut == FRAME_CUT:
            if meta['dtype'] != 'uint8':
                raise PipelineError('shape_mismatch', f'cut frame carries a uint8 image, the '
                                                      f'message {meta["dtype"]} values')
            pixels = shape[0] * shape[1]
            if pixels > self.max_frame_pixels:
                raise PipelineError('bad_image', f'frame of {shape[1]}x{shape[0]} pixels is '
                                                 f'over the cap of {self.max_frame_pixels}')
            name = meta.get('defense', 'none')
            if name not in self._frame_models:
                raise PipelineError('bad_defense', f'unknown defense {name!r} for this host; '
                                                   f'expected one of {tuple(self._frame_models)}')
            return meta
        want = self.target.feature_shape(cut)
        if shape != want or meta['dtype'] == 'uint8':
            raise PipelineError('shape_mismatch', f'cut {cut} carries {want} float values, '
                                                  f'the message declares {shape} '
                                                  f'{meta["dtype"]}')
        return meta

    @torch.no_grad()
    def prepare(self, payload, meta: dict) -> torch.Tensor:
        """Decode a checked message into one sample on the device (a frame: the model input)."""
        try:
            value = codecs.decode(payload, meta, self.max_bytes)
        except wire.CodecError as exc:
            raise PipelineError('codec', str(exc)) from None
        if meta['cut'] == FRAME_CUT:
            encoding = 'mono8' if value.ndim == 2 or value.shape[2] == 1 else 'bgr8'
            return self.target.preprocess(value.reshape(value.shape[:2]) if encoding == 'mono8'
                                          else value, encoding)[0]
        return value.float().to(self.target.device)

    def tail_for(self, meta: dict) -> nn.Module:
        """Return the module that finishes a checked message's sample."""
        if meta['cut'] == FRAME_CUT:
            return self._frame_models[meta.get('defense', 'none')]
        if meta['cut'] == OUTPUT_CUT:
            return _IDENTITY
        return self.tail(meta['cut'], meta['codec'], meta.get('quality'))

    @torch.no_grad()
    def process(self, payload, fmt: str | Mapping) -> tuple[torch.Tensor, dict]:
        """Return ``(logits, meta)`` of one message; raise PipelineError on bad input."""
        meta = self.check(fmt)
        x = self.prepare(payload, meta)
        return self.tail_for(meta)(x[None])[0], meta


def result_record(target: Target, logits: torch.Tensor, top_k: int = 3) -> dict:
    """Return the JSON-able classification of one sample (what ``classification`` carries)."""
    if not torch.isfinite(logits).all():
        raise PipelineError('inference', 'the tail produced NaN or infinite scores')
    return target.classify(logits, top_k)
