"""Fix a model's symbolic input dims and give every intermediate value a concrete shape.

`infer_shapes(model, overrides, input_shapes)` returns a derived Model whose graph inputs have concrete
shapes and whose value_info holds a concrete shape for every value shape inference can reach:

- input dims come from `input_shapes[input_name]` (a full shape), else `overrides[dim_name]`, else the
  defaults: 1 for the first (batch) dim, 128 for any other dynamic dim;
- `onnx.shape_inference.infer_shapes(data_prop=True)` runs first (with large weights' bytes left out, so it
  is cheap and works past 2 GB); where it leaves values unshaped (com.microsoft ops, ops it cannot
  propagate), ONNX Runtime's `SymbolicShapeInference` fills the gaps.

`split_shapes(model, shapes)` turns the CLI's `--shape name=dims` pairs (a dim name with an int, or an input
name with a full shape such as "1x128") into those two dicts; a name that is neither raises DataError.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx

from hasten.errors import DataError
from hasten.model import Model, TensorSpec

#: Default size of a dynamic dim: the first (batch) dim and every other one.
DEFAULT_BATCH = 1
DEFAULT_DIM = 128
#: Initializers with more raw bytes than this are hidden from shape inference (their shape is kept).
_STRIP_BYTES = 1 << 16


def parse_dims(text: str | int | Sequence[int], what: str = "shape") -> tuple[int, ...]:
    """"1x128", "1,128", "128", 128 or (1, 128) -> (1, 128); every dim a positive int, else DataError."""
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
        out = []
        for i, d in enumerate(spec.shape):
            if isinstance(d, int) and d > 0:
                out.append(d)
            elif isinstance(d, str) and d in overrides:
                out.append(int(overrides[d]))
            else:
                out.append(DEFAULT_BATCH if i == 0 else DEFAULT_DIM)
        resolved[spec.name] = tuple(out)
    return resolved


def infer_shapes(model: Model, overrides: Mapping[str, int] | None = None,
                 input_shapes: Mapping[str, Sequence[int]] | None = None) -> Model:
    """A derived Model with concrete input shapes and a concrete shape on every value inference reaches."""
    resolved = resolve_input_shapes(model, overrides, input_shapes)
    proto = model.proto()
    graph = proto.graph
    for value in graph.input:
        if value.name in resolved:
            _set_dims(value, resolved[value.name])
    del graph.value_info[:]
    for value in graph.output:  # let inference write the outputs' shapes afresh
        if value.type.HasField("tensor_type"):
            value.type.tensor_type.ClearField("shape")

    inferred = _onnx_infer(proto)
    gaps = _gaps(proto, inferred)
    if gaps:
        symbolic = _symbolic_infer(proto)
        for name, vi in symbolic.items():
            if name in gaps and (name not in inferred or _is_concrete(vi)):
                inferred[name] = vi
    outputs = {v.name for v in graph.output}
    inputs = {v.name for v in graph.input}
    for name, vi in inferred.items():
        if name in outputs:
            target = next(v for v in graph.output if v.name == name)
            target.type.CopyFrom(vi.type)
        elif name not in inputs:
            graph.value_info.append(vi)
    step = "infer_shapes(" + ", ".join(f"{n}={'x'.join(map(str, s))}" for n, s in resolved.items()) + ")"
    return model.derive(proto, step)


def _set_dims(value: onnx.ValueInfoProto, dims: tuple[int, ...]) -> None:
    tensor = value.type.tensor_type
    tensor.ClearField("shape")
    for d in dims:
        tensor.shape.dim.add().dim_value = int(d)


def _is_concrete(vi: onnx.ValueInfoProto) -> bool:
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return False
    return all(d.HasField("dim_value") and d.dim_value >= 0 for d in vi.type.tensor_type.shape.dim)


def _gaps(proto: onnx.ModelProto, inferred: dict[str, onnx.ValueInfoProto]) -> set[str]:
    """Names of main-graph node outputs without a concrete shape."""
    gaps = set()
    for node in proto.graph.node:
        for name in node.output:
            if name and (name not in inferred or not _is_concrete(inferred[name])):
                gaps.add(name)
    return gaps


def _strip_large(proto: onnx.ModelProto) -> dict[int, bytes]:
    """Take the raw bytes of large initializers out of `proto` (in place); returns them by position."""
    taken = {}
    for i, tensor in enumerate(proto.graph.initializer):
        if tensor.HasField("raw_data") and len(tensor.raw_data) > _STRIP_BYTES:
            taken[i] = tensor.raw_data
            tensor.ClearField("raw_data")
    return taken


def _restore(proto: onnx.ModelProto, taken: dict[int, bytes]) -> None:
    for i, data in taken.items():
        proto.graph.initializer[i].raw_data = data


def _value_infos(proto: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    out = {vi.name: vi for vi in proto.graph.value_info}
    for vi in proto.graph.output:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            out[vi.name] = vi
    return out


def _onnx_infer(proto: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    taken = _strip_large(proto)
    try:
        result = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)
    except Exception:
        result = None
    finally:
        _restore(proto, taken)
    if result is None:  # a stripped weight was needed as data (rare): retry with everything
        try:
            result = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False,
                                                       data_prop=True)
        except Exception:
            return {}
    return _value_infos(result)


def _symbolic_class():
    """`SymbolicShapeInference`, loaded from its file: `import onnxruntime.tools` would import torch (2 s)."""
    name = "onnxruntime.tools.symbolic_shape_infer"
    if name in sys.modules:
        return sys.modules[name].SymbolicShapeInference
    private = "_hasten_ort_symbolic_shape_infer"
    if private not in sys.modules:
        spec = importlib.util.find_spec("onnxruntime")
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / "tools" / "symbolic_shape_infer.py"
        if not path.exists():
            return None
        module_spec = importlib.util.spec_from_file_location(private, path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception:
            return None
        sys.modules[private] = module
    return sys.modules[private].SymbolicShapeInference


def _symbolic_infer(proto: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """ONNX Runtime's symbolic shape inference (knows com.microsoft ops); {} when it fails."""
    SymbolicShapeInference = _symbolic_class()
    if SymbolicShapeInference is None:
        return {}
    logging.getLogger(SymbolicShapeInference.__module__).setLevel(logging.ERROR)
    taken = _strip_large(proto)
    try:
        # The class is driven directly: its `infer_shapes` wrapper writes a file into the working folder
        # when inference is incomplete, and partial results are still useful here.
        engine = SymbolicShapeInference(2**31 - 1, True, False, 0)
        engine._preprocess(proto)
        while engine.run_:
            engine._infer_impl()
        engine._update_output_from_vi()
        result = engine.out_mp_
    except Exception:
        return {}
    finally:
        _restore(proto, taken)
    return _value_infos(result)
