"""constant_folding: evaluate nodes whose inputs are all constants and replace them by initializers.

Wraps onnxscript's `FoldConstantsPass` (the ONNX reference evaluator computes each folded node, in the
node's own dtype). It also folds shape arithmetic where shapes are statically known (`Shape` of a value
with a static shape, `Size`, ...). Limits keep the model small: a node with a constant input of more than
`input_size_limit` elements is not folded (except cheap layout ops whose large input has no other user,
like `Transpose` of a weight), nor is one whose output has more than `output_size_limit` elements.
`ConstantOfShape` and (De)QuantizeLinear are kept on purpose. Nodes fed by a graph input never fold.
"""

from __future__ import annotations

from dataclasses import dataclass

from hasten.model import Model
from hasten.passes.base import Pass


class ConstantFolding(Pass):
    """Fold constant sub-expressions into initializers."""

    name = "constant_folding"

    @dataclass(frozen=True)
    class Config:
        input_size_limit: int = 8192
        output_size_limit: int = 512 * 512

    def run(self, model: Model):
        from onnxscript.optimizer._constant_folding import FoldConstantsPass

        work = self.working_copy(model)
        before = sum(1 for _ in work.graph.all_nodes())
        folder = FoldConstantsPass(shape_inference=False,
                                   input_size_limit=self.config.input_size_limit,
                                   output_size_limit=self.config.output_size_limit)
        modified = folder(work).modified
        removed = before - sum(1 for _ in work.graph.all_nodes())
        return work, modified, ({"nodes_removed": removed} if removed > 0 else {})
