"""Structured pruning of torch models: the result is a smaller DENSE model (smaller matrices, fewer channels).

    result = prune(module, example_inputs, heads=0.5, ffn=0.5, importance="taylor", calib=batches)
    result = prune(module, example_inputs, target_flops=0.5)            # keep 50% of the MACs
    result = prune(cnn, example_inputs, channels=0.5)
    model = to_model(result.module, example_inputs)                     # a hasten Model (ONNX, opset 17)

Fractions `heads`, `ffn`, `channels` are the share REMOVED from every layer / channel group (0.5 of 12
heads removes 6); `target_flops` is the share of multiply-accumulates KEPT (0.5: the pruned model does
half the MACs of the original, counted from shapes by `count_macs`), reached by bisecting one common
sparsity. `keep_layers` (transformers) keeps those encoder layers, in order.

Transformer encoders (BERT-style layers: attention.self.query/key/value, attention.output.dense,
intermediate.dense, output.dense) lose whole heads (Q/K/V out-features and attention-output in-features;
`num_attention_heads` / `all_head_size` updated on the module) and FFN neurons (intermediate out-features,
output in-features). CNNs lose conv output channels, with the dependent layers fixed by the dependency
walk of `hasten.compress.channels`. Every layer keeps at least one head / neuron / channel.

What was removed is a JSON-able plan (kept indices); `apply_plan` replays it on a fresh copy of the same
source, so a pruned student is saved as safetensors weights + the plan (`save_student` / `load_student`).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from hasten.compress import channels as ch
from hasten.compress import importance as imp
from hasten.compress.common import CompressError, call, count_macs, count_params

PLAN_KEY = "hasten.compress.plan"


@dataclass
class PruneResult:
    """The pruned module (a new object; the input is untouched), its plan and what it costs."""

    module: object
    plan: dict
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    importance: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def macs_ratio(self) -> float:
        return self.macs_after / max(1, self.macs_before)

    def to_dict(self) -> dict:
        return {"kind": self.plan.get("kind"), "importance": self.importance, "macs_before": self.macs_before,
                "macs_after": self.macs_after, "macs_ratio": self.macs_ratio, "params_before": self.params_before,
                "params_after": self.params_after, "seconds": self.seconds, "shapes": describe_plan(self.plan),
                "notes": self.notes}


# -- transformer encoders --------------------------------------------------------------------------------
def find_encoder_layers(module) -> tuple[str, list] | None:
    """(qualified name, layers) of the first ModuleList of BERT-style layers in `module`, or None."""
    from torch import nn

    for name, mod in module.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) and all(_is_bert_layer(m) for m in mod):
            return name, list(mod)
    return None


def _is_bert_layer(m) -> bool:
    from hasten.compress.common import is_self_attention

    try:
        return (is_self_attention(m.attention.self) and hasattr(m.attention.output, "dense")
                and hasattr(m.intermediate, "dense") and hasattr(m.output, "dense"))
    except AttributeError:
        return False


def layer_keep(n_layers: int, n_keep: int) -> list[int]:
    """Evenly spaced layer indices, ending with the last: 6 -> 3 keeps [1, 3, 5]."""
    if not 1 <= n_keep <= n_layers:
        raise CompressError(f"cannot keep {n_keep} of {n_layers} layers; give 1..{n_layers}")
    return [int((i + 1) * n_layers / n_keep) - 1 for i in range(n_keep)]


def _keep_count(n: int, fraction: float, multiple_of: int = 1) -> int:
    if not 0.0 <= fraction < 1.0:
        raise CompressError(f"a pruning fraction must be in [0, 1), got {fraction}")
    keep = max(1, n - int(round(fraction * n)))
    if multiple_of > 1:
        keep = min(n, multiple_of * math.ceil(keep / multiple_of))
    return keep


def _top(scores, keep: int) -> list[int]:
    """Indices of the `keep` highest scores, in ascending index order (ties: lower index first)."""
    import numpy as np

    s = scores.detach().double().cpu().numpy()
    order = np.argsort(-s, kind="stable")[:keep]
    return sorted(int(i) for i in order)


def _slice_linear(lin, idx, dim: int) -> None:
    from torch import nn

    lin.weight = nn.Parameter(lin.weight.detach().index_select(dim, idx).clone())
    if dim == 0:
        if lin.bias is not None:
            lin.bias = nn.Parameter(lin.bias.detach()[idx].clone())
        lin.out_features = len(idx)
    else:
        lin.in_features = len(idx)


def _apply_transformer(module, plan: dict) -> None:
    import torch

    found = find_encoder_layers(module)
    if found is None or found[0] != plan["container"]:
        raise CompressError(f"the plan is for transformer layers at {plan['container']!r}; this model has "
                            f"{found[0] if found else 'none'}")
    name, layers = found
    if len(layers) != plan["num_layers"]:
        raise CompressError(f"the plan is for {plan['num_layers']} layers, the model has {len(layers)}")
    kept = [layers[i] for i in plan["layers"]]
    container = module.get_submodule(name)
    for i in range(len(container) - 1, -1, -1):
        del container[i]
    for layer in kept:
        container.append(layer)
    cfg = getattr(module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module, "config", None)
    if cfg is not None and hasattr(cfg, "num_hidden_layers"):
        cfg.num_hidden_layers = len(kept)
    for layer, heads, ffn in zip(kept, plan["heads"], plan["ffn"], strict=True):
        att = layer.attention.self
        d = int(att.attention_head_size)
        if heads is not None:
            rows = torch.tensor([h * d + j for h in heads for j in range(d)], dtype=torch.long)
            for lin in (att.query, att.key, att.value):
                _slice_linear(lin, rows, 0)
            _slice_linear(layer.attention.output.dense, rows, 1)
            att.num_attention_heads = len(heads)
            att.all_head_size = len(heads) * d
        if ffn is not None:
            idx = torch.tensor(ffn, dtype=torch.long)
            _slice_linear(layer.intermediate.dense, idx, 0)
            _slice_linear(layer.output.dense, idx, 1)


def _transformer_plan(container: str, n_layers: int, keep_layers, head_scores, ffn_scores, heads: float,
                      ffn: float, multiple_of: int) -> dict:
    plan = {"kind": "transformer", "container": container, "num_layers": n_layers, "layers": list(keep_layers),
            "heads": [], "ffn": []}
    for hs, fs in zip(head_scores, ffn_scores, strict=True):
        plan["heads"].append(_top(hs, _keep_count(len(hs), heads)) if heads else None)
        plan["ffn"].append(_top(fs, _keep_count(len(fs), ffn, multiple_of)) if ffn else None)
    return plan


# -- CNNs ---------------------------------------------------------------------------------------------
def _cnn_plan(graph, scores: dict, fraction: float, multiple_of: int) -> dict:
    kept = {}
    for g in graph.prunable():
        if fraction:
            kept[g.key] = _top(scores[g.key], _keep_count(g.size, fraction, multiple_of))
    return {"kind": "cnn", "channels": kept}


# -- public API ---------------------------------------------------------------------------------------
def apply_plan(module, plan: dict, example_inputs=None):
    """A pruned deep copy of `module` following `plan` (from `prune` or a saved student)."""
    pruned = copy.deepcopy(module)
    if plan.get("kind") == "transformer":
        _apply_transformer(pruned, plan)
    elif plan.get("kind") == "cnn":
        if example_inputs is None:
            raise CompressError("replaying a channel plan needs example inputs (for the dependency walk)")
        graph = ch.analyze(pruned, example_inputs)
        ch.apply(pruned, graph, {k: list(v) for k, v in plan["channels"].items()})
    elif plan.get("kind") != "none":
        raise CompressError(f"unknown plan kind {plan.get('kind')!r}")
    return pruned.eval()


def prune(module, example_inputs, *, heads: float | None = None, ffn: float | None = None,
          channels: float | None = None, target_flops: float | None = None, keep_layers=None,
          importance: str = "magnitude", calib=None, multiple_of: int = 1, seed: int = 0) -> PruneResult:
    """Structured pruning (see the module docstring). `calib`: a list of input batches (for taylor /
    activation importance). Returns a PruneResult whose `.module` is a new, smaller, dense module."""
    import torch

    t0 = time.perf_counter()
    imp.check_method(importance, calib)
    module = module.eval()
    macs0, params0 = count_macs(module, example_inputs), count_params(module)
    found = find_encoder_layers(module)
    notes: list[str] = []
    if target_flops is not None and not 0.0 < target_flops <= 1.0:
        raise CompressError(f"target_flops is the share of MACs kept, in (0, 1]; got {target_flops}")
    if found is not None:
        if channels:
            raise CompressError("channel pruning is for CNNs; for a transformer give heads / ffn / layers")
        name, layers = found
        keep = list(keep_layers) if keep_layers is not None else list(range(len(layers)))
        if sorted(set(keep)) != keep or not keep or keep[-1] >= len(layers) or keep[0] < 0:
            raise CompressError(f"keep_layers must be increasing indices in 0..{len(layers) - 1}, got {keep}")
        base_plan = {"kind": "transformer", "container": name, "num_layers": len(layers), "layers": keep,
                     "heads": [None] * len(keep), "ffn": [None] * len(keep)}
        work = apply_plan(module, base_plan)
        work_layers = find_encoder_layers(work)[1]
        with torch.random.fork_rng():
            hs, fs = imp.transformer_scores(work, work_layers, importance, calib, seed)

        def make(h, f):
            return _transformer_plan(name, len(layers), keep, hs, fs, h, f, multiple_of)

        if target_flops is not None:
            plan = _bisect(lambda s: make(s, s), module, example_inputs, target_flops, macs0, notes)
        else:
            plan = make(heads or 0.0, ffn or 0.0)
    else:
        if heads or ffn or keep_layers is not None:
            raise CompressError(f"{type(module).__name__} has no BERT-style encoder layers to prune heads, "
                                "FFN neurons or layers from; use channels= for CNNs")
        graph = ch.analyze(module, example_inputs)
        groups = graph.prunable()
        if not groups:
            raise CompressError(f"{type(module).__name__}: no prunable conv channel groups "
                                f"({'; '.join(sorted({g.pinned for g in graph.groups.values()}))})")
        with torch.random.fork_rng():
            scores = imp.channel_scores(module, groups, importance, calib, seed)
        if target_flops is not None:
            plan = _bisect(lambda s: _cnn_plan(graph, scores, s, multiple_of), module, example_inputs,
                           target_flops, macs0, notes)
        else:
            plan = _cnn_plan(graph, scores, channels or 0.0, multiple_of)
        pinned = [f"{g.key}: {g.pinned}" for g in graph.groups.values() if g.pinned]
        if pinned:
            notes.append("kept whole (cannot be pruned): " + "; ".join(pinned))
    pruned = apply_plan(module, plan, example_inputs)
    with torch.no_grad():
        call(pruned, example_inputs)  # the pruned module must still run
    return PruneResult(pruned, plan, macs0, count_macs(pruned, example_inputs), params0, count_params(pruned),
                       importance, time.perf_counter() - t0, notes)


def _bisect(make_plan, module, example_inputs, target: float, macs0: int, notes: list) -> dict:
    """The plan of the smallest common sparsity s whose MACs are <= target x the original's."""
    lo, hi = 0.0, 0.99
    best = make_plan(hi)
    best_ratio = count_macs(apply_plan(module, best, example_inputs), example_inputs) / macs0
    if best_ratio > target:
        notes.append(f"target_flops {target:.2f} is out of reach; the smallest is {best_ratio:.3f}")
        return best
    for _ in range(12):
        mid = (lo + hi) / 2
        plan = make_plan(mid)
        ratio = count_macs(apply_plan(module, plan, example_inputs), example_inputs) / macs0
        if ratio <= target:
            hi, best, best_ratio = mid, plan, ratio
        else:
            lo = mid
    notes.append(f"target_flops {target:.2f}: common sparsity {hi:.3f} keeps {best_ratio:.3f} of the MACs")
    return best


