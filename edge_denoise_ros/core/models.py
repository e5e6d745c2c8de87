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
Target classifiers: the default small ResNet, torchvision by name, torch.export files.

Nothing here downloads: torchvision models are built without weights unless a
local weights file is given, and the default model's weights ship in
``weights/``.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import json
import math
import operator
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import torch
from torch import nn

from . import data, frames

DEFAULT_MODEL = 'small_resnet'
DEFAULT_WEIGHTS = 'target_small_resnet.pt'


def set_torch_threads(n: int | None) -> None:
    """Set torch's intra-op threads of this process; ``None`` or 0 keeps torch's setting."""
    if n:
        torch.set_num_threads(int(n))


@contextlib.contextmanager
def compute_threads(n: int, opencv: bool = False) -> Iterator[None]:
    """
    Run the block on ``n`` torch threads (and OpenCV threads with ``opencv``), then restore.

    Batch-1 inference is fastest, and CPU time is a latency, on one thread.
    """
    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(n)
    if opencv:
        cv2.setNumThreads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        if opencv:
            cv2.setNumThreads(before[1])


def weights_dir() -> Path:
    """
    Return the folder of the shipped weights.

    ``EDGE_DENOISE_WEIGHTS`` wins; then ``weights/`` beside the package (a source
    checkout or an editable install); then the ament share folder of a colcon
    install (``share/edge_denoise_ros/weights``).
    """
    env = os.environ.get('EDGE_DENOISE_WEIGHTS')
    if env:
        return Path(env)
    source = Path(__file__).resolve().parents[2] / 'weights'
    if source.is_dir():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory  # ROS installs
        return Path(get_package_share_directory('edge_denoise_ros')) / 'weights'
    except (ImportError, LookupError, ValueError):
        return source


def weights_path(name: str) -> Path:
    """Return the path of a shipped weights file by file name."""
    return weights_dir() / name


def load_state_dict(path: str | os.PathLike) -> dict:
    """Load a state dict saved with ``torch.save`` safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'weights file not found: {path}')
    state = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f'{path}: expected a state dict, got {type(state).__name__}')
    return state


def save_state_dict(module: nn.Module, path: str | os.PathLike) -> Path:
    """Save a module's state dict (tensors only, contiguous, on the CPU)."""
    return save_state(module.state_dict(), path)


