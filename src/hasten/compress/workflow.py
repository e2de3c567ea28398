"""The steps the `prune` / `distill` commands and the bench scripts share: build a student from options,
export it with a check against torch, and measure its fidelity to the teacher on ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hasten.compress.common import CompressError, batches, call, first_tensor


def require_output(path) -> Path:
    """The output path as a Path: it must end in .onnx; its folder is created."""
    path = Path(path)
    if path.suffix != ".onnx":
        raise CompressError(f"{path}: the output must be an .onnx file")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def student_from_options(src, *, student_path=None, drop_layers: int | None = None, keep_layers=None,
                         heads: float | None = None, ffn: float | None = None, channels: float | None = None,
                         target_flops: float | None = None, importance: str = "magnitude", calib_size: int = 64,
                         multiple_of: int = 1, seed: int = 0):
    """(student module, plan, PruneResult or None) from a saved student file or pruning options."""
    from hasten.compress.prune import find_encoder_layers, layer_keep, load_student, prune, read_student_meta

    if student_path is not None:
        if any(v is not None for v in (drop_layers, keep_layers, heads, ffn, channels, target_flops)):
            raise CompressError("give either --student or pruning options, not both")
        plan, source = read_student_meta(student_path)
        if source and source != src.name:
            raise CompressError(f"{student_path} was pruned from {source}, not {src.name}")
        return load_student(student_path, src.module, src.example_inputs), plan, None
    if drop_layers is not None:
        found = find_encoder_layers(src.module)
        if found is None:
            raise CompressError(f"{src.name} has no transformer layers to drop")
        if keep_layers is not None:
            raise CompressError("give --drop-layers or --keep-layers, not both")
        keep_layers = layer_keep(len(found[1]), len(found[1]) - drop_layers)
    calib = None
    if importance in ("taylor", "activation"):
        if src.calibration is None:
            raise CompressError(f"importance {importance} needs calibration data (--data FILE.npz)")
        calib = list(batches(src.calibration.take(min(calib_size, len(src.calibration))), 16))
    result = prune(src.module, src.example_inputs, heads=heads, ffn=ffn, channels=channels,
                   target_flops=target_flops, keep_layers=keep_layers, importance=importance, calib=calib,
                   multiple_of=multiple_of, seed=seed)
    return result.module, result.plan, result


def export_checked(src, module, samples=None, count: int = 4):
    """(Model, max |torch - reference backend| over `count` evaluation items at batch 1)."""
    import torch

    from hasten.backends import reference_backend

    model = src.export(module)
    samples = samples if samples is not None else src.evaluation
    if samples is None:
        feeds = [{k: v.numpy() for k, v in src.example_inputs.items()}]
    else:
        feeds = list(samples.take(min(count, len(samples))).feeds(1))
    session = reference_backend().compile(model)
    worst = 0.0
    module.eval()
    for feed in feeds:
        with torch.no_grad():
            ref = call(module, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feed.items()})
        out = session.run(feed)[session.output_names[0]]
        worst = max(worst, float(np.abs(out - first_tensor(ref).numpy()).max()))
    return model, worst


def fidelity(src, teacher_model, student_model, samples=None, count: int | None = None) -> dict:
    """Metrics of the student against the teacher (and labels) on the evaluation split, ONNX Runtime fp32."""
    from hasten.measure.accuracy import CosineFidelity, RetrievalAgreement, Top1, evaluate

    samples = samples if samples is not None else src.evaluation
    if samples is None:
        return {}
    if count:
        samples = samples.take(min(count, len(samples)))
    if src.kind == "classifier":
        metrics = [Top1(), CosineFidelity()]
    elif src.kind == "embedding" and len(samples) > 10:
        metrics = [CosineFidelity(), RetrievalAgreement(k=10, queries=min(50, len(samples)))]
    else:
        metrics = [CosineFidelity()]
    scores = evaluate(student_model, samples, metrics, reference=teacher_model)
    out = {name: s.to_dict() for name, s in scores.items()}
    if src.kind == "classifier" and samples.labels is not None:
        base = evaluate(teacher_model, samples, [Top1()])
        out["teacher_top1"] = base["top1"].to_dict()
    return out
