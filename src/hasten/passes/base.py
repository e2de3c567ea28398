"""Pass infrastructure: `Pass`, `PassResult`, `Sequence` and `FixedPoint` (after onnx-ir's `_pass_infra`).

A pass is a named transform `Model -> PassResult(model, modified, stats)` with a frozen, typed `Config`.
Passes here are functional (`in_place = False`): the input `Model` is never mutated. A pass works on a
clone of the graph (`ir.Model.clone()`: nodes and values are new, weight tensors are shared and treated as
read-only), and when it changes something it returns `model.derive(new, step)` so the step is recorded in
the lineage. When it changes nothing it returns the input object itself with `modified=False`.

Every pass declares `emits_domains`: the op domains beyond the standard ones its output may hold (a pass
emitting contrib ops declares `("com.microsoft",)`); it applies to a backend that executes all of them
(`runs_on(backend.domains)`). And `search_space()`: config values worth trying.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import onnx
import onnx_ir as ir

from hasten.errors import HastenError
from hasten.model import Model

logger = logging.getLogger(__name__)

STANDARD_DOMAINS: tuple[str, ...] = ("", "ai.onnx")


@dataclass(frozen=True)
class PassResult:
    """What a pass returns: the (possibly new) model, whether it differs, and optional counters."""

    model: Model
    modified: bool
    stats: dict[str, int] = field(default_factory=dict)


class Pass(abc.ABC):
    """Base class of graph passes. Subclasses set `name`, may define a nested frozen `Config`
    dataclass, and implement `run(model) -> (new_ir_or_proto, modified, stats)` without mutating `model`
    (use `self.working_copy(model)` to get a mutable clone)."""

    name: ClassVar[str] = ""
    emits_domains: ClassVar[tuple[str, ...]] = ()
    in_place: ClassVar[bool] = False

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, config: Any = None, **options: Any) -> None:
        if config is not None and options:
            raise HastenError(f"pass {self.name!r}: give either a Config or keyword options, not both")
        if config is None:
            known = {f.name for f in dataclasses.fields(self.Config)}
            unknown = sorted(set(options) - known)
            if unknown:
                raise HastenError(f"pass {self.name!r}: unknown option(s) {unknown}; "
                                  f"known options: {sorted(known) or 'none'}")
            config = self.Config(**options)
        elif not isinstance(config, self.Config):
            raise HastenError(f"pass {self.name!r}: config must be a {type(self).__name__}.Config, "
                              f"got {type(config).__name__}")
        self.config = config

    # -- the contract ------------------------------------------------------------------------------
    @abc.abstractmethod
    def run(self, model: Model) -> tuple[ir.Model | onnx.ModelProto, bool, dict[str, int]]:
        """Transform `model` without mutating it: return (new graph, modified, stats)."""

    def search_space(self) -> dict[str, list]:
        """Config values worth trying, for the tuner: {option: [values]}; {} when none."""
        return {}

    @classmethod
    def runs_on(cls, domains) -> bool:
        """True when a runtime executing the op `domains` runs this pass's output."""
        return set(cls.emits_domains) <= set(domains) | set(STANDARD_DOMAINS)

    def __call__(self, model: Model) -> PassResult:
        if not isinstance(model, Model):
            raise TypeError(f"pass {self.name!r} takes a hasten Model, got {type(model).__name__}")
        new, modified, stats = self.run(model)
        if not modified:
            return PassResult(model, False, dict(stats))
        logger.debug("pass %s modified the model (%s)", self.name, stats)
        return PassResult(model.derive(new, self.step()), True, dict(stats))

    # -- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def working_copy(model: Model) -> ir.Model:
        """A clone of the model's graph that the pass may mutate (weight tensors are shared: never write
        into a tensor's buffer, replace the tensor instead)."""
        try:
            return model.ir.clone()
        except RuntimeError:  # the cloner needs topological order; a proto round trip does not
            return ir.serde.deserialize_model(model.proto())

    def step(self) -> str:
        """The lineage entry: `name(option=value, ...)`."""
        args = ", ".join(f"{f.name}={getattr(self.config, f.name)!r}"
                         for f in dataclasses.fields(self.config))
        return f"{self.name}({args})"

    def __repr__(self) -> str:
        return f"<Pass {self.step()}>"


def _merge_stats(total: dict[str, int], stats: dict[str, int], prefix: str) -> None:
    for key, value in stats.items():
        k = f"{prefix}.{key}" if prefix else key
        total[k] = total.get(k, 0) + value


class Sequence:
    """Run passes in order; modified if any pass modified. Stats are keyed `pass_name.counter`.

    Its `emits_domains` are those of all its members.
    """

    name = "sequence"

    def __init__(self, passes: Iterable[Pass | Sequence]) -> None:
        self.passes = list(passes)
        if not self.passes:
            raise HastenError("a pass sequence needs at least one pass")
        self.emits_domains = tuple(sorted({d for p in self.passes for d in p.emits_domains}))

    def runs_on(self, domains) -> bool:
        return set(self.emits_domains) <= set(domains) | set(STANDARD_DOMAINS)

    def __call__(self, model: Model) -> PassResult:
        modified = False
        stats: dict[str, int] = {}
        for p in self.passes:
            result = p(model)
            model = result.model
            modified = modified or result.modified
            _merge_stats(stats, result.stats, "" if isinstance(p, Sequence) else p.name)
        return PassResult(model, modified, stats)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.passes!r})"


class FixedPoint(Sequence):
    """Run the sequence again until one full round changes nothing, at most `max_iterations` rounds.

    Stats are summed over rounds, plus `iterations` (rounds run). Reaching the limit while the model still
    changes is logged, not an error: the result is valid, only perhaps not fully simplified.
    """

    name = "fixed_point"

    def __init__(self, passes: Iterable[Pass | Sequence], max_iterations: int = 8) -> None:
        super().__init__(passes)
        if max_iterations < 1:
            raise HastenError(f"FixedPoint: max_iterations must be >= 1, got {max_iterations}")
        self.max_iterations = max_iterations

    def __call__(self, model: Model) -> PassResult:
        modified = False
        stats: dict[str, int] = {}
        for i in range(1, self.max_iterations + 1):
            result = super().__call__(model)
            model = result.model
            _merge_stats(stats, result.stats, "")
            stats["iterations"] = i
            if not result.modified:
                break
            modified = True
        else:
            logger.warning("FixedPoint: still changing after %d iterations; stopping", self.max_iterations)
        return PassResult(model, modified, stats)