def save_state(state: dict, path: str | os.PathLike) -> Path:
    """Save a state dict, or part of one (tensors only, contiguous, on the CPU)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, path)
    return path


def state_hash(module: nn.Module) -> str:
    """Return a short, stable hash of a module's parameters and buffers."""
    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``; lets the model take pixels in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer('std', torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Prepared(nn.Module):
    """A user's model behind its input normalisation: takes pixels in [0, 1] (``net``: theirs)."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BatchNorm follows)."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs and an identity (or 1x1) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=False)
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


@dataclass(frozen=True)
class ResNetConfig:
    """Settings of the default target: a small ResNet for 1x28x28 inputs."""

    in_channels: int = 1
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: tuple[int, ...] = (2, 2, 2)
    num_classes: int = 10
    mean: float = data.MEAN
    std: float = data.STD


class SmallResNet(nn.Module):
    """
    Stem + three residual stages + global pool + linear; takes pixels in [0, 1].

    Every stage has two blocks, so valid cut points lie both between stages
    and inside them (between the blocks of a stage).
    """

    def __init__(self, cfg: ResNetConfig = ResNetConfig()):
        super().__init__()
        if len(cfg.widths) != len(cfg.blocks) or len(cfg.widths) < 3:
            raise ValueError(f'need >= 3 stages with one width each, got {cfg}')
        self.cfg = cfg
        self.normalize = Normalize((cfg.mean,) * cfg.in_channels, (cfg.std,) * cfg.in_channels)
        w0 = cfg.widths[0]
        self.stem = nn.Sequential(conv3x3(cfg.in_channels, w0), nn.BatchNorm2d(w0), nn.ReLU())
        c_in = w0
        for i, (width, n) in enumerate(zip(cfg.widths, cfg.blocks)):
            self.add_module(f'layer{i + 1}', self._make_layer(c_in, width, n, 1 if i == 0 else 2))
            c_in = width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(c_in, cfg.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

    @staticmethod
    def _make_layer(c_in: int, c_out: int, n: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(c_in, c_out, stride)]
        layers += [BasicBlock(c_out, c_out) for _ in range(n - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)                      # (B, 1, 28, 28)
        x = self.stem(x)                           # (B, 16, 28, 28)
        for i in range(len(self.cfg.widths)):
            x = getattr(self, f'layer{i + 1}')(x)  # (B, 16|32|64, 28|14|7, ...)
        x = self.flatten(self.pool(x))             # (B, 64)
        return self.fc(x)                          # (B, 10)


# -- .pt2 files: torch.export archives, read without running anything from them ------------
#
# torch.export.load trusts its file: pickled members (sample inputs, "pickled" weights and
# constants) fall back to an unrestricted unpickler, AOTInductor members are native code,
# and strings of the program JSON reach Python code generation (node names, argument names,
# guard code) and sympy.sympify (symbolic shapes). load_exported reads the archive itself,
# refuses what would need any of that, and hands torch a rebuilt archive holding only the
# checked program JSON (node metadata dropped), raw tensor data and sample inputs re-saved
# from a weights-only load.

PT2_MAX_BYTES = 1 << 32     # an archive's members together, uncompressed
_PT2_ROOT = 'package'
_PT2_RAW = re.compile(r'data/(weights/weight|constants/tensor)_[0-9]{1,9}\Z')
_PT2_KEPT = ('archive_format', 'archive_version', 'byteorder', '.data/version',
             'models/model.json', 'data/weights/model_weights_config.json',
             'data/constants/model_constants_config.json', 'data/sample_inputs/model.pt')
_NAME = re.compile(r'[A-Za-z0-9_.]*\Z')                       # names, paths, dtypes as text
_MODULE_STACK = re.compile(r"[A-Za-z0-9_.,;@\[\]'()<>-]*\Z")  # key,path,type;...
_FLOAT_WORDS = frozenset({'Infinity', '-Infinity', 'NaN'})   # how the JSON spells inf/nan
# Strings that reach no code as text: operator constants (generated code holds their repr)
# and the module paths kept for the cut labels (checked with _MODULE_STACK).
_INERT_KEYS = frozenset({'as_string', 'as_strings', 'nn_module_stack'})
# Program parts that name Python objects outside the op sets below: refused.
_REFUSED_KEYS = frozenset({'as_graph', 'as_operator', 'as_custom_obj'})
_OP_NAMESPACES = ('aten', 'prims')
_OP_DENIED = frozenset({'from_file', 'save', '_print'})     # file and console access
_OP = re.compile(r'torch\.ops\.([a-z]+)\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)\Z')
# The symbolic-size arithmetic torch.export serialises as Python callables.
_SYM_OPS = frozenset({
    operator.eq, operator.ne, operator.le, operator.ge, operator.lt, operator.gt,
    operator.neg, operator.pos, operator.mul, operator.add, operator.sub, operator.floordiv,
    operator.mod, operator.pow, operator.truediv, operator.and_, operator.or_,
    operator.lshift, operator.rshift, math.trunc, torch.sym_not, torch.sym_int,
    torch.sym_float, torch.sym_ite, torch.sym_max, torch.sym_min, torch.sym_sqrt})
_SYM_OP_NAMES = frozenset(f'{op.__module__}.{op.__name__}' for op in _SYM_OPS)
# Functions a symbolic size or a guard may call (sympy's and torch.utils._sympy's).
_SYM_FUNCTIONS = frozenset({
    'Symbol', 'Integer', 'Float', 'Rational', 'Add', 'Mul', 'Pow', 'Mod', 'Max', 'Min',
    'Abs', 'Eq', 'Ne', 'Lt', 'Le', 'Gt', 'Ge', 'Equality', 'Unequality', 'StrictLessThan',
    'StrictGreaterThan', 'LessThan', 'GreaterThan', 'And', 'Or', 'Not', 'Piecewise',
    'ExprCondPair', 'floor', 'ceiling', 'sqrt', 'FloorDiv', 'ModularIndexing', 'Where',
    'PythonMod', 'CleanDiv', 'CeilToInt', 'FloorToInt', 'CeilDiv', 'LShift', 'RShift',
    'PowByNatural', 'FloatPow', 'FloatTrueDiv', 'IntTrueDiv', 'IsNonOverlappingAndDenseIndicator',
    'TruncToFloat', 'TruncToInt', 'RoundToInt', 'RoundDecimal', 'ToFloat', 'Identity'})
_SYM_CONSTANTS = frozenset({'oo', 'zoo', 'nan', 'true', 'false', 'True', 'False'})
_SYMBOL = re.compile(r'[a-z]{1,8}[0-9]{1,9}\Z')             # s0, u3, s77
_GUARD_ATTRS = frozenset({'size', 'stride', 'storage_offset', 'isnan', 'floor', 'ceil'})
_EXPR_NODES = (ast.Expression, ast.Compare, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Call,
               ast.keyword, ast.Name, ast.Constant, ast.Load, ast.operator, ast.unaryop,
               ast.cmpop, ast.boolop)


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = ' '.join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + '...'


def _check_expression(text, what: str, guard: bool) -> None:
    """Refuse a symbolic size (``guard`` False) or guard unless it is plain arithmetic."""
    if not isinstance(text, str) or len(text) > 4096:
        raise ValueError(f'{what}: not a short expression')
    try:
        tree = ast.parse(text, mode='eval')
    except (SyntaxError, ValueError, RecursionError):
        raise ValueError(f'{what} {text[:60]!r}: not an expression') from None
    for node in ast.walk(tree):
        ok = isinstance(node, _EXPR_NODES) or (guard and isinstance(
            node, (ast.Subscript, ast.Attribute)))
        if isinstance(node, ast.Name):
            ok = node.id in _SYM_FUNCTIONS or node.id in _SYM_CONSTANTS or (
                node.id in ('L', 'math', 'inf') if guard else bool(_SYMBOL.match(node.id)))
        elif isinstance(node, ast.Attribute):
            ok = ok and node.attr in _GUARD_ATTRS
        elif isinstance(node, ast.Call):
            ok = isinstance(node.func, (ast.Name, ast.Attribute)) and (
                guard or getattr(node.func, 'id', '') in _SYM_FUNCTIONS)
        elif isinstance(node, ast.Constant):
            ok = isinstance(node.value, (int, float, bool)) or (
                isinstance(node.value, str) and bool(_NAME.match(node.value)))
        if not ok:
            raise ValueError(f'{what} {text[:60]!r}: {type(node).__name__} is not arithmetic')


def _check_treespec(text, what: str) -> None:
    try:
        spec = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        raise ValueError(f'{what}: not a pytree spec') from None

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == 'context' and isinstance(value, str):
                    _check_json(json.loads(value), what)
                else:
                    _check_json(key, what)
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        else:
            _check_json(node, what)
    walk(spec)


def _check_target(target, what: str) -> None:
    if target in _SYM_OP_NAMES:
        return
    m = _OP.match(target) if isinstance(target, str) else None
    if m is None or m.group(1) not in _OP_NAMESPACES or m.group(2) in _OP_DENIED:
        raise ValueError(f'{what}: calls {str(target)[:80]!r} (only aten and prims operators '
                         f'and size arithmetic run)')


def _check_json(value, where: str) -> None:
    """Refuse any string of the program that could reach generated code (see above)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not _NAME.match(key):
                raise ValueError(f'{where}: name {str(key)[:60]!r}')
            if key in _REFUSED_KEYS:
                raise ValueError(f'{where}: holds {key} (a subgraph, operator or scripted '
                                 f'object)')
            if key == 'target':
                _check_target(item, where)
            elif key == 'expr_str':
                _check_expression(item, 'symbolic size', guard=False)
            elif key == 'guards_code':
                if not isinstance(item, list):
                    raise ValueError('guards_code is not a list')
                for text in item:
                    _check_expression(text, 'guard', guard=True)
            elif key in ('in_spec', 'out_spec'):
                _check_treespec(item, key)
            elif key == 'torch_version':
                if not re.fullmatch(r'[A-Za-z0-9_.+<=\-]{0,40}', str(item)):
                    raise ValueError(f'torch_version {str(item)[:40]!r}')
            elif key not in _INERT_KEYS:
                _check_json(item, where)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, where)
    elif isinstance(value, str) and value not in _FLOAT_WORDS and not _NAME.match(value):
        raise ValueError(f'{where}: string {value[:60]!r} is not a name')


