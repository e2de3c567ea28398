"""The planner's decisions from typed records whose latencies and accuracies the test sets (a fake backend:
nothing is built, compiled or timed): fastest in budget wins, never slower than the baseline, the option
search, mixed precision, resume. Each test takes milliseconds."""

from __future__ import annotations

import pytest

from hasten.measure.accuracy import CosineFidelity as Cosine
from hasten.measure.accuracy import Score
from hasten.outcome.records import Accuracy, Latency, Record, Status
from hasten.recipe import Recipe, Step
from hasten.search import planner
from hasten.search.budget import Budget
from hasten.search.space import Candidate

BUDGET = Budget.build([Cosine()], 0.01)


def _acc(drop: float, items: int = 48) -> Accuracy:
    excess = BUDGET.excess({"cosine": drop})
    return Accuracy({"cosine": Score(1.0 - drop, 1.0 - 2 * drop)}, {"cosine": drop}, items, excess <= 1.0, excess, 0.1)


def fake(key: str, scheme: str = "", drop: float = 0.0, screen: float | None = None, backend: str = "onnxruntime",
         options: dict | None = None, origin: str = "scheme", status: Status | None = None, **kw) -> Record:
    """A record as the runner would leave it: judged on the full set (`drop`), screened at ratio `screen`."""
    steps = (Step("quantize", scheme, {}),) if scheme else ()
    rec = Record(key, Recipe(steps, backend, {"threads": 4, **(options or {})}), origin, **kw)
    rec.full = _acc(drop)
    rec.status = status or (Status.IN_BUDGET if rec.full.within else Status.REJECTED)
    if screen is not None:
        rec.screen = {"median_ms": 1.0 / screen, "ratio": screen}
    return rec


def final(rec: Record, ratio: float, ci: tuple[float, float] | None = None, rounds: int = 8) -> Record:
    """Give `rec` a final measurement at `ratio` (interval `ci`, default +-5%)."""
    lo, hi = ci or (ratio * 0.95, ratio * 1.05)
    rec.latency = Latency(median_ms=1.0 / ratio, ratio=ratio, ratio_ci=[lo, hi], rounds=rounds, runs=100)
    return rec


@pytest.fixture
def base() -> Record:
    rec = fake("base", origin="baseline", status=Status.BASELINE, screen=1.0)
    rec.latency = Latency(median_ms=1.0, ratio=1.0, spread=0.02)
    return rec


# -- fastest in budget, never slower ---------------------------------------------------------------------
def test_the_fastest_in_budget_wins_not_the_first_found(base):
    fp16 = fake("fp16", "fp16", 0.001, screen=1.1)  # found first, in budget
    int8 = fake("int8", "int8-dynamic", 0.004, screen=1.5)
    miss = fake("static", "int8-static", 0.05, screen=2.0)  # fastest, but out of budget
    records = [base, fp16, int8, miss]
    finalists = planner.finalists(records, base, 2)
    assert finalists == [int8, fp16]  # by screen, in budget only, never the baseline itself
    chosen, why = planner.choose(base, [final(int8, 1.45), final(fp16, 1.08)], 1.02)
    assert chosen is int8 and why == ""
    reasons = {k: (st, stage, reason) for k, st, stage, reason in planner.explain(records, chosen, base)}
    assert reasons["int8"][2] == "chosen: the fastest in budget"
    assert reasons["fp16"] == (Status.IN_BUDGET, "", "in budget; 1.08x the baseline, not the fastest")
    assert "static" not in reasons  # out of budget: its own reason stands


def test_candidates_within_the_screens_noise_of_the_best_are_finalists_too(base):
    recs = [fake(f"c{i}", "int8-dynamic", 0.001, screen=2.0 - 0.05 * i) for i in range(8)]
    got = planner.finalists([base, *recs], base, 2)
    assert got == recs[:planner.MAX_FINALISTS]  # all within 15% of 2.0, capped
    far = [fake("a", "int8-dynamic", 0.0, screen=2.0), fake("b", "fp16", 0.0, screen=1.9),
           fake("c", "int8-weight", 0.0, screen=1.5)]
    assert [r.key for r in planner.finalists([base, *far], base, 1)] == ["a", "b"]  # 1.5 < 2.0 * 0.85


