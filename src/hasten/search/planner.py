"""The planner: what the search tries next and what it keeps, decided from typed records alone.

Everything here is pure: it reads `Record`s (status, accuracy, screen and latency ratios, structured fields
such as `origin` and `mixed`) and returns decisions; no I/O, no clock, no compiling, and it changes no
record (the runner applies what it returns). The tuner's stages (search/tuner.py) ask it at each step:
- `graph_bases`: each backend's fastest in-budget graph pipeline (the schemes build on it);
- `worth_refining`, `option_winners`, `lead`, `better`: the option search (coordinate descent);
- `mixing_may_gain`, `sensitive`, `MixedPrecision`: mixed precision for a scheme that misses the budget;
- `finalists`, `choose`, `explain`: the end: who is measured, who wins (never slower than the baseline),
  and why each kept candidate was or was not chosen;
- `rejudge`: on resume, cached scores judged against the current budget.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hasten.outcome.records import Accuracy, Record, Status
from hasten.quantize.mixed_precision import KSearch
from hasten.recipe import Step
from hasten.search.evaluate import SCREEN_SLACK
from hasten.search.space import Candidate
from hasten.search.timing import CONFIDENCE

#: float schemes: an in-budget one does not end the int8 search (mixed precision may still beat it)
FLOAT_SCHEMES = ("fp16", "bf16")
#: the scheme per-layer sensitivity exists for (hasten.quantize.sensitivity)
SENSITIVITY_SCHEME = "int8-static"
#: rounds of one-option-at-a-time refinement per scheme (each round starts from the previous round's best)
MAX_ROUNDS = 3
#: share of the time left after the baselines that graph variants (beyond each default pipeline) may use
GRAPH_SHARE = 0.3
#: share of the time left that a missing scheme's option refinement leaves to mixed precision
MIXED_SHARE = 0.5
#: candidates whose screen ratio is within this fraction of the best screen also go to the final measurement
SCREEN_NOISE = 0.15
MAX_FINALISTS = 6
FLOAT_OPTION = "nodes_to_exclude"
DYNAMIC_OPTION = "dynamic_nodes"


# -- what is best so far ------------------------------------------------------------------------------
def best(records) -> Record | None:
    """The fastest record inside the budget that has been timed, or None."""
    timed = [r for r in records if r.within and r.speedup]
    return max(timed, key=lambda r: r.speedup) if timed else None


def graph_bases(records, backends, threads: int) -> dict[str, Record]:
    """Per backend, its fastest in-budget fp32 model at the default thread setting with no other runtime
    option (the base the schemes are tried on)."""
    bases = {}
    for backend in backends:
        pool = [r for r in records if r.recipe.backend == backend and r.within and not r.quantised
                and r.recipe.backend_options.get("threads") == threads
                and set(r.recipe.backend_options) <= {"threads"}]
        if pool:
            bases[backend] = max(pool, key=lambda r: r.speedup or 0.0)
    return bases


def by_speed(records) -> list[Record]:
    """Fastest screen first (untimed last)."""
    return sorted(records, key=lambda r: -(r.speedup or 0.0))


# -- the option search --------------------------------------------------------------------------------
def refinable(parents) -> list[Record]:
    """The scheme candidates worth refining: judged (in budget or not) and timed, fastest first."""
    return by_speed([p for p in parents if p.status.judged and p.speedup])


def worth_refining(parent: Record, top: Record | None) -> bool:
    """Not when far slower than what is already in budget: options rarely make up that much."""
    if top is None or top is parent:
        return True
    return (parent.speedup or 0) > (top.speedup or 0) * (0.6 if parent.within else 0.8)


def changed(child: Record) -> tuple[str, str]:
    """The (option, str(value)) a one-option variant changed (("", "") for any other record)."""
    return tuple(child.change) if child.origin == "option" and child.change else ("", "")


def far_off(family: list[Record], parent: Record) -> set[tuple[str, str]]:
    """The one-option changes from `parent` that the subset screen rejected: far off, not tried again."""
    return {changed(r) for r in family if r.stage == "subset" and r.parent == parent.key} - {("", "")}


def lead(family: list[Record]) -> Record | None:
    """The best of a family: the fastest in budget, else the one closest to the budget."""
    timed = [r for r in family if r.within and r.speedup]
    if timed:
        return max(timed, key=lambda r: r.speedup)
    judged = [r for r in family if r.status == Status.REJECTED and r.accuracy is not None]
    return min(judged, key=lambda r: r.accuracy.excess) if judged else None


def better(a: Record, b: Record, margin: float) -> bool:
    """Is `a` a better candidate than `b`: in budget and faster, or (both out) closer to the budget."""
    if a.status in (Status.FAILED, Status.DUPLICATE, Status.NOT_TRIED):
        return False
    if a.within and not b.within:
        return True
    if a.within and b.within:
        return (a.speedup or 0) > (b.speedup or 0) * (1 + margin)
    if not a.within and not b.within and a.accuracy and b.accuracy:
        return a.accuracy.excess < b.accuracy.excess * 0.9
    return False


def option_winners(parent: Record, variants, margin: float) -> list[tuple[str, str, object]]:
    """Per option, the best value that beats `parent`: `variants` are ((where, option, value), Record or
    None) for each one-option change; returns the (where, option, value) choices to combine."""
    by_option: dict[str, tuple] = {}
    for (where, option, value), rec in variants:
        if rec is None or not better(rec, parent, margin):
            continue
        if option not in by_option or better(rec, by_option[option][3], 0.0):
            by_option[option] = (where, option, value, rec)
    return [(w, o, v) for w, o, v, _ in by_option.values()]


# -- mixed precision ----------------------------------------------------------------------------------
def integer_quantised(rec: Record) -> bool:
    return any(s.kind == "quantize" and s.name not in FLOAT_SCHEMES for s in rec.recipe.steps)


def mixing_may_gain(records, root: Record) -> bool:
    """Can mixed precision on `root` (a scheme that misses the budget) still gain? Not when an integer-
    quantised candidate (int8, int4, binary; fp16/bf16 do not count) is already inside the budget and at
    least as fast as `root`'s screen (a slow int4-weight in budget does not end it)."""
    return not any(r.within and integer_quantised(r) and (r.speedup or 0.0) >= (root.speedup or 0.0)
                   for r in records)