def _check_payload_config(text: bytes, prefix: str) -> dict:
    config = json.loads(text)
    for fqn, meta in config['config'].items():
        if meta.get('use_pickle') or not _PT2_RAW.match(f'{prefix}{meta["path_name"]}'):
            raise ValueError(f'{fqn} is not raw tensor data (a pickle or a scripted object)')
    _check_json(config, prefix + 'config')
    return config


def _read_pt2(path: Path) -> tuple[dict, dict[str, bytes]]:
    """Return a .pt2's checked program JSON and members; ValueError (one line) if refused."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f'not a .pt2 (zip) archive: {_one_line(exc)}') from None
    with archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise ValueError('the archive names a member twice')
        if sum(i.file_size for i in infos) > PT2_MAX_BYTES:
            raise ValueError(f'members over {PT2_MAX_BYTES} bytes uncompressed')
        root = names[0].split('/')[0] + '/' if names else ''
        members = {}
        for name in names:
            rel = name[len(root):] if name.startswith(root) else name
            if rel in ('.data/serialization_id', '') or rel.startswith('extra/'):
                continue            # an id, folders and extra files: not needed, not kept
            if rel not in _PT2_KEPT and not _PT2_RAW.match(rel):
                kind = ('compiled (AOTInductor) code' if 'aotinductor' in rel else
                        'a pickle' if rel.endswith(('.pt', '.pkl')) or 'obj_' in rel else
                        'not part of an exported program')
                raise ValueError(f'member {rel!r}: {kind}')
            members[rel] = archive.read(name)
    missing = [n for n in _PT2_KEPT if n not in members and n != 'byteorder']
    if missing:
        raise ValueError(f'missing {missing[0]!r} (one exported program named "model")')
    if members['archive_format'] != b'pt2' or members['archive_version'] != b'0':
        raise ValueError('not a version-0 pt2 archive')
    if not members['.data/version'].strip().isdigit() or \
            members.get('byteorder', b'little') not in (b'little', b'big'):
        raise ValueError('bad .data/version or byteorder')
    for prefix, cfg in (('data/weights/', 'data/weights/model_weights_config.json'),
                        ('data/constants/', 'data/constants/model_constants_config.json')):
        _check_payload_config(members[cfg], prefix)
    program = json.loads(members['models/model.json'])
    module = program['graph_module']
    module['metadata'] = {}
    for node in module['graph']['nodes']:   # stack traces and the like: free text, dropped;
        stack = node['metadata'].get('nn_module_stack')     # module paths label the cuts
        node['metadata'] = {} if stack is None else {'nn_module_stack': stack}
        if stack is not None and not _MODULE_STACK.match(stack):
            raise ValueError(f'node {node.get("name")!r}: module stack {stack[:60]!r}')
    _check_json(program, 'program')
    try:
        example = torch.load(io.BytesIO(members['data/sample_inputs/model.pt']),
                             map_location='cpu', weights_only=True)
    except Exception as exc:        # the weights-only unpickler refuses any global
        found = re.search(r'GLOBAL ([\w.]+)', str(exc))
        raise ValueError('data/sample_inputs/model.pt needs an unrestricted unpickler ('
                         + (f'it would call {found.group(1)}' if found else _one_line(exc))
                         + ')') from None
    if not isinstance(example, (tuple, dict)):
        raise ValueError(f'sample inputs are a {type(example).__name__}, not a tuple')
    members['data/sample_inputs/model.pt'] = _saved(example)
    members['models/model.json'] = json.dumps(program).encode()
    return program, members


def _saved(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _refused(path, exc: Exception) -> ValueError:
    return ValueError(f'{path}: refused: {_one_line(exc, 240)}')


def _checked_pt2(path: str | os.PathLike) -> tuple[dict, dict[str, bytes]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'exported program not found: {path}')
    try:
        return _read_pt2(path)
    except ValueError as exc:
        raise _refused(path, exc) from None
    except (KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise _refused(path, ValueError(f'malformed archive ({type(exc).__name__}: '
                                        f'{_one_line(exc, 80)})')) from None


def load_exported(path: str | os.PathLike) -> nn.Module:
    """
    Load a ``torch.export`` archive (``.pt2``) as a module; nothing from the file runs.

    Refuses, with a one-line ValueError saying what, an archive that holds
    pickles other than plain tensor data, compiled code, or program strings
    that are not plain names, operators or arithmetic (see the notes above).
    """
    _, members = _checked_pt2(path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_STORED) as rebuilt:
        for name, blob in members.items():
            rebuilt.writestr(f'{_PT2_ROOT}/{name}', blob)
    buffer.seek(0)
    try:
        program = torch.export.load(buffer)
    except Exception as exc:
        raise _refused(path, ValueError(f'torch could not read it: {_one_line(exc)}')) from None
    for module in program.graph_module.modules():
        for node in getattr(getattr(module, 'graph', None), 'nodes', ()):
            target = node.target
            if node.op == 'call_function' and target not in _SYM_OPS and not (
                    isinstance(target, torch._ops.OpOverload)
                    and target.namespace in _OP_NAMESPACES):
                raise _refused(path, ValueError(f'node {node.name} calls {target!r}'))
    return program.module()


def exported_io(path: str | os.PathLike) -> tuple[tuple[int, int, int], int | None]:
    """
    Return a ``.pt2``'s input ``(C, H, W)`` and class count (None if not a 2-D output).

    Read from the checked program (its one tensor input and its output), nothing loaded.
    """
    program, _ = _checked_pt2(path)
    graph = program['graph_module']['graph']
    signature = program['graph_module']['signature']

    def sizes(kind: str, spec_key: str):
        names = [s[spec_key]['arg'].get('as_tensor', {}).get('name')
                 for s in signature[kind] if spec_key in s]
        if len(names) != 1 or names[0] not in graph['tensor_values']:
            return None
        return [d.get('as_int') for d in graph['tensor_values'][names[0]]['sizes']]

    inp, out = sizes('input_specs', 'user_input'), sizes('output_specs', 'user_output')
    if inp is None or len(inp) != 4 or None in inp[1:]:
        raise ValueError(f'{path}: expected one image input (N, C, H, W) of a fixed C, H, W; '
                         f'the program takes {inp}')
    classes = out[1] if out is not None and len(out) == 2 else None
    return (inp[1], inp[2], inp[3]), classes


def eval_mode(module: nn.Module) -> nn.Module:
    """
    Put a module in eval mode, also one holding an exported program's module.

    ``ExportedProgram.module()`` refuses ``.eval()``: its graph was captured in
    one mode already (an inference graph for a model exported in eval mode), so
    only the flags are set, on every submodule.
    """
    try:
        return module.eval()
    except NotImplementedError:
        for m in module.modules():
            m.training = False
        return module


def torchvision_names() -> list[str]:
    """Return the names of torchvision's classification models."""
    import torchvision  # optional heavy dependency (~2 s: torch._dynamo); torchvision targets
    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_model(name: str = DEFAULT_MODEL, weights: str | os.PathLike | None = None,
                pretrained: bool | None = None, num_classes: int | None = None) -> nn.Module:
    """
    Build a target model in eval mode; nothing is ever downloaded.

    ``name`` is ``small_resnet`` (the default target: its shipped weights are
    loaded unless ``pretrained=False``), a torchvision classification model
    (random weights unless ``weights`` names a local state-dict file; asking
    for ``pretrained=True`` without one is an error), or the path of a
    ``torch.export`` file (``.pt2``).
    """
    if str(name).endswith('.pt2'):
        return eval_mode(load_exported(name))
    if name == DEFAULT_MODEL:
        model = SmallResNet(ResNetConfig(num_classes=num_classes or 10))
        path = Path(weights) if weights else (
            None if pretrained is False else weights_path(DEFAULT_WEIGHTS))
        if path is not None:
            model.load_state_dict(load_state_dict(path))
        return model.eval()
    names = torchvision_names()
    if name not in names:
        raise ValueError(f'unknown model {name!r}: expected {DEFAULT_MODEL!r}, a .pt2 file, '
                         f'or a torchvision classification model (e.g. resnet50)')
    if pretrained and not weights:
        raise ValueError(f'pretrained {name} needs a local weights file (weights=...); '
                         f'nothing is downloaded')
    import torchvision  # optional heavy dependency, as in torchvision_names()
    kwargs = {'weights': None}
    if num_classes is not None:
        kwargs['num_classes'] = num_classes
    if name in ('inception_v3', 'googlenet'):
        kwargs['aux_logits'] = False
        kwargs['init_weights'] = False
    model = torchvision.models.get_model(name, **kwargs)
    if weights:
        model.load_state_dict(load_state_dict(weights))
    return model.eval()


