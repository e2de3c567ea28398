"""Which conv channels can be removed together: a small dependency walk over a torch.fx trace.

Every `Conv2d` (groups=1) output starts a channel group. The walk follows each tensor's channel layout
(a list of segments `(group, count)`; a concatenation along channels joins segment lists) through:
- channel-preserving ops: BatchNorm2d, activations, pooling, dropout, identity, depthwise Conv2d
  (groups = channels), channel-wise means; BatchNorm and depthwise convs are sliced with the group;
- element-wise add / sub / mul / div of two tensors: their groups are merged (residual connections keep
  one channel set); a scalar or a per-item broadcast operand is fine;
- `torch.cat(dim=1)`: the segments are concatenated (each input keeps its own group);
- flatten / `view(n, -1)` of [N, C, H, W]: a following Linear sees C x H x W features (channel-major);
- consumers: a Conv2d (groups=1) slices its input channels, a Linear after a flatten its in-features.
Anything else that touches a group's channels (the graph output, an unknown op or module, a grouped conv,
a Linear on a 4-D tensor, a `view` with a fixed feature size) pins the group: it is never pruned.

Limits: what torch.fx cannot trace (data-dependent control flow) is refused with a CompressError; Conv1d/3d,
ConvTranspose, GroupNorm/LayerNorm over channels and Linear-output pruning are not handled (their groups
are pinned, never mis-sliced). Torch-Pruning covers more; it is not a dependency of hasten.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

from hasten.compress.common import CompressError

Segments = tuple[tuple[int | None, int], ...]


@dataclass(frozen=True)
class _Layout:
    segments: Segments
    flat: int | None = None  # None: channels on dim 1; S: a flattened [N, C*S] tensor (channel-major)


@dataclass
class ChannelGroup:
    """Channels removed together. `key` (its first producer's name) identifies it in a plan."""

    key: str
    size: int
    producers: list[str] = field(default_factory=list)
    norms: dict[str, str] = field(default_factory=dict)  # producer -> the BatchNorm directly after it
    pinned: str = ""  # why the group cannot be pruned ("" = prunable)


@dataclass
class ChannelGraph:
    groups: dict[str, ChannelGroup]
    consumers: list[tuple[str, Segments, int]]  # module name, input layout, features per channel
    passthroughs: list[tuple[str, Segments]]  # BatchNorm / depthwise conv names and their channel layout
    _root: dict[int, int] = field(default_factory=dict)
    _key_of: dict[int, str] = field(default_factory=dict)

    def prunable(self) -> list[ChannelGroup]:
        return [g for g in self.groups.values() if not g.pinned]

    def key(self, gid: int | None) -> str | None:
        return None if gid is None else self._key_of[self._root[gid]]


def _preserving_modules():
    from torch import nn

    return (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
            nn.Hardsigmoid, nn.LeakyReLU, nn.ELU, nn.Mish, nn.PReLU, nn.Dropout, nn.Dropout2d, nn.Identity,
            nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _preserving_functions():
    import torch
    import torch.nn.functional as F

    return {F.relu, torch.relu, F.relu6, F.gelu, F.silu, torch.sigmoid, torch.tanh, F.hardswish, F.leaky_relu,
            F.elu, F.mish, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.dropout,
            torch.nn.functional.hardsigmoid}


_PRESERVING_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "detach", "float"}
_BINARY = {"add", "sub", "mul", "div", "add_", "mul_"}


def _binary_functions():
    import torch

    return {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.imul,
            torch.add, torch.sub, torch.mul, torch.div}


def analyze(module, example_inputs) -> ChannelGraph:
    """Trace `module` with torch.fx, propagate shapes on `example_inputs`, and find the channel groups."""
    import torch
    from torch import fx, nn
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        gm = fx.symbolic_trace(module)
    except Exception as exc:
        raise CompressError(f"channel pruning traces the model with torch.fx, which failed for "
                            f"{type(module).__name__}: {str(exc).splitlines()[0]}") from exc
    args = tuple(example_inputs.values()) if isinstance(example_inputs, dict) else (
        tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,))
    with torch.no_grad():
        ShapeProp(gm).propagate(*args)

    parent: dict[int, int] = {}
    size: dict[int, int] = {}
    origin: dict[int, str] = {}
    pinned: dict[int, str] = {}
    norms: dict[str, str] = {}
    consumers: list[tuple[str, Segments, int]] = []
    passthroughs: list[tuple[str, Segments]] = []
    layout: dict = {}
    calls: dict[str, int] = {}
    preserving_mods, preserving_fns, binary_fns = _preserving_modules(), _preserving_functions(), _binary_functions()

    def find(g):
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    def new_group(name, n, why=""):
        g = len(parent)
        parent[g], size[g], origin[g] = g, n, name
        if why:
            pinned[g] = why
        return _Layout(((g, n),))

    def pin(lay, why):
        if lay is not None:
            for g, _ in lay.segments:
                if g is not None:
                    pinned.setdefault(find(g), why)

    def shape(node):
        meta = node.meta.get("tensor_meta")
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def node_inputs(node):
        found = []
        fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n))
        return found

    def merge(a, b, why):
        if a is None or b is None:
            pin(a or b, why)
            return a or b
        if a.flat != b.flat or [n for _, n in a.segments] != [n for _, n in b.segments]:
            pin(a, why)
            pin(b, why)
            return a
        for (ga, _), (gb, _) in zip(a.segments, b.segments, strict=True):
            if ga is None or gb is None:
                pin(a, why)
                pin(b, why)
            elif find(ga) != find(gb):
                ra, rb = find(ga), find(gb)
                parent[rb] = ra
                if rb in pinned:
                    pinned.setdefault(ra, pinned[rb])
        return a

    def flatten(node, lay):
        src = shape(node.args[0])
        if lay is None or src is None:
            return None
        if len(src) == 4 and lay.flat is None:
            return _Layout(lay.segments, math.prod(src[2:]))
        if len(src) == 2:
            return _Layout(lay.segments, lay.flat or 1)
        pin(lay, f"flatten of a rank-{len(src)} tensor at {node.name}")
        return None

    for node in gm.graph.nodes:
        ins = node_inputs(node)
        lays = [layout.get(n) for n in ins]
        first = layout.get(node.args[0]) if node.args and isinstance(node.args[0], fx.Node) else None
        out = None
        why = f"used by {node.op} {node.target} ({node.name})"
        if node.op in ("placeholder", "get_attr"):
            out = None
        elif node.op == "output":
            for lay in lays:
                pin(lay, "reaches the model output")
        elif node.op == "call_module":
            mod = gm.get_submodule(node.target)
            calls[node.target] = calls.get(node.target, 0) + 1
            if calls[node.target] > 1:
                raise CompressError(f"module {node.target} is called more than once; channel pruning needs "
                                    "each layer used once")
            for lay in lays[1:]:
                pin(lay, why)
            if isinstance(mod, nn.Conv2d):
                if mod.groups == 1:
                    if first is not None:
                        consumers.append((node.target, first.segments, 1))
                    out = new_group(node.target, mod.out_channels)
                elif mod.groups == mod.in_channels == mod.out_channels and first is not None:
                    passthroughs.append((node.target, first.segments))
                    out = first
                else:
                    pin(first, f"grouped conv {node.target}")
                    out = new_group(node.target, mod.out_channels, f"grouped conv {node.target}")
            elif isinstance(mod, nn.BatchNorm2d):
                if first is not None:
                    passthroughs.append((node.target, first.segments))
                    src = node.args[0]
                    if src.op == "call_module" and isinstance(gm.get_submodule(src.target), nn.Conv2d):
                        norms[src.target] = node.target
                out = first
            elif isinstance(mod, nn.Linear):
                if first is not None and first.flat is not None:
                    consumers.append((node.target, first.segments, first.flat))
                else:
                    pin(first, f"Linear {node.target} on a rank-{len(shape(node.args[0]) or ())} tensor")
            elif isinstance(mod, nn.Flatten):
                out = flatten(node, first) if mod.start_dim == 1 else None
                if mod.start_dim != 1:
                    pin(first, why)
            elif isinstance(mod, preserving_mods):
                out = first
            else:
                for lay in lays:
                    pin(lay, f"unsupported module {type(mod).__name__} ({node.target})")
        elif node.op in ("call_function", "call_method"):
            target = node.target
            is_method = node.op == "call_method"
            if target in preserving_fns or (is_method and target in _PRESERVING_METHODS):
                for lay in lays[1:]:
                    pin(lay, why)
                out = first
            elif target in binary_fns or (is_method and target in _BINARY):
                tensors = [a for a in node.args[:2] if isinstance(a, fx.Node)]
                full = [a for a in tensors if shape(a) is not None and shape(a) == shape(node)]
                if len(full) == 2:
                    out = merge(layout.get(full[0]), layout.get(full[1]), f"element-wise {node.name} with "
                                "an input that cannot be pruned")
                elif len(full) == 1:
                    out = layout.get(full[0])
                    for a in tensors:
                        if a is not full[0]:
                            other = shape(a)
                            if layout.get(a) is not None and out is not None and other is not None:
                                # a per-channel gate (squeeze-excitation): same channels, broadcast spatially
                                out = merge(out, layout[a], why) if other[:2] == shape(node)[:2] else out
                            elif other is not None and len(other) > 1 and other[1] != 1:
                                pin(out, why)
                else:
                    for lay in lays:
                        pin(lay, why)
            elif target in (_torch_cat(),) or (is_method and target == "cat"):
                tensors = node.args[0] if node.args else node.kwargs.get("tensors")
                dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
                rank = len(shape(node) or ())
                parts = [layout.get(t) for t in tensors]
                if rank and dim % rank == 1 and all(p is None or p.flat is None for p in parts):
                    segs: list = []
                    for t, p in zip(tensors, parts, strict=True):
                        segs += list(p.segments) if p is not None else [(None, shape(t)[1])]
                    out = _Layout(tuple(segs))
                else:
                    for lay in parts:
                        pin(lay, f"concatenation on dim {dim} ({node.name})")
            elif target in (_torch_flatten(),) or (is_method and target == "flatten"):
                start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                out = flatten(node, first) if start == 1 else None
                if start != 1:
                    pin(first, why)
            elif is_method and target in ("view", "reshape"):
                dims = node.args[1:]
                src, dst = shape(node.args[0]), shape(node)
                if first is not None and src and dst and len(dst) == 2 and dims and dims[-1] == -1:
                    out = flatten(node, first)
                else:
                    pin(first, f"{target} to a fixed shape ({node.name}); write view(x.size(0), -1)")
            elif (is_method and target in ("mean", "amax")) or target in _reductions():
                dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
                src, dst = shape(node.args[0]), shape(node)
                spatial = src is not None and len(src) == 4 and dims is not None and \
                    sorted(d % 4 for d in (dims if isinstance(dims, (tuple, list)) else [dims])) == [2, 3]
                if first is not None and spatial:
                    out = first if len(dst) == 4 else _Layout(first.segments, 1)
                else:
                    pin(first, why)
            elif (is_method and target in ("size", "dim")) or target is getattr:
                out = None
            else:
                for lay in lays:
                    pin(lay, why)
        layout[node] = out

    members: dict[int, list[int]] = {}
    for g in sorted(parent):
        members.setdefault(find(g), []).append(g)
    groups: dict[str, ChannelGroup] = {}
    key_of: dict[int, str] = {}
    for r, ids in members.items():  # a group is named after its first producer in graph order
        names = [origin[g] for g in ids]
        key_of[r] = names[0]
        groups[names[0]] = ChannelGroup(names[0], size[r], names, {p: norms[p] for p in names if p in norms},
                                        pinned.get(r, ""))
    graph = ChannelGraph(groups, consumers, passthroughs)
    graph._root = {g: find(g) for g in parent}
    graph._key_of = key_of
    return graph