def test_never_slower_than_the_baseline(base):
    slow = final(fake("slow", "int8-dynamic", 0.001, screen=1.2), 0.9)  # the screen was optimistic
    chosen, why = planner.choose(base, [slow], 1.02)
    assert chosen is base and "nothing inside the budget beats the baseline" in why and "0.90x" in why
    reasons = {k: (st, stage, reason) for k, st, stage, reason in planner.explain([base, slow], base, base)}
    assert reasons["slow"] == (Status.REJECTED, "latency", "in budget but slower than the baseline (0.90x)")
    assert reasons["base"][2] == "chosen: nothing in budget beat it by more than the noise"


def test_a_gain_inside_the_noise_is_not_taken(base):
    noisy = final(fake("noisy", "int8-dynamic", 0.001, screen=1.3), 1.10, ci=(0.97, 1.25), rounds=48)
    chosen, why = planner.choose(base, [noisy], 1.02)
    assert chosen is base and why.startswith("too noisy to tell: after 48 interleaved rounds")
    margin = final(fake("margin", "int8-dynamic", 0.001, screen=1.3), 1.015, ci=(1.01, 1.02))
    assert planner.choose(base, [margin], 1.02)[0] is base  # above 1 but not above the noise margin
    chosen, why = planner.choose(base, [], 1.02)
    assert chosen is base and why.startswith("no candidate other than the baseline fits the budget")


def test_each_backends_base_is_its_fastest_in_budget_fp32_graph():
    ort = [fake("o1", screen=1.0), fake("o2", screen=1.2), fake("o3", screen=1.5, drop=0.5)]  # o3 misses
    ov = [fake("v1", backend="openvino", screen=1.1),
          fake("v2", backend="openvino", screen=1.9, options={"precision": "bf16"}),  # a runtime option
          fake("v3", backend="openvino", screen=2.0, options={"threads": 8}),  # another thread setting
          fake("v4", "int8-static", backend="openvino", screen=3.0)]  # quantised: not a graph base
    bases = planner.graph_bases([*ort, *ov], ["onnxruntime", "openvino"], 4)
    assert bases == {"onnxruntime": ort[1], "openvino": ov[0]}


# -- the option search -----------------------------------------------------------------------------------
def test_refining_combines_each_options_best_value_that_beats_the_parent():
    parent = fake("p", "int8-static", 0.004, screen=1.5)
    a = fake("a", "int8-static", 0.004, screen=1.7, origin="option", change=("per_channel", "False"))
    b = fake("b", "int8-static", 0.004, screen=1.6, origin="option", change=("per_channel", "True"))
    c = fake("c", "int8-static", 0.004, screen=1.52, origin="option")  # inside the 2% noise margin
    d = fake("d", "int8-static", 0.05, screen=2.5, origin="option")  # faster, out of budget
    e = fake("e", "int8-static", 0.003, screen=1.8, origin="option", status=Status.FAILED)
    variants = [(("quantize", "per_channel", "False"), a), (("quantize", "per_channel", "True"), b),
                (("quantize", "calibration", "minmax"), c), (("quantize", "reduce_range", True), d),
                (("backend", "precision", "bf16"), e), (("quantize", "symmetric", True), None)]
    assert planner.option_winners(parent, variants, 0.02) == [("quantize", "per_channel", "False")]
    assert planner.lead([parent, a, b, c, d]) is a  # the fastest in budget leads the next round


