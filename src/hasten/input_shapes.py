"""Concrete input shapes from the user's `--shape name=dims` pairs and the defaults.

An input name takes a full shape ("1x128", a tuple, or an int for a 1-D input); a dynamic dim name (e.g.
"batch", "sequence") takes an int; every other dynamic dim gets the default: 1 for the first (batch) dim, 128
for the others (`hasten.model.DEFAULT_BATCH`, `DEFAULT_DIM`). A name that is neither an input nor a dynamic
dim raises DataError naming the valid ones.

Those defaults are a last resort for when no data exists (`hasten inspect` without `--shape`): wherever the
user gave samples, their shapes are used (`sample_shapes(samples)`), and a graph pass that records shapes
keeps an unsized dim symbolic (`resolve_input_dims`) rather than guess it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from hasten.errors import DataError
from hasten.model import Model, TensorSpec


def parse_dims(text: str | int | Sequence[int], what: str = "shape") -> tuple[int, ...]:
    """The one shape grammar: "1x128", "1,128", "1*128", "(1, 128)", "128", 128 or (1, 128) -> (1, 128);
    every dim a positive int, else DataError naming `what` and the text."""
    if isinstance(text, int):
        dims: list = [text]
    elif isinstance(text, str):
        parts = [p for p in re.split(r"[x,*\s]+", text.strip().strip("()[]")) if p]
        if not parts:
            raise DataError(f"{what}: empty shape; write dims like 1x128")
        dims = parts
    else:
        dims = list(text)
    out = []
    for d in dims:
        try:
            value = int(d)
        except (TypeError, ValueError):
            raise DataError(f"{what}: {text!r} is not a shape; write dims like 1x128") from None
        if value <= 0:
            raise DataError(f"{what}: dims must be positive, got {text!r}")
        out.append(value)
    return tuple(out)


def parse_shape_args(items: Sequence[str]) -> dict[str, int | tuple[int, ...]]:
    """`--shape NAME=DIMS` items -> {name: int (a bare size: a dim, or a 1-D input) or tuple (a shape)}, each
    DIMS in `parse_dims`'s grammar (1x3x48x320, 1,3,48,320 or (1, 3, 48, 320)); DataError otherwise."""
    out: dict[str, int | tuple[int, ...]] = {}
    for item in items:
        name, sep, dims = item.partition("=")
        name, dims = name.strip(), dims.strip()
        if not sep or not name or not dims:
            raise DataError(f"--shape {item!r}: expected NAME=DIMS, e.g. input_ids=1x128 or sequence=64")
        shape = parse_dims(dims, f"--shape {item!r}")
        out[name] = shape[0] if dims.isdigit() else shape
    return out


def _describe_inputs(specs: list[TensorSpec]) -> str:
    return ", ".join(f"{s.name}[{' x '.join(str(d) for d in s.shape)}]" for s in specs)


def _dim_names(specs: list[TensorSpec]) -> list[str]:
    names: list[str] = []
    for s in specs:
        for d in s.shape:
            if isinstance(d, str) and d != "?" and d not in names:
                names.append(d)
    return names


def split_shapes(model: Model, shapes: Mapping[str, object] | None
                 ) -> tuple[dict[str, int], dict[str, tuple[int, ...]]]:
    """Split `{name: value}` into (dim overrides, per-input full shapes), by what each name is.

    An input name takes a full shape ("1x128", a tuple, or an int for a 1-D input); a dynamic dim name
    takes an int. Anything else raises DataError naming the valid inputs and dims.
    """
    overrides: dict[str, int] = {}
    input_shapes: dict[str, tuple[int, ...]] = {}
    specs = model.inputs
    inputs = {s.name for s in specs}
    dims = _dim_names(specs)
    for name, value in (shapes or {}).items():
        if name in inputs:
            input_shapes[name] = parse_dims(value, f"--shape {name}")  # type: ignore[arg-type]
        elif name in dims:
            parsed = parse_dims(value, f"--shape {name}")  # type: ignore[arg-type]
            if len(parsed) != 1:
                raise DataError(f"--shape {name}: {name} is a dim; give one size (e.g. {name}=128)")
            overrides[name] = parsed[0]
        else:
            raise DataError(_unknown_name(name, specs, dims))
    return overrides, input_shapes


