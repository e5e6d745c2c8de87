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
DNN surgery: cut a classifier into an edge head and a host tail, and pick the cut.

The model is traced with ``torch.fx`` (``torch.export`` graphs, e.g. from a
``.pt2`` file, are used as they are). A *cut* is a position in topological
order where exactly one activation tensor is alive: everything before it
feeds the rest only through that tensor, so ``tail(head(x)) == model(x)``
with a single tensor on the wire. Parameters, buffers and values computed
from them alone are not activations: both sides may hold them. Residual and
inception blocks are therefore cut only at their boundaries (in a DAG the
cuts are exactly the tensors that dominate the output).

The planner follows the seed's transfer model with measured parts::

    T = edge(cut) + encode + bytes / uplink + decode + host(cut)
        + result / downlink + rtt

over every (cut, codec) pair, plus *host-only* (send the camera frame, raw
or as an image codec) and *edge-only* (no link at all). Edge and host times
come from measured :class:`Profile` s (median of repeats, warm-up excluded):
one measured here and declared ``k`` times slower, or one measured on the
robot itself (``edge-denoise profile``). :func:`min_cut` solves the DADS
partition over all node sets, which may cut across branches.

Typical use on an edge node::

    planner = surgery.make_planner(model, (1, 28, 28), surgery.Link(uplink_mbps=45),
                                   edge_profile='edge.json')  # or edge_slowdown=10
    choice = planner.choice                 # Candidate: .kind .cut .codec .total_ms(link)
    head, _ = surgery.split(model, choice.cut, x)       # when choice.kind == 'split'
    choice = planner.update(uplink_mbps=estimate)       # re-plan, with hysteresis
"""

from __future__ import annotations

import functools
import gc
import json
import math
import operator
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .fxguard import FX_GUARD

PROFILE_FORMAT = 'edge_denoise/profile/1'
EDGE_ONLY = 'edge_only'
HOST_ONLY = 'host_only'
SPLIT = 'split'
INPUT_CUT = 'input'
# The seed's classification result: 25 bytes for ResNet50.
RESULT_BYTES = 25


# --------------------------------------------------------------------------- cuts

@dataclass(frozen=True)
class Cut:
    """
    One valid cut: the edge computes up to ``name`` and sends that one tensor.

    ``index`` counts the graph's operations run on the edge side (0 at the
    input, "after the k-th layer" in the seed's words); ``bytes`` is the
    tensor's size as float32; the shares are the edge side's fraction of the
    model's multiply-accumulates and parameters.
    """

    name: str
    index: int
    shape: tuple[int, ...]
    bytes: int
    edge_mac_share: float
    edge_param_share: float
    label: str = ''
    edge_macs: int = 0

    def as_dict(self) -> dict:
        """Return a JSON-able dict."""
        d = asdict(self)
        d['shape'] = list(self.shape)
        return d


@dataclass
class Traced:
    """A traced model, its activation liveness and its cuts (see :func:`trace`)."""

    module: torch.fx.GraphModule
    nodes: list
    cuts: list[Cut]
    total_macs: int
    total_params: int
    output_shape: tuple[int, ...]
    _node_of: dict = field(default_factory=dict, repr=False)
    dynamic: set = field(default_factory=set, repr=False)    # nodes computed from the input
    needed: set = field(default_factory=set, repr=False)     # nodes the output depends on
    shapes: dict = field(default_factory=dict, repr=False)   # node -> tensor shape

    def cut(self, name: str | Cut) -> Cut:
        """Return the cut named ``name`` (node name or label); raise ValueError if none."""
        key = name.name if isinstance(name, Cut) else str(name)
        for c in self.cuts:
            if key in (c.name, c.label):
                return c
        names = ', '.join(c.name for c in self.cuts[:8])
        raise ValueError(f'no cut named {key!r}; expected one of {len(self.cuts)} cuts '
                         f'({names}{", ..." if len(self.cuts) > 8 else ""})')


def _as_args(example_input) -> tuple:
    if isinstance(example_input, torch.Tensor):
        return (example_input,)
    if isinstance(example_input, (tuple, list)) and all(
            isinstance(t, torch.Tensor) for t in example_input) and example_input:
        return tuple(example_input)
    raise ValueError(f'example_input must be a tensor (or a tuple of tensors), '
                     f'got {type(example_input).__name__}')


def _graph_module(model: nn.Module, args: tuple) -> torch.fx.GraphModule:
    """Return a GraphModule of ``model``: as is, by ``torch.fx``, else by ``torch.export``."""
    if isinstance(model, torch.fx.GraphModule):
        return model
    if not isinstance(model, nn.Module):
        raise ValueError(f'expected an nn.Module, got {type(model).__name__}')
    with FX_GUARD.tracing():
        try:
            return torch.fx.symbolic_trace(model)
        except Exception as fx_error:  # data-dependent control flow: try torch.export
            try:
                return torch.export.export(model, args, strict=False).module()
            except Exception as export_error:
                raise ValueError(f'cannot trace {type(model).__name__}: torch.fx said '
                                 f'{fx_error}; torch.export said {export_error}'
                                 ) from export_error


def _scopes(node) -> list[str]:
    """Return the module paths enclosing a node, outermost first (root excluded)."""
    stack = node.meta.get('nn_module_stack') or {}
    paths = []
    for value in stack.values():
        path = value[0] if isinstance(value, tuple) else str(value)
        path = str(path).removeprefix('L__self__').lstrip('._')
        if path and path not in paths:
            paths.append(path)
    return paths


def _conv_macs(out_shape, weight_shape, transposed=False, in_shape=None) -> int:
    if transposed and in_shape is not None:
        # every input element meets c_out/groups * prod(kernel) weights
        return math.prod(in_shape) * weight_shape[1] * math.prod(weight_shape[2:])
    return math.prod(out_shape) * weight_shape[1] * math.prod(weight_shape[2:])


_MATMUL_FUNCS = {torch.matmul, operator.matmul, torch.mm, torch.bmm}
_CONV_FUNCS = {torch.conv1d, torch.conv2d, torch.conv3d,
               nn.functional.conv1d, nn.functional.conv2d, nn.functional.conv3d}
_TCONV_FUNCS = {torch.conv_transpose1d, torch.conv_transpose2d, torch.conv_transpose3d,
                nn.functional.conv_transpose1d, nn.functional.conv_transpose2d,
                nn.functional.conv_transpose3d}


def _node_macs(gm, node, shapes: dict) -> int:
    """Return the multiply-accumulates of one node (convolutions, linear, matmul, attention)."""
    out = shapes.get(node)
    if out is None:
        return 0

    def arg_shape(i):
        a = node.args[i] if len(node.args) > i else None
        return shapes.get(a) if isinstance(a, torch.fx.Node) else None

    if node.op == 'call_module':
        m = gm.get_submodule(node.target)
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return _conv_macs(out, m.weight.shape)
        if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            return _conv_macs(out, m.weight.shape, True, arg_shape(0))
        if isinstance(m, nn.Linear):
            return math.prod(out) * m.in_features
        if isinstance(m, nn.MultiheadAttention):
            q = arg_shape(0)
            if q is None:
                return 0
            e, tokens = m.embed_dim, math.prod(q[:-1])
            seq = q[1] if m.batch_first and len(q) == 3 else q[0]
            return 4 * tokens * e * e + 2 * tokens * seq * e
        return 0
    if node.op != 'call_function':
        return 0
    name = str(getattr(node.target, '__name__', node.target))
    overload = str(node.target)
    if node.target in _CONV_FUNCS or overload.startswith(('aten.conv1d', 'aten.conv2d',
                                                          'aten.conv3d')):
        w = arg_shape(1)
        return _conv_macs(out, w) if w else 0
    if node.target in _TCONV_FUNCS or overload.startswith('aten.conv_transpose'):
        w = arg_shape(1)
        return _conv_macs(out, w, True, arg_shape(0)) if w else 0
    if overload.startswith('aten.convolution'):
        w = arg_shape(1)
        transposed = bool(node.args[6]) if len(node.args) > 6 else False
        return _conv_macs(out, w, transposed, arg_shape(0)) if w else 0
    if node.target is nn.functional.linear or overload.startswith('aten.linear'):
        w = arg_shape(1)
        return math.prod(out) * w[-1] if w else 0
    if node.target in _MATMUL_FUNCS or overload.startswith(('aten.matmul', 'aten.mm',
                                                            'aten.bmm')):
        a = arg_shape(0)
        return math.prod(out) * a[-1] if a else 0
    if overload.startswith(('aten.addmm', 'aten.baddbmm')):
        a = arg_shape(1)
        return math.prod(out) * a[-1] if a else 0
    if 'scaled_dot_product_attention' in name or 'scaled_dot_product' in overload:
        q, k = arg_shape(0), arg_shape(1)
        return 2 * math.prod(q) * k[-2] if q and k else 0
    return 0


def _node_params(gm, node, static: set, memo: dict) -> dict:
    """Return ``{id: numel}`` of the parameters a node reads (through static inputs too)."""
    if node in memo:
        return memo[node]
    found = {}
    if node.op == 'call_module':
        for p in gm.get_submodule(node.target).parameters():
            found[id(p)] = p.numel()
    elif node.op == 'get_attr':
        obj = gm
        for part in str(node.target).split('.'):
            obj = getattr(obj, part)
        if isinstance(obj, nn.Parameter):
            found[id(obj)] = obj.numel()
    for a in node.all_input_nodes:
        if a in static:
            found.update(_node_params(gm, a, static, memo))
    memo[node] = found
    return found


class _ShapeRecorder(torch.fx.Interpreter):
    """Run the graph once and keep every tensor's shape (values are not kept)."""

    def __init__(self, gm):
        super().__init__(gm)
        self.shapes = {}
        self.tensors = set()

    def run_node(self, n):
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            self.shapes[n] = tuple(out.shape)
            self.tensors.add(n)
        return out


