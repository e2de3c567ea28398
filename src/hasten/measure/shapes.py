"""Fix a model's symbolic input dims and give every intermediate value a concrete shape.

`infer_shapes(model, overrides, input_shapes)` returns a derived Model whose graph inputs have concrete
shapes and whose value_info holds a concrete shape for every value shape inference can reach:

- input dims come from `input_shapes[input_name]` (a full shape), else `overrides[dim_name]`, else the
  defaults: 1 for the first (batch) dim, 128 for any other dynamic dim -- or, with `keep_dynamic=True`, the
  dim stays symbolic. Callers with user samples pass their shapes (`hasten.input_shapes.sample_shapes`);
- `onnx.shape_inference.infer_shapes(data_prop=True)` runs first (with large weights' bytes left out, so it
  is cheap and works past 2 GB); where it leaves values unshaped (com.microsoft ops, ops it cannot
  propagate), the reference backend's symbolic shape inference (`hasten.backends.symbolic_shapes`: ONNX
  Runtime's `SymbolicShapeInference`) fills the gaps.

The input shapes themselves are resolved by `hasten.input_shapes` (shared with the data loaders and the CLI).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx

from hasten.input_shapes import resolve_input_dims, resolve_input_shapes
from hasten.model import Model

#: Initializers with more raw bytes than this are hidden from shape inference (their shape is kept).
_STRIP_BYTES = 1 << 16


def infer_shapes(model: Model, overrides: Mapping[str, int] | None = None,
                 input_shapes: Mapping[str, Sequence[int]] | None = None, keep_dynamic: bool = False) -> Model:
    """A derived Model with concrete input shapes and a concrete shape on every value inference reaches.

    `keep_dynamic=True`: a dynamic dim that neither `input_shapes` nor `overrides` sizes keeps its symbol
    (no default guess); values then get symbolic shapes where their size depends on it."""
    if keep_dynamic:
        resolved = resolve_input_dims(model, overrides, input_shapes)
    else:
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


def _set_dims(value: onnx.ValueInfoProto, dims: tuple[int | str, ...]) -> None:
    tensor = value.type.tensor_type
    tensor.ClearField("shape")
    for d in dims:
        dim = tensor.shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        elif d != "?":
            dim.dim_param = d


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


def symbolic_value_infos(proto: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """name -> value info from the reference backend's symbolic shape inference (dims may stay symbolic); {} when
    it cannot run. `proto` is not changed."""
    return _symbolic_infer(proto)


def _symbolic_infer(proto: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """The reference backend's symbolic shape inference (knows contrib ops); {} when it has none or fails."""
    from hasten.backends import symbolic_shapes

    taken = _strip_large(proto)
    try:
        result = symbolic_shapes(proto)
    finally:
        _restore(proto, taken)
    return {} if result is None else _value_infos(result)
