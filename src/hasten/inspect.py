"""`hasten inspect`: what a model is, what it costs, and the fastest it could possibly run.

`inspect_model(model, shapes, targets)` fixes the input shapes, counts FLOPs and bytes per node
(`measure.cost`), and states the roofline floor on the host (measured) and on each published target for
fp32, bf16 and int8 (int8 = linear layers at the int8 peak, the rest at fp32), each as
"floor = max(FLOPs/peak, bytes/bandwidth) = ...", and the host's ISA: its features, native dtypes and int8
path (whether int8 pair sums saturate). `report.to_dict()` is JSON-able; `report.render(console)` prints
rich tables. The CLI calls exactly these two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hasten.input_shapes import split_shapes
from hasten.measure.cost import estimate_cost
from hasten.measure.cost_report import CostReport, CostRow
from hasten.measure.floors import FLOOR_DTYPES  # the dtypes each target's floor is stated for
from hasten.measure.shapes import infer_shapes
from hasten.measure.targets import (
    PUBLISHED,
    Floor,
    Target,
    get_target,
    host_target,
    roofline,
    roofline_mixed,
    seconds,
    si,
)
from hasten.model import Model
from hasten.source import load

TOP_NODES = 10


@dataclass(frozen=True)
class FloorEntry:
    target: str
    source: str
    dtype: str
    floor: Floor | None
    note: str = ""

    def to_dict(self) -> dict:
        floor = self.floor.to_dict() if self.floor else {"seconds": None, "formula": None}
        floor["computed_as"] = floor.pop("dtype", None)  # "int8+fp32" for the mixed int8 estimate
        return {**floor, "target": self.target, "source": self.source, "dtype": self.dtype, "note": self.note}


@dataclass
class InspectReport:
    """Everything `hasten inspect` prints, for one model at one set of input shapes."""

    model: str
    fingerprint: str
    opset: int
    inputs: list[dict]
    outputs: list[dict]
    op_histogram: dict[str, int]
    parameter_count: int
    parameter_bytes: int
    cost: CostReport
    floors: list[FloorEntry] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def top_nodes(self, n: int = TOP_NODES) -> list[CostRow]:
        return self.cost.top(n)

    def floor(self, target: str, dtype: str) -> Floor | None:
        for entry in self.floors:
            if entry.target == target and entry.dtype == dtype:
                return entry.floor
        return None

    def host(self) -> dict | None:
        """The host target's ISA summary (`host_summary`), or None when the host is not among the targets."""
        for t in self.targets:
            if t.name == "host":
                return host_summary(t)
        return None

    def to_dict(self) -> dict:
        cost = self.cost
        return {
            "model": self.model, "fingerprint": self.fingerprint, "opset": self.opset,
            "inputs": self.inputs, "outputs": self.outputs, "op_histogram": dict(self.op_histogram),
            "parameters": {"count": self.parameter_count, "bytes": self.parameter_bytes},
            "cost": {
                "total_flops": cost.total_flops, "linear_flops": cost.linear_flops,
                "attention_flops": cost.attention_flops, "flops_by_category": cost.flops_by_category(),
                "traffic_bytes": cost.total_bytes, "floor_bytes": cost.floor_bytes,
                "weight_bytes": cost.weight_bytes, "io_bytes": cost.io_bytes,
                "activation_bytes": cost.activation_bytes,
                "by_op_type": {k: {"count": v.count, "flops": v.flops, "bytes": v.bytes}
                               for k, v in cost.by_op_type().items()},
                "uncosted": cost.uncosted(),
            },
            "top_nodes": [r.to_dict() for r in self.top_nodes()],
            "floors": [e.to_dict() for e in self.floors],
            "targets": [t.to_dict() for t in self.targets],
            "host": self.host(),
        }

    # -- printing ----------------------------------------------------------------------------------
    def render(self, console) -> None:
        from rich.table import Table

        cost = self.cost
        console.print(f"[bold]{self.model}[/bold]  fingerprint {self.fingerprint}  opset {self.opset}")

        io = Table(title="Inputs and outputs", title_justify="left")
        for col in ("", "name", "dtype", "declared shape", "shape used"):
            io.add_column(col)
        for kind, specs in (("in", self.inputs), ("out", self.outputs)):
            for s in specs:
                io.add_row(kind, s["name"], s["dtype"], _dims(s["declared_shape"]), _dims(s["shape"]))
        console.print(io)

        console.print(f"parameters: {self.parameter_count:,} ({si(self.parameter_bytes, 'B')})   "
                      f"nodes: {sum(self.op_histogram.values()):,}   ops: " +
                      ", ".join(f"{op} {n}" for op, n in self.op_histogram.items()))

        cats = cost.flops_by_category()
        total = cost.total_flops or 1
        summary = Table(title="Cost", title_justify="left")
        summary.add_column("")
        summary.add_column("value", justify="right")
        summary.add_row("FLOPs", si(cost.total_flops, "FLOP"))
        for c, f in cats.items():
            if f:
                summary.add_row(f"  {c}", f"{si(f, 'FLOP')} ({100 * f / total:.1f}%)")
        summary.add_row("bytes moved, per node (read + written)", si(cost.total_bytes, "B"))
        summary.add_row("bytes, floor (weights + inputs + outputs once)", si(cost.floor_bytes, "B"))
        summary.add_row("  weights read", si(cost.weight_bytes, "B"))
        summary.add_row("  inputs + outputs", si(cost.io_bytes, "B"))
        summary.add_row("intermediate activations, each once", si(cost.activation_bytes, "B"))
        console.print(summary)
        if cost.uncosted():
            console.print("[yellow]no FLOP count (unknown op or shape) for: " +
                          ", ".join(f"{k} x{v}" for k, v in cost.uncosted().items()) + "[/yellow]")

        ops = Table(title="By op type", title_justify="left")
        for col, just in (("op", "left"), ("count", "right"), ("FLOPs", "right"), ("%", "right"),
                          ("bytes", "right")):
            ops.add_column(col, justify=just)
        for op, t in cost.by_op_type().items():
            ops.add_row(op, str(t.count), si(t.flops, "FLOP"), f"{100 * t.flops / total:.1f}",
                        si(t.bytes, "B"))
        console.print(ops)

        top = Table(title=f"{TOP_NODES} costliest nodes", title_justify="left")
        for col, just in (("node", "left"), ("op", "left"), ("category", "left"), ("dtype", "left"),
                          ("FLOPs", "right"), ("bytes", "right")):
            top.add_column(col, justify=just)
        for r in self.top_nodes():
            top.add_row(r.name, r.op_type, r.category, r.dtype, si(r.flops, "FLOP"), si(r.bytes, "B"))
        console.print(top)

        host = self.host()
        if host is not None:
            console.print(host_line(host), soft_wrap=True, markup=False)

        floors = Table(title="Roofline floor", title_justify="left")
        for col, just in (("target", "left"), ("dtype", "left"), ("compute", "right"), ("memory", "right"),
                          ("floor", "right"), ("bound", "left")):
            floors.add_column(col, justify=just)
        for e in self.floors:
            label = f"{e.target} ({e.source})"
            if e.floor is None:
                floors.add_row(label, e.dtype, "-", "-", "-", e.note)
            else:
                f = e.floor
                floors.add_row(label, e.dtype, seconds(f.compute_s), seconds(f.memory_s), seconds(f.seconds),
                               f.bound)
        console.print(floors)
        for e in self.floors:
            if e.floor is not None:
                note = f"  [{e.note}]" if e.note else ""
                console.print(f"{e.target} {e.dtype}: {e.floor.formula()}{note}", soft_wrap=True,
                              markup=False)