def test_refining_a_miss_moves_towards_the_budget():
    parent = fake("p", "int8-static", 0.03, screen=2.0)  # 3x the allowed drop
    closer = fake("q", "int8-static", 0.02, screen=1.9, origin="option", change=("calibration", "entropy"))
    barely = fake("r", "int8-static", 0.029, screen=2.1, origin="option")  # not 10% closer
    winners = planner.option_winners(parent, [(("quantize", "calibration", "entropy"), closer),
                                              (("quantize", "per_channel", False), barely)], 0.02)
    assert winners == [("quantize", "calibration", "entropy")]
    assert planner.lead([parent, closer, barely]) is closer  # none in budget: the closest leads
    closer.stage, closer.parent = "subset", "p"
    assert planner.far_off([parent, closer, barely], parent) == {("calibration", "entropy")}


def test_a_scheme_far_slower_than_the_best_in_budget_is_not_refined():
    top = fake("top", "int8-dynamic", 0.001, screen=2.0)
    assert not planner.worth_refining(fake("slow", "fp16", 0.001, screen=1.1), top)  # < 0.6x
    assert planner.worth_refining(fake("near", "int8-weight", 0.001, screen=1.3), top)
    assert not planner.worth_refining(fake("miss", "int8-static", 0.05, screen=1.5), top)  # a miss: < 0.8x
    assert planner.worth_refining(fake("miss", "int8-static", 0.05, screen=1.7), top)
    assert planner.worth_refining(top, top) and planner.worth_refining(top, None)


# -- mixed precision -------------------------------------------------------------------------------------
def _measure(cand: Candidate, sensitive: set[str]) -> Record:
    """The fake backend: a mixed candidate holds the budget once every node in `sensitive` is kept out."""
    config = cand.recipe.steps[-1].config
    kept = set(config.get("nodes_to_exclude") or []) | set(config.get("dynamic_nodes") or [])
    rec = Record(cand.key, cand.recipe, cand.origin, cand.parent, cand.note, mixed=cand.mixed)
    rec.full = _acc(0.002 if sensitive <= kept else 0.03)
    rec.status = Status.IN_BUDGET if rec.full.within else Status.REJECTED
    return rec


def _run_mixed(mp: planner.MixedPrecision, sensitive: set[str]) -> list[Record]:
    tried = []
    while (cand := mp.next()) is not None:
        rec = _measure(cand, sensitive)
        tried.append(rec)
        mp.feedback(rec)
    return tried


def test_mixed_precision_finds_the_fewest_nodes_to_keep_out():
    seed = fake("seed", "int8-static", 0.03, screen=2.5)
    mp = planner.MixedPrecision([seed], {"nodes_to_exclude", "dynamic_nodes"})
    assert mp.needs_ranking and mp.next() is None  # nothing before the sensitivity is measured
    nodes = [f"conv{i}" for i in range(8)]
    mp.rank(nodes, [{"node": n, "op_type": "Conv"} for n in nodes])
    tried = _run_mixed(mp, sensitive={"conv0", "conv1", "conv2"})
    ks = [len(r.recipe.steps[-1].config["nodes_to_exclude"]) for r in tried]
    assert ks == [1, 2, 4, 3]  # doubling until it holds, then bisection
    assert [r.status for r in tried] == [Status.REJECTED, Status.REJECTED, Status.IN_BUDGET, Status.IN_BUDGET]
    assert all(r.mixed == "float" and r.origin == "mixed" and r.parent == "seed" for r in tried)
    assert mp.done and "fits the budget with its 3 most sensitive node(s) of 8" in mp.outcome


def test_mixed_precision_tries_the_matmuls_in_dynamic_int8_without_moving_the_bisection():
    seed = fake("seed", "int8-static", 0.03, screen=2.5)
    mp = planner.MixedPrecision([seed], {"nodes_to_exclude", "dynamic_nodes"})
    mp.rank(["fc0", "conv1", "fc2"], [{"node": "fc0", "op_type": "MatMul"}, {"node": "conv1", "op_type": "Conv"},
                                      {"node": "fc2", "op_type": "MatMul"}])
    tried = _run_mixed(mp, sensitive={"fc0", "conv1"})
    assert [r.mixed for r in tried] == ["float", "float", "dynamic"]
    config = tried[-1].recipe.steps[-1].config
    assert config["dynamic_nodes"] == ["fc0"] and config["nodes_to_exclude"] == ["conv1"]
    assert mp.search.good == 2 and "its 2 most sensitive node(s) of 3" in mp.outcome


