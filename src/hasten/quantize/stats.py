"""Activation statistics, collected ONCE in one streamed pass of the model (habit 5: measure, then change).

`collect_stats(model, calib)` exposes the chosen intermediate tensors as extra graph outputs, runs ONNX
Runtime over the calibration samples batch by batch, and folds each batch into running statistics:

- running min and max of every tensor;
- a signed, fixed-bin histogram of x over [-edge, edge) (default 2048 bins). When a batch exceeds the edge,
  the edge doubles as often as needed and pairs of bins merge into one: re-binning is exact, because the old
  range maps onto the central half of the new one bin-pair by bin-pair;
- for chosen tensors (by default the MatMul/Gemm inputs that SmoothQuant may rescale), the same per channel
  along the last axis: per-channel min/max (so max|x_j|) and a small per-channel histogram (128 bins). From
  these, `TensorStats.scaled(f)` derives the statistics of x_j * f_j without another pass (SmoothQuant
  divides a LayerNorm output by s_j before quantising it).

Memory is bounded by (tensors x bins) whatever the number of samples: nothing per sample is kept.

The other quantisers reuse one pass: `stats = collect_stats(model, calib)` then
`quantize_static(model, config, calib, nodes_to_exclude=..., stats=stats)` (hasten.quantize.int8).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from hasten.errors import QuantizationError

DEFAULT_BINS = 2048
CHANNEL_BINS = 128

#: progress callback used by collect_stats when none is passed (set by `reporting`, e.g. by the CLI)
_PROGRESS: contextvars.ContextVar[Callable[[int, int], None] | None] = contextvars.ContextVar(
    "hasten_calibration_progress", default=None)


@contextlib.contextmanager
def reporting(progress: Callable[[int, int], None]):
    """Within this block, statistics passes report `progress(done, total)` (for progress bars)."""
    token = _PROGRESS.set(progress)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def _fold(hist: np.ndarray) -> np.ndarray:
    """Histogram (last axis, even length n) over [-e, e) -> the same data over [-2e, 2e), exactly."""
    n = hist.shape[-1]
    out = np.zeros_like(hist)
    out[..., n // 4: 3 * n // 4] = hist.reshape(*hist.shape[:-1], n // 2, 2).sum(-1)
    return out


@dataclass
class TensorStats:
    """Running statistics of one tensor (see the module docstring)."""

    name: str
    bins: int = DEFAULT_BINS
    count: int = 0
    min: float = float("inf")
    max: float = float("-inf")
    edge: float = 0.0
    hist: np.ndarray = field(default=None, repr=False)
    zeros_pending: int = 0  # zeros seen before any non-zero value fixed the edge
    channel_bins: int = 0
    channel_min: np.ndarray | None = field(default=None, repr=False)
    channel_max: np.ndarray | None = field(default=None, repr=False)
    channel_edge: np.ndarray | None = field(default=None, repr=False)
    channel_hist: np.ndarray | None = field(default=None, repr=False)
    channel_sum: np.ndarray | None = field(default=None, repr=False)  # float64 running sums per channel
    channel_sumsq: np.ndarray | None = field(default=None, repr=False)
    channel_rows: int = 0  # items per channel folded in so far
    hessian: np.ndarray | None = field(default=None, repr=False)  # float64 sum of x^T x over rows (opt-in)

    def __post_init__(self):
        if self.bins < 8 or self.bins % 4:
            raise ValueError(f"histogram bins must be a multiple of 4 and >= 8, got {self.bins}")
        if self.hist is None:
            self.hist = np.zeros(self.bins, dtype=np.int64)

    # -- facts ------------------------------------------------------------------------------------
    @property
    def absmax(self) -> float:
        return max(abs(self.min), abs(self.max)) if self.count else 0.0

    @property
    def channel_absmax(self) -> np.ndarray | None:
        if self.channel_min is None:
            return None
        return np.maximum(np.abs(self.channel_min), np.abs(self.channel_max))

    @property
    def channel_mean(self) -> np.ndarray | None:
        return None if self.channel_sum is None else self.channel_sum / max(self.channel_rows, 1)

    @property
    def channel_meansq(self) -> np.ndarray | None:
        """E[x_j^2] per channel."""
        return None if self.channel_sumsq is None else self.channel_sumsq / max(self.channel_rows, 1)

    @property
    def second_moment(self) -> np.ndarray | None:
        """E[x^T x] over the rows of the last axis (K x K), when collected (GPTQ needs it)."""
        return None if self.hessian is None else self.hessian / max(self.channel_rows, 1)

    @property
    def width(self) -> float:
        return 2.0 * self.edge / self.bins

    def centres(self) -> np.ndarray:
        """Centre of each histogram bin."""
        return -self.edge + (np.arange(self.bins) + 0.5) * self.width

    def abs_hist(self) -> tuple[np.ndarray, float]:
        """Histogram of |x|: (counts over bins/2 bins covering [0, edge), bin width)."""
        half = self.bins // 2
        return self.hist[half:] + self.hist[:half][::-1], self.width

    def nbytes(self) -> int:
        arrays = (self.hist, self.channel_min, self.channel_max, self.channel_edge, self.channel_hist,
                  self.channel_sum, self.channel_sumsq, self.hessian)
        return sum(a.nbytes for a in arrays if a is not None)

    # -- streaming ----------------------------------------------------------------------------------
    def update(self, x: np.ndarray, per_channel: bool = False, second_moment: bool = False) -> None:
        """Fold one batch into the statistics (`second_moment` implies `per_channel`)."""
        x = np.asarray(x, dtype=np.float32)
        if x.size == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise QuantizationError(f"tensor '{self.name}' holds NaN or inf on the calibration data; it "
                                    "cannot be calibrated: exclude the nodes that read it, or fix the model")
        self.count += x.size
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self._update_hist(x.ravel(), max(-lo, hi))
        if (per_channel or second_moment) and x.ndim >= 1:
            x2 = x.reshape(-1, x.shape[-1])
            if second_moment:
                if self.hessian is None:
                    self.hessian = np.zeros((x2.shape[1], x2.shape[1]), dtype=np.float64)
                self.hessian += (x2.T @ x2).astype(np.float64)
            self._update_channels(x2)

    def _update_hist(self, flat: np.ndarray, absmax: float) -> None:
        if absmax == 0.0 and self.edge == 0.0:
            self.zeros_pending += flat.size
            return
        if self.edge == 0.0:
            self.edge = absmax
        while absmax > self.edge:
            self.hist = _fold(self.hist)
            self.edge *= 2.0
        if self.zeros_pending:
            self.hist[self.bins // 2] += self.zeros_pending
            self.zeros_pending = 0
        idx = ((flat + np.float32(self.edge)) * np.float32(self.bins / (2.0 * self.edge))).astype(np.int64)
        np.clip(idx, 0, self.bins - 1, out=idx)
        self.hist += np.bincount(idx, minlength=self.bins)

    def _update_channels(self, x2: np.ndarray) -> None:
        c = x2.shape[1]
        if self.channel_min is None:
            self.channel_bins = self.channel_bins or CHANNEL_BINS
            self.channel_min = np.full(c, np.inf, dtype=np.float32)
            self.channel_max = np.full(c, -np.inf, dtype=np.float32)
            self.channel_edge = np.zeros(c, dtype=np.float64)
            self.channel_hist = np.zeros((c, self.channel_bins), dtype=np.int64)
            self.channel_sum = np.zeros(c, dtype=np.float64)
            self.channel_sumsq = np.zeros(c, dtype=np.float64)
        elif self.channel_min.shape[0] != c:
            raise QuantizationError(f"tensor '{self.name}': last axis changed from {self.channel_min.shape[0]} "
                                    f"to {c} between batches")
        cmin, cmax = x2.min(axis=0), x2.max(axis=0)
        self.channel_sum += x2.sum(axis=0, dtype=np.float64)
        self.channel_sumsq += np.einsum("ij,ij->j", x2, x2, dtype=np.float64)
        self.channel_rows += x2.shape[0]
        np.minimum(self.channel_min, cmin, out=self.channel_min)
        np.maximum(self.channel_max, cmax, out=self.channel_max)
        amax = np.maximum(-cmin, cmax).astype(np.float64)
        fresh = (self.channel_edge == 0) & (amax > 0)
        self.channel_edge[fresh] = amax[fresh]
        while True:
            grow = amax > self.channel_edge
            if not grow.any():
                break
            self.channel_hist[grow] = _fold(self.channel_hist[grow])
            self.channel_edge[grow] *= 2.0
        nb = self.channel_bins
        edge = np.where(self.channel_edge > 0, self.channel_edge, 1.0)  # all-zero channels so far: any edge
        idx = ((x2 + edge.astype(np.float32)) * (nb / (2.0 * edge)).astype(np.float32)).astype(np.int64)
        np.clip(idx, 0, nb - 1, out=idx)
        idx += np.arange(c, dtype=np.int64) * nb
        self.channel_hist += np.bincount(idx.ravel(), minlength=c * nb).reshape(c, nb)

    # -- derived ------------------------------------------------------------------------------------
    def scaled(self, factors: np.ndarray, name: str | None = None) -> TensorStats:
        """Statistics of y = x * factors (factors > 0, one per channel of the last axis), from the
        per-channel histograms: each channel bin, scaled, spreads its count evenly over the global bins it
        overlaps. min/max, per-channel extremes and moments are exact."""
        if self.channel_hist is None:
            raise QuantizationError(f"tensor '{self.name}' has no per-channel statistics; collect them with "
                                    "channel_tensors=[...]")
        f = np.asarray(factors, dtype=np.float64).reshape(-1)
        if f.shape[0] != self.channel_hist.shape[0] or not (f > 0).all():
            raise ValueError(f"scaled() needs {self.channel_hist.shape[0]} positive factors")
        out = TensorStats(name or self.name, bins=self.bins, channel_bins=self.channel_bins)
        out.count = self.count
        out.channel_min = (self.channel_min * f).astype(np.float32)
        out.channel_max = (self.channel_max * f).astype(np.float32)
        out.min, out.max = float(out.channel_min.min()), float(out.channel_max.max())
        cedge = self.channel_edge * f
        out.channel_edge = cedge
        out.channel_hist = self.channel_hist.copy()
        out.channel_sum, out.channel_sumsq = self.channel_sum * f, self.channel_sumsq * f * f
        out.channel_rows = self.channel_rows
        if self.hessian is not None:
            out.hessian = self.hessian * f[:, None] * f[None, :]
        out.edge = out.absmax
        if out.edge == 0.0:
            out.zeros_pending = int(self.channel_hist.sum())
            return out
        # spread each channel bin's count evenly over the global bins it overlaps (piecewise-linear CDFs)
        nb = self.channel_bins
        edges = np.linspace(-out.edge, out.edge, out.bins + 1)
        total = np.zeros(out.bins + 1)
        for j in range(len(cedge)):
            cum = np.concatenate([[0.0], np.cumsum(self.channel_hist[j], dtype=np.float64)])
            if cedge[j] == 0.0:  # an all-zero channel: its counts sit at 0
                total += np.where(edges > 0, cum[-1], 0.0)
                continue
            total += np.interp(edges, np.linspace(-cedge[j], cedge[j], nb + 1), cum)
        total[0], total[-1] = 0.0, float(self.channel_hist.sum())  # spread beyond [min, max] goes to the ends
        out.hist = np.diff(np.round(total)).astype(np.int64)  # rounding the CDF keeps the total exact
        return out


@dataclass
class ActivationStats:
    """Statistics of many tensors from one pass over `samples` calibration items."""

    tensors: dict[str, TensorStats]
    samples: int = 0

    def __getitem__(self, name: str) -> TensorStats:
        return self.tensors[name]

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def __len__(self) -> int:
        return len(self.tensors)

    def get(self, name: str, default=None):
        return self.tensors.get(name, default)

    def nbytes(self) -> int:
        """Memory held by the statistics' arrays (independent of the number of samples)."""
        return sum(t.nbytes() for t in self.tensors.values())


