"""cleanup: inference-time graph tidying that never changes numbers.

1. `Dropout` in inference is the identity: a Dropout whose mask output is unused and whose
   `training_mode` is absent or a constant false becomes `Identity` (its `ratio` is then irrelevant).
2. `Identity` nodes are removed (onnx-ir `IdentityEliminationPass`); one that maps a graph input
   straight to a graph output must stay.
3. Dead nodes (no output used) and unused initializers are removed (`RemoveUnusedNodesPass`).
4. Nodes are sorted topologically (stable; `TopologicalSortPass`).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import IdentityEliminationPass, RemoveUnusedNodesPass, TopologicalSortPass

from hasten.model import Model
from hasten.passes.base import Pass


def _dropout_is_identity(node: ir.Node) -> bool:
    if node.op_type != "Dropout" or node.domain not in ("", "ai.onnx"):
        return False
    if len(node.outputs) > 1 and (node.outputs[1].uses() or node.outputs[1].is_graph_output()):
        return False  # the mask is consumed: keep the op
    attr = node.attributes.get("is_test")  # opset < 7: is_test=0 means training
    if attr is not None and attr.as_int() == 0:
        return False
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        training = ir.convenience.get_const_tensor(node.inputs[2])
        if training is None or bool(np.asarray(training.numpy()).any()):
            return False
    return True


def _dropout_to_identity(graph: ir.Graph) -> int:
    count = 0
    for node in list(graph):
        if not _dropout_is_identity(node):
            continue
        out = node.outputs[0]
        identity = ir.Node("", "Identity", [node.inputs[0]], name=node.name, num_outputs=1)
        ir.convenience.replace_nodes_and_values(graph, node, [node], [identity], [out], identity.outputs)
        count += 1
    return count


def _count(graph: ir.Graph) -> int:
    return sum(1 for _ in graph.all_nodes())


class Cleanup(Pass):
    """Remove inference no-ops (Dropout, Identity), dead nodes and unused initializers; sort topologically."""

    name = "cleanup"

    def run(self, model: Model):
        work = self.working_copy(model)
        stats = {"dropout_removed": _dropout_to_identity(work.graph)}
        before = _count(work.graph)
        n_inits = len(work.graph.initializers)
        ident = IdentityEliminationPass()(work).modified
        after_ident = _count(work.graph)
        unused = RemoveUnusedNodesPass()(work).modified
        stats["identity_removed"] = before - after_ident
        stats["dead_nodes_removed"] = after_ident - _count(work.graph)
        stats["initializers_removed"] = n_inits - len(work.graph.initializers)
        sorted_ = TopologicalSortPass()(work).modified
        modified = bool(stats["dropout_removed"] or ident or unused or sorted_)
        return work, modified, {k: v for k, v in stats.items() if v}
