"""infer_shapes: fix the symbolic input dims and record a concrete shape for every value.

A thin pass over `hasten.measure.shapes.infer_shapes` (ONNX shape inference with data propagation, then
ONNX Runtime's symbolic inference for what it leaves): input dims come from `input_shapes[input]`
(a full shape), else `overrides[dim_name]`; a dynamic dim neither sizes stays dynamic (never a guessed size:
with no config the model still takes inputs of every size, and values get symbolic shapes). Numbers never
change; the pass is `modified` when any graph input, output or value_info type differs afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from hasten.model import Model
from hasten.passes.base import Pass


def _signature(model: Model) -> dict[str, tuple]:
    """name -> (type, shape) of every graph input, output and node output."""
    g = model.graph
    values = [*g.inputs, *g.outputs, *(o for n in g.all_nodes() for o in n.outputs)]
    return {v.name: (str(v.type), None if v.shape is None else tuple(str(d) for d in v.shape))
            for v in values}


class InferShapes(Pass):
    """Input dims sized by the config (others stay dynamic) and inferred shapes for all intermediate values."""

    name = "infer_shapes"

    @dataclass(frozen=True)
    class Config:
        overrides: dict[str, int] | None = None
        input_shapes: dict[str, tuple[int, ...]] | None = None

    def run(self, model: Model):
        from hasten.measure.shapes import infer_shapes

        new = infer_shapes(model, overrides=self.config.overrides, input_shapes=self.config.input_shapes,
                           keep_dynamic=True)
        modified = _signature(new) != _signature(model)
        return new.ir, modified, {}