@torch.no_grad()
def trace(model: nn.Module, example_input) -> Traced:
    """
    Trace ``model`` and list its cuts in topological order.

    A cut is placed after node ``v`` when ``v`` is the only activation
    (a value computed from the input) still needed later on; the model input
    itself is the first cut (``'input'``: the edge only preprocesses). The
    model's final output is not a cut: that is edge-only inference.
    """
    args = _as_args(example_input)
    gm = _graph_module(model, args)
    nodes = list(gm.graph.nodes)
    pos = {n: i for i, n in enumerate(nodes)}
    out_node = nodes[-1]
    if out_node.op != 'output':
        raise ValueError('traced graph has no output node')
    # Needed nodes: those the output (or a side effect) depends on.
    needed = set()
    stack = [out_node] + [n for n in nodes if n.op != 'output' and n.op != 'placeholder'
                          and not n.users and _impure(n)]
    while stack:
        n = stack.pop()
        if n in needed:
            continue
        needed.add(n)
        stack.extend(n.all_input_nodes)
    needed.update(n for n in nodes if n.op == 'placeholder')
    dynamic = set()
    for n in nodes:
        if n.op == 'placeholder' or any(a in dynamic for a in n.all_input_nodes):
            dynamic.add(n)
    static = set(nodes) - dynamic
    recorder = _ShapeRecorder(gm)
    recorder.run(*args)
    shapes = recorder.shapes
    # Liveness of activations: alive after position i when defined <= i < last use.
    alive_delta = [0] * (len(nodes) + 1)
    last_use = {}
    for n in nodes:
        if n not in dynamic or n not in needed or n is out_node:
            continue
        users = [pos[u] for u in n.users if u in needed]
        last = max(users, default=pos[n])
        last_use[n] = last
        if last > pos[n]:
            alive_delta[pos[n]] += 1
            alive_delta[last] -= 1
    macs_at, params_at = [], []
    macs, params, memo = 0, {}, {}
    for n in nodes:
        if n in dynamic and n in needed:
            macs += _node_macs(gm, n, shapes)
            params.update(_node_params(gm, n, static, memo))
        macs_at.append(macs)
        params_at.append(sum(params.values()))
    total_macs, total_params = max(macs, 1), max(sum(params.values()), 1)
    placeholders = [n for n in nodes if n.op == 'placeholder']
    found, alive, ops = [], 0, 0
    for i, n in enumerate(nodes[:-1]):
        alive += alive_delta[i]
        if n in dynamic and n in needed and n.op != 'placeholder':
            ops += 1
        if alive != 1:
            continue
        v = next((m for m in (n, *reversed(nodes[:i])) if m in last_use
                  and pos[m] <= i < last_use[m]), None)
        if v is None or v not in recorder.tensors or (found and found[-1][0] is v):
            continue
        if all(u is out_node for u in v.users if u in needed):
            continue  # the final output: edge-only
        found.append((v, i, ops))
    cut_list, node_of, labels = [], {}, {}
    for v, i, ops in found:
        is_input = v.op == 'placeholder' and len(placeholders) == 1
        name = INPUT_CUT if is_input else v.name
        label = INPUT_CUT if is_input else _label(v, nodes[i + 1:], needed, dynamic)
        labels[label] = labels.get(label, 0) + 1
        if labels[label] > 1:
            label = f'{label}@{labels[label] - 1}'
        shape = shapes[v]
        cut_list.append(Cut(
            name=name, index=ops, shape=shape, bytes=4 * math.prod(shape),
            edge_mac_share=macs_at[i] / total_macs,
            edge_param_share=params_at[i] / total_params,
            label=label, edge_macs=macs_at[i]))
        node_of[name] = v
    return Traced(module=gm, nodes=nodes, cuts=cut_list, total_macs=total_macs,
                  total_params=total_params,
                  output_shape=shapes.get(out_node.args[0], ()) if isinstance(
                      out_node.args[0], torch.fx.Node) else (),
                  _node_of=node_of, dynamic=dynamic, needed=needed, shapes=shapes)


def _impure(node) -> bool:
    try:
        return node.is_impure()
    except Exception:
        return False


def _label(v, later, needed, dynamic) -> str:
    """Return the outermost module whose last operation is ``v`` (else the node name)."""
    later_scopes = set()
    for m in later:
        if m in needed and m in dynamic:
            later_scopes.update(_scopes(m))
    for path in _scopes(v):
        if path not in later_scopes:
            return path
    return v.name


def cuts(model: nn.Module, example_input) -> list[Cut]:
    """Return the valid cuts of ``model`` in topological order (see :func:`trace`)."""
    return trace(model, example_input).cuts


def _pytree_codegen(gm, orig_args, in_example, out_example):
    """Return a pytree codegen like ``gm``'s, for new inputs/outputs; None if gm has none."""
    from torch.fx.graph import _PyTreeCodeGen, _PyTreeInfo
    from torch.utils import _pytree as pytree

    codegen = gm.graph._codegen
    if not isinstance(codegen, _PyTreeCodeGen) or codegen.pytree_info is None:
        return None
    info = codegen.pytree_info
    in_spec = info.in_spec if in_example is None else pytree.tree_flatten(in_example)[1]
    out_spec = info.out_spec if out_example is None else pytree.tree_flatten(out_example)[1]
    return _PyTreeCodeGen(_PyTreeInfo(orig_args if orig_args is not None else info.orig_args,
                                      in_spec, out_spec))


def split_traced(traced: Traced, cut: str | Cut) -> tuple[nn.Module, nn.Module]:
    """Split an already traced model at ``cut``; see :func:`split`."""
    c = traced.cut(cut)
    v = traced._node_of[c.name]
    p = traced.nodes.index(v)
    on_edge = {n for n in traced.nodes[:p + 1] if n in traced.dynamic}
    return _build_halves(traced, on_edge, [v], [c.name if c.name != INPUT_CUT else 'x'],
                         single=True)


