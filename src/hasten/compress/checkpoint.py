"""Distillation checkpoints: the student (safetensors), the AdamW state (safetensors) and `state.json`.

Each file is written to a temporary name and renamed, state.json last; both tensor files carry the step in
their metadata, so a run interrupted while saving is detected instead of resumed from mixed files.
"""

from __future__ import annotations

import json
from pathlib import Path

from hasten.compress.common import CompressError
from hasten.fileio import atomic_path, atomic_write_json


def save_checkpoint(folder: Path, student, opt, step: int, meta: dict, losses: list[float]) -> None:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tag = {"step": str(step)}
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in student.state_dict().items()}
    state = {}
    for i, s in opt.state_dict()["state"].items():
        for name, value in s.items():
            value = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            state[f"{i}.{name}"] = value.detach().cpu().contiguous().clone()
    for fname, tensors in (("student.safetensors", weights), ("optimizer.safetensors", state)):
        with atomic_path(folder / fname) as tmp:
            save_file(tensors, str(tmp), metadata=tag)
    atomic_write_json(folder / "state.json", {**meta, "step": step, "losses": losses}, indent=1)


def load_checkpoint(folder: Path, student, opt, meta: dict) -> tuple[int, list[float]]:
    """Load student weights and optimizer state saved by `save_checkpoint`; (step, losses so far).

    Refuses (CompressError) a checkpoint made with other settings, data, plan or layer map."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    state_path = folder / "state.json"
    try:
        saved = json.loads(state_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CompressError(f"{state_path}: unreadable checkpoint state ({exc}); delete the folder to restart") \
            from exc
    for key in sorted(meta):
        if saved.get(key) != json.loads(json.dumps(meta.get(key))):
            raise CompressError(f"{folder}: the checkpoint was made with other {key} ({saved.get(key)!r} vs "
                                f"{meta.get(key)!r}); use another checkpoint folder or delete it")
    step = int(saved["step"])
    for fname in ("student.safetensors", "optimizer.safetensors"):
        try:
            with safe_open(str(folder / fname), framework="pt") as f:
                ok = (f.metadata() or {}).get("step") == str(step)
        except Exception as exc:
            raise CompressError(f"{folder / fname}: unreadable ({exc}); delete the folder to restart") from exc
        if not ok:
            raise CompressError(f"{folder / fname}: does not match state.json (step {step}); the run was "
                                "interrupted while saving; delete the folder to restart")
    dev = str(next(student.parameters()).device)
    student.load_state_dict(load_file(str(folder / "student.safetensors"), device=dev), strict=True)
    tensors = load_file(str(folder / "optimizer.safetensors"))  # AdamW moves moments to the params' device
    state: dict = {}
    for key, value in tensors.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = value
    sd = opt.state_dict()
    sd["state"] = state
    opt.load_state_dict(sd)
    return step, list(saved.get("losses", []))