def sensitive(rec: Record) -> bool:
    """Does per-layer sensitivity (and so mixed precision) exist for `rec`'s scheme?"""
    return rec.scheme == SENSITIVITY_SCHEME


def mixing_needed(root: Record, family: list[Record], top: Record | None, margin: float) -> bool:
    """During refinement: mixed precision on a family none of whose members fits the budget, when its
    whole-model scheme is faster than the best in budget by more than the noise margin."""
    if any(r.within for r in family):
        return False
    return top is None or (root.speedup or 0) > (top.speedup or 0) * (1 + margin)


def mixing_order(families: list[tuple[Record, list[Record]]]) -> list[tuple[Record, list[Record]]]:
    """The families mixed precision is tried on when every whole-model scheme misses: sensitive ones
    first, fastest screen first."""
    return sorted(families, key=lambda rf: (not sensitive(rf[0]), -(rf[0].speedup or 0.0)))


def mixing_seed(family) -> Record | None:
    """The family member mixed precision starts from: not failed, closest to the budget."""
    ok = [r for r in family if r.status.judged and r.accuracy is not None]
    return min(ok, key=lambda r: r.accuracy.excess) if ok else None


class MixedPrecision:
    """The k-search over one scheme's family (see search/mixed.py): `needs_ranking` until `rank()` is
    given the measured per-layer ranking; then `next()` gives the next Candidate (None when done) and
    `feedback(record)` what it did. `fields`: the scheme config's option names. `notes`: lines it wants in
    the search's notes; `outcome`: how its space ended."""

    def __init__(self, family, fields: set[str]):
        self.seed = mixing_seed(family)
        self.ranked: list[str] = []
        self.op_types: dict[str, str] = {}  # node -> op type, from the sensitivity rows
        self.search: KSearch | None = None  # the k-search, once the ranking is known
        self.dynamic_tried = False
        self.done = self.seed is None
        self.outcome = ""  # one line for the notes when done: how the space ended
        self.notes: list[str] = []
        self.has_dynamic = DYNAMIC_OPTION in fields
        if self.seed is not None and FLOAT_OPTION not in fields:
            self.notes.append(f"mixed precision: scheme {self.seed.scheme or '?'} has no '{FLOAT_OPTION}' "
                              "option; not tried")
            self.done = True

    @property
    def needs_ranking(self) -> bool:
        return not self.done and not self.ranked

    def rank(self, ranked: list[str] | None, rows: list[dict] = ()) -> None:
        """The nodes worst first (None or empty: no ranking, done), and the rows' op types."""
        if not ranked:
            self.done = True
            return
        self.ranked = list(ranked)
        self.op_types = {r["node"]: r["op_type"] for r in rows}
        # k = 0 is the whole-model scheme, which missed: the gallop starts at 1
        self.search = KSearch(len(self.ranked), start=1, bad=0)

    def estimate_s(self) -> float:
        """Rough cost of the sensitivity analysis: one quantisation and a short run per node."""
        if self.ranked or self.done or self.seed is None:
            return 0.0
        return max(5.0, self.seed.build_s) * 2.5

    def _candidate(self, k: int, option: str) -> Candidate:
        recipe = self.seed.recipe
        steps = list(recipe.steps)
        i = max(j for j, s in enumerate(steps) if s.kind == "quantize")
        nodes = list(self.ranked[:k])
        config = dict(steps[i].config)
        if option == DYNAMIC_OPTION:  # only a MatMul runs dynamic int8; the others stay in float
            dynamic = self._matmuls(nodes)
            config[DYNAMIC_OPTION] = sorted(set(config.get(DYNAMIC_OPTION) or []) | set(dynamic))
            nodes = [n for n in nodes if n not in dynamic]
        if nodes:
            config[FLOAT_OPTION] = sorted(set(config.get(FLOAT_OPTION) or []) | set(nodes))
        steps[i] = Step("quantize", steps[i].name, config)
        where = "in float" if option == FLOAT_OPTION else "in dynamic int8"
        if option == DYNAMIC_OPTION and nodes:
            where = f"kept out: {k - len(nodes)} MatMul(s) in dynamic int8, {len(nodes)} in float"
        return Candidate(dataclasses.replace(recipe, steps=tuple(steps)), "mixed", self.seed.key,
                         f"{k} most sensitive node(s) {where}",
                         mixed="float" if option == FLOAT_OPTION else "dynamic")

    def _matmuls(self, nodes: list[str]) -> list[str]:
        return [n for n in nodes if self.op_types.get(n) == "MatMul"]

    def next(self) -> Candidate | None:
        if self.done or not self.ranked:
            return None
        n, search = len(self.ranked), self.search
        k = search.next()
        if k is not None:
            return self._candidate(k, FLOAT_OPTION)
        if search.exhausted:
            self.done = True
            self.outcome = (f"mixed precision: {self.seed.label} misses the budget even with {n - 1} of "
                            f"its {n} nodes kept in float: its space is exhausted")
            return None
        good = search.good
        if self.has_dynamic and not self.dynamic_tried and self._matmuls(self.ranked[:good]):
            self.dynamic_tried = True
            return self._candidate(good, DYNAMIC_OPTION)
        self.done = True
        self.outcome = (f"mixed precision: {self.seed.label} fits the budget with its {good} most sensitive "
                        f"node(s) of {n} kept out of int8 (the fewest that do)")
        return None

    def feedback(self, rec: Record) -> None:
        if rec.origin != "mixed" or rec.mixed != "float":  # the dynamic variant does not move the bisection
            return
        if rec.status == Status.FAILED and not rec.within:
            self.done = True
            self.outcome = f"mixed precision on {self.seed.label} stopped: {rec.label} failed ({rec.reason[:200]})"
        else:
            self.search.record(bool(rec.within))


