"""Unstructured magnitude pruning and N:M (2:4) patterns: zeros inside weights that keep their shapes.

PLAINLY: dense CPU kernels (ONNX Runtime, OpenVINO, PyTorch on CPU) multiply zeros as fast as any other
number, so these models run at the SAME speed as the original; only fewer / smaller matrices (structured
pruning in `hasten.compress.prune`) make a CPU faster. 2:4 sparsity pays off on GPUs with sparse tensor
cores (NVIDIA Ampere and later via cuSPARSELt / TensorRT); unstructured sparsity helps file size after
compression, and speed only with sparse kernels (e.g. DeepSparse). They are here for those targets and
for studying accuracy.

- magnitude: in each Linear / Conv2d weight (scope "layer") or across all of them ("global"), the
  `sparsity` share of weights with the smallest |w| is set to 0.
- N:M: in every group of M consecutive weights along the input dimension (for a conv: input channels,
  for each output channel and kernel position), the N largest |w| are kept and the rest set to 0.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from hasten.compress.common import CompressError

NOTE = ("zeros inside dense weights: dense CPU kernels (ONNX Runtime, OpenVINO) run this model at the same "
        "speed as the original; use structured pruning (smaller matrices) for CPU speed, N:M sparse tensor "
        "cores or sparse kernels for these patterns")


@dataclass
class SparsityReport:
    pattern: str
    zeros: int
    total: int
    layers: dict[str, float] = field(default_factory=dict)  # layer -> share of zeros
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> why it was left dense
    note: str = NOTE

    @property
    def sparsity(self) -> float:
        return self.zeros / max(1, self.total)

    def to_dict(self) -> dict:
        return {"pattern": self.pattern, "sparsity": self.sparsity, "zeros": self.zeros, "total": self.total,
                "layers": self.layers, "skipped": self.skipped, "note": self.note}


def _weights(module):
    from torch import nn

    return [(name, m) for name, m in module.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _report(pattern, layers, skipped) -> SparsityReport:
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    total = sum(m.weight.numel() for _, m in layers)
    return SparsityReport(pattern, zeros, total, {n: float((m.weight == 0).float().mean()) for n, m in layers},
                          skipped)


def magnitude_prune(module, sparsity: float, scope: str = "layer"):
    """(a copy of `module` with the smallest-|w| share `sparsity` of each weight zeroed, SparsityReport)."""
    import torch

    if not 0.0 <= sparsity < 1.0:
        raise CompressError(f"sparsity must be in [0, 1), got {sparsity}")
    if scope not in ("layer", "global"):
        raise CompressError(f"scope must be 'layer' or 'global', got {scope!r}")
    out = copy.deepcopy(module)
    layers = _weights(out)
    if not layers:
        raise CompressError(f"{type(module).__name__} has no Linear or Conv2d weights to prune")
    with torch.no_grad():
        if scope == "global":
            mags = torch.cat([m.weight.abs().flatten() for _, m in layers])
            k = int(round(sparsity * mags.numel()))
            if k:
                order = torch.argsort(mags, stable=True)[:k]
                keep = torch.ones_like(mags, dtype=torch.bool)
                keep[order] = False
                offset = 0
                for _, m in layers:
                    n = m.weight.numel()
                    m.weight.mul_(keep[offset:offset + n].view_as(m.weight))
                    offset += n
        else:
            for _, m in layers:
                flat = m.weight.abs().flatten()
                k = int(round(sparsity * flat.numel()))
                if k:
                    mask = torch.ones_like(flat, dtype=torch.bool)
                    mask[torch.argsort(flat, stable=True)[:k]] = False
                    m.weight.mul_(mask.view_as(m.weight))
    return out, _report(f"magnitude {sparsity:.0%} ({scope})", layers, {})


def n_m_prune(module, n: int = 2, m: int = 4):
    """(a copy of `module` whose Linear / Conv2d weights follow the N:M pattern, SparsityReport).
    Layers whose input size is not a multiple of M are left dense (listed in `report.skipped`)."""
    import torch

    if not 0 < n < m:
        raise CompressError(f"N:M needs 0 < N < M, got {n}:{m}")
    out = copy.deepcopy(module)
    done, skipped = [], {}
    with torch.no_grad():
        for name, mod in _weights(out):
            w = mod.weight
            if w.shape[1] % m:
                skipped[name] = f"input size {w.shape[1]} is not a multiple of {m}"
                continue
            v = w.permute(0, 2, 3, 1) if w.dim() == 4 else w  # group along input channels
            g = v.reshape(-1, m)
            drop = torch.argsort(g.abs(), dim=1, stable=True)[:, :m - n]
            mask = torch.ones_like(g, dtype=torch.bool).scatter_(1, drop, False)
            v_new = (g * mask).reshape(v.shape)
            w.copy_(v_new.permute(0, 3, 1, 2) if w.dim() == 4 else v_new)
            done.append((name, mod))
    if not done:
        raise CompressError(f"no Linear / Conv2d weight of {type(module).__name__} fits {n}:{m} "
                            f"({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    return out, _report(f"{n}:{m}", done, skipped)


def follows_n_m(weight, n: int = 2, m: int = 4) -> bool:
    """True when every group of `m` consecutive input weights holds at most `n` non-zeros."""
    v = weight.permute(0, 2, 3, 1) if weight.dim() == 4 else weight
    if v.shape[-1] % m:
        return False
    return bool(((v.reshape(-1, m) != 0).sum(dim=1) <= n).all())
