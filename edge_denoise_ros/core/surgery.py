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
DNN surgery: trace a classifier, find its cuts, split it into an edge head and a host tail.

The model is traced with ``torch.fx`` (``torch.export`` graphs, e.g. from a
``.pt2`` file, are used as they are). A *cut* is a position in topological
order where exactly one activation tensor is alive: everything before it
feeds the rest only through that tensor, so ``tail(head(x)) == model(x)``
with a single tensor on the wire. Parameters, buffers and values computed
from them alone are not activations: both sides may hold them. Residual and
inception blocks are therefore cut only at their boundaries (in a DAG the
cuts are exactly the tensors that dominate the output). :func:`split_nodes`
splits at any edge set closed under predecessors (the DADS min-cut of
:mod:`core.planner` may cross branches).

Which cut to use is the planner's question (:mod:`core.planner`), from times
measured by :mod:`core.profiling`. Typical use::

    traced = surgery.trace(model, x)        # once per model
    head, tail = surgery.split_traced(traced, 'layer2')   # a cut's node name or label
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.fx.graph import _PyTreeCodeGen, _PyTreeInfo
from torch.utils import _pytree as pytree

from .fxguard import FX_GUARD

INPUT_CUT = 'input'
# The three ways to run a model: split at a cut, all on the edge, all on the host.
SPLIT = 'split'
EDGE_ONLY = 'edge_only'
HOST_ONLY = 'host_only'


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


def example_args(example_input) -> tuple:
    """Return a model's example input as a tuple of tensors; raise ValueError if it is not."""
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
    args = example_args(example_input)
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
