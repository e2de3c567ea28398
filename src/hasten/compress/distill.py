"""Knowledge distillation: a (pruned or layer-dropped) student learns to reproduce its teacher, unlabelled.

loss = w_out · L_out(student(x), teacher(x)) + w_hidden · mean_l L_hidden(h_s[l], h_t[map(l)]) (+ w_label · CE)
- L_out: "cosine" = 1 - cos(s, t) (embeddings), "mse" = ||s - t||² / ||t||² (per batch), "kl" =
  T² · KL(softmax(t/T) || softmax(s/T)) (logits); "auto" picks cosine for unit-norm teacher rows, kl for other
  2-D outputs, mse otherwise.
- L_hidden: mean squared error of hidden states over real tokens (attention_mask), divided by the teacher's
  mean square, for each mapped pair of modules of equal output shape (for transformers: student layer j ->
  the teacher layer it was copied from).
- L_attention (w_attention > 0, BERT-style layers): KL(teacher || student) of the attention probabilities
  of each kept head (the plan says which teacher head a student head was), averaged over real query tokens.
Optimiser: AdamW, linear warm-up then cosine decay, gradient-norm clipping. `bf16=True` runs the student
under bf16 autocast (about 2.5x faster on CPUs with AVX512-BF16 / AMX; weights, optimiser and losses stay
fp32; the teacher stays fp32). Batches: a seeded permutation per
epoch, so batch k of a run is a pure function of (seed, k) and a resumed run sees the same data. The student
runs in eval mode (no dropout) except BatchNorm layers, which learn the pruned network's statistics.
Checkpoints (every `checkpoint_every` steps and at the end) hold the student (safetensors), the AdamW state
(safetensors) and `state.json` (step, settings, losses); `distill(..., checkpoint_dir=D)` resumes from D
and continues bit-for-bit as the uninterrupted run would (same threads, same machine).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hasten.compress.checkpoint import load_checkpoint, save_checkpoint
from hasten.compress.common import CompressError, call, first_tensor, to_torch, trim_padding
from hasten.configs import config_dict

LOSSES = ("auto", "cosine", "mse", "kl")


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: float = 0.05  # share of the steps spent warming up the learning rate
    output_loss: str = "auto"
    temperature: float = 2.0
    output_weight: float = 1.0
    hidden_weight: float = 1.0  # 0 disables the hidden-state match
    attention_weight: float = 0.0  # > 0 adds the attention-map match (transformers)
    label_weight: float = 0.0  # > 0 adds cross-entropy against the data's labels (classifiers)
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 200
    cache_teacher: bool = True  # run the teacher once over the data, reuse its outputs every epoch
    freeze: tuple[str, ...] = ()  # parameters whose names contain one of these stay fixed (e.g. "embeddings.")
    bf16: bool = False  # the student's forward/backward under bf16 autocast (fp32 weights, optimizer, losses)

    def __post_init__(self):
        if self.output_loss not in LOSSES:
            raise CompressError(f"output_loss must be one of {LOSSES}, got {self.output_loss!r}")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise CompressError("distillation needs steps >= 1, batch_size >= 1 and lr > 0")

    def fingerprint(self) -> dict:
        """The options that define the student (checkpointing does not)."""
        return config_dict(self, exclude=("checkpoint_every",))


@dataclass
class DistillResult:
    student: object
    steps: int
    losses: list[float]
    seconds: float
    items_per_s: float
    resumed_from: int = 0
    output_loss: str = ""
    layer_map: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        head = self.losses[:1]
        tail = self.losses[-min(20, len(self.losses)):]
        return {"steps": self.steps, "resumed_from": self.resumed_from, "seconds": self.seconds,
                "items_per_s": self.items_per_s, "output_loss": self.output_loss,
                "first_loss": head[0] if head else None,
                "final_loss": float(np.mean(tail)) if tail else None, "layer_map": self.layer_map}


def auto_layer_map(teacher, student, plan: dict | None = None) -> dict[str, str]:
    """Student encoder layer j -> the teacher layer it came from (the plan's kept layers, else evenly
    spaced). {} when either model has no BERT-style encoder layers."""
    from hasten.compress.prune import find_encoder_layers, layer_keep

    t, s = find_encoder_layers(teacher), find_encoder_layers(student)
    if t is None or s is None:
        return {}
    (t_name, t_layers), (s_name, s_layers) = t, s
    if plan and plan.get("kind") == "transformer" and len(plan["layers"]) == len(s_layers):
        source = plan["layers"]
    else:
        source = layer_keep(len(t_layers), len(s_layers))
    return {f"{s_name}.{j}": f"{t_name}.{i}" for j, i in enumerate(source)}


def attention_taps(layer_map: dict, plan: dict | None = None) -> list[tuple[str, str, list | None]]:
    """(student self-attention, teacher self-attention, teacher heads kept) for each mapped layer."""
    taps = []
    heads = plan.get("heads") if plan and plan.get("kind") == "transformer" else None
    for j, (s_name, t_name) in enumerate(layer_map.items()):
        taps.append((f"{s_name}.attention.self", f"{t_name}.attention.self", heads[j] if heads else None))
    return taps


class _Capture:
    """Forward hooks that keep, per (module name, kind), the module's main output ("hidden") or its
    attention probabilities ("attention": the second output of a BERT self-attention)."""

    def __init__(self, module, keys):
        self.out: dict = {}
        self._handles = []
        for key in keys:
            self._handles.append(module.get_submodule(key[0]).register_forward_hook(self._hook(key)))

    def _hook(self, key):
        def hook(mod, args, output):
            self.out[key] = output[1] if key[1] == "attention" else first_tensor(output)
        return hook

    def close(self):
        for h in self._handles:
            h.remove()


class _Data:
    """Seeded epoch permutations over named arrays. Token batches are length-bucketed (each run of 16
    batches sorted by length, then the batches shuffled) and their padding trimmed."""

    BUCKET = 16

    def __init__(self, arrays: dict[str, np.ndarray], labels, batch_size: int, seed: int, device=None):
        self.arrays, self.labels, self.seed, self.device = arrays, labels, seed, device
        self.n = int(next(iter(arrays.values())).shape[0])
        self.batch_size = min(batch_size, self.n)
        self.per_epoch = self.n // self.batch_size
        mask = arrays.get("attention_mask")
        self.lengths = mask.sum(axis=1) if mask is not None and mask.ndim == 2 else None
        self._epoch: tuple[int, np.ndarray] | None = None

    def indices(self, step: int) -> np.ndarray:
        epoch, k = divmod(step, self.per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, self._batches(epoch))
        return np.sort(self._epoch[1][k])

    def _batches(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        bs = self.batch_size
        perm = rng.permutation(self.n)[:self.per_epoch * bs]
        if self.lengths is not None:
            chunk = bs * self.BUCKET
            perm = np.concatenate([c[np.argsort(self.lengths[c], kind="stable")]
                                   for c in np.split(perm, range(chunk, len(perm), chunk))])
        return perm.reshape(self.per_epoch, bs)[rng.permutation(self.per_epoch)]

    def batch(self, idx) -> dict:
        """The items `idx` as torch tensors on the device, padding trimmed."""
        feed = to_torch(trim_padding({k: v[idx] for k, v in self.arrays.items()}))
        return {k: v.to(self.device) for k, v in feed.items()} if self.device is not None else feed

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for k in sorted(self.arrays):
            h.update(k.encode())
            h.update(np.ascontiguousarray(self.arrays[k]).tobytes())
        return h.hexdigest()[:16]


def _mask_of(batch: dict):
    m = batch.get("attention_mask")
    return m if m is not None and m.dim() == 2 else None


def _hidden_loss(s, t, mask):
    import torch

    s, t = s.float(), t.float()
    if mask is not None and s.dim() == 3 and s.shape[:2] == mask.shape:
        w = mask.to(s.dtype).unsqueeze(-1)
        denom = torch.clamp(w.sum() * s.shape[-1], min=1.0)
        return ((s - t) ** 2 * w).sum() / denom / torch.clamp((t ** 2 * w).sum() / denom, min=1e-8)
    return ((s - t) ** 2).mean() / torch.clamp((t ** 2).mean(), min=1e-8)


def _output_loss(kind: str, s, t, temperature: float):
    import torch
    import torch.nn.functional as F

    s, t = s.reshape(s.shape[0], -1).float(), t.reshape(t.shape[0], -1).float()
    if kind == "cosine":
        return (1 - F.cosine_similarity(s, t, dim=1)).mean()
    if kind == "kl":
        T = temperature
        return F.kl_div(F.log_softmax(s / T, dim=1), F.log_softmax(t / T, dim=1), log_target=True,
                        reduction="batchmean") * T * T
    return ((s - t) ** 2).sum() / torch.clamp((t ** 2).sum(), min=1e-12)


def _pick_loss(kind: str, teacher_out) -> str:
    if kind != "auto":
        return kind
    t = teacher_out.reshape(teacher_out.shape[0], -1).double()
    if t.dim() == 2 and bool(((t.norm(dim=1) - 1).abs() < 1e-3).all()):
        return "cosine"
    return "kl" if teacher_out.dim() == 2 else "mse"


class _Teacher:
    """Teacher outputs and tapped tensors per batch; optionally precomputed once per item (hidden states in
    fp16, trimmed to the item's tokens), then padded back to each batch's length."""

    def __init__(self, teacher, data: _Data, taps: list, cache: bool, chunk: int):
        self.teacher, self.data, self.taps = teacher, data, taps  # taps: (name, kind, heads)
        self.cache: list | None = None
        if cache:  # items in length order (little padding), fixed chunks: the same values on every run
            self.cache = [None] * data.n
            order = np.argsort(data.lengths, kind="stable") if data.lengths is not None else np.arange(data.n)
            for start in range(0, data.n, chunk):
                idx = np.sort(order[start:start + chunk])
                out, tapped, lengths = self._run(idx)
                for i, item in enumerate(idx):
                    n = lengths[i]
                    self.cache[item] = (out[i].clone(), [_trim(t[i], kind, n) for t, (_, kind, _) in
                                                         zip(tapped, self.taps, strict=True)])

    def _run(self, idx):
        import torch

        batch = self.data.batch(idx)
        cap = _Capture(self.teacher, [(name, kind) for name, kind, _ in self.taps])
        try:
            with torch.no_grad():
                out = first_tensor(call(self.teacher, batch))
        finally:
            cap.close()
        tapped = []
        for name, kind, heads in self.taps:
            t = cap.out[(name, kind)]
            tapped.append(t[:, heads] if kind == "attention" and heads is not None else t)
        mask = _mask_of(batch)
        lengths = [int(v) for v in mask.sum(dim=1)] if mask is not None else [None] * len(idx)
        return out, tapped, lengths

    def get(self, idx, batch):
        import torch
        import torch.nn.functional as F

        if self.cache is None:
            out, tapped, _ = self._run(idx)
            return out, tapped
        items = [self.cache[i] for i in idx]
        out = torch.stack([it[0] for it in items])
        mask = _mask_of(batch)
        tapped = []
        for k, (_, kind, _) in enumerate(self.taps):
            parts = [it[1][k] for it in items]
            if mask is not None:
                T = mask.shape[1]
                if kind == "attention":
                    parts = [F.pad(p, (0, T - p.shape[-1], 0, T - p.shape[-2])) for p in parts]
                elif parts[0].dim() == 2:
                    parts = [F.pad(p, (0, 0, 0, T - p.shape[0])) for p in parts]
            tapped.append(torch.stack(parts).float())
        return out, tapped


def _trim(t, kind: str, n):
    """One item's tapped tensor cut to its `n` real tokens, stored compactly."""
    import torch

    if n is not None and kind == "attention":
        t = t[:, :n, :n]
    elif n is not None and t.dim() == 2:
        t = t[:n]
    return t.to(torch.float16 if t.dim() >= 2 else t.dtype).clone()


def _attention_loss(s, t, mask):
    """KL(t || s) over keys, averaged over heads and real query tokens; s, t: [B, H, T, T] probabilities."""
    import torch

    s, t = s.float(), t.float()
    kl = (t * (torch.log(t.clamp_min(1e-8)) - torch.log(s.clamp_min(1e-8)))).sum(-1)  # [B, H, T]
    if mask is None:
        return kl.mean()
    w = mask.to(s.dtype)[:, None, :]
    return (kl * w).sum() / torch.clamp(w.sum() * kl.shape[1], min=1.0)


def _lr(cfg: DistillConfig, step: int) -> float:
    warm = max(1, int(cfg.warmup * cfg.steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _set_modes(student) -> None:
    from torch import nn

    student.eval()
    for m in student.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()


# -- the loop -------------------------------------------------------------------------------------------
def distill(teacher, student, data, config: DistillConfig | None = None, *, layer_map: dict | None = None,
            plan: dict | None = None, checkpoint_dir=None, progress=None, threads: int | None = None,
            stop_after: int | None = None, device: str | None = None) -> DistillResult:
    """Train `student` (in place) to match `teacher` on `data` (Samples or dict name -> array).

    `layer_map`: student module name -> teacher module name for the hidden-state (and attention) losses
    (default: `auto_layer_map`; pairs whose shapes differ are dropped). `checkpoint_dir`: save there and resume from
    there. `progress`: a rich Console for a progress bar (None: silent). `stop_after`: stop once this step
    is reached (simulates an interruption; the checkpoint is written). `device`: a torch device for both
    models (default: where the student is)."""
    import torch

    cfg = config or DistillConfig()
    arrays = data.arrays if hasattr(data, "arrays") else dict(data)
    labels = getattr(data, "labels", None)
    if cfg.label_weight > 0 and labels is None:
        raise CompressError("label_weight > 0 needs samples with labels")
    old_threads = torch.get_num_threads()
    teacher_flags = [(p, p.requires_grad) for p in teacher.parameters()]
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(cfg.seed)
        dev = torch.device(device) if device else next(student.parameters()).device
        student.to(dev)
        teacher.to(dev)
        teacher.eval()
        for p, _ in teacher_flags:
            p.requires_grad_(False)
        d = _Data(arrays, labels, cfg.batch_size, cfg.seed, dev)
        layer_map = dict(auto_layer_map(teacher, student, plan) if layer_map is None else layer_map)
        taps = [(s_, t_, "hidden", None) for s_, t_ in layer_map.items()] if cfg.hidden_weight > 0 else []
        if cfg.attention_weight > 0:
            taps += [(s_, t_, "attention", h) for s_, t_, h in attention_taps(layer_map, plan)]
        taps = _matching_taps(teacher, student, taps, d)
        t0 = time.perf_counter()
        source = _Teacher(teacher, d, [(t_, kind, h) for _, t_, kind, h in taps], cfg.cache_teacher,
                          max(cfg.batch_size, 64))
        params = []
        for name, p in student.named_parameters():
            p.requires_grad_(not any(f in name for f in cfg.freeze))
            if p.requires_grad:
                params.append(p)
        if not params:
            raise CompressError(f"freeze={cfg.freeze} leaves no parameter of the student to train")
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        meta = {"config": cfg.fingerprint(), "data": d.fingerprint(), "plan": plan,
                "taps": [[s_, t_, kind] for s_, t_, kind, _ in taps]}
        folder = Path(checkpoint_dir) if checkpoint_dir else None
        start, losses = 0, []
        if folder is not None and (folder / "state.json").exists():
            start, losses = load_checkpoint(folder, student, opt, meta)
        loss_kind = None
        _set_modes(student)
        cap = _Capture(student, [(s_, kind) for s_, _, kind, _ in taps])
        n_hidden = sum(1 for tap in taps if tap[2] == "hidden")
        n_att = len(taps) - n_hidden
        bar = _progress(progress, cfg.steps, start)
        t_train, items = time.perf_counter(), 0
        step = start
        try:
            for step in range(start, cfg.steps):
                if stop_after is not None and step >= stop_after:
                    break
                idx = d.indices(step)
                batch = d.batch(idx)
                t_out, t_tapped = source.get(idx, batch)
                loss_kind = loss_kind or _pick_loss(cfg.output_loss, t_out)
                for g in opt.param_groups:
                    g["lr"] = _lr(cfg, step)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                    s_out = first_tensor(call(student, batch))
                loss = cfg.output_weight * _output_loss(loss_kind, s_out, t_out, cfg.temperature)
                mask = _mask_of(batch)
                for (s_, _, kind, _), t in zip(taps, t_tapped, strict=True):
                    if kind == "hidden":
                        loss = loss + cfg.hidden_weight / n_hidden * _hidden_loss(cap.out[(s_, kind)], t, mask)
                    else:
                        loss = loss + cfg.attention_weight / n_att * _attention_loss(cap.out[(s_, kind)], t, mask)
                if cfg.label_weight > 0:
                    y = torch.from_numpy(np.asarray(labels)[idx]).long().to(dev)
                    loss = loss + cfg.label_weight * torch.nn.functional.cross_entropy(s_out, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise CompressError(f"distillation diverged at step {step} (loss {value}); lower the lr")
                losses.append(value)
                items += len(idx)
                done = step + 1
                if bar is not None:
                    rate = items / max(1e-9, time.perf_counter() - t_train)
                    bar[0].update(bar[1], completed=done, loss=f"{np.mean(losses[-20:]):.4f}",
                                  rate=f"{rate:.1f}")
                if folder is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                    save_checkpoint(folder, student, opt, done, meta, losses)
            else:
                step = cfg.steps
        finally:
            cap.close()
            if bar is not None:
                bar[0].stop()
        if folder is not None and stop_after is not None and step < cfg.steps:
            save_checkpoint(folder, student, opt, step, meta, losses)
        student.eval()
        seconds = time.perf_counter() - t0
        train_s = time.perf_counter() - t_train
        return DistillResult(student, step, losses, seconds, items / max(1e-9, train_s), start,
                             loss_kind or cfg.output_loss, {s_: t_ for s_, t_, kind, _ in taps if kind == "hidden"})
    finally:
        torch.set_num_threads(old_threads)
        for p, flag in teacher_flags:
            p.requires_grad_(flag)


def _matching_taps(teacher, student, taps: list, d: _Data) -> list:
    """Keep the taps whose student and teacher tensors have the same shape on one small batch."""
    import torch

    if not taps:
        return []
    batch = d.batch(np.arange(min(2, d.n)))
    s_cap = _Capture(student, [(s_, kind) for s_, _, kind, _ in taps])
    t_cap = _Capture(teacher, [(t_, kind) for _, t_, kind, _ in taps])
    try:
        with torch.no_grad():
            call(student, batch)
            call(teacher, batch)
    finally:
        s_cap.close()
        t_cap.close()
    kept = []
    for s_, t_, kind, heads in taps:
        a, b = s_cap.out.get((s_, kind)), t_cap.out.get((t_, kind))
        if a is None or b is None:  # e.g. an attention implementation that returns no probabilities
            continue
        if kind == "attention" and heads is not None:
            b = b[:, heads]
        if a.shape == b.shape:
            kept.append((s_, t_, kind, heads))
    return kept


def _progress(console, total: int, start: int):
    if console is None:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("distilling"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} items/s"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
    task = bar.add_task("distill", total=total, completed=start, loss="-", rate="-")
    bar.start()
    return bar, task
