"""Per-layer sensitivity: what quantising ONE node alone costs, for every quantisable node, ranked worst first.

For each node the int8 static scheme would quantise (MatMul/Gemm/Conv with a constant weight; the list comes
from `hasten.quantize.int8.quantisable_nodes`), the model is quantised with only that node quantised (every
other candidate in `nodes_to_exclude`) and run on the evaluation samples:

    SQNR = 10·log10(Σ r² / Σ (r - c)²) dB over every float output (r: fp32 model, c: one-node model)
    drop = metric(fp32 outputs) - metric(one-node outputs)      (when a metric is given; labels when present)

The activation statistics are collected ONCE (`collect_stats`) and shared by every variant, so all nodes
are judged with the very ranges the full quantisation uses. Rows are ranked by metric drop (when a metric is
given), else by SQNR, worst first. Caveat: SmoothQuant (when the config asks for it) only smooths a tensor
whose readers are all quantised, so with one node quantised at a time it rarely applies.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from hasten.errors import QuantizationError
from hasten.measure.evaluator import Evaluator


# -- measuring candidates ----------------------------------------------------------------------------
def model_evaluator(model, samples, metric=None) -> Evaluator:
    """The evaluator sensitivity and mixed precision judge with: the fp32 `model` is the reference (on the
    reference backend), `metric` (optional) reads its first output."""
    ev = Evaluator(samples, [metric] if metric is not None else [],
                   output=model.outputs[0].name if model.outputs else None)
    ev.set_reference(model)
    return ev


def measure(ev: Evaluator, model) -> tuple[float, float | None, float | None]:
    """(SQNR dB over the outputs, metric mean or None, metric drop vs fp32 or None)."""
    judged = ev.measure(model)
    if not ev.metrics:
        return judged.sqnr_db, None, None
    name = ev.metrics[0].name
    return judged.sqnr_db, judged.scores[name].mean, judged.drops[name]


# -- the report --------------------------------------------------------------------------------------
@dataclass
class SensitivityRow:
    node: str
    op_type: str
    sqnr_db: float
    metric: float | None = None
    metric_drop: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SensitivityReport:
    """Rows ranked worst first; `full_sqnr_db` / `full_metric_drop`: every node quantised at once."""

    rows: list[SensitivityRow]
    scheme: dict
    samples: int
    metric: str | None = None
    baseline_metric: float | None = None
    full_sqnr_db: float | None = None
    full_metric_drop: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ranked_nodes(self) -> list[str]:
        return [r.node for r in self.rows]

    def row(self, node: str) -> SensitivityRow:
        return next(r for r in self.rows if r.node == node)

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "samples": self.samples, "metric": self.metric,
                "baseline_metric": self.baseline_metric, "full_sqnr_db": self.full_sqnr_db,
                "full_metric_drop": self.full_metric_drop, "rows": [r.to_dict() for r in self.rows],
                "notes": list(self.notes)}

    def render(self, console, top: int | None = None, title: str | None = None) -> None:
        from rich.table import Table

        rows = self.rows if top is None else self.rows[:top]
        prefix = common_prefix([r.node for r in self.rows])
        table = Table(title=title or f"per-layer sensitivity ({self.scheme.get('scheme')}, one node quantised "
                                     f"at a time, {self.samples} samples), worst first")
        table.add_column("rank", justify="right")
        table.add_column(f"node ({prefix}...)" if prefix else "node", overflow="fold")
        table.add_column("op")
        table.add_column("SQNR dB", justify="right")
        if self.metric:
            table.add_column(self.metric, justify="right")
            table.add_column("drop", justify="right")
        for i, r in enumerate(rows, 1):
            cells = [str(i), r.node[len(prefix):], r.op_type, f"{r.sqnr_db:.1f}"]
            if self.metric:
                cells += [f"{r.metric:.4f}" if r.metric is not None else "-",
                          f"{r.metric_drop:+.4f}" if r.metric_drop is not None else "-"]
            table.add_row(*cells)
        console.print(table)
        if self.full_sqnr_db is not None:
            extra = (f", {self.metric} drop {self.full_metric_drop:+.4f}" if self.full_metric_drop is not None
                     else "")
            console.print(f"all {len(self.rows)} nodes quantised together: SQNR {self.full_sqnr_db:.1f} dB{extra}"
                          + (f" (fp32 {self.metric} = {self.baseline_metric:.4f})" if self.metric else ""))
        for note in self.notes:
            console.print(f"note: {note}")


def common_prefix(names: list[str]) -> str:
    """The longest common prefix of `names` ending in "/" (so the rest stays readable in a narrow table)."""
    if len(names) < 2:
        return ""
    parts = [n.split("/") for n in names]
    common = []
    for segs in zip(*(p[:-1] for p in parts), strict=False):
        if len(set(segs)) != 1:
            break
        common.append(segs[0])
    return "/".join(common) + "/" if common and any(common) else ""


# -- the analysis ------------------------------------------------------------------------------------
def _progress(enabled: bool, console=None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True, disable=not enabled)


def prepare(model, calib, scheme=None, stats=None, progress: bool = True, console=None):
    """(config, stats, node names, op types): the int8-static config, its statistics collected once, and the
    nodes it quantises (minus those the config already excludes)."""
    from hasten.quantize.graph import inferred_proto
    from hasten.quantize.int8 import Int8StaticConfig, quantisable_nodes, stats_tensors
    from hasten.quantize.qdq import name_nodes
    from hasten.quantize.stats import collect_stats

    config = scheme if scheme is not None else Int8StaticConfig()
    if not isinstance(config, Int8StaticConfig):
        raise QuantizationError(f"sensitivity and mixed precision work on int8-static; got {config.scheme}")
    if calib is None:
        raise QuantizationError("sensitivity needs calibration samples (--calib DATA)")
    if len(calib) < config.min_samples:
        raise QuantizationError(f"int8-static needs at least {config.min_samples} calibration samples, got "
                                f"{len(calib)}; give more")
    calib.validate(model)
    calib.check_finite()
    names = [n for n in quantisable_nodes(model, config) if n not in config.nodes_to_exclude]
    if not names:
        raise QuantizationError("the model has no quantisable nodes (MatMul/Gemm/Conv with a constant weight) "
                                f"among op types {list(config.op_types)}")
    proto = name_nodes(inferred_proto(model))
    ops = {n.name: n.op_type for n in proto.graph.node}
    if stats is None:
        with _progress(progress, console) as bar:
            task = bar.add_task("calibration statistics", total=len(calib))
            stats = collect_stats(model, calib, tensors=stats_tensors(proto, config),
                                  progress=lambda done, total: bar.update(task, completed=done))
    return config, stats, names, ops


def sensitivity(model, calib, eval=None, metric=None, scheme=None, *, nodes=None, stats=None,
                eval_samples: int = 64, include_full: bool = True, progress: bool = True, console=None,
                deadline: float | None = None) -> SensitivityReport:
    """Rank the quantisable nodes of `model` by what quantising each one alone costs (module docstring).

    `eval`: Samples to measure on (default: `calib`, noted in the report); at most `eval_samples` items are
    used. `metric`: a metric name or Metric (labels from `eval` when present). `scheme`: an Int8StaticConfig.
    `nodes`: restrict to these node names. `stats`: statistics from `collect_stats` to reuse. `deadline`: a
    `time.perf_counter()` time after which no further node is measured (the rows then hold the nodes measured
    so far, in graph order, and a note says how many)."""
    from hasten.quantize.int8 import quantize_static

    config, stats, names, ops = prepare(model, calib, scheme, stats, progress, console)
    if nodes is not None:
        unknown = sorted(set(nodes) - set(names))
        if unknown:
            raise QuantizationError(f"nodes {unknown[:5]} are not quantisable nodes of the model")
        names = [n for n in names if n in set(nodes)]
    notes = []
    if eval is None:
        eval = calib
        notes.append("measured on the calibration samples (no --eval data given)")
    else:
        eval.validate(model)
    samples = eval.take(min(len(eval), eval_samples))
    ev = model_evaluator(model, samples, metric)
    rows = []
    with _progress(progress, console) as bar:
        task = bar.add_task("sensitivity (one node at a time)", total=len(names) + int(include_full))
        for name in names:
            if deadline is not None and time.perf_counter() > deadline:
                notes.append(f"stopped after {len(rows)} of {len(names)} nodes: the time budget ran out")
                include_full = False
                break
            others = [n for n in names if n != name]
            one = dataclasses.replace(config, dynamic_nodes=tuple(d for d in config.dynamic_nodes if d == name))
            q = quantize_static(model, one, calib, nodes_to_exclude=others, stats=stats)
            sq, value, drop = measure(ev, q.model)
            rows.append(SensitivityRow(name, ops.get(name, "?"), sq, value, drop))
            bar.advance(task)
        full_sq = full_drop = None
        if include_full:
            full_sq, _, full_drop = measure(ev, quantize_static(model, config, calib, stats=stats).model)
            bar.advance(task)
    metric = ev.metrics[0] if ev.metrics else None
    if metric is not None:
        rows.sort(key=lambda r: (-r.metric_drop, r.sqnr_db))
    else:
        rows.sort(key=lambda r: r.sqnr_db)
    return SensitivityReport(rows, config.to_dict(), len(samples), metric.name if metric else None,
                             ev.baseline()[metric.name].mean if metric else None, full_sq, full_drop, notes)
