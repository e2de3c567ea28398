"""report.html: one self-contained page (inline CSS and SVG, no script, nothing fetched) from results.json.

Sections (each an element with this id): summary, scatter (latency vs accuracy, Pareto front, budget
line), floor (chosen vs baseline vs roofline floor), distributions (latency of the final measurement),
candidates (every candidate, kept or rejected and why), sensitivity (per-layer), cost (by op type),
environment (CPU, flags, packages, threads).
"""

from __future__ import annotations

from html import escape

from hasten.fileio import atomic_write_text
from hasten.outcome.records import Latency, Record, Status
from hasten.outcome.results import Results
from hasten.report import svg

SECTIONS = ("summary", "scatter", "floor", "distributions", "candidates", "sensitivity", "cost", "environment")

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1100px;color:#222;
line-height:1.4;padding:0 16px}h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:32px;
border-bottom:1px solid #ddd;padding-bottom:4px}table{border-collapse:collapse;font-size:12px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:right;vertical-align:top}th{background:#f5f5f5}
td.l,th.l{text-align:left}.muted{color:#777}.big{font-size:15px}.ok{color:#2ca02c}.bad{color:#d62728}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;margin:6px 0}
.legend span{display:inline-block;margin-right:14px}.dot{display:inline-block;width:10px;height:10px;
border-radius:5px;margin-right:4px;vertical-align:middle}code{background:#f5f5f5;padding:1px 3px}
.scroll{max-height:560px;overflow:auto}
"""


def _pct(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _ms(v) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if v >= 1 else f"{v:.3g}"


def _mb(nbytes) -> str:
    """Megabytes with three significant digits (a 40 kB model is 0.04, not 0.0)."""
    if not nbytes:
        return "-"
    mb = nbytes / 1e6
    return f"{mb:.1f}" if mb >= 100 else f"{mb:.3g}"


def _noise_text(res: Results) -> str:
    """One sentence on how noisy the host was (the baseline's per-round spread), or ""."""
    final = res.noise.get("final") or {}
    if final.get("spread") is None:
        return ""
    text = (f"Host noise: the baseline's median varied by {final['spread']:.1%} between the final measurement's "
            f"{final.get('rounds')} interleaved rounds (p10..p90)")
    if res.noise.get("screens_max_spread") is not None:
        text += f", by up to {res.noise['screens_max_spread']:.1%} in the screens"
    return text + "."


def _acc(c: Record | None, metric: str):
    score = c.accuracy.scores.get(metric) if c is not None and c.accuracy else None
    return None if score is None else score.mean


def _est_ms(c: Record, base_ms: float | None) -> float | None:
    """Milliseconds: the final measurement, else the baseline's final median / the screen ratio."""
    if c.latency:
        return c.latency.median_ms
    if base_ms and c.speedup:
        return base_ms / c.speedup
    return None


def section_summary(res: Results) -> str:
    s = res.summary
    chosen, base = res.record(res.chosen), res.record(res.baseline)
    parts = [f'<p class="big">Model <b>{escape(str(res.model))}</b> '
             f'(fingerprint <code>{escape(str(res.input_fingerprint))}</code>), metrics '
             f'{escape(", ".join(res.metrics))}, budget '
             f'{escape(", ".join(f"{k} drop ≤ {v:g}" for k, v in res.budget.items()))}.</p>']
    if chosen and base:
        ok = "ok" if s and s.beat_baseline and not s.failures else "bad"
        parts.append(f'<p class="big {ok}" id="headline">{escape(s.line if s else "")}</p>')
        rows = ['<tr><th class="l"></th><th class="l">recipe</th><th>median ms</th><th>p90 ms</th>'
                '<th>speed-up</th>' + "".join(f"<th>{escape(m)} (mean / worst)</th>" for m in res.metrics)
                + "<th>size MB</th></tr>"]
        for name, c in (("baseline", base), ("chosen", chosen)):
            lat = c.latency or Latency()
            scores = c.accuracy.scores if c.accuracy else {}
            cells = "".join(f"<td>{_pct(getattr(scores.get(m), 'mean', None))} / "
                            f"{_pct(getattr(scores.get(m), 'worst', None))}</td>" for m in res.metrics)
            rows.append(f'<tr><td class="l">{name}</td><td class="l">{escape(c.label)}</td>'
                        f'<td>{_ms(lat.median_ms)}</td><td>{_ms(lat.p90_ms)}</td>'
                        f'<td>{(lat.ratio or 1.0):.2f}x</td>{cells}'
                        f'<td>{_mb(c.size_bytes)}</td></tr>')
        parts.append("<table>" + "".join(rows) + "</table>")
    host = res.host
    if host.get("int8_isa"):
        parts.append(f'<p>Tuned for int8 path <b>{escape(str(host["int8_isa"]))}</b>'
                     + (" (int16 pair sums saturate)" if host.get("int8_saturates") else "")
                     + f'; CPU features {escape(", ".join(host.get("features") or []))}.</p>')
    noise = _noise_text(res)
    if noise:
        parts.append(f'<p id="noise">{escape(noise)}</p>')
    counts = res.counts
    parts.append(f'<p>{sum(counts.values())} candidates: ' + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
                 + f'. Search time {res.elapsed_s:.0f} s; evaluation on {res.evaluation_items} '
                   f'items (subset screen {res.subset_items}).</p>')
    for note in res.notes:
        parts.append(f'<div class="note">{escape(note)}</div>')
    if res.interrupted or res.partial:
        parts.append('<div class="note">These are partial results (the search was interrupted).</div>')
    return "".join(parts)


def section_scatter(res: Results) -> str:
    metric = res.primary
    base = res.record(res.baseline)
    base_ms = base.median_ms if base else None
    points, xy = [], []
    limit = res.budget.get(metric)
    base_acc = _acc(base, metric)
    higher = res.higher_is_better.get(metric, True)
    floor_y = None
    if limit is not None and base_acc is not None and higher:
        floor_y = base_acc - 4 * limit  # points far below the budget are drawn on the bottom edge
    hidden = 0
    for c in res.candidates:
        y = _acc(c, metric)
        x = _est_ms(c, base_ms)
        if x is None or y is None or c.status in (Status.FAILED, Status.NOT_TRIED, Status.DUPLICATE):
            continue
        if floor_y is not None and y < floor_y:
            hidden += 1
            continue
        kind = "chosen" if c.chosen else str(c.status)
        color = svg.COLORS.get(kind, "#999")
        points.append({"x": x, "y": y, "color": color, "r": 7 if c.chosen else 4,
                       "title": f"{c.label}\n{x:.2f} ms, {metric} {y:.4f}\n{c.status}: {c.reason}",
                       "label": "chosen" if c.chosen else ("baseline" if c.key == res.baseline else None)})
        xy.append((x, y))
    hline = (base_acc - limit, f"budget: {metric} ≥ {base_acc - limit:.4f}") if limit is not None and \
        base_acc is not None else None
    chart = svg.scatter(points, "latency, ms (median; screened candidates scaled from their ratio to the "
                                "baseline)", f"{metric} (mean)", hline, svg.pareto_front(xy))
    legend = "".join(f'<span><i class="dot" style="background:{svg.COLORS[k]}"></i>{k}</span>'
                     for k in ("chosen", "baseline", "in-budget", "rejected", "front"))
    far = (f' {hidden} candidate(s) far below the budget ({metric} &lt; {floor_y:.4f}) are left out of the '
           f'plot; the table below lists them.' if hidden else "")
    return (f'<div class="legend">{legend}</div>{chart}<p class="muted">{far} Each dot is a candidate that ran; the '
            f'dashed purple line is the Pareto front (nothing is both faster and more accurate), the dashed red '
            f'line the accuracy budget. Hover a dot for its recipe. Accuracy is against the fp32 model on the '
            f'same backend; out-of-budget candidates were timed only to decide whether refining them could '
            f'win.</p>')


def section_floor(res: Results) -> str:
    chosen, base = res.record(res.chosen), res.record(res.baseline)
    floor = res.extras.get("floor") or {}
    formulas = floor.get("formulas") or {}
    rows = []
    if base and base.latency:
        rows.append(("baseline: " + base.label, base.latency.median_ms, svg.COLORS["baseline"],
                     f"median of {base.latency.runs} runs"))
    if chosen and chosen.latency and chosen.key != res.baseline:
        rows.append(("chosen: " + chosen.label, chosen.latency.median_ms, svg.COLORS["chosen"],
                     f"median of {chosen.latency.runs} runs"))
    for dtype in ("fp32", "bf16", "int8"):
        v = floor.get(f"{dtype}_ms")
        if v:
            rows.append((f"roofline floor, {dtype}" + (" linear layers" if dtype == "int8" else ""), v,
                         svg.COLORS["floor"], formulas.get(dtype, "")))
    text = ""
    if chosen and chosen.latency and floor.get("fp32_ms"):
        dtype = "int8" if any(s.name.startswith("int8") for s in chosen.recipe.steps) else "fp32"
        f = floor.get(f"{dtype}_ms") or floor["fp32_ms"]
        if chosen.latency.median_ms < f or (base and base.latency and base.latency.median_ms < floor["fp32_ms"]):
            text += ('<div class="note">A measured time is below its floor: the host profile\'s peaks are too '
                     'low (measured while the machine was busy?). Re-measure them on an idle machine: '
                     '<code>hasten.measure.targets.host_target(refresh=True)</code>.</div>')
        text += (f'<p>The chosen model runs at {chosen.latency.median_ms / f:.1f}x its {dtype} floor on this '
                 f'host ({_ms(f)} ms = max(FLOPs / peak, bytes / bandwidth), with the peaks measured on this '
                 f'host: {escape(formulas.get(dtype, ""))}).</p>')
    elif not floor:
        why = res.extras.get("floor_error", "the cost model could not cost this model")
        text = f'<p class="muted">No floor: {escape(str(why))}</p>'
    return svg.hbars(rows, "ms") + text


def section_distributions(res: Results) -> str:
    series = []
    for c in res.candidates:
        if c.latency and c.latency.times_ms:
            kind = "chosen" if c.chosen else ("baseline" if c.key == res.baseline else "in-budget")
            series.append((c.label, c.latency.times_ms, svg.COLORS[kind]))
    series.sort(key=lambda s: sorted(s[1])[len(s[1]) // 2])
    return (svg.boxplots(series, "ms") +
            f'<p class="muted">The final measurement: finalists and the baseline timed in one process, '
            f'interleaved (A B A B ...), ≥ {res.settings.get("final_seconds", 5):g} s each after warm-up; box = '
            f'p25..p75, line = median, whiskers = p1..p99.</p>')


def section_candidates(res: Results) -> str:
    metrics = res.metrics
    head = ('<tr><th>#</th><th class="l">recipe</th><th class="l">origin</th><th class="l">status</th>'
            + "".join(f"<th>{escape(m)} drop</th>" for m in metrics)
            + '<th>speed-up</th><th>ms</th><th>size MB</th><th class="l">why</th></tr>')
    rows = []
    for i, c in enumerate(res.candidates, 1):
        drops_of = c.accuracy.drops if c.accuracy else {}
        drops = "".join(f"<td>{_pct(drops_of[m]) if m in drops_of else '-'}</td>" for m in metrics)
        sp = f"{c.speedup:.2f}x" if c.speedup else "-"
        cls = "ok" if c.chosen else ""
        rows.append(f'<tr class="{cls}"><td>{i}</td><td class="l">{escape(c.label)}</td>'
                    f'<td class="l">{escape(c.origin)}</td><td class="l">{escape(str(c.status))}'
                    f'{" ★" if c.chosen else ""}</td>{drops}<td>{sp}</td>'
                    f'<td>{_ms(c.median_ms)}</td><td>{_mb(c.size_bytes)}</td>'
                    f'<td class="l">{escape(c.reason or "")}</td></tr>')
    return (f'<div class="scroll"><table>{head}{"".join(rows)}</table></div><p class="muted">Drops are absolute '
            f'(baseline − candidate) on the full evaluation set, or on the subset when the subset screen rejected '
            f'the candidate. Speed-up = baseline median / candidate median from the same interleaved run '
            f'(final measurement when there is one, else the short screen).</p>')


def section_sensitivity(res: Results) -> str:
    sens = res.sensitivity
    if not sens or not sens.get("rows"):
        if sens and sens.get("reason"):  # the search says why (no int8-static candidate, the time budget...)
            return f'<p class="muted">No per-layer sensitivity was measured: {escape(sens["reason"])}.</p>'
        return ('<p class="muted">No per-layer sensitivity was measured: every whole-model scheme the search '
                'refined either fit the budget or could not beat the best model already in budget, so mixed '
                'precision was not needed.</p>')
    rows = sens["rows"][:40]
    use_drop = any((r.get("metric_drop") or 0) > 0 for r in rows)
    unit = f'{sens.get("metric")} drop' if use_drop else "output SQNR dB (lower = more sensitive)"
    bars = []
    for r in rows:
        v = r["metric_drop"] if use_drop else r["sqnr_db"]
        bars.append((f'{r["node"]} ({r["op_type"]})', max(v, 0.0) if use_drop else v, "#ff7f0e",
                     f'SQNR {r["sqnr_db"]:.1f} dB' + (f', drop {r["metric_drop"]:+.5f}' if use_drop else "")))
    more = f" (first 40 of {len(sens['rows'])})" if len(sens["rows"]) > 40 else ""
    return (f'<p>{escape(sens.get("recipe", ""))}: each node quantised alone ({escape(str(sens["scheme"].get("scheme")))}), '
            f'measured on {sens.get("samples")} evaluation items, worst first{more}.</p>' + svg.hbars(bars, unit))


def section_cost(res: Results) -> str:
    cost = res.extras.get("cost") or {}
    out = []
    for label in ("baseline", "chosen"):
        table = cost.get(label) or {}
        if "error" in table or not table:
            out.append(f'<p class="muted">{label}: no cost breakdown ({escape(str(table.get("error", "none")))})</p>')
            continue
        total = sum(v["flops"] for v in table.values()) or 1
        items = list(table.items())[:12]
        bars = [(k, v["flops"] / 1e6, "#1f77b4" if label == "baseline" else "#d62728",
                 f'{v["count"]} nodes, {v["flops"] / 1e6:.1f} MFLOP ({v["flops"] / total:.0%}), '
                 f'{v["bytes"] / 1e6:.1f} MB') for k, v in items if v["flops"] > 0]
        rows = "".join(f'<tr><td class="l">{escape(k)}</td><td>{v["count"]}</td><td>{v["flops"] / 1e6:.2f}</td>'
                       f'<td>{v["flops"] / total:.1%}</td><td>{v["bytes"] / 1e6:.2f}</td></tr>' for k, v in items)
        out.append(f'<h3>{label}</h3>' + svg.hbars(bars, "MFLOP") +
                   f'<table><tr><th class="l">op type</th><th>nodes</th><th>MFLOP</th><th>share</th>'
                   f'<th>MB moved</th></tr>{rows}</table>')
    shapes = res.extras.get("shapes") or {}
    out.append(f'<p class="muted">At input shapes {escape(str(shapes))}; FLOPs and bytes per node from '
               f'hasten.measure.cost.</p>')
    return "".join(out)


def section_environment(res: Results) -> str:
    env = res.extras.get("environment") or {}
    flags = env.get("flags") or {}
    pk = env.get("packages") or {}
    rows = [("CPU", env.get("cpu")), ("cores", f'{env.get("physical_cores")} physical, '
                                              f'{env.get("logical_cores")} logical'),
            ("threads used", ", ".join(str(t) for t in env.get("threads", []))),
            ("flags", ", ".join(f'{k} {"yes" if v else "no"}' for k, v in flags.items())),
            ("int8 path", f'{env.get("int8_isa", "?")}' + (" (int16 pair sums saturate)"
                                                          if env.get("int8_saturates") else "")),
            ("memory", f'{env.get("memory_gb", "?")} GB'), ("python", env.get("python")), ("OS", env.get("os")),
            ("packages", ", ".join(f"{k} {v}" for k, v in pk.items() if v))]
    return "<table>" + "".join(f'<tr><th class="l">{k}</th><td class="l">{escape(str(v))}</td></tr>'
                               for k, v in rows) + "</table>"


TITLES = {"summary": "Summary", "scatter": "Latency against accuracy", "floor": "Chosen model, baseline and "
          "the roofline floor", "distributions": "Latency distributions", "candidates": "Every candidate",
          "sensitivity": "Per-layer sensitivity", "cost": "Cost by op type", "environment": "Environment"}


def render(data: Results | dict) -> str:
    """The page for `data` (a Results, or results.json's dict, read through Results.from_json)."""
    res = Results.from_json(data)
    builders = {"summary": section_summary, "scatter": section_scatter, "floor": section_floor,
                "distributions": section_distributions, "candidates": section_candidates,
                "sensitivity": section_sensitivity, "cost": section_cost, "environment": section_environment}
    body = []
    for sid in SECTIONS:
        try:
            content = builders[sid](res)
        except Exception as exc:  # a report is always written; a broken section says why
            content = f'<p class="bad">this section could not be drawn: {escape(type(exc).__name__)}: {escape(str(exc))}</p>'
        body.append(f'<section id="{sid}"><h2>{TITLES[sid]}</h2>{content}</section>')
    title = f"hasten optimize: {res.model}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f'<body><h1>{escape(title)}</h1><p class="muted">written {escape(str(res.written))} by hasten '
            f'{escape(str((res.extras.get("environment") or {}).get("packages", {}).get("hasten", "")))}</p>'
            f'{"".join(body)}</body></html>\n')


def write_report(path, data: Results | dict):
    return atomic_write_text(path, render(data))
