"""The end of a search: the finalists measured as BENCHMARKING.md says, the choice, and OUT/'s files.

The finalists are the fastest in-budget candidates by their screens (plus their thread variants); they and
the baseline are timed together, interleaved, in one call; on a noisy host that call adds rounds (up to the
time budget) until each finalist's ratio to the baseline is resolved against 1 + noise margin. The chosen
model is the fastest finalist whose ratio is above 1 + noise margin with the lower end of its confidence
interval above 1; otherwise the baseline itself is returned and the results say why (not faster, or too
noisy to tell after N rounds). Never a model slower than the baseline. The headline names what failed.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

from hasten.outcome.records import STATUSES, Record, failure_line
from hasten.outcome.results import Results, Summary
from hasten.recipe import Recipe
from hasten.search import planner
from hasten.search.cache import atomic_write_json, digest, read_json, remove_artefacts
from hasten.search.results import SearchResult
from hasten.search.timing import BASELINE, Timing, time_sessions


def finish(tuner, interrupted: bool = False):
    """The final measurement, the choice and OUT/'s files. Reads the tuner; changes records only through
    its runner (`keep`, `update`) and its own methods (`analyse`, `no_sensitivity`); the notes it adds go
    to the result, not to `tuner.notes`."""
    s = tuner.settings
    runner = tuner.runner
    base = tuner.baseline
    tuner.emit("stage", "final measurement of the finalists against the baseline")
    finalists = planner.finalists(tuner.records.values(), base, s.finalists)
    for r in list(finalists):  # thread settings only change speed: variants share the accuracy
        for recipe in tuner.space.thread_variants(r.recipe):
            finalists.append(runner.keep(_variant(r, recipe)))
    notes = list(tuner.notes)
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
    threshold = 1.0 + s.noise_margin
    key = digest("final", tuner.cache.context_key, sorted(r.key for r in finalists), timing.to_dict(), threshold)
    path = tuner.cache.dir / f"bench-{key}.json"
    results = read_json(path)
    if isinstance(results, dict) and BASELINE in results and all(r.key in results for r in finalists):
        notes.append("the final latency figures are those an earlier run measured on the same finalists "
                     "(delete OUT/cache to measure again)")
    else:
        sessions = runner.sessions_for(finalists)
        tuner.emit("benchmark", f"timing {len(sessions)} finalist(s) and the baseline, interleaved "
                                f"({timing.min_seconds:g} s each)")
        # extra rounds may use the budget up to what the outputs and the report's sensitivity need
        deadline = tuner.deadline - 10.0 - _sensitivity_need_s(tuner)
        results = time_sessions(runner.base_session, sessions, tuner.feeds, timing, full=True, bench=runner.bench,
                                threshold=threshold, deadline=deadline)
        atomic_write_json(path, results)
    runner.set_final(results, finalists)
    chosen, why = planner.choose(base, [r for r in finalists if r.latency], threshold)
    if why:
        notes.append(why)
    noise = base.latency.noise or {}
    if noise.get("spread") and noise["spread"] > 0.1:
        notes.append(f"the host was noisy: the baseline's median varied by {noise['spread']:.0%} between "
                     f"interleaved rounds (p10..p90); the final measurement took {noise.get('rounds')} rounds "
                     f"({timing.rounds} planned) to resolve the ratios")
    runner.choose(chosen.key)
    for key, status, stage, reason in planner.explain(tuner.records.values(), chosen, base):
        runner.update(key, status, stage, reason)
    if tuner.sensitivity is None:
        _sensitivity_for_report(tuner, chosen)
    result = SearchResult(list(tuner.records.values()), base, chosen, tuner.budget, tuner.metrics, s, notes,
                          time.perf_counter() - tuner.t0, interrupted, tuner.sensitivity, tuner.context)
    write_outputs(tuner, result)
    return result


def _sensitivity_pool(tuner) -> list[Record]:
    return [r for r in tuner.records.values() if r.status.judged and r.fingerprint and planner.sensitive(r)]


def _sensitivity_need_s(tuner) -> float:
    """Seconds the report's sensitivity will want after the final measurement (0 when it has one)."""
    if tuner.sensitivity is not None:
        return 0.0
    pool = _sensitivity_pool(tuner)
    return max(5.0, *(r.build_s for r in pool)) * 3 if pool else 0.0


def _sensitivity_for_report(tuner, chosen: Record) -> None:
    """Per-layer sensitivity for the report when the search did not need it: for the chosen recipe if it
    quantises, else the fastest quantised candidate that ran; only if the time budget allows. Failures here
    are not the search's business: they are not noted."""
    pool = _sensitivity_pool(tuner)
    pool.sort(key=lambda r: (r is not chosen, -(r.speedup or 0.0)))
    for rec in pool[:2]:
        if not tuner.can_start(max(5.0, rec.build_s) * 3 - tuner.reserve_s()):
            tuner.no_sensitivity("the time budget ran out before it could be measured")
            return
        if tuner.analyse(rec.recipe, deadline=tuner.deadline - 5.0, quiet=True):  # 5 s: writing the outputs
            return
    tuner.no_sensitivity("no quantised candidate has a sensitivity analysis (int8-static only)")