def _torch_cat():
    import torch

    return torch.cat


def _torch_flatten():
    import torch

    return torch.flatten


def _reductions():
    import torch

    return {torch.mean, torch.amax}


def _index(graph: ChannelGraph, segments: Segments, kept: dict, spatial: int = 1):
    """Kept input indices of a tensor with `segments` (channel-major, `spatial` features per channel)."""
    import torch

    parts, offset = [], 0
    for gid, n in segments:
        key = graph.key(gid)
        idx = kept.get(key) if key is not None else None
        idx = torch.arange(n) if idx is None else torch.as_tensor(idx, dtype=torch.long)
        parts.append(idx + offset)
        offset += n
    channels = torch.cat(parts)
    if spatial == 1:
        return channels
    return (channels[:, None] * spatial + torch.arange(spatial)[None, :]).reshape(-1)


def apply(module, graph: ChannelGraph, kept: dict[str, list[int]]) -> None:
    """Slice `module`'s layers in place: keep the channels `kept[group key]` (sorted indices) of each group."""
    import torch
    from torch import nn

    for key in kept:
        if key not in graph.groups:
            raise CompressError(f"the plan names channel group {key!r}, which this model does not have")
        if graph.groups[key].pinned:
            raise CompressError(f"channel group {key!r} cannot be pruned: {graph.groups[key].pinned}")

    def param(t):
        return nn.Parameter(t.detach().clone().contiguous(), requires_grad=True)

    for key, idx in kept.items():
        idx = torch.as_tensor(idx, dtype=torch.long)
        for name in graph.groups[key].producers:
            conv = module.get_submodule(name)
            conv.weight = param(conv.weight[idx])
            if conv.bias is not None:
                conv.bias = param(conv.bias[idx])
            conv.out_channels = len(idx)
    for name, segments in graph.passthroughs:
        idx = _index(graph, segments, kept)
        mod = module.get_submodule(name)
        if isinstance(mod, nn.BatchNorm2d):
            mod.weight = param(mod.weight[idx]) if mod.weight is not None else None
            mod.bias = param(mod.bias[idx]) if mod.bias is not None else None
            if mod.running_mean is not None:
                mod.running_mean = mod.running_mean[idx].clone()
                mod.running_var = mod.running_var[idx].clone()
            mod.num_features = len(idx)
        else:  # depthwise conv
            mod.weight = param(mod.weight[idx])
            if mod.bias is not None:
                mod.bias = param(mod.bias[idx])
            mod.in_channels = mod.out_channels = mod.groups = len(idx)
    for name, segments, spatial in graph.consumers:
        idx = _index(graph, segments, kept, spatial)
        mod = module.get_submodule(name)
        mod.weight = param(mod.weight[:, idx])
        if isinstance(mod, nn.Conv2d):
            mod.in_channels = len(idx)
        else:
            mod.in_features = len(idx)
