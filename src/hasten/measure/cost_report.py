"""The cost model's results: one row per node, totals by op type and category, the floor's bytes.

Computed by `hasten.measure.cost.estimate_cost`; see that module for what a FLOP and a byte count.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import onnx_ir as ir

CATEGORIES = ("linear", "attention", "norm", "elementwise", "other")
#: Bytes per element of the dtype names used in reports and targets.
DTYPE_SIZES = {"fp64": 8, "fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1, "int4": 0.5}
_D = ir.DataType
_DTYPE_NAMES = {_D.FLOAT: "fp32", _D.FLOAT16: "fp16", _D.BFLOAT16: "bf16", _D.DOUBLE: "fp64",
                _D.INT8: "int8", _D.UINT8: "int8", _D.INT4: "int4", _D.UINT4: "int4", _D.INT16: "int16",
                _D.UINT16: "int16", _D.INT32: "int32", _D.UINT32: "int32", _D.INT64: "int64",
                _D.UINT64: "int64", _D.BOOL: "bool", _D.STRING: "string"}


def dtype_name(dtype: ir.DataType | None) -> str:
    """"fp32", "bf16", "int8", ... for an ONNX element type ("?" when unknown)."""
    if dtype is None:
        return "?"
    return _DTYPE_NAMES.get(dtype) or ("fp8" if dtype.name.startswith("FLOAT8") else dtype.name.lower())


@dataclass(frozen=True)
class CostRow:
    """One node: FLOPs, bytes read + written, category, compute dtype; `parts` splits fused nodes."""

    name: str
    op_type: str
    domain: str
    flops: int
    bytes: int
    category: str
    dtype: str
    parts: tuple[tuple[str, int], ...] = ()
    known: bool = True  # False: no formula for this op, or shapes missing (FLOPs counted as 0)
    folded: bool = False  # every input constant: runtimes fold it away

    def flops_in(self, category: str) -> int:
        if self.parts:
            return sum(f for c, f in self.parts if c == category)
        return self.flops if self.category == category else 0

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "parts": dict(self.parts)}


@dataclass(frozen=True)
class TensorBytes:
    """A tensor counted once: kind "weight", "input", "output" (these make `floor_bytes`) or "activation"."""

    name: str
    nbytes: int
    elements: int
    floating: bool
    kind: str
    linear_weight: bool = False


@dataclass(frozen=True)
class OpTotal:
    count: int
    flops: int
    bytes: int


@dataclass
class CostReport:
    """Per-node costs of one model at one set of input shapes, with totals and the roofline's bytes."""

    rows: list[CostRow]
    input_shapes: dict[str, tuple[int, ...]]
    tensors: list[TensorBytes] = field(default_factory=list)

    def _sum(self, kinds: Iterable[str]) -> int:
        return sum(t.nbytes for t in self.tensors if t.kind in kinds)

    @property
    def total_flops(self) -> int:
        return sum(r.flops for r in self.rows)

    @property
    def total_bytes(self) -> int:
        """Sum over nodes of bytes read + written (the traffic with no fusion and no cache reuse)."""
        return sum(r.bytes for r in self.rows)

    @property
    def floor_bytes(self) -> int:
        """Weights read once, graph inputs read once, outputs written once: the roofline's bytes term."""
        return self._sum(("weight", "input", "output"))

    @property
    def weight_bytes(self) -> int:
        return self._sum(("weight",))

    @property
    def io_bytes(self) -> int:
        return self._sum(("input", "output"))

    @property
    def activation_bytes(self) -> int:
        """Each intermediate activation written once (not part of the floor)."""
        return self._sum(("activation",))

    def bytes_as(self, dtype: str | None = None, linear_dtype: str | None = None) -> int:
        """`floor_bytes` with floating tensors stored at `dtype`'s size (None: as they are) and floating
        weights of linear layers at `linear_dtype`'s (default: `dtype`)."""
        total = 0
        for t in self.tensors:
            want = (linear_dtype or dtype) if t.linear_weight else dtype
            if t.kind != "activation":
                floating = t.floating and want in DTYPE_SIZES
                total += math.ceil(t.elements * DTYPE_SIZES[want]) if floating else t.nbytes
        return total

    def flops_by_category(self) -> dict[str, int]:
        return {c: sum(r.flops_in(c) for r in self.rows) for c in CATEGORIES}

    @property
    def linear_flops(self) -> int:
        return sum(r.flops_in("linear") for r in self.rows)

    @property
    def attention_flops(self) -> int:
        return sum(r.flops_in("attention") for r in self.rows)

    def by_op_type(self) -> dict[str, OpTotal]:
        """{op type: OpTotal(count, flops, bytes)}, costliest first."""
        acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for r in self.rows:
            a = acc[r.op_type if r.domain in ("", "ai.onnx") else f"{r.domain}.{r.op_type}"]
            a[0], a[1], a[2] = a[0] + 1, a[1] + r.flops, a[2] + r.bytes
        ordered = sorted(acc.items(), key=lambda kv: (-kv[1][1], -kv[1][2], kv[0]))
        return {k: OpTotal(*v) for k, v in ordered}

    def top(self, n: int = 10, key: str = "flops") -> list[CostRow]:
        """The n costliest nodes by "flops" or "bytes"."""
        return sorted(self.rows, key=lambda r: (-getattr(r, key), -r.bytes, r.name))[:n]

    def uncosted(self) -> dict[str, int]:
        """{op type: count} of nodes with no FLOP formula or missing shapes (counted as 0 FLOPs)."""
        out: dict[str, int] = defaultdict(int)
        for r in self.rows:
            out[r.op_type] += not r.known
        return {k: v for k, v in out.items() if v}

    def to_dict(self) -> dict:
        return {
            "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
            "total_flops": self.total_flops, "total_bytes": self.total_bytes,
            "floor_bytes": self.floor_bytes, "weight_bytes": self.weight_bytes,
            "io_bytes": self.io_bytes, "activation_bytes": self.activation_bytes,
            "flops_by_category": self.flops_by_category(),
            "by_op_type": {k: dataclasses.asdict(v) for k, v in self.by_op_type().items()},
            "uncosted": self.uncosted(), "rows": [r.to_dict() for r in self.rows],
        }


# -- the walk ---------------------------------------------------------------------------------------