def host_summary(target: Target) -> dict:
    """{"description", "features", "native_dtypes", "int8_isa", "int8_saturates", "measured_at"} of a host
    Target (measured dtypes when the profile does not say which are native)."""
    d = target.details
    return {"description": target.description, "features": list(target.features),
            "native_dtypes": list(d.get("native_dtypes") or target.dtypes), "int8_isa": target.int8_isa,
            "int8_saturates": target.int8_saturates, "measured_at": d.get("measured_at"),
            "measure_seconds": d.get("measure_seconds")}


def host_line(host: dict) -> str:
    """"host: AMD EPYC, 2 cores; native dtypes fp32, int8; int8 path avx2-saturating (...); features ..."."""
    why = "u8 x s8 pair sums saturate in int16: no VNNI / AMX" if host["int8_saturates"] else \
        "int8 dot products accumulate in int32"
    return (f"host: {host['description'] or 'this CPU'}; native dtypes {', '.join(host['native_dtypes'])}; "
            f"int8 path {host['int8_isa'] or 'unknown'} ({why}); features "
            f"{' '.join(host['features']) or 'unknown (not read)'}")


def _dims(shape) -> str:
    return " x ".join(str(d) for d in shape) if shape else "scalar"


def _floors(cost: CostReport, target: Target) -> list[FloorEntry]:
    out = []
    for dtype in FLOOR_DTYPES:
        if dtype == "int8":
            if "int8" in target.peak_flops and "fp32" in target.peak_flops:
                out.append(FloorEntry(target.name, target.source, dtype,
                                      roofline_mixed(cost, target, "int8", "fp32"),
                                      "linear layers int8, the rest fp32"))
            else:
                out.append(FloorEntry(target.name, target.source, dtype, None, "no int8 peak on this target"))
        elif dtype in target.peak_flops:
            out.append(FloorEntry(target.name, target.source, dtype, roofline(cost, target, dtype)))
        else:
            out.append(FloorEntry(target.name, target.source, dtype, None, f"no {dtype} on this target"))
    return out


