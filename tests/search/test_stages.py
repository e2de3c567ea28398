"""The tuner's stages driven by a fake runner whose accuracies and latencies the test sets (nothing is
built, compiled or timed): which candidates the planner has the search try, in seconds."""

from __future__ import annotations

from collections import OrderedDict

from hasten.measure.accuracy import CosineFidelity, Score
from hasten.outcome.records import Accuracy, Record, Screen, Status
from hasten.search.budget import Budget
from hasten.search.mixed import Analysis
from hasten.search.tuner import Settings, Tuner

from .helpers import samples, wide_mlp

BUDGET = Budget.build([CosineFidelity()], 0.01)


def _acc(drop: float) -> Accuracy:
    excess = BUDGET.excess({"cosine": drop})
    return Accuracy({"cosine": Score(1.0 - drop, 1.0 - drop)}, {"cosine": drop}, 48, excess <= 1.0, excess, 0.0)


class FakeRunner:
    """The runner's interface over `outcome(record) -> (drop, speed)`: records judged and screened at once."""

    def __init__(self, outcome):
        self.outcome, self.records, self.baseline, self.speeds = outcome, OrderedDict(), None, {}

    def estimate_s(self) -> float:
        return 0.1

    def keep(self, rec):
        return self.records.setdefault(rec.key, rec)

    def mark(self, cands, status, reason="the time budget ran out", stage=""):
        for c in cands:
            self.records.setdefault(c.key, Record(c.key, c.recipe, c.origin, c.parent, c.note, status=status,
                                                  reason=reason, stage=stage))

    def add_reference(self, cand, required, fingerprint):
        rec = self.keep(Record(cand.key, cand.recipe, "baseline", note=cand.note, status=Status.BASELINE))
        rec.full = _acc(0.0)
        if self.baseline is None:
            self.baseline = rec
            rec.screen = Screen(median_ms=1.0, ratio=1.0)
        return rec

    def add(self, cand, time_rejected=False):
        if cand.key in self.records:
            return self.records[cand.key]
        rec = Record(cand.key, cand.recipe, cand.origin, cand.parent, cand.note, mixed=cand.mixed,
                     change=cand.change)
        drop, self.speeds[rec.key] = self.outcome(rec)
        rec.full = _acc(drop)
        rec.status = Status.IN_BUDGET if rec.full.within else Status.REJECTED
        return self.records.setdefault(rec.key, rec)

    def screen(self, recs, label, deadline=None):
        for r in recs:
            if r.screen is None and r.status.ran:
                r.screen = Screen(median_ms=1.0 / self.speeds.get(r.key, 1.0), ratio=self.speeds.get(r.key, 1.0))


class FakeSensitivities:
    def __init__(self, rows):
        self.rows, self.calls = rows, 0

    def get(self, recipe, deadline=None):
        self.calls += 1
        return Analysis([r["node"] for r in self.rows], {"rows": self.rows, "recipe": recipe.label()}), True


def _tuner(tmp_path, outcome, **settings) -> Tuner:
    model = wide_mlp(width=64, layers=2)
    opts = {"backends": ("onnxruntime",), "passes": (), "schemes": ("int8-static", "int8-dynamic"),
            "time_budget_s": 600.0, "threads": (1,), **settings}
    tuner = Tuner(model, samples(32, seed=1), samples(24, seed=2), [CosineFidelity()], BUDGET, tmp_path / "out",
                  Settings(**opts))
    tuner.runner = FakeRunner(outcome)  # the seam: the stages only talk to the runner's interface
    tuner.sensitivities = FakeSensitivities([{"node": n, "op_type": "MatMul"} for n in ("fc0", "fc1", "out")])
    return tuner


def _search(tuner: Tuner) -> None:
    tuner._stage_baselines()
    bases = tuner._stage_graph()
    tuner._stage_refine(tuner._stage_schemes(bases))


def _kept_out(rec: Record) -> set[str]:
    config = rec.recipe.steps[-1].config
    return set(config.get("nodes_to_exclude") or []) | set(config.get("dynamic_nodes") or [])


def test_a_fast_scheme_that_misses_the_budget_is_rescued_by_mixed_precision(tmp_path):
    def outcome(rec):  # int8-static: 2x but misses unless fc0 is kept out; int8-dynamic: 1.3x in budget
        if rec.scheme == "int8-static":
            return (0.002 if "fc0" in _kept_out(rec) else 0.03), 2.0 - 0.1 * len(_kept_out(rec))
        if rec.scheme == "int8-dynamic":
            return 0.004, 1.3
        return 0.0, 1.0

    tuner = _tuner(tmp_path, outcome)
    _search(tuner)
    recs = list(tuner.records.values())
    schemes = [r for r in recs if r.origin == "scheme"]
    assert {r.scheme for r in schemes} == {"int8-static", "int8-dynamic"}
    assert any(r.origin == "option" and r.scheme == "int8-static" for r in recs)  # its options refined first
    mixed = [r for r in recs if r.origin == "mixed"]
    assert mixed and mixed[0].mixed == "float" and _kept_out(mixed[0]) == {"fc0"} and mixed[0].within
    assert tuner.sensitivities.calls == 1
    assert any("fits the budget with its 1 most sensitive node(s) of 3" in n for n in tuner.notes), tuner.notes
    assert tuner.best() is mixed[0] or tuner.best().origin == "mixed"  # the fastest in budget


def test_no_mixed_precision_when_an_as_fast_integer_model_is_in_budget(tmp_path):
    def outcome(rec):  # int8-static misses at 1.5x; int8-dynamic fits at 2x: nothing to rescue
        if rec.scheme == "int8-static":
            return 0.03, 1.5
        return (0.004, 2.0) if rec.scheme == "int8-dynamic" else (0.0, 1.0)

    tuner = _tuner(tmp_path, outcome)
    _search(tuner)
    recs = list(tuner.records.values())
    assert not [r for r in recs if r.origin == "mixed"] and tuner.sensitivities.calls == 0
    assert tuner.best().scheme == "int8-dynamic"
    assert not any(r.origin == "option" and r.scheme == "int8-static" for r in recs)  # far slower: not refined


def test_a_search_out_of_time_records_what_it_did_not_try(tmp_path):
    tuner = _tuner(tmp_path, lambda rec: (0.004, 1.5), time_budget_s=1.0)  # the final measurement's reserve
    _search(tuner)
    recs = list(tuner.records.values())
    assert [r.status for r in recs if r.origin != "baseline"] and \
        all(r.status == Status.NOT_TRIED for r in recs if r.origin != "baseline")
    assert all(r.reason for r in recs if r.status == Status.NOT_TRIED)
