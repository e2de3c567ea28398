"""Importance of prunable structures: attention heads, FFN neurons, conv channel groups.

A structure s is scored by one of:
- magnitude (`l2`, the default, or `l1`): the L_p norm of all weights that exist only for s (a head's rows
  of Q, K, V and its columns of the attention output; a neuron's row of the FFN input and column of the FFN
  output; a channel's filters in every conv producing it);
- taylor: the first-order estimate of the output change if s were removed, E_batches |Σ_{i in s} g_i w_i|,
  i.e. |dL/da| for a gate a = 1 on the structure's output (Molchanov et al., 2019). A head's gate sits on its
  attention context (the attention-output columns), a neuron's on its activation (the FFN-output column), a
  channel's on its BatchNorm output (γ·dγ + β·dβ) or, without BatchNorm, on its conv output. The loss needs
  no labels: L = Σ r ⊙ f(x) with a fresh seeded Gaussian r per batch, so E|dL/da| ∝ ||∂f/∂a||, the
  size of the output change;
- activation: the mean |activation| of the structure's output on the calibration batches.
Scores only rank structures of the same kind inside one layer or group; they are not compared across.
"""

from __future__ import annotations

from hasten.compress.common import CompressError, call, first_tensor

METHODS = ("magnitude", "l1", "l2", "taylor", "activation")


def check_method(method: str, calib) -> None:
    if method not in METHODS:
        raise CompressError(f"unknown importance {method!r}; choose from {', '.join(METHODS)}")
    if method in ("taylor", "activation") and not calib:
        raise CompressError(f"importance {method!r} needs calibration batches (a few dozen inputs)")


def _norm(t, p: int):
    return t.abs().sum(dim=1) if p == 1 else t.pow(2).sum(dim=1).sqrt()


def _projection_loss(output, seed: int, index: int):
    import torch

    out = first_tensor(output).float()
    gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
    return (out * torch.randn(out.shape, generator=gen)).sum()


def _taylor(module, calib, seed, gates):
    """Run backward on each batch; `gates()` returns this batch's |dL/da| per structure (a list)."""
    import torch

    total = None
    was_training = module.training
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(True)
    module.eval()
    try:
        for i, batch in enumerate(calib):
            module.zero_grad(set_to_none=True)
            with torch.enable_grad():
                _projection_loss(call(module, batch), seed, i).backward()
            with torch.no_grad():
                now = [g.abs() for g in gates()]
            total = now if total is None else [a + b for a, b in zip(total, now, strict=True)]
    finally:
        module.zero_grad(set_to_none=True)
        module.train(was_training)
        for p, flag in flags:
            p.requires_grad_(flag)
    return [t / max(1, len(calib)) for t in total]


def _mean_abs_inputs(module, calib, targets, per_output: bool = False):
    """Mean |x| per feature (last dim, or dim 1 for 4-D) of each target's input (or output) over `calib`."""
    import torch

    sums = [None] * len(targets)
    counts = [0] * len(targets)

    def hook_for(k):
        def hook(mod, args, out=None):
            x = first_tensor(out if per_output else args[0]).detach().abs()
            x = x.transpose(1, -1) if x.dim() == 4 else x
            flat = x.reshape(-1, x.shape[-1])
            sums[k] = flat.sum(0) if sums[k] is None else sums[k] + flat.sum(0)
            counts[k] += flat.shape[0]
        return hook

    handles = [(t.register_forward_hook(hook_for(k)) if per_output else t.register_forward_pre_hook(hook_for(k)))
               for k, t in enumerate(targets)]
    try:
        with torch.no_grad():
            for batch in calib:
                call(module, batch)
    finally:
        for h in handles:
            h.remove()
    return [s / max(1, c) for s, c in zip(sums, counts, strict=True)]


def transformer_scores(module, layers, method: str = "magnitude", calib=None, seed: int = 0):
    """(head scores, neuron scores): one tensor per layer of `layers` (BERT-style layer modules)."""
    import torch

    check_method(method, calib)
    parts = []
    for layer in layers:
        att = layer.attention.self
        d = int(att.attention_head_size)
        heads = att.query.out_features // d
        parts.append((att, layer.attention.output.dense, layer.intermediate.dense, layer.output.dense, d, heads))
    if method in ("magnitude", "l1", "l2"):
        p = 1 if method == "l1" else 2
        head_scores, ffn_scores = [], []
        with torch.no_grad():
            for att, out_dense, inter, out, _d, heads in parts:
                rows = torch.cat([m.weight.reshape(heads, -1) for m in (att.query, att.key, att.value)]
                                 + [out_dense.weight.t().reshape(heads, -1)], dim=1)
                head_scores.append(_norm(rows, p))
                ffn_scores.append(_norm(torch.cat([inter.weight, out.weight.t()], dim=1), p))
        return head_scores, ffn_scores
    if method == "taylor":
        def gates():
            out = []
            for _, out_dense, _, ffn_out, d, heads in parts:
                out.append((out_dense.weight.grad * out_dense.weight).sum(0).reshape(heads, d).sum(1))
                out.append((ffn_out.weight.grad * ffn_out.weight).sum(0))
            return out
        flat = _taylor(module, calib, seed, gates)
        return flat[0::2], flat[1::2]
    # activation: the inputs of the attention-output dense (per-head contexts) and of the FFN output dense
    targets = [t for _, out_dense, _, ffn_out, _, _ in parts for t in (out_dense, ffn_out)]
    means = _mean_abs_inputs(module, calib, targets)
    head_scores = [m.reshape(heads, d).mean(1) for m, (_, _, _, _, d, heads) in zip(means[0::2], parts, strict=True)]
    return head_scores, means[1::2]


def channel_scores(module, groups, method: str = "magnitude", calib=None, seed: int = 0) -> dict:
    """{group key: per-channel score} for the prunable channel groups (see `hasten.compress.channels`)."""
    import torch

    check_method(method, calib)
    if method in ("magnitude", "l1", "l2"):
        p = 1 if method == "l1" else 2
        with torch.no_grad():
            return {g.key: sum(_norm(module.get_submodule(name).weight.flatten(1), p) for name in g.producers)
                    for g in groups}
    if method == "taylor":
        def gate(name, norms):
            if name in norms:
                bn = module.get_submodule(norms[name])
                if bn.weight is not None and bn.weight.grad is not None:
                    return bn.weight.grad * bn.weight + bn.bias.grad * bn.bias
            conv = module.get_submodule(name)
            t = (conv.weight.grad * conv.weight).flatten(1).sum(1)
            return t + conv.bias.grad * conv.bias if conv.bias is not None else t

        def gates():
            return [sum(gate(name, g.norms) for name in g.producers) for g in groups]
        flat = _taylor(module, calib, seed, gates)
        return {g.key: s for g, s in zip(groups, flat, strict=True)}
    targets, owner = [], []
    for g in groups:
        for name in g.producers:
            targets.append(module.get_submodule(g.norms.get(name, name)))
            owner.append(g.key)
    means = _mean_abs_inputs(module, calib, targets, per_output=True)
    out: dict = {}
    for key, m in zip(owner, means, strict=True):
        out[key] = m if key not in out else out[key] + m
    return out