def _build_halves(traced: Traced, on_edge: set, boundary: list, names: list[str],
                  single: bool) -> tuple[nn.Module, nn.Module]:
    """
    Return ``(head, tail)``: the ``on_edge`` nodes, and the other activations.

    The head returns the ``boundary`` tensors (one tensor when ``single``,
    else a tuple), the tail takes them in that order. Values computed from
    parameters alone are re-created on whichever side needs them.
    """
    gm, nodes, dynamic = traced.module, traced.nodes, traced.dynamic

    def copier(graph, env, side):
        def fetch(a):
            if a not in env:
                if a in dynamic:
                    raise ValueError(f'{a.name} is needed on the {side} but not sent to it')
                env[a] = graph.node_copy(a, fetch)
            return env[a]
        return fetch

    head_graph, env = torch.fx.Graph(), {}
    fetch = copier(head_graph, env, 'edge')
    for n in nodes:
        if n in on_edge:
            env[n] = head_graph.node_copy(n, fetch)
    outs = [env[b] for b in boundary]
    example = torch.empty(0) if single else tuple(torch.empty(0) for _ in boundary)
    codegen = _pytree_codegen(gm, None, None, example)
    if codegen is not None:
        head_graph.set_codegen(codegen)
        head_graph.output(tuple(outs))
    else:
        head_graph.output(outs[0] if single else tuple(outs))
    head = torch.fx.GraphModule(gm, head_graph, class_name='Head')
    _drop_unused(head)
    tail_graph, env = torch.fx.Graph(), {}
    for b, name in zip(boundary, names):
        env[b] = tail_graph.placeholder(name)
    fetch = copier(tail_graph, env, 'host')
    for n in nodes:
        if n in dynamic and n not in on_edge:
            env[n] = tail_graph.node_copy(n, fetch)
    codegen = _pytree_codegen(gm, [env[b].name for b in boundary],
                              (tuple(torch.empty(0) for _ in boundary), {}), None)
    if codegen is not None:
        tail_graph.set_codegen(codegen)
    tail = torch.fx.GraphModule(gm, tail_graph, class_name='Tail')
    _drop_unused(tail)
    head.training = tail.training = gm.training  # not recursive: modules are shared
    return head, tail


def _drop_unused(gm: torch.fx.GraphModule) -> None:
    for n in reversed(list(gm.graph.nodes)):
        if n.op == 'get_attr' and not n.users:
            gm.graph.erase_node(n)
    gm.graph.lint()
    gm.recompile()


def split(model: nn.Module, cut_name: str | Cut, example_input) -> tuple[nn.Module, nn.Module]:
    """
    Split ``model`` at a cut into ``(head, tail)`` with ``tail(head(x)) == model(x)``.

    ``cut_name`` is a :class:`Cut`, its node name or its label. Both halves
    are ``torch.fx.GraphModule`` s that share the model's parameters (no
    copy); the head takes the model's inputs and returns the cut tensor, the
    tail takes that tensor and returns the model's output. The operations are
    the model's own, in the same order, so the result is the same to the bit
    on the same device.
    """
    return split_traced(trace(model, example_input), cut_name)


# ----------------------------------------------------------------------- frames

def preprocess(frame: np.ndarray, input_shape: Sequence[int]) -> torch.Tensor:
    """
    Turn a ``bgr8`` camera frame ``(H, W, 3)`` into a model input ``(1, C, h, w)``.

    One channel: :func:`data.preprocess_frame` (gray, area resize, [0, 1]);
    three channels: area resize, BGR to RGB, [0, 1], ImageNet mean/std.
    """
    import cv2

    from . import data

    c, h, w = (int(d) for d in input_shape[-3:])
    if c == 1:
        if h != w:
            raise ValueError(f'gray inputs must be square, got {h}x{w}')
        return data.preprocess_frame(frame, 'bgr8', size=h)
    if c != 3:
        raise ValueError(f'expected a 1- or 3-channel input shape, got {tuple(input_shape)}')
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f'expected a uint8 (H, W, 3) bgr8 frame, got {frame.dtype} {frame.shape}')
    if frame.shape[:2] != (h, w):
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    rgb = np.ascontiguousarray(frame[:, :, ::-1], dtype=np.float32) / 255.0
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]             # (1, 3, h, w)
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def default_frame_size(input_shape: Sequence[int]) -> tuple[int, int]:
    """Return the camera frame ``(H, W)`` assumed for a model input: at least 224x224."""
    h, w = (int(d) for d in input_shape[-2:])
    return max(h, 224), max(w, 224)


def example_frame(size: Sequence[int] = (224, 224), seed: int = 0,
                  gray: bool = True) -> np.ndarray:
    """
    Return a ``bgr8`` camera frame ``(H, W, 3)`` to profile with.

    ``gray``: a Fashion-MNIST test image scaled up (nearest neighbour), what
    the default pipeline's camera sees (seeded noise if the data set is not
    installed). Otherwise a color image with the 1/f^1.2 amplitude spectrum
    of natural scenes (a 224x224 JPEG at quality 75 takes ~15 kB, like a
    photograph). Codec sizes depend on content: for real decisions, profile
    with a frame from the robot's camera.
    """
    import cv2

    from . import data

    h, w = (int(d) for d in size)
    if h <= 0 or w <= 0:
        raise ValueError(f'frame size must be positive, got {tuple(size)}')
    rng = np.random.default_rng(seed)
    if not gray:
        luma = _pink_noise(h, w, rng)
        planes = [luma + 0.4 * _pink_noise(h, w, rng) for _ in range(3)]
        return np.clip(128 + 45 * np.stack(planes, -1), 0, 255).astype(np.uint8)
    try:
        images, _ = data.load_fashion_mnist('test')
        small = images[seed % len(images)]
    except (FileNotFoundError, ValueError):
        small = (rng.random((28, 28)) * 255).astype(np.uint8)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    return np.repeat(big[:, :, None], 3, axis=2)


def _pink_noise(h: int, w: int, rng, alpha: float = 1.2) -> np.ndarray:
    """Return zero-mean, unit-variance noise ``(h, w)`` with a 1/f^alpha amplitude spectrum."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f ** alpha
    spectrum[0, 0] = 0.0
    img = np.fft.irfft2(spectrum, s=(h, w))
    return (img - img.mean()) / img.std()


def frame_for(input_shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Return the default example frame of a model input ``(C, H, W)``."""
    return example_frame(default_frame_size(input_shape), seed, gray=int(input_shape[-3]) == 1)


# --------------------------------------------------------------------- profiles

@dataclass
class Profile:
    """
    Measured times of one model on one machine (milliseconds, medians).

    ``cuts``: per cut ``name, label, index, shape, bytes, head_ms, tail_ms``;
    ``features``: per (cut, codec) ``cut, codec, bytes, encode_ms, decode_ms``
    (bytes of the real payload) and ``edge_ms``, ``host_ms``: each side of
    that pipeline timed whole (preprocess + head + encode; decode + tail),
    when measured; ``images``: per image codec of the host-only path
    ``codec, bytes, encode_ms, decode_ms, edge_ms, host_ms``; ``full_ms`` the
    whole model, ``preprocess_ms`` camera frame to model input,
    ``edge_only_ms`` both timed whole; ``nodes`` each graph node's time (for
    :func:`min_cut`). A profile measured on the
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


def summarize(values: Sequence[float], stat: str = 'median') -> float:
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


def _clock(name: str):
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


def _auto_burst(model, x) -> int:
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

    def span(self, key, t0: int, t1: int | None = None) -> None:
        """Record the time from ``t0`` to ``t1`` (readings of ``clock``; default now)."""
        if self.recording:
            t1 = self.clock() if t1 is None else t1
            self.samples.setdefault(key, []).append((t1 - t0) / 1e6)

    def median(self, key, default: float | None = 0.0) -> float | None:
        values = self.samples.get(key)
        return summarize(values, self.stat) if values else default


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


def _run_sides(edge: Callable, host: Callable | None, burst: int, clock) -> tuple:
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


def _run_rounds(sessions: Sequence, repeats: int, warmup: int, progress=None) -> None:
    """Run the sessions' rounds interleaved: warm-up rounds first, untimed."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f'need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}')
    total = warmup + repeats
    for r in range(total):
        # As timeit does: no garbage collection inside timed code (between rounds instead).
        enabled = gc.isenabled()
        gc.disable()
        try:
            for session in sessions:
                session.round(r >= warmup)
        finally:
            if enabled:
                gc.enable()
        gc.collect(0)
        if progress is not None:
            progress(r + 1, total, {'round': 'warm-up' if r < warmup else 'timed'})


