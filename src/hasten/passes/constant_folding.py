"""constant_folding: evaluate nodes whose inputs are all constants and replace them by initializers.

Wraps onnxscript's `FoldConstantsPass` (the ONNX reference evaluator computes each folded node, in the
node's own dtype). It also folds shape arithmetic where shapes are statically known (`Shape` of a value
with a static shape, `Size`, ...). Limits keep the model small: a node with a constant input of more than
`input_size_limit` elements is not folded, nor is one whose output has more than `output_size_limit` elements
(more than its inputs free) -- except weight-layout ops (`WEIGHT_LAYOUT_OPS`: Transpose, Reshape, Cast,
Identity, Squeeze, Unsqueeze, Flatten) whose large inputs have no other reader: a weight stored transposed,
reshaped or in another dtype becomes one initializer, so quantisers see a constant weight.
`ConstantOfShape` and (De)QuantizeLinear are kept on purpose. Nodes fed by a graph input never fold.
Nodes left without readers by the folding (a Constant whose reader folded) are removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from hasten.model import Model
from hasten.passes.base import Pass

#: Ops that only re-lay or re-type a tensor: folded over a large constant that nothing else reads.
WEIGHT_LAYOUT_OPS = frozenset({"Transpose", "Reshape", "Cast", "Identity", "Squeeze", "Unsqueeze", "Flatten"})


def _fold_weight_layout(node: ir.Node) -> bool | None:
    """True for a weight-layout op whose inputs are constants, each large one read only by this node;
    None (the folder's default rules) otherwise."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in WEIGHT_LAYOUT_OPS:
        return None
    data = node.inputs[0] if node.inputs else None
    if data is None or data.is_graph_input() or data.const_value is None or len(data.uses()) != 1:
        return None
    if any(v is not None and (v.const_value is None or v.is_graph_input()) for v in node.inputs[1:]):
        return None
    return True


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
                                   output_size_limit=self.config.output_size_limit,
                                   should_fold=_fold_weight_layout)
        modified = folder(work).modified
        if modified:  # Constant nodes whose readers were folded are dead now
            RemoveUnusedNodesPass()(work)
        removed = before - sum(1 for _ in work.graph.all_nodes())
        return work, modified, ({"nodes_removed": removed} if removed > 0 else {})