def has_own_normalize(name: str) -> bool:
    """Return whether a model normalises its input itself (the default target does)."""
    return name == DEFAULT_MODEL


def build_target(name: str = DEFAULT_MODEL, weights: str | os.PathLike | None = None,
                 num_classes: int | None = None, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None,
                 pretrained: bool | None = None) -> nn.Module:
    """
    Build a target that takes pixels in [0, 1]: the model behind ``mean``/``std``.

    The default target normalises itself and is returned as built; any other
    model is wrapped in :class:`Prepared` (its weights live in ``.net``);
    ``mean``/``std`` default to ImageNet's (:class:`frames.Preparation`).
    """
    model = build_model(name, weights, pretrained=pretrained, num_classes=num_classes)
    if has_own_normalize(name):
        return model
    prep = frames.Preparation()
    return eval_mode(Prepared(model, mean or prep.mean, std or prep.std))


def user_module(target: nn.Module) -> nn.Module:
    """Return the user's model inside a target (the part whose weights a bundle stores)."""
    return target.net if isinstance(target, Prepared) else target


def input_shape(name: str) -> tuple[int, int, int]:
    """Return the natural ``(C, H, W)`` input of a model; a ``.pt2``'s is the exported one."""
    if str(name).endswith('.pt2'):
        return exported_io(name)[0]
    if name == DEFAULT_MODEL:
        return (1, data.INPUT_SIZE, data.INPUT_SIZE)
    if name == 'inception_v3':
        return (3, 299, 299)
    return (3, 224, 224)