# -- the end ------------------------------------------------------------------------------------------
def finalists(records, baseline: Record, count: int) -> list[Record]:
    """The fastest in-budget candidates by their screens: the top `count`, plus any (up to MAX_FINALISTS)
    whose screen is within the screens' noise of the best."""
    pool = by_speed([r for r in records if r.within and r is not baseline and r.speedup])
    top = pool[0].speedup if pool else 0.0
    return [r for i, r in enumerate(pool) if i < count
            or (i < MAX_FINALISTS and (r.speedup or 0.0) >= top * (1 - SCREEN_NOISE))]


def choose(base: Record, timed: list[Record], threshold: float) -> tuple[Record, str]:
    """The fastest finalist whose final ratio beats `threshold` with its interval's lower end above 1, else
    `base` with the note that says why (not faster, or too noisy to tell). Never a slower model."""
    if not timed:
        return base, "no candidate other than the baseline fits the budget: the baseline is returned"
    spread = (base.latency.spread if base.latency else None) or 0.0
    wins = [r for r in timed if r.latency.ratio > threshold and r.latency.lower(spread) > 1.0]
    if wins:
        return max(wins, key=lambda r: r.latency.ratio), ""
    top = max(timed, key=lambda r: r.latency.ratio)
    lat = top.latency
    ci = lat.ratio_ci or [lat.lower(spread), lat.ratio]
    rounds = "?" if lat.rounds is None else lat.rounds
    if lat.ratio > threshold:
        return base, (f"too noisy to tell: after {rounds} interleaved rounds the fastest in budget, "
                      f"{top.label}, is {lat.ratio:.2f}x the baseline but its {CONFIDENCE:.0%} interval "
                      f"[{ci[0]:.2f}, {ci[1]:.2f}] reaches below 1: the baseline is returned")
    return base, (f"nothing inside the budget beats the baseline by more than the noise margin "
                  f"({threshold - 1:.0%}): the fastest, {top.label}, is {lat.ratio:.2f}x "
                  f"([{ci[0]:.2f}, {ci[1]:.2f}] over {rounds} rounds); the baseline is returned")