def _variant(parent: Record, recipe: Recipe) -> Record:
    """A thread-count variant of `parent`: the same model, so the same accuracy."""
    rec = Record(recipe.key(), recipe, "threads", parent.key, f"{recipe.backend_options.get('threads')} threads")
    for f in ("status", "subset", "full", "fingerprint", "size_bytes", "quant_report", "build_s"):
        setattr(rec, f, getattr(parent, f))
    return rec


# -- OUT/ --------------------------------------------------------------------------------------------
def chosen_model(tuner, chosen: Record):
    if not chosen.recipe.steps:
        return tuner.model
    model = tuner.cache.load_model(chosen.recipe.model_key())
    if model is None:
        model, _ = tuner.runner.build(chosen.recipe)
    return model


def write_outputs(tuner, result) -> None:
    out = tuner.out
    chosen = result.chosen
    model = chosen_model(tuner, chosen)
    path = model.save(out / "model.onnx")
    written = chosen.recipe.backend_instance().write_artefacts(model, out)
    remove_artefacts(out, keep=tuple(written))  # an earlier run's, e.g. another backend's generated files
    artefacts = [str(p.relative_to(out)) for p in written]
    data_file = path.with_name(path.name + ".data")
    tuner.runner.choose(chosen.key, path.stat().st_size + (data_file.stat().st_size if data_file.is_file() else 0))
    header = (f"made by hasten optimize on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}\n"
              f"input model {tuner.context['model']} (fingerprint {tuner.context['model_fingerprint']}); "
              f"output fingerprint {model.fingerprint()}\n{_summary_line(result)}\n"
              f"reproduce: hasten apply recipe.yaml MODEL --calib DATA -o OUT2/")
    chosen.recipe.save(out / "recipe.yaml", header=header)
    tuner.emit("stage", "writing the report")
    extras = {**_extras(tuner, result, model), "artefacts": ["model.onnx", *artefacts]}
    results = make_results(tuner, result=result, extras=extras)
    atomic_write_json(out / "results.json", results.to_json())
    from hasten.report.html import write_report

    write_report(out / "report.html", results)


def _summary_line(result) -> str:
    c, b = result.chosen, result.baseline
    failed = failure_line(result.records)
    tail = f"; {failed}" if failed else ""
    if c is b:
        return "no candidate in the budget beat the baseline: this is the input model" + tail
    return f"{c.latency.ratio:.2f}x faster than the baseline ({b.latency.median_ms:.2f} -> " \
           f"{c.latency.median_ms:.2f} ms median)" + tail


def _extras(tuner, result, model) -> dict:
    """Floors, cost breakdowns and the environment, each optional (a report is written regardless)."""
    from hasten.report.environment import environment

    shapes = {k: tuple(v.shape) for k, v in tuner.feeds[0].items()}
    extras: dict = {"environment": environment(tuner.settings), "shapes": {k: list(v) for k, v in shapes.items()}}
    try:
        from hasten.measure.floors import host_floors

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


def _noise(tuner) -> dict:
    """How noisy the host was: the baseline's per-round spread in the final measurement and the screens."""
    base = tuner.baseline
    final = base.latency.noise if base and base.latency else None
    screens = [n for n in tuner.runner.noise_log if n.get("spread") is not None]
    return {"final": final, "screens_max_spread": max((n["spread"] for n in screens), default=None),
            "screens": [{k: n.get(k) for k in ("screen", "rounds", "spread")} for n in screens]}


def results_dict(tuner, result=None, extras=None, partial: bool = False, interrupted: bool = False) -> dict:
    """Everything the search knows, as results.json's dict (through `Results`)."""
    return make_results(tuner, result, extras, partial, interrupted).to_json()


def make_results(tuner, result=None, extras=None, partial: bool = False, interrupted: bool = False) -> Results:
    """Everything the search knows: settings, budget, baseline, chosen, every candidate."""
    records = list(tuner.records.values())
    base = tuner.baseline
    summary = None
    if result is not None:
        c = result.chosen
        summary = Summary(base.label, c.label, c is not base, base.latency.median_ms if base.latency else None,
                          c.latency.median_ms if c.latency else None, c.latency.ratio if c.latency else 1.0,
                          c.accuracy, base.accuracy, _summary_line(result), failure_line(result.records))
    return Results(
        model=tuner.context["model"], metrics=[m.name for m in tuner.metrics], budget=tuner.budget.to_dict(),
        candidates=records, baseline=base.key if base else None, chosen=result.chosen.key if result else None,
        partial=partial, interrupted=interrupted, written=datetime.now(UTC).isoformat(timespec="seconds"),
        input_fingerprint=tuner.context["model_fingerprint"], calibration_fingerprint=tuner.context["calibration"],
        evaluation_fingerprint=tuner.context["evaluation"], evaluation_items=len(tuner.evaluator.samples),
        subset_items=tuner.evaluator.subset_size,
        higher_is_better={m.name: bool(m.higher_is_better) for m in tuner.metrics},
        settings=tuner.settings.to_dict(), cache=tuner.cache_state,
        elapsed_s=round(time.perf_counter() - tuner.t0, 2),
        notes=list(result.notes if result is not None else tuner.notes), sensitivity=tuner.sensitivity,
        host=dict(getattr(tuner, "host", {})),  # the int8 path and ISA features the result is tuned for
        noise=_noise(tuner), counts={str(st): sum(1 for r in records if r.status == st) for st in STATUSES},
        summary=summary, extras=dict(extras or {}))