def _unknown_name(name: str, specs: list[TensorSpec], dims: list[str]) -> str:
    return (f"--shape {name}: not an input or a dynamic dim of the model; inputs: {_describe_inputs(specs)}; "
            f"dynamic dims: {', '.join(dims) if dims else '(none)'}")


def resolve_input_shapes(model: Model, overrides: Mapping[str, int] | None = None,
                         input_shapes: Mapping[str, Sequence[int]] | None = None
                         ) -> dict[str, tuple[int, ...]]:
    """The concrete shape each real input gets (see the module docstring); DataError on bad names."""
    specs = model.inputs
    dims = _dim_names(specs)
    overrides = dict(overrides or {})
    input_shapes = dict(input_shapes or {})
    for name, value in overrides.items():
        if name not in dims:
            raise DataError(_unknown_name(name, specs, dims))
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise DataError(f"--shape {name}: a dim must be a positive int, got {value!r}")
    known = {s.name for s in specs}
    for name in input_shapes:
        if name not in known:
            raise DataError(_unknown_name(name, specs, dims))
    resolved: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        if spec.name in input_shapes:
            shape = parse_dims(input_shapes[spec.name], f"--shape {spec.name}")  # type: ignore[arg-type]
            if spec.shape and len(shape) != len(spec.shape):
                raise DataError(f"--shape {spec.name}: the input has rank {len(spec.shape)} "
                                f"({' x '.join(map(str, spec.shape))}), got {len(shape)} dims")
            for i, (want, got) in enumerate(zip(spec.shape, shape, strict=False)):
                if isinstance(want, int) and want > 0 and want != got:
                    raise DataError(f"--shape {spec.name}: dim {i} is fixed at {want} in the model, got {got}")
            resolved[spec.name] = shape
            continue
        resolved[spec.name] = spec.concrete_shape(overrides)
    return resolved


def concrete_input_shapes(model: Model, shapes: Mapping[str, object] | None = None) -> dict[str, tuple[int, ...]]:
    """`resolve_input_shapes` for the CLI's mixed `{input or dim name: value}` mapping."""
    return resolve_input_shapes(model, *split_shapes(model, shapes))


def resolve_input_dims(model: Model, overrides: Mapping[str, int] | None = None,
                       input_shapes: Mapping[str, Sequence[int]] | None = None
                       ) -> dict[str, tuple[int | str, ...]]:
    """Like `resolve_input_shapes`, but a dynamic dim that neither `input_shapes` nor `overrides` sizes
    keeps its symbolic name ("?" when unnamed) instead of a default size."""
    concrete = resolve_input_shapes(model, overrides, input_shapes)  # validates every name and size
    overrides = dict(overrides or {})
    out: dict[str, tuple[int | str, ...]] = {}
    for spec in model.inputs:
        if spec.name in (input_shapes or {}):
            out[spec.name] = concrete[spec.name]
            continue
        out[spec.name] = tuple(d if isinstance(d, int) and d > 0 else
                               (int(overrides[d]) if isinstance(d, str) and d in overrides else str(d))
                               for d in spec.shape)
    return out


def sample_shapes(samples) -> dict[str, tuple[int, ...]]:
    """{input name: shape of one item (batch 1)} of `samples` (hasten Samples, or {name: batched array}):
    the sizes shape inference, the cost model and the floor use when the user gave data."""
    if isinstance(samples, Mapping):
        arrays = samples
    else:
        arrays = next(iter(samples.take(1).feeds(1)))
    return {name: (1, *tuple(int(d) for d in getattr(a, "shape", ())[1:])) for name, a in arrays.items()}