def _codecs_module():
    from . import codecs
    return codecs


def jpeg_options(codec: str, quality: int | None) -> dict:
    """Return the encode options that give ``codec`` the JPEG ``quality`` (none for the others)."""
    return {'quality': int(quality)} if codec == 'jpeg' and quality is not None else {}


def _frame_codec(codec: str, quality: int | None = None) -> tuple[Callable, Callable]:
    """Return ``(encode, decode)`` of the host-only path (``core.codecs.FRAME_CODECS``)."""
    codecs = _codecs_module()
    if codec not in codecs.FRAME_CODECS:
        raise ValueError(f'unknown frame codec {codec!r}; expected one of {codecs.FRAME_CODECS}')
    options = jpeg_options(codec, quality)
    return (lambda frame: codecs.encode(frame, codec, **options)), codecs.decode


def feature_codecs() -> tuple[str, ...]:
    """Return the feature codecs the planner can use (``core.codecs.FEATURE_CODECS``)."""
    return tuple(_codecs_module().FEATURE_CODECS)


def image_codecs() -> tuple[str, ...]:
    """Return the host-only frame codecs: ``raw`` and the image codecs (``core.codecs``)."""
    return tuple(_codecs_module().FRAME_CODECS)


def _check_codecs(given, known, what) -> tuple[str, ...]:
    given = tuple(known if given is None else given)
    unknown = [c for c in given if c not in known]
    if unknown:
        raise ValueError(f'unknown {what} codec {unknown[0]!r}; expected one of {known}')
    return given


class _ProfileSession:
    """The state of one profile measurement; see :func:`measure_profile`."""

    def __init__(self, model, frame, input_shape, codecs, frame_codecs, burst, model_name,
                 clock='wall', stat='median', quality=None, frame_quality=None):
        codec_mod = _codecs_module()
        self.quality, self.frame_quality = quality, frame_quality
        self.clock = clock
        self.codec_mod, self.model, self.model_name = codec_mod, model, model_name
        self.input_shape = [int(d) for d in input_shape[-3:]]
        self.frame = frame_for(self.input_shape) if frame is None else frame
        self.codecs = _check_codecs(codecs, feature_codecs(), 'feature')
        self.encoders = {k: functools.partial(codec_mod.encode, **jpeg_options(k, quality))
                         for k in self.codecs}
        asked = frame_codecs is not None
        x = preprocess(self.frame, self.input_shape)              # (1, C, H, W)
        with torch.no_grad():
            self.traced = trace(model, x)
        self.halves = {c.name: split_traced(self.traced, c) for c in self.traced.cuts}
        self.sizes, self.frames = {}, {}
        for k in _check_codecs(frame_codecs, image_codecs(), 'image'):
            try:
                self.frames[k] = _frame_codec(k, frame_quality)
                self.sizes[k] = len(self.frames[k][0](self.frame)[0])
            except codec_mod.CodecError:
                if asked:
                    raise
                self.frames.pop(k, None)  # by default, those that work here
        self.burst = burst or _auto_burst(model, x)
        summarize([1.0], stat)  # check it early
        self.watch = _Stopwatch(_clock(clock), stat)
        self.node_timer = _NodeTimer(self.traced, _clock(clock))
        self.rounds = 0

    @torch.no_grad()
    def round(self, record: bool) -> None:
        watch, frame, shape, enc, dec = (self.watch, self.frame, self.input_shape,
                                         self.encoders, self.codec_mod.decode)
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
        for k, (frame_enc, frame_dec) in self.frames.items():
            sent = watch(('frame_encode', k), frame_enc, frame)
            got = watch(('frame_decode', k), frame_dec, *sent)
            watch('full', model, watch('preprocess', preprocess, got, shape))
        self.node_timer.recording = record  # node by node, for the min-cut
        self.node_timer.run(preprocess(frame, shape))
        if not whole:
            return

        def sides(key, edge, host):
            edge_ms, host_ms, _, _ = _run_sides(edge, host, self.burst, clock)
            if record:
                watch.samples.setdefault(('edge_side',) + key, []).extend(edge_ms)
                watch.samples.setdefault(('host_side',) + key, []).extend(host_ms)

        sides((EDGE_ONLY,), lambda: model(preprocess(frame, shape)), None)
        for name, (head, tail) in self.halves.items():
            for k in self.codecs:
                sides((name, k), lambda k=k, head=head: enc[k](head(preprocess(frame, shape)), k),
                      lambda sent, tail=tail: tail(dec(*sent)))
        for k, (frame_enc, frame_dec) in self.frames.items():
            sides((HOST_ONLY, k), lambda frame_enc=frame_enc: frame_enc(frame),
                  lambda sent, frame_dec=frame_dec: model(preprocess(frame_dec(*sent), shape)))

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
            images=[{'codec': k, 'bytes': self.sizes[k], 'encode_ms': ms(('frame_encode', k)),
                     'decode_ms': ms(('frame_decode', k)),
                     'edge_ms': ms(('edge_side', HOST_ONLY, k), None),
                     'host_ms': ms(('host_side', HOST_ONLY, k), None)} for k in self.frames],
            edge_only_ms=ms(('edge_side', EDGE_ONLY), None),
            repeats=self.rounds, warmup=warmup,
            machine={**machine_info(), 'burst': self.burst, 'clock': self.clock,
                     'stat': self.watch.stat, 'jpeg_quality': self.quality,
                     'frame_jpeg_quality': self.frame_quality},
            nodes={k: summarize(v, self.watch.stat)
                   for k, v in self.node_timer.samples.items()})