def test_mixed_precision_says_when_its_space_is_exhausted_or_it_cannot_start():
    seed = fake("seed", "int8-static", 0.03, screen=2.5)
    mp = planner.MixedPrecision([seed], {"nodes_to_exclude"})
    mp.rank(["a", "b", "c"])
    tried = _run_mixed(mp, sensitive={"a", "b", "c", "d"})  # nothing short of the fp32 model holds
    assert [len(r.recipe.steps[-1].config["nodes_to_exclude"]) for r in tried] == [1, 2]
    assert "misses the budget even with 2 of its 3 nodes kept in float" in mp.outcome
    none = planner.MixedPrecision([seed], {"per_channel"})  # the scheme cannot keep nodes out
    assert none.done and "has no 'nodes_to_exclude' option" in none.notes[0]
    unranked = planner.MixedPrecision([seed], {"nodes_to_exclude"})
    unranked.rank([])  # the analysis found nothing to rank
    assert unranked.done and unranked.next() is None


def test_mixed_precision_is_for_a_fast_miss_that_nothing_as_fast_in_budget_beats():
    miss = fake("miss", "int8-static", 0.03, screen=2.6)
    assert planner.sensitive(miss) and not planner.sensitive(fake("d", "int8-dynamic", 0.03))
    assert planner.mixing_may_gain([fake("bf16", "bf16", 0.0, screen=2.8), miss], miss)  # float does not count
    assert not planner.mixing_may_gain([fake("int8", "int8-dynamic", 0.0, screen=2.6), miss], miss)
    top = fake("top", "fp16", 0.0, screen=1.5)
    assert planner.mixing_needed(miss, [miss], top, 0.02)
    assert not planner.mixing_needed(miss, [miss, fake("opt", "int8-static", 0.0, screen=2.0)], top, 0.02)
    assert not planner.mixing_needed(fake("slow", "int8-static", 0.03, screen=1.5), [miss], top, 0.02)
    order = planner.mixing_order([(fake("w", "int8-weight", 0.03, screen=3.0), []), (miss, []),
                                  (fake("m2", "int8-static", 0.03, screen=2.9), [])])
    assert [root.key for root, _ in order] == ["m2", "miss", "w"]  # sensitive first, then fastest


# -- resume ----------------------------------------------------------------------------------------------
def test_resume_rejudges_cached_scores_against_the_current_budget():
    cached = fake("c", "int8-static", 0.008)  # judged in budget under 0.01
    stricter = Budget.build([Cosine()], 0.005)
    verdict = planner.rejudge(cached, stricter)
    assert verdict.status == Status.REJECTED and verdict.stage == "full" and verdict.reason.startswith("accuracy")
    assert not verdict.full.within and verdict.full.excess == pytest.approx(1.6)
    assert cached.status == Status.IN_BUDGET and cached.full.within  # the planner changed nothing
    assert planner.rejudge(fake("r", "int8-static", 0.008, status=Status.REJECTED, stage="full"),
                           BUDGET).status == Status.IN_BUDGET
    # rejected on the subset screen under a stricter budget: this looser one would let it through
    screened = Record("s", Recipe((Step("quantize", "int8-static", {}),), "onnxruntime", {}), "scheme",
                      status=Status.REJECTED, stage="subset")
    screened.subset = _acc(0.015, items=16)
    assert planner.rejudge(screened, stricter) is not None  # still out (2x slack on the subset)
    assert planner.rejudge(screened, Budget.build([Cosine()], 0.02)) is None  # evaluate it again
    failed = fake("f", "int8-static", status=Status.FAILED, stage="compile", reason="boom")
    assert planner.rejudge(failed, stricter) == planner.Judgement(Status.FAILED, "compile", "boom", failed.full)