def inspect_model(model, shapes: Mapping[str, object] | None = None,
                  targets: Sequence[Target | str] | None = None) -> InspectReport:
    """Inspect `model` (a Model or anything `hasten.load` takes) at `shapes` ({dim name: int} and/or
    {input name: "1x128" or a tuple}); floors on `targets` (default: the host, then every published one)."""
    if not isinstance(model, Model):
        model = load(model)
    overrides, input_shapes = split_shapes(model, shapes)
    shaped = infer_shapes(model, overrides, input_shapes)
    cost = estimate_cost(shaped, infer=False)
    if targets is None:
        chosen = [host_target(), *PUBLISHED.values()]
    else:
        chosen = [t if isinstance(t, Target) else get_target(t) for t in targets]
    declared = {s.name: s for s in model.inputs}
    inputs = [{"name": s.name, "dtype": str(s.dtype), "declared_shape": list(declared[s.name].shape),
               "shape": list(s.shape)} for s in shaped.inputs]
    declared_out = {s.name: s for s in model.outputs}
    outputs = [{"name": s.name, "dtype": str(s.dtype),
                "declared_shape": list(declared_out[s.name].shape) if s.name in declared_out else [],
                "shape": list(s.shape)} for s in shaped.outputs]
    name = str(model.source) if model.source else (model.lineage[0] if model.lineage else "model")
    floors = [entry for t in chosen for entry in _floors(cost, t)]
    return InspectReport(name, model.fingerprint(), model.opset, inputs, outputs, model.op_histogram(),
                         model.parameter_count(), model.parameter_bytes(), cost, floors, chosen)


def host_floors(model, shapes: Mapping[str, object] | None = None) -> dict | None:
    """This host's floors for `bench` (hasten.measure.floors.host_floors) of `model`, a Model or a path;
    None when it cannot be loaded or costed, or the host not measured (the bench still runs)."""
    from hasten.measure import floors

    try:
        if not isinstance(model, Model):
            model = load(model)
    except Exception:  # informative only: a bench must not fail for want of a floor
        return None
    return floors.host_floors(model, shapes)