def measure_profile(model: nn.Module, frame: np.ndarray | None = None,
                    input_shape: Sequence[int] | None = None, model_name: str = '',
                    codecs: Sequence[str] | None = None,
                    frame_codecs: Sequence[str] | None = None,
                    repeats: int = 10, warmup: int = 2, burst: int | None = None,
                    clock: str = 'wall', stat: str = 'median', progress=None,
                    quality: int | None = None, frame_quality: int | None = None) -> Profile:
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
    (:func:`_run_sides`): these side times are what the planner uses. Times
    are medians over ``repeats`` rounds after ``warmup`` rounds, by the
    ``clock`` 'wall' or 'cpu' (this process's CPU time: latency on an
    unloaded machine when torch runs one thread); ``stat`` may ask for a low
    percentile instead of the median (see :func:`summarize`). ``quality`` and
    ``frame_quality`` are the JPEG qualities of the ``jpeg`` feature and frame
    codecs (default: the codec's own), as the edge will send them: sizes, and
    so transfer times, depend on them.
    """
    if input_shape is None:
        raise ValueError('input_shape (C, H, W) is required')
    session = _ProfileSession(model, frame, input_shape, codecs, frame_codecs, burst,
                              model_name, clock, stat, quality, frame_quality)
    _run_rounds([session], repeats, warmup, progress)
    return session.result(warmup)


# ------------------------------------------------------------------- cost model

@dataclass(frozen=True)
class Link:
    """The link between edge and host: speeds in Mbit/s, round trip in ms."""

    uplink_mbps: float = 45.0
    downlink_mbps: float = 100.0
    rtt_ms: float = 0.0
    result_bytes: int = RESULT_BYTES

    def __post_init__(self):
        if not (self.uplink_mbps > 0 and self.downlink_mbps > 0):
            raise ValueError(f'link speeds must be > 0 Mbit/s, got up {self.uplink_mbps}, '
                             f'down {self.downlink_mbps}')
        if not (self.rtt_ms >= 0 and self.result_bytes >= 0):
            raise ValueError(f'rtt_ms and result_bytes must be >= 0, got {self.rtt_ms}, '
                             f'{self.result_bytes}')


def transfer_ms(nbytes: float, mbps: float) -> float:
    """Return the time in ms to send ``nbytes`` at ``mbps`` Mbit/s (SI: 1 Mbit = 1e6 bit)."""
    return nbytes * 8.0 / (mbps * 1e3)


@dataclass(frozen=True)
class Candidate:
    """
    One way to run the model: ``kind`` is 'split', 'host_only' or 'edge_only'.

    ``cut`` is the cut's node name (what :func:`split` takes; None unless
    split), ``codec`` the feature codec (split) or frame codec (host-only);
    ``bytes`` go up the link. ``edge_ms`` is everything on the edge
    (preprocess, head, encode), ``host_ms`` everything on the host (decode,
    [preprocess,] tail), both already scaled to their machines.
    """

    name: str
    kind: str
    cut: str | None
    codec: str | None
    shape: tuple[int, ...]
    bytes: int
    edge_ms: float
    host_ms: float
    encode_ms: float = 0.0
    decode_ms: float = 0.0
    label: str = ''

    def uses_link(self) -> bool:
        """Return True unless the candidate is edge-only."""
        return self.kind != EDGE_ONLY

    def total_ms(self, link: Link) -> float:
        """Return the predicted end-to-end latency over ``link``."""
        return self.edge_ms + self.link_ms(link) + self.host_ms

    def link_ms(self, link: Link) -> float:
        """Return uplink + result downlink + round trip (0 for edge-only)."""
        if not self.uses_link():
            return 0.0
        return (transfer_ms(self.bytes, link.uplink_mbps)
                + transfer_ms(link.result_bytes, link.downlink_mbps) + link.rtt_ms)

    def min_uplink_mbps(self, link: Link, edge_only_ms: float) -> float | None:
        """
        Return the uplink speed above which this candidate beats edge-only.

        The seed's "minimum speed" of a wound. None when no speed is enough
        (the rest of its time alone reaches edge-only), 0 when no uplink
        bytes are needed.
        """
        if not self.uses_link():
            return None
        rest = (self.edge_ms + self.host_ms + link.rtt_ms
                + transfer_ms(link.result_bytes, link.downlink_mbps))
        slack = edge_only_ms - rest
        if slack <= 0:
            return None
        return self.bytes * 8.0 / (slack * 1e3)


def _match_profiles(edge: Profile, host: Profile) -> None:
    if edge is host:
        return
    if (list(edge.input_shape) != list(host.input_shape)
            or [c['name'] for c in edge.cuts] != [c['name'] for c in host.cuts]):
        raise ValueError(f'edge profile ({edge.model} {edge.input_shape}, {len(edge.cuts)} '
                         f'cuts) and host profile ({host.model} {host.input_shape}, '
                         f'{len(host.cuts)} cuts) are not of the same model and input')


def build_candidates(edge: Profile, host: Profile | None = None, edge_slowdown: float = 1.0,
                     host_slowdown: float = 1.0, codecs: Sequence[str] | None = None,
                     frame_codecs: Sequence[str] | None = None) -> list[Candidate]:
    """
    Return every candidate: edge-only, host-only per frame codec, each cut x codec.

    Edge times come from ``edge`` times ``edge_slowdown``, host times from
    ``host`` (default: the same profile) times ``host_slowdown``; payload
    bytes from the edge profile (the edge encodes).
    """
    if not (edge_slowdown > 0 and host_slowdown > 0):
        raise ValueError(f'slowdowns must be > 0, got edge {edge_slowdown}, host {host_slowdown}')
    host = host or edge
    _match_profiles(edge, host)
    ke, kh = float(edge_slowdown), float(host_slowdown)
    have = tuple(dict.fromkeys(f['codec'] for f in edge.features))
    codecs = _check_codecs(codecs, have, 'feature (profiled)')
    have_images = tuple(i['codec'] for i in edge.images)
    frame_codecs = _check_codecs(frame_codecs, have_images, 'image (profiled)')
    host_features = {(f['cut'], f['codec']): f for f in host.features}
    host_images = {i['codec']: i for i in host.images}
    # Each side: timed whole where the profile has it, else the sum of its stages.
    edge_only = _either(edge.edge_only_ms, edge.preprocess_ms + edge.full_ms)
    out = [Candidate(name=EDGE_ONLY, kind=EDGE_ONLY, cut=None, codec=None, shape=(),
                     bytes=0, edge_ms=ke * edge_only, host_ms=0.0)]
    for img in edge.images:
        if img['codec'] not in frame_codecs:
            continue
        himg = host_images.get(img['codec'], img)
        dec, enc = himg['decode_ms'] * kh, img['encode_ms'] * ke
        out.append(Candidate(
            name=f"{HOST_ONLY}/{img['codec']}", kind=HOST_ONLY, cut=None, codec=img['codec'],
            shape=tuple(edge.frame_shape), bytes=int(img['bytes']),
            edge_ms=ke * _either(img.get('edge_ms'), img['encode_ms']),
            host_ms=kh * _either(himg.get('host_ms'), himg['decode_ms'] + host.preprocess_ms
                                 + host.full_ms), encode_ms=enc, decode_ms=dec))
    cut_of = {c['name']: c for c in edge.cuts}
    for f in edge.features:
        if f['codec'] not in codecs:
            continue
        c = cut_of[f['cut']]
        hf = host_features.get((f['cut'], f['codec']))
        if hf is None:
            raise ValueError(f"host profile lacks codec {f['codec']} at cut {f['cut']}")
        enc, dec = ke * f['encode_ms'], kh * hf['decode_ms']
        edge_side = _either(f.get('edge_ms'), edge.preprocess_ms + c['head_ms'] + f['encode_ms'])
        host_side = _either(hf.get('host_ms'), hf['decode_ms'] + host.cut(c['name'])['tail_ms'])
        out.append(Candidate(
            name=f"{c.get('label') or c['name']}/{f['codec']}", kind=SPLIT, cut=c['name'],
            codec=f['codec'], shape=tuple(c['shape']), bytes=int(f['bytes']),
            edge_ms=ke * edge_side, host_ms=kh * host_side, encode_ms=enc, decode_ms=dec,
            label=c.get('label', '')))
    return out


def _either(measured, composed) -> float:
    return composed if measured is None else measured


@dataclass
class Plan:
    """The candidates costed over one link, and the one of least total time."""

    link: Link
    rows: list[dict]
    choice: Candidate

    def row(self, name: str) -> dict:
        """Return the row of one candidate by name."""
        for r in self.rows:
            if r['name'] == name:
                return r
        raise ValueError(f'no candidate named {name!r}')

    def as_dict(self) -> dict:
        """Return ``{'candidates': rows, 'choice': name, 'link': ...}`` (JSON-able)."""
        return {'candidates': self.rows, 'choice': self.choice.name, 'link': asdict(self.link)}


def plan(candidates: Sequence[Candidate], link: Link = Link()) -> Plan:
    """
    Cost every candidate over ``link`` and pick the one of least total time.

    Each row has ``name, kind, cut, codec, shape, bytes, edge_ms,
    transfer_ms, host_ms, total_ms, min_uplink_mbps`` (``transfer_ms`` is
    uplink + result downlink + round trip; ``total_ms`` their sum with the
    edge and host times).
    """
    if not candidates:
        raise ValueError('no candidates to plan with')
    edge_only = next((c for c in candidates if c.kind == EDGE_ONLY), None)
    rows = []
    for c in candidates:
        rows.append({
            'name': c.name, 'kind': c.kind, 'cut': c.cut, 'codec': c.codec,
            'shape': list(c.shape), 'bytes': c.bytes, 'edge_ms': c.edge_ms,
            'transfer_ms': c.link_ms(link), 'host_ms': c.host_ms,
            'total_ms': c.total_ms(link),
            'min_uplink_mbps': (c.min_uplink_mbps(link, edge_only.edge_ms)
                                if edge_only is not None else None),
            'encode_ms': c.encode_ms, 'decode_ms': c.decode_ms})
    best = min(range(len(rows)), key=lambda i: rows[i]['total_ms'])
    return Plan(link=link, rows=rows, choice=candidates[best])


def choose(candidates: Sequence[Candidate], link: Link, current: str | None = None,
           hysteresis: float = 0.1, min_gain_ms: float = 0.0) -> Candidate:
    """
    Return the candidate to use now: the best, unless ``current`` is nearly as good.

    The current candidate is kept while the best beats it by no more than
    ``hysteresis`` (a fraction of the current total) and ``min_gain_ms``, so
    a noisy link estimate does not flip between two near-equal cuts.
    """
    if not 0 <= hysteresis < 1 or min_gain_ms < 0:
        raise ValueError(f'need 0 <= hysteresis < 1 and min_gain_ms >= 0, got {hysteresis}, '
                         f'{min_gain_ms}')
    best = plan(candidates, link).choice
    keep = next((c for c in candidates if c.name == current), None)
    if keep is None or keep is best:
        return best
    now, gain = keep.total_ms(link), keep.total_ms(link) - best.total_ms(link)
    return best if gain > max(hysteresis * now, min_gain_ms) else keep


class Planner:
    """
    Online planner for an edge node: the chosen candidate, re-planned on link changes.

    A thin wrapper of :func:`plan` and :func:`choose` that remembers the link
    and the current choice.
    """

    def __init__(self, candidates: Sequence[Candidate], link: Link = Link(),
                 hysteresis: float = 0.1, min_gain_ms: float = 0.0):
        self.candidates = list(candidates)
        self.link = link
        self.hysteresis = hysteresis
        self.min_gain_ms = min_gain_ms
        self.switches = 0
        self.choice = choose(self.candidates, link, None, hysteresis, min_gain_ms)

    @classmethod
    def from_profiles(cls, edge: Profile, host: Profile | None = None,
                      edge_slowdown: float = 1.0, host_slowdown: float = 1.0,
                      link: Link = Link(), codecs: Sequence[str] | None = None,
                      frame_codecs: Sequence[str] | None = None,
                      hysteresis: float = 0.1, min_gain_ms: float = 0.0) -> Planner:
        """Build a planner from an edge profile (and a host profile)."""
        return cls(build_candidates(edge, host, edge_slowdown, host_slowdown, codecs,
                                    frame_codecs), link, hysteresis, min_gain_ms)

    def plan(self, link: Link | None = None) -> Plan:
        """Cost every candidate over ``link`` (default: the current link)."""
        return plan(self.candidates, link or self.link)

    def update(self, uplink_mbps: float | None = None, downlink_mbps: float | None = None,
               rtt_ms: float | None = None, result_bytes: int | None = None) -> Candidate:
        """Take a new link estimate; return the candidate to use now (with hysteresis)."""
        changes = {k: v for k, v in (('uplink_mbps', uplink_mbps),
                                     ('downlink_mbps', downlink_mbps), ('rtt_ms', rtt_ms),
                                     ('result_bytes', result_bytes)) if v is not None}
        self.link = replace(self.link, **changes)
        new = choose(self.candidates, self.link, self.choice.name, self.hysteresis,
                     self.min_gain_ms)
        if new.name != self.choice.name:
            self.switches += 1
        self.choice = new
        return new


# ------------------------------------------------------------------- validation

class _EndToEndSession:
    """The state of one end-to-end measurement; see :func:`measure_end_to_end`."""

    def __init__(self, model, frame, input_shape, candidates, burst, traced=None,
                 clock='wall', stat='median', halves=None):
        codec_mod = _codecs_module()
        self.clock = _clock(clock)
        self.stat = stat
        shape = [int(d) for d in input_shape[-3:]]
        x = preprocess(frame, shape)
        with torch.no_grad():
            self.reference = model(x)
            traced = traced or trace(model, x)
        self.runs, halves = {}, dict(halves or {})
        for c in candidates:
            if c.kind == EDGE_ONLY:
                def edge():
                    return model(preprocess(frame, shape))
                host = None
            elif c.kind == HOST_ONLY:
                enc, dec = _frame_codec(c.codec)

                def edge(enc=enc):
                    return enc(frame)

                def host(sent, dec=dec):
                    return model(preprocess(dec(*sent), shape))
            else:
                if c.cut not in halves:
                    halves[c.cut] = split_traced(traced, c.cut)
                head, tail = halves[c.cut]

                def edge(head=head, codec=c.codec):
                    return codec_mod.encode(head(preprocess(frame, shape)), codec)

                def host(sent, tail=tail):
                    return tail(codec_mod.decode(*sent))
            self.runs[c.name] = (edge, host)
        self.samples = {name: ([], []) for name in self.runs}
        self.sizes, self.errors = {}, {}
        self.burst = burst or _auto_burst(model, x)
        self.every, self.calls = 1, 0  # run on every `every`-th round only

    @torch.no_grad()
    def round(self, record: bool) -> None:
        self.calls += 1
        if self.calls % self.every and record:
            return
        for name, (edge, host) in self.runs.items():
            edge_ms, host_ms, sent, out = _run_sides(edge, host, self.burst, self.clock)
            if record:
                self.samples[name][0].extend(edge_ms)
                self.samples[name][1].extend(host_ms or [0.0])
            if name not in self.sizes:
                self.sizes[name] = len(sent[0]) if host is not None else 0
                self.errors[name] = float((out - self.reference).abs().max())

    @torch.no_grad()
    def burst_sample(self, name: str) -> tuple[float, float]:
        """Run one candidate (:func:`_run_sides`); return the median (edge_ms, host_ms)."""
        edge, host = self.runs[name]
        e, h, _, _ = _run_sides(edge, host, self.burst, self.clock)
        return statistics.median(e), statistics.median(h or [0.0])

    def result(self) -> dict:
        return {name: {'edge_ms': summarize(e, self.stat), 'host_ms': summarize(h, self.stat),
                       'bytes': self.sizes[name], 'max_error': self.errors[name]}
                for name, (e, h) in self.samples.items()}


def measure_end_to_end(model: nn.Module, frame: np.ndarray, input_shape: Sequence[int],
                       candidates: Sequence[Candidate], repeats: int = 10, warmup: int = 2,
                       burst: int | None = None, clock: str = 'wall', stat: str = 'median',
                       progress=None) -> dict:
    """
    Run every candidate end to end in this process and time its two sides.

    Edge side: preprocess, head, encode (host-only: encode the frame);
    host side: decode, tail (host-only: decode, preprocess, the whole model).
    Returns ``{name: {'edge_ms', 'host_ms', 'bytes', 'max_error'}}``: medians
    over ``repeats`` rounds (each candidate runs ``burst`` times in a row per
    round, the first untimed; see :func:`measure_profile`), the real payload
    size, and the largest deviation of the output from ``model(x)`` (0 for
    exact paths).
    """
    session = _EndToEndSession(model, frame, input_shape, candidates, burst, clock=clock,
                               stat=stat)
    _run_rounds([session], repeats, warmup, progress)
    return session.result()


def _measured_totals(candidates, measured, link, edge_slowdown, host_slowdown) -> dict:
    """Return ``{name: ms}``: measured sides scaled, real bytes over the link."""
    totals = {}
    for c in candidates:
        if c.name in measured:
            m = measured[c.name]
            totals[c.name] = (edge_slowdown * m['edge_ms'] + replace(c, bytes=m['bytes'])
                              .link_ms(link) + host_slowdown * m['host_ms'])
    return totals


def _paired(session: _EndToEndSession, pairs: set, rounds: int, progress=None) -> dict:
    """
    Time each pair ``(a, b)`` in alternating bursts; return ``{(a, b): [(ta, tb), ...]}``.

    Both bursts of a pair run within milliseconds of each other, in turn
    first, so a shared machine's load, which drifts over seconds, weighs on
    both alike: the ratio of a pair is far steadier than that of two
    separate medians.
    """
    samples = {pair: [] for pair in pairs}
    for r in range(rounds + 1):
        enabled = gc.isenabled()
        gc.disable()
        try:
            for a, b in sorted(pairs):
                first, second = (a, b) if r % 2 else (b, a)
                t = {first: session.burst_sample(first)}
                t[second] = session.burst_sample(second)
                if r > 0:  # round 0 warms up
                    samples[(a, b)].append((t[a], t[b]))
        finally:
            if enabled:
                gc.enable()
        gc.collect(0)
        if progress is not None:
            progress(r + 1, rounds + 1, {'round': 'paired'})
    return samples


def validate(model: nn.Module, input_shape: Sequence[int], uplinks: Sequence[float],
             frame: np.ndarray | None = None, edge_slowdown: float = 10.0,
             host_slowdown: float = 1.0, link: Link = Link(),
             codecs: Sequence[str] | None = None, frame_codecs: Sequence[str] | None = None,
             repeats: int = 10, warmup: int = 2, burst: int | None = None,
             finalists: int = 4, pairs: int | None = None, clock: str = 'wall',
             stat: str = 'median', model_name: str = '', progress=None) -> dict:
    """
    Check the planner against measurement at several uplink speeds.

    1. Two measurements run interleaved, round by round (the second every
       other round), so both meet the same load: a profile (each stage timed apart, as
       :func:`measure_profile`), from which the planner picks a candidate per
       speed, and every candidate run end to end (:func:`measure_end_to_end`),
       whose measured latency is ``edge_slowdown * edge side + real bytes /
       uplink + result / downlink + rtt + host_slowdown * host side`` (the
       edge emulated ``k`` times slower than this machine).
    2. Near-equal candidates abound and the least of many noisy medians is
       biased low, so the planner's choice then runs head to head, in
       alternating bursts (``pairs`` rounds, default ``3 * repeats``), with
       each of the ``finalists`` best measured candidates of its speed: both
       of a pair meet the same load. The measured time of the choice over
       that of the measured best is the largest of these ratios (1 when the
       choice beats them all).

    Returns, per speed, the planner's choice and the measured best with their
    times and ``ratio`` = measured(choice) / measured(best). ``clock`` and
    ``stat`` (of the profile and the first run) as in :func:`measure_profile`.
    """
    input_shape = [int(d) for d in input_shape[-3:]]
    if frame is None:
        frame = frame_for(input_shape)
    if finalists < 1:
        raise ValueError(f'finalists must be >= 1, got {finalists}')
    prof = _ProfileSession(model, frame, input_shape, codecs, frame_codecs, burst, model_name,
                           clock, stat)
    skeleton = build_candidates(prof.result(), None, edge_slowdown, host_slowdown, codecs,
                                frame_codecs)
    e2e = _EndToEndSession(model, frame, input_shape, skeleton, prof.burst, prof.traced, clock,
                           stat, prof.halves)
    e2e.every = 2  # this run only picks the finalists: half the rounds do
    _run_rounds([prof, e2e], repeats, warmup, progress)
    profile = prof.result(warmup)
    candidates = build_candidates(profile, None, edge_slowdown, host_slowdown, codecs,
                                  frame_codecs)
    by_name = {c.name: c for c in candidates}
    measured = e2e.result()
    links = [replace(link, uplink_mbps=float(up)) for up in uplinks]
    plans = [plan(candidates, lk) for lk in links]
    first = [_measured_totals(candidates, measured, lk, edge_slowdown, host_slowdown)
             for lk in links]
    wanted = set()
    for p, totals in zip(plans, first):
        rivals = [n for n in sorted(totals, key=totals.get) if n != p.choice.name]
        wanted.update((p.choice.name, n) for n in rivals[:finalists])
    paired = _paired(e2e, wanted, pairs or 3 * repeats, progress)

    def total(name, sample, lk):
        sent = replace(by_name[name], bytes=measured[name]['bytes'])
        return edge_slowdown * sample[0] + sent.link_ms(lk) + host_slowdown * sample[1]

    speeds = []
    for lk, p, totals in zip(links, plans, first):
        pick = p.choice.name
        ratios, mine = {}, []
        for (a, b), runs in paired.items():
            if a == pick:
                ratios[b] = (summarize([total(a, ta, lk) for ta, _ in runs], stat)
                             / summarize([total(b, tb, lk) for _, tb in runs], stat))
                mine += [total(a, ta, lk) for ta, _ in runs]
        rival = max(ratios, key=ratios.get)
        ratio = max(1.0, ratios[rival])
        best = rival if ratios[rival] > 1.0 else pick
        pick_ms = summarize(mine, stat)
        speeds.append({'uplink_mbps': lk.uplink_mbps, 'choice': pick,
                       'predicted_ms': p.row(pick)['total_ms'],
                       'choice_measured_ms': pick_ms, 'best': best,
                       'best_measured_ms': pick_ms / ratio, 'ratio': ratio,
                       'paired_ratios': ratios,
                       'first_best': min(totals, key=totals.get),
                       'first_choice_ms': totals[pick], 'first_best_ms': min(totals.values()),
                       'edge_only_measured_ms': totals[EDGE_ONLY]})
    return {'model': profile.model, 'input_shape': input_shape,
            'edge_slowdown': edge_slowdown, 'host_slowdown': host_slowdown,
            'link': asdict(link), 'candidates': len(candidates), 'repeats': repeats,
            'pairs': pairs or 3 * repeats, 'burst': prof.burst, 'clock': clock, 'stat': stat,
            'speeds': speeds, 'measured': measured, 'profile': profile}


def _as_profile(p) -> Profile | None:
    if p is None or isinstance(p, Profile):
        return p
    return load_profile(p)


def make_planner(model: nn.Module, input_shape: Sequence[int], link: Link = Link(),
                 edge_profile: Profile | str | os.PathLike | None = None,
                 host_profile: Profile | str | os.PathLike | None = None,
                 edge_slowdown: float = 1.0, host_slowdown: float = 1.0,
                 frame: np.ndarray | None = None, codecs: Sequence[str] | None = None,
                 frame_codecs: Sequence[str] | None = None, repeats: int = 5,
                 warmup: int = 1, hysteresis: float = 0.1, min_gain_ms: float = 0.0,
                 clock: str = 'wall', stat: str = 'median', model_name: str = '',
                 progress=None, quality: int | None = None,
                 frame_quality: int | None = None) -> Planner:
    """
    Build the planner an edge node (or ``edge-denoise plan``) starts with.

    ``edge_profile`` / ``host_profile`` are :class:`Profile` s or profile
    files (``edge-denoise profile --out``); a side without one is measured
    here (once, shared by both sides) and scaled by its slowdown. The
    planner's ``edge_profile`` and ``host_profile`` attributes hold what was
    used. ``quality`` / ``frame_quality``: the JPEG qualities the edge sends
    (see :func:`measure_profile`).
    """
    edge, host = _as_profile(edge_profile), _as_profile(host_profile)
    shape = [int(d) for d in input_shape[-3:]]
    for p in (edge, host):
        if p is not None and list(p.input_shape) != shape:
            raise ValueError(f'profile of {p.model} is for input {p.input_shape}, '
                             f'not {shape}')
    if edge is None or host is None:
        here = measure_profile(model, frame, shape, model_name, codecs, frame_codecs,
                               repeats, warmup, clock=clock, stat=stat, progress=progress,
                               quality=quality, frame_quality=frame_quality)
        edge, host = edge or here, host or here
    planner = Planner.from_profiles(edge, host, edge_slowdown, host_slowdown, link, codecs,
                                    frame_codecs, hysteresis, min_gain_ms)
    planner.edge_profile, planner.host_profile = edge, host
    return planner


# ------------------------------------------------------------- DADS min-cut

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
    timer = _NodeTimer(traced, _clock(clock))
    args = _as_args(example_input)
    for r in range(warmup + repeats):
        timer.recording = r >= warmup
        timer.run(*args)
    return {name: statistics.median(v) for name, v in timer.samples.items()}


@dataclass
class MinCut:
    """
    The DADS partition: the edge set of least latency over *all* node sets.

    ``sent`` are the tensors crossing the link (one for a single-tensor cut,
    several when the best partition crosses branches); ``single_cut`` names
    the equivalent :class:`Cut` when one tensor is sent. ``best_single`` and
    ``best_single_ms`` are the best single-tensor cut under the same per-node
    model, ``edge_only_ms`` edge-only.
    """

    edge_nodes: list[str]
    sent: list[str]
    shapes: list[tuple]
    bytes: int
    edge_ms: float
    transfer_ms: float
    host_ms: float
    total_ms: float
    single_cut: str | None
    best_single: str
    best_single_ms: float
    edge_only_ms: float


def min_cut(traced: Traced, edge_ms: dict, host_ms: dict, link: Link = Link()) -> MinCut:
    """
    Partition the graph between edge and host by a minimum s-t cut (DADS, INFOCOM 2019).

    ``edge_ms`` / ``host_ms`` give each activation node's time on the edge
    and on the host (e.g. :func:`node_times` scaled by the slowdowns). Each
    node costs its edge time if on the edge, its host time otherwise; each
    tensor produced on the edge and used on the host costs its float32
    bytes over the uplink, once however many host nodes use it; the edge
    side is closed under predecessors (nothing comes back). Non-tensor
    values (sizes) are never sent. The last layer runs on the host, which
    sends the result back (edge-only, no link at all, is ``edge_only_ms``).
    """
    import networkx as nx

    nodes, dynamic, needed = traced.nodes, traced.dynamic, traced.needed
    out_node = nodes[-1]
    scale = 1e6                                          # ms -> integer nanoseconds

    def cap(ms):
        return int(round(ms * scale))

    g = nx.DiGraph()
    src, sink = ('edge',), ('host',)
    g.add_node(src)
    g.add_node(sink)
    active = [n for n in nodes if n in dynamic and (n in needed or n.op != 'output')]
    for n in active:
        if n.op == 'placeholder':
            g.add_edge(src, n)                           # infinite: the input is on the edge
        elif n is out_node or out_node in n.users:
            g.add_edge(n, sink)                          # infinite: the result comes from the host
        else:
            g.add_edge(src, n, capacity=cap(host_ms.get(n.name, 0.0)))
            g.add_edge(n, sink, capacity=cap(edge_ms.get(n.name, 0.0)))
        users = [u for u in n.users if u in dynamic]
        for u in users:
            g.add_edge(u, n)                             # infinite: no edge node after a host one
        if users:
            aux = ('send', n.name)
            if n in traced.shapes:
                nbytes = 4 * math.prod(traced.shapes[n])
                g.add_edge(n, aux, capacity=cap(transfer_ms(nbytes, link.uplink_mbps)))
            else:
                g.add_edge(n, aux)                       # infinite: sizes are never sent
            for u in users:
                g.add_edge(aux, u)
    _, (edge_side, _) = nx.minimum_cut(g, src, sink)
    on_edge = [n for n in active if n in edge_side]
    result_ms = transfer_ms(link.result_bytes, link.downlink_mbps) + link.rtt_ms
    sent = [n for n in on_edge if any(u in dynamic and u not in edge_side for u in n.users)]
    nbytes = sum(4 * math.prod(traced.shapes[n]) for n in sent)
    e = sum(edge_ms.get(n.name, 0.0) for n in on_edge)
    h = sum(host_ms.get(n.name, 0.0) for n in active if n not in edge_side)
    t = transfer_ms(nbytes, link.uplink_mbps) + result_ms
    single = None
    if len(sent) == 1:
        single = next((c.name for c in traced.cuts if traced._node_of[c.name] is sent[0]), None)
    # The best single-tensor cut under the same per-node model.
    best, best_ms = None, math.inf
    pos = {n: i for i, n in enumerate(nodes)}
    for c in traced.cuts:
        p = pos[traced._node_of[c.name]]
        head = sum(edge_ms.get(n.name, 0.0) for n in active if pos[n] <= p)
        tail = sum(host_ms.get(n.name, 0.0) for n in active if pos[n] > p)
        ms = head + tail + transfer_ms(c.bytes, link.uplink_mbps) + result_ms
        if ms < best_ms:
            best, best_ms = c.name, ms
    return MinCut(edge_nodes=[n.name for n in on_edge], sent=[n.name for n in sent],
                  shapes=[traced.shapes[n] for n in sent], bytes=nbytes, edge_ms=e,
                  transfer_ms=t, host_ms=h, total_ms=e + t + h, single_cut=single,
                  best_single=best, best_single_ms=best_ms,
                  edge_only_ms=sum(edge_ms.get(n.name, 0.0) for n in active))


def split_nodes(traced: Traced, edge_nodes) -> tuple[nn.Module, nn.Module]:
    """
    Split at any edge set closed under predecessors (e.g. :attr:`MinCut.edge_nodes`).

    The head returns a tuple of every tensor the host needs from the edge, in
    topological order; the tail takes them as positional arguments, so
    ``tail(*head(x)) == model(x)``.
    """
    names = set(edge_nodes)
    by_name = {n.name: n for n in traced.nodes}
    unknown = names - set(by_name)
    if unknown:
        raise ValueError(f'unknown nodes {sorted(unknown)[:3]}')
    on_edge = {by_name[k] for k in names if by_name[k] in traced.dynamic}
    on_edge |= {n for n in traced.nodes if n.op == 'placeholder'}
    for n in on_edge:
        missing = [a.name for a in n.all_input_nodes if a in traced.dynamic and a not in on_edge]
        if missing:
            raise ValueError(f'edge set not closed: {n.name} needs {missing[0]} from the host')
    if traced.nodes[-1] in on_edge:
        raise ValueError('the output node must stay on the host')
    boundary = [n for n in traced.nodes if n in on_edge
                and any(u in traced.dynamic and u not in on_edge for u in n.users)]
    return _build_halves(traced, on_edge, boundary, [f'{n.name}_in' for n in boundary],
                         single=False)


def profile_min_cut(traced: Traced, edge: Profile, host: Profile | None = None,
                    edge_slowdown: float = 1.0, host_slowdown: float = 1.0,
                    link: Link = Link()) -> MinCut:
    """Run :func:`min_cut` on the per-node times of an edge and a host profile."""
    host = host or edge
    if not edge.nodes or not host.nodes:
        raise ValueError('the profiles have no per-node times (measure them again)')
    return min_cut(traced, {k: edge_slowdown * v for k, v in edge.nodes.items()},
                   {k: host_slowdown * v for k, v in host.nodes.items()}, link)
