"""Helpers shared by pruning and distillation: calling a module on a feed, batching samples, counting MACs.

MACs are counted from the shapes seen in one forward pass (hooks), never estimated from parameter counts:
- nn.Linear:  rows x in_features x out_features (rows = all leading dims of the output)
- nn.Conv2d:  output elements x (in_channels / groups) x kh x kw
- attention:  a self-attention module (children query/key/value, attribute attention_head_size) adds
              batch x heads x T x T x head_size for Q·K^T and the same for P·V.
Element-wise ops, norms, softmax and embedding lookups are not counted (they are memory-bound and small).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator

import numpy as np

from hasten.errors import HastenError


class CompressError(HastenError):
    """Pruning or distillation cannot proceed (unsupported structure, bad target, damaged checkpoint)."""


def call(module, inputs):
    """`module(**inputs)` for a dict whose names `forward` takes (else its values in order), `module(*inputs)`
    for a tuple/list, else `module(inputs)`."""
    if isinstance(inputs, dict):
        if _takes_names(type(module), tuple(inputs)):
            return module(**inputs)
        return module(*inputs.values())
    if isinstance(inputs, (tuple, list)):
        return module(*inputs)
    return module(inputs)


@functools.lru_cache(maxsize=256)
def _takes_names(cls, names: tuple[str, ...]) -> bool:
    try:
        params = inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        return True
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    return all(n in params for n in names)


def first_tensor(output):
    """The main tensor of a module output (a tensor, the first item of a tuple, or `last_hidden_state`)."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output:
        return first_tensor(output[0])
    if isinstance(output, dict) and output:
        return first_tensor(next(iter(output.values())))
    hidden = getattr(output, "last_hidden_state", None)
    if hidden is not None:
        return hidden
    raise CompressError(f"cannot find a tensor in the module output of type {type(output).__name__}")


def to_torch(feed: dict[str, np.ndarray]) -> dict:
    import torch

    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feed.items()}


def trim_padding(arrays: dict[str, np.ndarray], mask_key: str = "attention_mask") -> dict[str, np.ndarray]:
    """Cut the sequence axis of rank-2 token arrays to the longest real item (right padding assumed)."""
    mask = arrays.get(mask_key)
    if mask is None or mask.ndim != 2:
        return arrays
    length = max(1, int(mask.sum(axis=1).max()))
    seq = mask.shape[1]
    return {k: (v[:, :length] if v.ndim == 2 and v.shape[1] == seq else v) for k, v in arrays.items()}


def batches(samples, batch_size: int = 16, trim: bool = True) -> Iterator[dict]:
    """Feed dicts of torch tensors from `Samples` (or a dict of arrays), padding trimmed per batch."""
    arrays = samples.arrays if hasattr(samples, "arrays") else samples
    n = int(next(iter(arrays.values())).shape[0])
    for start in range(0, n, batch_size):
        part = {k: v[start:start + batch_size] for k, v in arrays.items()}
        yield to_torch(trim_padding(part) if trim else part)


def count_macs(module, example_inputs) -> int:
    """Multiply-accumulates of one forward pass of `module` on `example_inputs` (see module docstring)."""
    import torch
    from torch import nn

    total = [0]

    def linear_hook(mod, args, out):
        out = first_tensor(out)
        rows = out.numel() // max(1, out.shape[-1])
        total[0] += rows * mod.in_features * mod.out_features

    def conv_hook(mod, args, out):
        kh, kw = mod.kernel_size
        total[0] += out.numel() * (mod.in_channels // mod.groups) * kh * kw

    def attention_hook(mod, args, kwargs, out):
        hidden = args[0] if args else kwargs.get("hidden_states")
        batch, seq = int(hidden.shape[0]), int(hidden.shape[1])
        heads = int(mod.query.out_features // mod.attention_head_size)
        total[0] += 2 * batch * heads * seq * seq * int(mod.attention_head_size)

    handles = []
    for mod in module.modules():
        if isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
        elif isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif is_self_attention(mod):
            handles.append(mod.register_forward_hook(attention_hook, with_kwargs=True))
    try:
        with torch.no_grad():
            call(module, example_inputs)
    finally:
        for h in handles:
            h.remove()
    return int(total[0])


def is_self_attention(mod) -> bool:
    """A BERT-style self-attention block: Linear query/key/value children and an `attention_head_size`."""
    from torch import nn

    return (isinstance(getattr(mod, "query", None), nn.Linear) and isinstance(getattr(mod, "key", None), nn.Linear)
            and isinstance(getattr(mod, "value", None), nn.Linear) and hasattr(mod, "attention_head_size"))


def count_params(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))