def explain(records, chosen: Record, baseline: Record) -> list[tuple[str, Status, str, str]]:
    """(key, status, stage, reason) for the chosen record and every other kept one: why each was or was
    not chosen (an in-budget model slower than the baseline becomes rejected at stage "latency")."""
    out = []
    for r in records:
        if r is chosen:
            out.append((r.key, r.status, r.stage, "chosen: the fastest in budget" if r is not baseline else
                        "chosen: nothing in budget beat it by more than the noise"))
            continue
        if not r.within or r.status == Status.BASELINE and r is baseline:
            continue
        ratio = r.speedup
        if ratio is not None and ratio < 1.0:
            out.append((r.key, Status.REJECTED, "latency", f"in budget but slower than the baseline ({ratio:.2f}x)"))
        elif ratio is None:
            out.append((r.key, r.status, r.stage, "in budget; not timed (the time budget ran out)"))
        else:
            out.append((r.key, r.status, r.stage, f"in budget; {ratio:.2f}x the baseline, not the fastest"))
    return out


# -- resume -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Judgement:
    """A cached record judged against the current budget."""

    status: Status
    stage: str
    reason: str
    full: Accuracy | None


def rejudge(rec: Record, budget) -> Judgement | None:
    """`rec` (restored from the cache) judged against `budget`; None when its cached scores do not
    suffice (a subset rejection that this, looser, budget would let through to the full evaluation)."""
    if not rec.status.judged or rec.stage not in ("", "subset", "full"):
        return Judgement(rec.status, rec.stage, rec.reason, rec.full)
    if rec.full is not None:
        excess = budget.excess(rec.full.drops)
        ok = excess <= 1.0
        full = dataclasses.replace(rec.full, within=ok, excess=excess)
        if ok:
            return Judgement(Status.IN_BUDGET, "", "", full)
        return Judgement(Status.REJECTED, "full", "accuracy: " + "; ".join(budget.violations(rec.full.drops)), full)
    if rec.subset is not None and budget.excess(rec.subset.drops, SCREEN_SLACK) > 1.0:
        return Judgement(rec.status, rec.stage, "accuracy on the subset screen: " + "; ".join(
            budget.violations(rec.subset.drops, SCREEN_SLACK)), None)
    return None
