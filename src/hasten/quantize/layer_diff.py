"""Layer-by-layer diff of a quantised (or fp16, binary...) model against its float original.

Every float tensor that a node of the original computes is matched in the candidate: the tensor of the same
name, or — when the candidate quantises it (X -> QuantizeLinear -> DequantizeLinear) — the DequantizeLinear
output, which is what the consumers of X really read. Both models run on the same samples with those tensors
exposed as outputs; per tensor, summed over all items:

    SQNR = 10·log10(Σ r² / Σ (r - c)²)  dB          (r: original, c: candidate)
    drop = min(SQNR of the node's compared inputs; exact graph inputs count as the cap) - SQNR
    step = -10·log10(10^(-SQNR/10) - 10^(-SQNR_in/10))  dB, SQNR_in = that worst input's SQNR:
           the SQNR of the noise this node adds on its own (relative noise powers add up through a layer)

A quantised graph input appears as a row of its own (its DequantizeLinear view).

Rows come in the original's topological order. `first_broken` is the first tensor whose SQNR is below the
threshold (or that holds NaN/inf where the original does not); `worst_step` is the node that adds the most
noise on its own (the lowest `step`): where accuracy breaks even when the damage is diluted downstream.
Going from an exact tensor (200 dB) to a quantised one at 40 dB is a 160 dB drop but a 40 dB step. The helpers `expose`, `compare_tensors` are shared with the fp16 fallback.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from hasten.errors import QuantizationError
from hasten.measure.accuracy import SQNR_CAP_DB

#: |x| at or above this is a mask sentinel (float32 min/max used as -inf), not a value
SENTINEL = 1e30
FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
               onnx.TensorProto.DOUBLE}


# -- running with intermediate tensors exposed -------------------------------------------------------
def value_types(proto: onnx.ModelProto) -> dict[str, int]:
    """Element type of every value onnx shape inference can type (0 when unknown)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    except Exception:  # custom domains or broken shapes: fall back to what the model declares
        inferred = proto
    g = inferred.graph
    types = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    for t in g.initializer:
        types[t.name] = t.data_type
    return types


def float_node_outputs(proto: onnx.ModelProto) -> list[str]:
    """Names of the node outputs of the main graph that are (or may be) float, in node order."""
    types = value_types(proto)
    outputs = []
    for node in proto.graph.node:
        for name in node.output:
            if name and types.get(name, 0) in FLOAT_TYPES | {0}:
                outputs.append(name)
    return outputs