# -- which tensors ------------------------------------------------------------------------------------
def activation_tensors(proto, node_filter: Callable | None = None) -> list[str]:
    """Names of the float, non-constant tensors read by the nodes `node_filter(node)` accepts (all nodes
    when None), in graph order. `proto` is an onnx.ModelProto with inferred value types."""
    import onnx

    g = proto.graph
    constant = {i.name for i in g.initializer}
    constant |= {o for n in g.node if n.op_type == "Constant" for o in n.output}
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.value_info, *g.input, *g.output)}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    names: list[str] = []
    seen: set[str] = set()
    for node in g.node:
        if node_filter is not None and not node_filter(node):
            continue
        for name in node.input:
            if name and name not in constant and name not in seen and types.get(name) in floats:
                seen.add(name)
                names.append(name)
    return names


def _with_outputs(proto, names: Iterable[str]):
    import onnx

    out = type(proto)()
    out.CopyFrom(proto)
    existing = {o.name for o in out.graph.output}
    for name in names:
        if name not in existing:
            out.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return out


def _fixed_batch(model) -> bool:
    return any(s.shape and isinstance(s.shape[0], int) and s.shape[0] > 0 for s in model.inputs)


def collect_stats(model, calib, tensors: Iterable[str] | None = None,
                  channel_tensors: Iterable[str] | None = None, hessian_tensors: Iterable[str] = (),
                  bins: int = DEFAULT_BINS,
                  batch_size: int = 8, progress: Callable[[int, int], None] | None = None) -> ActivationStats:
    """One pass of `model` (hasten Model) over `calib` (Samples), streaming statistics of `tensors`.

    `tensors`: names to observe (default: every float activation read by a quantisable node, see
    `hasten.quantize.ops.QUANTISABLE_OPS`); `channel_tensors`: those that also get per-channel statistics
    along the last axis (default: every input SmoothQuant can rescale: activations read by MatMul/Gemm with
    a constant weight); `hessian_tensors`: those that also get E[x^T x] (K x K, for GPTQ rounding; memory
    K^2 per tensor, still independent of the number of samples). `progress(done, total)` is called after
    each batch."""
    from hasten.backends import reference_backend
    from hasten.model import Model
    from hasten.quantize.graph import inferred_proto

    proto = inferred_proto(model)
    if tensors is None:
        from hasten.quantize.ops import QUANTISABLE_OPS

        tensors = activation_tensors(proto, lambda n: n.op_type in QUANTISABLE_OPS)
    tensors = list(dict.fromkeys(tensors))
    if channel_tensors is None:
        from hasten.quantize.smoothquant import find_smoothable

        channel_tensors = [c.tensor for c in find_smoothable(proto, any_producer=True)]
    hessian = set(hessian_tensors)
    channel = set(channel_tensors) | hessian
    tensors += [t for t in channel if t not in tensors]
    known = {v.name for v in (*proto.graph.value_info, *proto.graph.input, *proto.graph.output)}
    known |= {o for n in proto.graph.node for o in n.output}
    missing = sorted(set(tensors) - known)
    if missing:
        raise QuantizationError(f"cannot observe unknown tensor(s) {missing[:5]}: not in the model's graph")
    stats = {name: TensorStats(name, bins=bins) for name in tensors}
    if not stats:
        return ActivationStats({}, 0)
    session = reference_backend().compile(Model.from_proto(_with_outputs(proto, tensors)))
    if _fixed_batch(model):
        batch_size = 1
    progress = progress or _PROGRESS.get()
    total, done = len(calib), 0
    for feeds in calib.feeds(batch_size):
        outs = session.run(feeds)
        for name in tensors:
            stats[name].update(outs[name], per_channel=name in channel, second_moment=name in hessian)
        done += len(next(iter(feeds.values())))
        if progress:
            progress(done, total)
    return ActivationStats(stats, total)
