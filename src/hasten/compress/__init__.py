"""Torch-side compression: structured pruning that shrinks the matrices, and distillation that wins the
accuracy back. Only for torch sources (zoo:minilm, zoo:digits, a `module:function`); the result is exported
to a hasten Model (ONNX, opset 17) that every backend runs.

    from hasten import compress
    src = compress.torch_source("zoo:minilm")
    pruned = compress.prune(src.module, src.example_inputs, heads=0.5, ffn=0.5, importance="taylor",
                            calib=list(compress.batches(src.calibration.take(64), 16)))
    run = compress.distill(src.module, pruned.module, src.training_data(8000),
                           compress.DistillConfig(steps=2000, lr=5e-4), plan=pruned.plan)
    model = src.export(run.student)

`magnitude_prune` and `n_m_prune` (2:4) only put zeros in dense weights: CPU runtimes are NOT faster
with them (see hasten.compress.sparsity).
"""

from hasten.compress.common import CompressError, batches, count_macs, count_params
from hasten.compress.distill import DistillConfig, DistillResult, auto_layer_map, distill
from hasten.compress.prune import (
    PruneResult,
    apply_plan,
    describe_plan,
    layer_keep,
    load_student,
    prune,
    read_student_meta,
    save_student,
    to_model,
)
from hasten.compress.sources import TorchSource, torch_source
from hasten.compress.sparsity import SparsityReport, follows_n_m, magnitude_prune, n_m_prune

__all__ = [
    "CompressError", "DistillConfig", "DistillResult", "PruneResult", "SparsityReport", "TorchSource",
    "apply_plan", "auto_layer_map", "batches", "count_macs", "count_params", "describe_plan", "distill",
    "follows_n_m", "layer_keep", "load_student", "magnitude_prune", "n_m_prune", "prune", "read_student_meta",
    "save_student", "to_model", "torch_source",
]
