"""What a search returns (`SearchResult`); results.json's types are `hasten.outcome.results`."""

from __future__ import annotations

from dataclasses import dataclass, field

from hasten.outcome.records import Record


@dataclass
class SearchResult:
    """What a search returns: every record, the baseline and the chosen one, and how the search went.
    `settings` is the search's resolved Settings (hasten.search.tuner)."""

    records: list[Record]
    baseline: Record
    chosen: Record
    budget: object
    metrics: list
    settings: object
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    interrupted: bool = False
    sensitivity: dict | None = None
    context: dict = field(default_factory=dict)

    @property
    def beat_baseline(self) -> bool:
        return self.chosen is not self.baseline
