"""The accuracy budget: a maximum absolute drop of each metric's mean against the fp32 baseline on the same
backend (BENCHMARKING.md). drop = baseline.mean - candidate.mean (reversed for lower-is-better metrics).

Defaults per metric: top1 0.01 (one point), cosine 0.01 (mean cosine >= 0.99), retrieval@k 0.10 (top-k
agreement >= 0.90), sqnr 170 dB below the 200 dB cap of identical outputs (i.e. SQNR >= 30 dB), any other
metric 0.01. `--max-drop 0.02` sets the first (task) metric's budget and keeps the others' defaults;
`--max-drop cosine=0.02,retrieval@10=0.05` sets each by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from hasten.errors import SearchError
from hasten.measure.accuracy import SQNR_CAP_DB, Metric, Score

SQNR_FLOOR_DB = 30.0


def default_max_drop(metric: Metric) -> float:
    name = metric.name
    if name.startswith("retrieval"):
        return 0.10
    if name == "sqnr":
        return SQNR_CAP_DB - SQNR_FLOOR_DB
    return 0.01


@dataclass(frozen=True)
class Budget:
    """Max drop per metric name, in the metrics' order (the first is the task metric)."""

    limits: tuple[tuple[str, float], ...]

    @classmethod
    def build(cls, metrics: list[Metric], max_drop=None) -> Budget:
        """From `max_drop`: None (defaults), a number (first metric), a dict or "name=v,name=v" text."""
        names = [m.name for m in metrics]
        limits = {m.name: default_max_drop(m) for m in metrics}
        if max_drop is None or max_drop == "":
            pass
        elif isinstance(max_drop, dict):
            limits.update(_checked(names, max_drop))
        elif isinstance(max_drop, (int, float)):
            limits[names[0]] = _value(names[0], max_drop)
        else:
            text = str(max_drop).strip()
            if "=" not in text:
                limits[names[0]] = _value(names[0], text)
            else:
                pairs = {}
                for part in text.split(","):
                    name, sep, value = part.strip().partition("=")
                    if not sep:
                        raise SearchError(f"--max-drop {text!r}: write NAME=VALUE pairs, e.g. cosine=0.01")
                    pairs[name.strip()] = value
                limits.update(_checked(names, pairs))
        return cls(tuple((n, limits[n]) for n in names))

    def limit(self, name: str) -> float:
        return dict(self.limits)[name]

    def to_dict(self) -> dict:
        return dict(self.limits)

    def describe(self) -> str:
        return ", ".join(f"{n} drop <= {v:g}" for n, v in self.limits)

    def drops(self, metrics: list[Metric], baseline: dict[str, Score], candidate: dict[str, Score]
              ) -> dict[str, float]:
        return {m.name: float(m.drop(baseline[m.name], candidate[m.name])) for m in metrics}

    def excess(self, drops: dict[str, float], slack: float = 1.0) -> float:
        """max over metrics of drop / (slack * limit): <= 1 means within budget (with slack)."""
        worst = 0.0
        for name, limit in self.limits:
            d = drops.get(name, float("inf"))
            worst = max(worst, d / max(slack * limit, 1e-12) if d > 0 else 0.0)
        return worst

    def violations(self, drops: dict[str, float], slack: float = 1.0) -> list[str]:
        return [f"{n} drop {drops.get(n, float('nan')):.4g} > {slack * v:.4g}" for n, v in self.limits
                if not drops.get(n, float("inf")) <= slack * v]


def _value(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SearchError(f"--max-drop for {name}: {value!r} is not a number") from None
    if not v >= 0:
        raise SearchError(f"--max-drop for {name}: must be >= 0, got {value}")
    return v


def _checked(names: list[str], pairs: dict) -> dict[str, float]:
    unknown = sorted(set(pairs) - set(names))
    if unknown:
        raise SearchError(f"--max-drop: unknown metric(s) {unknown}; the metrics are {names}")
    return {k: _value(k, v) for k, v in pairs.items()}
