"""The preparation every quantisation scheme gets first (`hasten.quantize.base.quantize` calls `prepare`).

1. Unnamed nodes get the names the quantisers would give them (`<op_type>_<index>` in the original order),
   so node names in a config (`nodes_to_exclude`, ...) mean the same nodes before and after folding.
2. Weights count as constant wherever they come from: Constant nodes holding tensors become initializers
   and constant sub-expressions fold (the `constant_folding` pass, which folds Transpose / Reshape / Cast /
   Identity / Squeeze / Unsqueeze / Flatten over a weight whatever its size).
3. The default-domain opset is upgraded with onnx's version converter to what the scheme writes
   (`required_opset`: a config's `min_opset()`, e.g. 13 for per-channel QDQ whose DequantizeLinear takes
   `axis`). When the upgrade fails, a config with `per_channel=True` falls back to per-tensor (when that
   needs a lower opset the model has); otherwise QuantizationError says why.

`prepare(model, config) -> Prepared(model, config, report)`. The report (the quantised result's
`report["prepare"]`) lists the nodes folded, the constants lifted, the opset before and after and any
fallback. A model that needs nothing (folded already, opset recent enough) comes back as the same object.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import onnx

from hasten.errors import QuantizationError
from hasten.quantize.scheme import QuantConfig

#: Constant nodes with at least this many elements become initializers (smaller ones are shape arguments).
LIFT_SIZE = 16


@dataclass
class Prepared:
    """The model a scheme quantises, the config it runs with (per-tensor after a fallback) and what changed."""

    model: object  # hasten.model.Model
    config: QuantConfig
    report: dict = field(default_factory=dict)


def required_opset(config: QuantConfig) -> int:
    """The default-domain opset `config`'s output needs (its `min_opset()`; 0 when it declares none)."""
    declared = getattr(config, "min_opset", None)
    return int(declared()) if callable(declared) else 0


def prepare(model, config: QuantConfig) -> Prepared:
    """Fold weights into initializers and upgrade the opset to what `config` needs (module docstring)."""
    report: dict = {"folded_nodes": 0, "lifted_constants": 0, "opset": model.opset}
    work = fold_weights(model, report)
    work, config = upgrade_for(work, config, report)
    report["opset_final"] = work.opset
    return Prepared(work, config, report)


def upgrade_for(model, config: QuantConfig, report: dict | None = None):
    """(model, config) with the opset `config` needs: `model` upgraded, or `config` per-tensor when the
    upgrade fails and per-tensor is enough; unchanged when the opset suffices. Notes go into `report`."""
    report = report if report is not None else {}
    need = required_opset(config)
    if not need or model.opset >= need:
        return model, config
    before = model.opset
    try:
        upgraded = upgrade_opset(model, need)
    except QuantizationError as exc:
        fallback = _per_tensor(config)
        if fallback is None or before < required_opset(fallback):
            raise QuantizationError(f"{config.scheme}: the model's opset {before} is too old (needs >= {need}) "
                                    f"and {exc}") from exc
        report["fallback"] = f"per-tensor: {exc}"
        return model, fallback
    report["opset_upgraded"] = [before, need]
    return upgraded, config


def _per_tensor(config: QuantConfig) -> QuantConfig | None:
    names = {f.name for f in dataclasses.fields(config)}
    if "per_channel" in names and config.per_channel:
        return dataclasses.replace(config, per_channel=False)
    return None


def fold_weights(model, report: dict | None = None):
    """`model` with tensor Constants lifted to initializers and constant expressions folded (the same
    object when nothing changes); counts go into `report`."""
    from onnx_ir.passes.common import LiftConstantsToInitializersPass

    from hasten.passes.base import Pass
    from hasten.passes.constant_folding import ConstantFolding

    report = report if report is not None else {}
    work = Pass.working_copy(model)
    renamed = _name_nodes(work)
    before = len(work.graph.initializers)
    lifted = LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=LIFT_SIZE)(work).modified
    report["lifted_constants"] = len(work.graph.initializers) - before if lifted else 0
    named = model.derive(work, "name_nodes") if renamed or lifted else model
    result = ConstantFolding()(named)
    report["folded_nodes"] = int(result.stats.get("nodes_removed", 0))
    if not (lifted or result.modified):
        return model
    return result.model


def _name_nodes(model) -> bool:
    """Name unnamed or duplicate-named main-graph nodes as `hasten.quantize.qdq.name_nodes` would (in place)."""
    from hasten.quantize.graph import unique_name

    nodes = list(model.graph)
    taken: set[str] = set()
    every = {n.name for n in nodes if n.name}
    changed = False
    for i, node in enumerate(nodes):
        if not node.name or node.name in taken:
            node.name = unique_name(node.name or f"{node.op_type}_{i}", taken | every)
            every.add(node.name)
            changed = True
        taken.add(node.name)
    return changed


def upgrade_opset(model, version: int):
    """`model` converted to default-domain opset `version` by onnx's version converter; QuantizationError
    (one line, the converter's reason) when it cannot, or when the result fails the ONNX checker."""
    from onnx import version_converter

    before = model.opset
    try:
        converted = version_converter.convert_version(model.proto(), version)
        onnx.checker.check_model(converted, full_check=False)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise QuantizationError(f"onnx's version converter cannot take it from opset {before} to {version} "
                                f"({first})") from exc
    return model.derive(converted, f"opset_upgrade({before}->{version})")