def expose(proto: onnx.ModelProto, names) -> onnx.ModelProto:
    """A copy of `proto` whose graph outputs also include `names` (untyped, the runtime infers them; graph
    inputs keep their declared type)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    have = {o.name for o in out.graph.output}
    inputs = {i.name: i for i in out.graph.input}
    for name in names:
        if name not in have:
            vi = out.graph.output.add()
            if name in inputs:  # a graph input passed through must keep its declared type
                vi.CopyFrom(inputs[name])
            vi.name = name
            have.add(name)
    return out


@dataclass
class TensorStat:
    """Streaming comparison of one tensor: Σ r², Σ (r - c)², non-finite counts, max |r|.

    Elements where the original is ±inf/NaN or a mask sentinel (|r| >= 1e30, e.g. the -3.4e38 added to
    padded attention scores) are not counted: any very negative value, -inf included, means the same there."""

    signal: float = 0.0
    noise: float = 0.0
    nonfinite: int = 0  # NaN/inf in the candidate where the original is finite
    ref_absmax: float = 0.0
    cand_absmax: float = 0.0
    shape_mismatch: bool = False

    def update(self, r: np.ndarray, c: np.ndarray) -> None:
        if r.shape != c.shape:
            self.shape_mismatch = True
            return
        r = r.astype(np.float64, copy=False)
        c = c.astype(np.float64, copy=False)
        finite_r = np.isfinite(r) & (np.abs(r) < SENTINEL)
        bad = finite_r & ~np.isfinite(c)
        self.nonfinite += int(bad.sum())
        if finite_r.any():
            self.ref_absmax = max(self.ref_absmax, float(np.abs(r[finite_r]).max()))
        ok = finite_r & ~bad
        rr, cc = r[ok], c[ok]
        self.signal += float((rr * rr).sum())
        self.noise += float(((rr - cc) ** 2).sum())
        if rr.size:
            self.cand_absmax = max(self.cand_absmax, float(np.abs(cc).max()))

    @property
    def sqnr_db(self) -> float:
        if self.nonfinite:
            return -SQNR_CAP_DB
        if self.noise == 0:
            return SQNR_CAP_DB
        return float(np.clip(10 * np.log10(max(self.signal, 1e-300) / self.noise), -SQNR_CAP_DB, SQNR_CAP_DB))

    @property
    def rel_error(self) -> float:
        """||r - c|| / ||r|| (inf when the candidate is non-finite)."""
        if self.nonfinite:
            return float("inf")
        if self.noise == 0:
            return 0.0
        return float(np.sqrt(self.noise / max(self.signal, 1e-300)))


def compare_tensors(reference, candidate, samples, pairs: dict[str, str], max_samples: int | None = None
                    ) -> dict[str, TensorStat]:
    """Run both models (hasten Models) on `samples` with the tensors of `pairs` (original name -> candidate
    name) exposed, and compare them item by item (streamed: memory is one item's tensors)."""
    from hasten.backends import reference_backend
    from hasten.model import Model

    if max_samples is not None:
        samples = samples.take(min(len(samples), max_samples))
    backend = reference_backend(fusions=False)
    ref_sess = backend.compile(Model.from_proto(expose(reference.proto(), pairs.keys())))
    cand_sess = backend.compile(Model.from_proto(expose(candidate.proto(), set(pairs.values()))))
    stats = {name: TensorStat() for name in pairs}
    for feeds in samples.feeds(1):
        r_out = ref_sess.run(feeds)
        c_out = cand_sess.run({k: v for k, v in feeds.items() if k in cand_sess.input_names})
        for ref_name, cand_name in pairs.items():
            r, c = r_out.get(ref_name), c_out.get(cand_name)
            if r is None or c is None or not np.issubdtype(r.dtype, np.floating) \
                    or not _is_float(c):
                continue
            stats[ref_name].update(r, c)
    return {k: v for k, v in stats.items() if v.signal or v.noise or v.nonfinite or v.shape_mismatch}


def _is_float(a: np.ndarray) -> bool:
    return np.issubdtype(a.dtype, np.floating) or a.dtype.name == "bfloat16"


def match_tensors(reference_proto: onnx.ModelProto, candidate_proto: onnx.ModelProto) -> dict[str, str]:
    """Original float node output -> the candidate tensor that stands for it (see module docstring)."""
    cand_values = {o for n in candidate_proto.graph.node for o in n.output} | \
        {i.name for i in candidate_proto.graph.input}
    consumers: dict[str, list] = {}
    for n in candidate_proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    def dq_of(name: str) -> str | None:
        for q in consumers.get(name, []):
            if q.op_type == "QuantizeLinear" and q.input[0] == name:
                dqs = [d for d in consumers.get(q.output[0], []) if d.op_type == "DequantizeLinear"]
                if dqs:
                    return dqs[0].output[0]
        return None

    types = value_types(reference_proto)
    pairs = {}
    for inp in reference_proto.graph.input:  # a quantised graph input: its dequantised view
        if types.get(inp.name) in FLOAT_TYPES and dq_of(inp.name):
            pairs[inp.name] = dq_of(inp.name)
    for name in float_node_outputs(reference_proto):
        if name in cand_values:
            pairs[name] = dq_of(name) or name
    return pairs


def _step_db(sqnr: float, sqnr_in: float) -> float:
    """SQNR of the noise one step adds: -10·log10(10^(-sqnr/10) - 10^(-sqnr_in/10)), capped."""
    added = 10 ** (-sqnr / 10) - 10 ** (-sqnr_in / 10)
    if added <= 0:
        return SQNR_CAP_DB
    return float(np.clip(-10 * np.log10(added), -SQNR_CAP_DB, SQNR_CAP_DB))


# -- the report ------------------------------------------------------------------------------------
@dataclass
class TensorDiff:
    tensor: str
    node: str  # the original node that computes it
    op_type: str
    sqnr_db: float
    drop_db: float
    step_db: float
    nonfinite: int
    ref_absmax: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LayerDiffReport:
    rows: list[TensorDiff]
    threshold_db: float
    samples: int
    first_broken: TensorDiff | None = None
    worst_step: TensorDiff | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"threshold_db": self.threshold_db, "samples": self.samples,
                "first_broken": self.first_broken.to_dict() if self.first_broken else None,
                "worst_step": self.worst_step.to_dict() if self.worst_step else None,
                "rows": [r.to_dict() for r in self.rows], "notes": list(self.notes)}

    def render(self, console, limit: int | None = 40) -> None:
        from rich.table import Table

        table = Table(title=f"layer diff ({self.samples} samples, threshold {self.threshold_db:.0f} dB)")
        for col in ("#", "tensor", "node", "op", "SQNR dB", "step dB", "max |r|"):
            table.add_column(col, justify="right" if col in ("#", "SQNR dB", "step dB", "max |r|") else "left",
                             overflow="fold")
        rows = self.rows if limit is None else self.rows[:limit]
        for i, r in enumerate(rows):
            style = "bold red" if r is self.first_broken else None
            sq = "NaN/inf" if r.nonfinite else f"{r.sqnr_db:.1f}"
            table.add_row(str(i), r.tensor, r.node, r.op_type, sq, f"{r.step_db:.1f}", f"{r.ref_absmax:.3g}",
                          style=style)
        console.print(table)
        if self.first_broken:
            fb = self.first_broken
            console.print(f"first tensor below {self.threshold_db:.0f} dB: {fb.tensor} (node {fb.node}, "
                          f"{fb.op_type}) at {fb.sqnr_db:.1f} dB")
        else:
            console.print(f"no tensor below {self.threshold_db:.0f} dB")
        if self.worst_step:
            ld = self.worst_step
            console.print(f"node adding the most noise on its own: {ld.node} ({ld.op_type}), step SQNR "
                          f"{ld.step_db:.1f} dB (output {ld.sqnr_db:.1f} dB)")


