"""The end of a search: the finalists measured as BENCHMARKING.md says, the choice, and OUT/'s files.

The finalists are the fastest in-budget candidates by their screens (plus their thread variants); they and
the baseline are timed together, interleaved, in one call. The chosen model is the fastest of them, and
only if it beats the baseline by more than the noise (max(noise margin, each one's half-to-half spread));
otherwise the baseline itself is returned and the results say so. Never a model slower than the baseline.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

from hasten.recipe import Recipe
from hasten.search.cache import atomic_write_json, digest, read_json
from hasten.search.records import Record
from hasten.search.timing import BASELINE, Timing, time_sessions

#: candidates whose screen ratio is within this fraction of the best screen also go to the final measurement
SCREEN_NOISE = 0.15
MAX_FINALISTS = 6


def finish(tuner, interrupted: bool = False):
    from hasten.search.tuner import SearchResult

    s = tuner.settings
    base = tuner.baseline
    tuner.emit("stage", "final measurement of the finalists against the baseline")
    pool = [r for r in tuner.records.values() if r.within and r is not base and r.speedup]
    pool.sort(key=lambda r: -(r.speedup or 0.0))
    # the top few by their screens, plus any whose screen is within the screens' noise of the best
    top = pool[0].speedup if pool else 0.0
    finalists = [r for i, r in enumerate(pool) if i < s.finalists
                 or (i < MAX_FINALISTS and (r.speedup or 0.0) >= top * (1 - SCREEN_NOISE))]
    for r in list(finalists):  # thread settings only change speed: variants share the accuracy
        for recipe in tuner.space.thread_variants(r.recipe):
            v = _variant(tuner, r, recipe)
            if v is not None:
                finalists.append(v)
    notes = tuner.notes
    timing = Timing.final(s.final_seconds)
    ms = max(base.median_ms or 10.0, 0.1)
    left = tuner.time_left() - 8.0
    if timing.estimate_s(len(finalists), ms) > left:
        seconds = max(1.0, left / (len(finalists) + 1) - timing.warmup_s)
        if seconds < s.final_seconds:
            notes.append(f"the time budget left {seconds:.1f} s per candidate for the final measurement "
                         f"(BENCHMARKING.md asks for {s.final_seconds:g} s): figures are less certain")
            timing = dataclasses.replace(timing, min_seconds=seconds, min_runs=min(100, max(20, int(
                seconds * 1000 / ms))))
    key = digest("final", tuner.cache.context_key, sorted(r.key for r in finalists), timing.to_dict())
    path = tuner.cache.dir / f"bench-{key}.json"
    results = read_json(path)
    if isinstance(results, dict) and BASELINE in results and all(r.key in results for r in finalists):
        notes.append("the final latency figures are those an earlier run measured on the same finalists "
                     "(delete OUT/cache to measure again)")
    else:
        sessions = tuner.sessions_for(finalists)
        tuner.emit("benchmark", f"timing {len(sessions)} finalist(s) and the baseline, interleaved "
                                f"({timing.min_seconds:g} s each)")
        results = time_sessions(tuner.base_session, sessions, tuner.feeds, timing, full=True)
        atomic_write_json(path, results)
    base.latency = results[BASELINE]
    for r in finalists:
        if r.key in results:
            r.latency = results[r.key]
    chosen = base
    timed = [r for r in finalists if r.latency]
    if timed:
        best = max(timed, key=lambda r: r.latency["ratio"])
        margin = max(s.noise_margin, best.latency["spread"], base.latency["spread"])
        if best.latency["ratio"] > 1.0 + margin:
            chosen = best
        else:
            notes.append(f"nothing inside the budget beats the baseline by more than the noise "
                         f"({margin:.1%}): the fastest, {best.label}, is {best.latency['ratio']:.2f}x; "
                         "the baseline is returned")
    else:
        notes.append("no candidate other than the baseline fits the budget: the baseline is returned")
    chosen.chosen = True
    _explain(tuner, chosen)
    if tuner.sensitivity is None:
        _sensitivity_for_report(tuner, chosen)
    result = SearchResult(list(tuner.records.values()), base, chosen, tuner.budget, tuner.metrics, s, notes,
                          time.perf_counter() - tuner.t0, interrupted, tuner.sensitivity, tuner.context)
    write_outputs(tuner, result)
    return result


def _sensitivity_for_report(tuner, chosen: Record) -> None:
    """Per-layer sensitivity for the report when the search did not need it: for the chosen recipe if it
    quantises, else the fastest quantised candidate that ran; only if the time budget allows."""
    from hasten.search.mixed import compute_sensitivity

    pool = [r for r in tuner.records.values() if r.status in ("in-budget", "rejected") and r.fingerprint
            and any(s.kind == "quantize" for s in r.recipe.steps)]
    pool.sort(key=lambda r: (r is not chosen, -(r.speedup or 0.0)))
    notes = list(tuner.notes)
    for rec in pool[:2]:
        if not tuner.can_start(max(5.0, rec.build_s) * 3 - tuner.reserve_s()):
            tuner.sensitivity = {"reason": "the time budget ran out before it could be measured", "rows": []}
            return
        got = compute_sensitivity(tuner, rec.recipe)
        if got:
            return
    tuner.notes[:] = notes  # failures here are not the search's business: keep the notes as they were
    if tuner.sensitivity is None:
        tuner.sensitivity = {"reason": "no quantised candidate has a sensitivity analysis (int8-static only)",
                             "rows": []}


def _variant(tuner, parent: Record, recipe: Recipe) -> Record | None:
    key = recipe.key()
    if key in tuner.records:
        return tuner.records[key]
    rec = Record(key, recipe, "threads", parent.key, f"{recipe.backend_options.get('threads')} threads")
    for f in ("status", "subset", "full", "fingerprint", "size_bytes", "quant_report", "build_s"):
        setattr(rec, f, getattr(parent, f))
    tuner.records[key] = rec
    return rec


def _explain(tuner, chosen: Record) -> None:
    """Fill in why each kept candidate was not chosen."""
    for r in tuner.records.values():
        if r is chosen:
            r.reason = "chosen: the fastest in budget" if r is not tuner.baseline else \
                "chosen: nothing in budget beat it by more than the noise"
            continue
        if not r.within or r.status == "baseline" and r is tuner.baseline:
            continue
        ratio = r.speedup
        if ratio is not None and ratio < 1.0:
            r.status, r.stage = "rejected", "latency"
            r.reason = f"in budget but slower than the baseline ({ratio:.2f}x)"
        elif ratio is None:
            r.reason = "in budget; not timed (the time budget ran out)"
        else:
            r.reason = f"in budget; {ratio:.2f}x the baseline, not the fastest"


# -- OUT/ --------------------------------------------------------------------------------------------
def chosen_model(tuner, chosen: Record):
    if not chosen.recipe.steps:
        return tuner.model
    model = tuner.cache.load_model(chosen.recipe.model_key())
    if model is None:
        model, _ = tuner.build(chosen.recipe)
    return model


def write_outputs(tuner, result) -> None:
    out = tuner.out
    chosen = result.chosen
    model = chosen_model(tuner, chosen)
    model.save(out / "model.onnx")
    header = (f"made by hasten optimize on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}\n"
              f"input model {tuner.context['model']} (fingerprint {tuner.context['model_fingerprint']}); "
              f"output fingerprint {model.fingerprint()}\n{_summary_line(result)}\n"
              f"reproduce: hasten apply recipe.yaml MODEL --calib DATA -o OUT2/")
    chosen.recipe.save(out / "recipe.yaml", header=header)
    tuner.emit("stage", "writing the report")
    extras = _extras(tuner, result, model)
    data = results_dict(tuner, result=result, extras=extras)
    atomic_write_json(out / "results.json", data)
    from hasten.report.html import write_report

    write_report(out / "report.html", data)


def _summary_line(result) -> str:
    c, b = result.chosen, result.baseline
    if c is b:
        return "no candidate in the budget beat the baseline: this is the input model"
    return f"{c.latency['ratio']:.2f}x faster than the baseline ({b.latency['median_ms']:.2f} -> " \
           f"{c.latency['median_ms']:.2f} ms median)"


def _extras(tuner, result, model) -> dict:
    """Floors, cost breakdowns and the environment, each optional (a report is written regardless)."""
    from hasten.report.environment import environment

    shapes = {k: tuple(v.shape) for k, v in tuner.feeds[0].items()}
    extras: dict = {"environment": environment(tuner.settings), "shapes": {k: list(v) for k, v in shapes.items()}}
    try:
        from hasten.inspect import host_floors

        extras["floor"] = host_floors(tuner.model, shapes)
    except Exception as exc:  # informative only
        extras["floor"] = None
        extras["floor_error"] = str(exc)
    extras["cost"] = {}
    for label, m in (("baseline", tuner.model), ("chosen", model)):
        try:
            from hasten.measure.cost import estimate_cost
            from hasten.measure.shapes import infer_shapes

            cost = estimate_cost(infer_shapes(m, {}, shapes), infer=False)
            extras["cost"][label] = {k: {"count": v.count, "flops": v.flops, "bytes": v.bytes}
                                     for k, v in cost.by_op_type().items()}
        except Exception as exc:
            extras["cost"][label] = {"error": str(exc)[:300]}
    return extras


def results_dict(tuner, result=None, extras=None, partial: bool = False, interrupted: bool = False) -> dict:
    """Everything the search knows, as JSON: settings, budget, baseline, chosen, every candidate."""
    records = list(tuner.records.values())
    base = tuner.baseline
    data = {
        "hasten_results": 1, "partial": partial, "interrupted": interrupted,
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": tuner.context["model"], "input_fingerprint": tuner.context["model_fingerprint"],
        "calibration_fingerprint": tuner.context["calibration"],
        "evaluation_fingerprint": tuner.context["evaluation"],
        "evaluation_items": len(tuner.evaluator.samples), "subset_items": tuner.evaluator.subset_size,
        "metrics": [m.name for m in tuner.metrics], "budget": tuner.budget.to_dict(),
        "higher_is_better": {m.name: bool(m.higher_is_better) for m in tuner.metrics},
        "settings": tuner.settings.to_dict(), "cache": tuner.cache_state,
        "elapsed_s": round(time.perf_counter() - tuner.t0, 2),
        "baseline": base.key if base else None,
        "chosen": result.chosen.key if result else None,
        "notes": list(tuner.notes), "sensitivity": tuner.sensitivity,
        "counts": {st: sum(1 for r in records if r.status == st) for st in
                   ("baseline", "in-budget", "rejected", "failed", "duplicate", "not-tried")},
        "candidates": [r.to_dict() for r in records],
    }
    if result is not None:
        c = result.chosen
        data["summary"] = {
            "baseline": base.label, "chosen": c.label, "beat_baseline": c is not base,
            "baseline_ms": base.latency["median_ms"] if base.latency else None,
            "chosen_ms": c.latency["median_ms"] if c.latency else None,
            "speedup": c.latency["ratio"] if c.latency else 1.0,
            "accuracy": c.accuracy.to_dict() if c.accuracy else None,
            "baseline_accuracy": base.accuracy.to_dict() if base.accuracy else None,
            "line": _summary_line(result),
        }
    if extras:
        data.update(extras)
    return data
