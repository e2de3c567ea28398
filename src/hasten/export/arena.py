"""The static arena: every activation of a `Program` gets an offset from its lifetime, no trial and error.

Lifetime of a stored tensor: [the layer that writes it, the last layer that reads it or a view of it]. Two
tensors whose lifetimes share a layer may not share bytes (kernels never run in place). The program's input
and output live in the caller's buffers, not in the arena.

Placement is greedy (each tensor at the lowest aligned offset that overlaps no placed tensor live at the same
time, as TFLite Micro's greedy planner), over a few orders (largest first, first written first, longest-lived
first), keeping the smallest. The lower bound printed beside it
is the peak, over the execution order, of the summed sizes of the tensors live at once: no placement can use
less.
"""

from __future__ import annotations

from dataclasses import dataclass

from hasten.export.program import Program

ALIGN = 4


@dataclass(frozen=True)
class Slot:
    name: str  # the stored tensor
    offset: int
    size: int
    first: int  # index of the layer that writes it
    last: int  # index of the last layer that reads it


@dataclass(frozen=True)
class ArenaPlan:
    slots: dict[str, Slot]
    size: int  # bytes of the arena (aligned)
    lower_bound: int  # peak of the bytes live at once


def lifetimes(program: Program) -> dict[str, tuple[int, int, int]]:
    """{stored tensor: (size, first layer, last layer)} of the tensors that live in the arena."""
    external = {program.storage(program.input), program.storage(program.output)}
    spans: dict[str, list[int]] = {}
    for i, layer in enumerate(program.layers):
        for name in layer.outputs:
            store = program.storage(name)
            if store not in external:
                spans.setdefault(store, [i, i])
        for name in layer.inputs:
            store = program.storage(name)
            if store in spans:
                spans[store][1] = max(spans[store][1], i)
    return {name: (program.tensors[name].size, a, b) for name, (a, b) in spans.items()}


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def lower_bound(life: dict[str, tuple[int, int, int]], steps: int) -> int:
    """max over layers of the summed (aligned) sizes of the tensors live at that layer."""
    return max((sum(_aligned(s) for s, a, b in life.values() if a <= i <= b) for i in range(steps)), default=0)


def _place(life: dict[str, tuple[int, int, int]], order: list[str]) -> list[Slot]:
    placed: list[Slot] = []
    for name in order:
        size, first, last = life[name]
        need = _aligned(size)
        busy = sorted((s.offset, s.offset + _aligned(s.size)) for s in placed if s.first <= last and first <= s.last)
        offset = 0
        for lo, hi in busy:
            if offset + need <= lo:
                break
            offset = max(offset, hi)
        placed.append(Slot(name, offset, size, first, last))
    return placed


#: The orders tried (each placed greedily; the smallest arena wins): largest first, first written first,
#: longest-lived first.
ORDERS = (
    lambda kv: (-kv[1][0], kv[1][1], kv[0]),
    lambda kv: (kv[1][1], -kv[1][0], kv[0]),
    lambda kv: (kv[1][1] - kv[1][2], -kv[1][0], kv[0]),
)


def plan_arena(program: Program) -> ArenaPlan:
    """Offsets for every arena tensor: the smallest of the greedy placements in `ORDERS`."""
    life = lifetimes(program)
    best: list[Slot] | None = None
    for key in ORDERS:
        slots = _place(life, [name for name, _ in sorted(life.items(), key=key)])
        if best is None or _end(slots) < _end(best):
            best = slots
    return ArenaPlan({s.name: s for s in best or []}, _end(best or []), lower_bound(life, len(program.layers)))


def _end(slots: list[Slot]) -> int:
    return max((s.offset + _aligned(s.size) for s in slots), default=0)