def layer_diff(candidate, reference, samples, threshold_db: float = 20.0, max_samples: int = 8
               ) -> LayerDiffReport:
    """Compare `candidate` with its float `reference` tensor by tensor on `samples` (see module docstring)."""
    ref_proto, cand_proto = reference.proto(), candidate.proto()
    pairs = match_tensors(ref_proto, cand_proto)
    if not pairs:
        raise QuantizationError("layer diff: the quantised model shares no tensor names with the original; "
                                "was it made from this model?")
    used = min(len(samples), max_samples)
    stats = compare_tensors(reference, candidate, samples, pairs, max_samples=used)
    producer = {o: n for n in ref_proto.graph.node for o in n.output}
    graph_inputs = {i.name for i in ref_proto.graph.input}
    rows: list[TensorDiff] = []
    sq_of: dict[str, float] = {}
    notes = []
    for name in pairs:  # topological: node order of a valid ONNX graph
        st = stats.get(name)
        if st is None:
            continue
        if st.shape_mismatch:
            notes.append(f"{name}: shapes differ between the models; not compared")
            continue
        sq_of[name] = st.sqnr_db
        if name not in producer:  # a quantised graph input
            rows.append(TensorDiff(name, "<graph input>", "input", st.sqnr_db, SQNR_CAP_DB - st.sqnr_db,
                                   _step_db(st.sqnr_db, SQNR_CAP_DB), st.nonfinite, st.ref_absmax))
            continue
        node = producer[name]
        ins = [sq_of.get(i, SQNR_CAP_DB if i in graph_inputs else None) for i in node.input if i]
        ins = [s for s in ins if s is not None]
        worst_in = min(ins) if ins else SQNR_CAP_DB
        rows.append(TensorDiff(name, node.name or f"<{node.op_type}>", node.op_type, st.sqnr_db,
                               worst_in - st.sqnr_db, _step_db(st.sqnr_db, worst_in), st.nonfinite,
                               st.ref_absmax))
    first = next((r for r in rows if r.nonfinite or r.sqnr_db < threshold_db), None)
    worst = min(rows, key=lambda r: r.step_db) if rows else None
    return LayerDiffReport(rows, threshold_db, used, first, worst, notes)