def describe_plan(plan: dict) -> dict:
    """Short shape summary: kept layers, heads and FFN widths per layer, or channels per group."""
    if plan.get("kind") == "transformer":
        return {"layers": plan["layers"], "heads": [None if h is None else len(h) for h in plan["heads"]],
                "ffn": [None if f is None else len(f) for f in plan["ffn"]]}
    if plan.get("kind") == "cnn":
        return {"channels": {k: len(v) for k, v in plan["channels"].items()}}
    return {}


# -- export and persistence -------------------------------------------------------------------------------
def to_model(module, example_inputs, *, input_names=None, output_names=None, dynamic_axes=None):
    """Export a (pruned) module to a hasten Model with the TorchScript exporter, opset 17."""
    from hasten.torch_export import from_torch

    return from_torch(module.eval(), example_inputs, input_names=input_names, output_names=output_names,
                      dynamic_axes=dynamic_axes, opset=17)


def save_student(path, module, plan: dict, source: str = "") -> Path:
    """Weights as safetensors with the plan (and the source it applies to) in the file's metadata."""
    from safetensors.torch import save_file

    from hasten.fileio import atomic_path

    path = Path(path)
    state = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={PLAN_KEY: json.dumps(plan), "hasten.compress.source": source})
    return path


def read_student_meta(path) -> tuple[dict, str]:
    """(plan, source) stored in a student file by `save_student`."""
    from safetensors import safe_open

    path = Path(path)
    if path.suffix in (".pt", ".pth", ".bin", ".pkl"):
        raise CompressError(f"{path}: pickled torch files are not loaded (unsafe); give the .safetensors "
                            "file written by `hasten prune`")
    if not path.is_file():
        raise CompressError(f"{path}: no such student file; write one with `hasten prune ... -o OUT.onnx`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise CompressError(f"{path}: not a readable safetensors file ({exc})") from exc
    if PLAN_KEY not in meta:
        raise CompressError(f"{path}: holds no pruning plan; it was not written by hasten's save_student")
    return json.loads(meta[PLAN_KEY]), meta.get("hasten.compress.source", "")


def load_student(path, base_module, example_inputs=None):
    """Rebuild a saved student: replay its plan on `base_module` (the same source), load its weights."""
    from safetensors.torch import load_file

    plan, _ = read_student_meta(path)
    student = apply_plan(base_module, plan, example_inputs)
    try:
        student.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        raise CompressError(f"{path}: weights do not fit the model rebuilt from its plan "
                            f"({str(exc).splitlines()[0]}); was it pruned from another model?") from exc
    return student.eval()
