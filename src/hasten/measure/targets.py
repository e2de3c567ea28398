"""Hardware targets (peak compute per dtype, memory bandwidth) and the roofline floor.

floor = max(FLOPs / peak[dtype], bytes / bandwidth): no implementation can beat it on that target.

The host's profile is measured once and cached in `cache_dir()/host-<cpu hash>.json` (`host_target`); the
hash covers the CPU model, its flags and the features hasten reads, so a changed CPU is measured afresh, and
a cache file from before features were recorded is measured again. The host Target records the CPU's ISA
`features` (`measure.isa.cpu_features`), and only dtypes that run natively there (`isa.native_dtypes`) are
measured and listed: an emulated bf16 (AVX2-only CPUs) is neither timed nor a host dtype.
- fp32: ONNX Runtime MatMul float32, n up to 1024, intra-op threads = physical cores;
- bf16 / fp16 (only where native): torch.matmul, n up to 2048, torch.set_num_threads(cores), else an
  OpenVINO MatMul compiled with that INFERENCE_PRECISION_HINT;
- int8: ONNX Runtime MatMulInteger uint8 x int8, n up to 1024 (VNNI / AMX kernels where the CPU has them;
  `vpmaddubsw`, whose int16 pair sums saturate, on x86 without them: `Target.int8_saturates`);
- bandwidth: numpy copy of a 256 MiB array split over the cores, (bytes read + bytes written) / time.
Each GEMM grows from 256 (doubling) until one product takes MIN_PRODUCT_S, and the figures take turns for
two rounds, each keeping its best; every timing stops at a deadline, so the whole measurement ends within
MEASURE_BUDGET_S (12 s; about 5 s on an idle 2-core host) however slow a kernel is. `details` records the
method of each figure, the features, the int8 path (`int8_isa`) and the time taken. These are achieved
peaks, so a floor against them is reachable.

Published profiles (dense rates, no structured sparsity; 1 FLOP = one add or multiply):
- "nvidia-h100": H100 SXM5 80 GB, NVIDIA H100 Tensor Core GPU datasheet: FP32 67 TFLOP/s (CUDA cores),
  TF32 tensor 494.7, BF16/FP16 tensor 989.4, FP8 1978.9 TFLOP/s, INT8 tensor 1978.9 TOP/s; HBM3 3.35 TB/s.
- "nvidia-a100": A100 SXM4 80 GB, NVIDIA A100 datasheet: FP32 19.5 TFLOP/s, TF32 tensor 156, BF16/FP16
  tensor 312 TFLOP/s, INT8 tensor 624 TOP/s; HBM2e 2.039 TB/s.
- "cortex-m7": STM32H7-class Cortex-M7 at 480 MHz. fp32: 2 single-precision MACs per cycle assumed
  (480e6 * 2 MAC * 2 FLOP = 1.92 GFLOP/s); this is an upper bound, since the FPv5 FPU issues at most one
  VFMA.F32 per cycle (0.96 GFLOP/s) and CMSIS kernels reach less, so the floor errs low, as a floor should.
  int8: SIMD SMLAD, two 16-bit MACs per cycle after SXTB16 widening (1.92 GOP/s). Bandwidth: the 64-bit AXI
  SRAM bus at 240 MHz (1.92 GB/s), where activations and weights of a model that fits usually live
  (DTCM, 64-bit at 480 MHz = 3.84 GB/s, holds only 128 KB).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from hasten.errors import DataError
from hasten.fileio import atomic_write_text
from hasten.measure.cost_report import DTYPE_SIZES, CostReport
from hasten.measure.isa import cpu_features, int8_dot_saturates, int8_isa, native_dtypes

_UNITS = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]


def si(value: float, unit: str) -> str:
    """2.87e9, "FLOP" -> "2.87 GFLOP"."""
    for scale, prefix in _UNITS:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.3g} s"
    if value >= 1e-3:
        return f"{value * 1e3:.3g} ms"
    return f"{value * 1e6:.3g} us"


@dataclass(frozen=True)
class Target:
    """A hardware profile: peak flop/s per dtype it runs natively, memory bandwidth in bytes/s, its ISA
    `features` (cpuinfo spelling for CPUs; "dsp" for a Cortex-M; () for GPUs), where the numbers came from.

    A CPU target's `details["machine"]` (x86_64, aarch64) says how to read its features; a profile without
    one (GPUs, microcontrollers) never has saturating int8 pair sums."""

    name: str
    peak_flops: dict[str, float]
    bandwidth: float
    dtypes: tuple[str, ...] = ()
    source: str = "published"  # "measured" | "published"
    description: str = ""
    details: dict = field(default_factory=dict)
    features: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.dtypes:
            object.__setattr__(self, "dtypes", tuple(self.peak_flops))
        object.__setattr__(self, "features", tuple(self.features))

    @property
    def machine(self) -> str | None:
        """The CPU architecture whose features these are (None: not a CPU that hasten quantises for)."""
        return self.details.get("machine") or None

    @property
    def int8_saturates(self) -> bool:
        """True where int8 u8 x s8 pair sums saturate in int16 (x86 without VNNI / AMX-INT8)."""
        return self.machine is not None and int8_dot_saturates(self.features, self.machine)

    @property
    def int8_isa(self) -> str:
        """The int8 dot-product path ("vnni", "avx2-saturating", "neon-dotprod"...); "" when not a CPU."""
        return int8_isa(self.features, self.machine) if self.machine is not None else ""

    def peak(self, dtype: str) -> float:
        if dtype not in self.peak_flops:
            raise DataError(f"target {self.name}: no peak for dtype {dtype!r}; it has "
                            f"{', '.join(self.peak_flops)}")
        return self.peak_flops[dtype]

    def to_dict(self) -> dict:
        return {"name": self.name, "peak_flops": dict(self.peak_flops), "bandwidth": self.bandwidth,
                "dtypes": list(self.dtypes), "source": self.source, "description": self.description,
                "details": dict(self.details), "features": list(self.features)}

    @classmethod
    def from_dict(cls, data: dict) -> Target:
        """The inverse of `to_dict`; a profile written before features were recorded has none."""
        return cls(str(data["name"]), {str(k): float(v) for k, v in data["peak_flops"].items()},
                   float(data["bandwidth"]), tuple(data.get("dtypes", ())), str(data.get("source", "")),
                   str(data.get("description", "")), dict(data.get("details", {})),
                   tuple(str(f) for f in data.get("features", ())))


PUBLISHED: dict[str, Target] = {
    t.name: t for t in [
        Target("nvidia-h100", {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12, "fp16": 989.4e12,
                               "fp8": 1978.9e12, "int8": 1978.9e12}, 3.35e12,
               source="published", description="NVIDIA H100 SXM5 80 GB (datasheet, dense)"),
        Target("nvidia-a100", {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12,
                               "int8": 624e12}, 2.039e12,
               source="published", description="NVIDIA A100 SXM4 80 GB (datasheet, dense)"),
        Target("cortex-m7", {"fp32": 1.92e9, "int8": 1.92e9}, 1.92e9,
               source="published", description="Cortex-M7 @ 480 MHz (STM32H7), AXI SRAM; see targets.py",
               features=("dsp",)),
    ]
}


def targets() -> list[str]:
    """Names of the known targets: "host" (measured) and the published profiles."""
    return ["host", *PUBLISHED]


def get_target(name: str) -> Target:
    """A published profile by name, or "host" (measured, cached)."""
    if name == "host":
        return host_target()
    if name not in PUBLISHED:
        raise DataError(f"unknown target {name!r}; choose one of {', '.join(targets())}")
    return PUBLISHED[name]


# -- the roofline ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Floor:
    """floor = max(compute_s, memory_s); `bound` says which term wins."""

    seconds: float
    compute_s: float
    memory_s: float
    bound: str
    target: str = ""
    dtype: str = ""
    flops: int = 0
    bytes: int = 0
    peak: float = 0.0  # effective flop/s (FLOPs / compute_s)
    bandwidth: float = 0.0

    def formula(self) -> str:
        """"floor = max(FLOPs/peak, bytes/bandwidth) = max(2.87 GFLOP / 213 GFLOP/s, ...) = 13.5 ms"."""
        return (f"floor = max(FLOPs/peak, bytes/bandwidth) = max({si(self.flops, 'FLOP')} / "
                f"{si(self.peak, 'FLOP/s')}, {si(self.bytes, 'B')} / {si(self.bandwidth, 'B/s')}) = "
                f"max({seconds(self.compute_s)}, {seconds(self.memory_s)}) = {seconds(self.seconds)} "
                f"({self.bound}-bound)")

    def to_dict(self) -> dict:
        return {"seconds": self.seconds, "compute_s": self.compute_s, "memory_s": self.memory_s,
                "bound": self.bound, "target": self.target, "dtype": self.dtype, "flops": self.flops,
                "bytes": self.bytes, "peak": self.peak, "bandwidth": self.bandwidth,
                "formula": self.formula()}


def _floor(flops: int, compute_s: float, nbytes: int, target: Target, dtype: str) -> Floor:
    memory_s = nbytes / target.bandwidth
    bound = "compute" if compute_s >= memory_s else "memory"
    peak = flops / compute_s if compute_s > 0 else target.peak_flops.get(dtype, 0.0)
    return Floor(max(compute_s, memory_s), compute_s, memory_s, bound, target.name, dtype, int(flops),
                 int(nbytes), peak, target.bandwidth)


def roofline(report: CostReport, target: Target, dtype: str = "fp32") -> Floor:
    """Everything computed at `dtype`'s peak; floating tensors stored at `dtype`'s size (`bytes_as`)."""
    peak = target.peak(dtype)
    return _floor(report.total_flops, report.total_flops / peak, report.bytes_as(dtype), target, dtype)


def roofline_mixed(report: CostReport, target: Target, linear_dtype: str = "int8",
                   other_dtype: str = "fp32") -> Floor:
    """Linear layers (MatMul/Gemm/Conv with weights) at `linear_dtype`, everything else at `other_dtype`;
    linear weights stored at `linear_dtype`'s size, other floating tensors at `other_dtype`'s."""
    linear = report.linear_flops
    compute_s = linear / target.peak(linear_dtype) + (report.total_flops - linear) / target.peak(other_dtype)
    nbytes = report.bytes_as(other_dtype, linear_dtype=linear_dtype)
    return _floor(report.total_flops, compute_s, nbytes, target, f"{linear_dtype}+{other_dtype}")


# -- the host --------------------------------------------------------------------------------------
def physical_cores() -> int:
    try:
        import psutil

        return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except ImportError:
        return int(os.cpu_count() or 1)


def cpu_description() -> tuple[str, str]:
    """(CPU model name, its ISA flags) from /proc/cpuinfo where there is one."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.processor(), platform.machine()):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = value.strip()
    except OSError:
        pass
    return model, flags


def cpu_hash() -> str:
    """Names the host's cache file: CPU model, flags, the features hasten reads, core counts, architecture."""
    model, flags = cpu_description()
    features = ",".join(sorted(cpu_features()))
    text = f"v2|{model}|{flags}|{features}|{physical_cores()}|{os.cpu_count()}|{platform.machine()}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


#: The whole host measurement (set-up included) ends within this many seconds on any host: every timing
#: after the deadline is skipped, and one product is sized to take milliseconds (`_Gemm`).
MEASURE_BUDGET_S = 12.0
#: A GEMM grows (256, 512, ... up to its largest size) until one product takes at least this long.
MIN_PRODUCT_S = 0.05


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) * 1e-9


def _best(fn: Callable[[], object], runs: int, deadline: float = math.inf) -> tuple[float, int]:
    """(best time of up to `runs` calls, calls made): stops after the first call that ends past `deadline`."""
    best, done = math.inf, 0
    for _ in range(runs):
        best, done = min(best, _time(fn)), done + 1
        if time.perf_counter() >= deadline:
            break
    return best, done


class _Gemm:
    """A measurer of n x n x n products: `prepare(deadline)` once, then called with (runs, deadline) returns
    the best flop/s seen.

    `make(n)` builds one product (a session, tensors) and returns a callable that runs it. `prepare` sizes
    n: from 256, doubling up to `max_n` while one product takes under MIN_PRODUCT_S and the next size fits
    before the deadline, so a slow or emulated kernel is timed small and never for minutes."""

    def __init__(self, make: Callable[[int], Callable[[], object]], max_n: int, what: str):
        self.make, self.max_n, self.what = make, max_n, what
        self.n, self.fn, self.calls = 0, None, 0

    @property
    def ready(self) -> bool:
        return self.fn is not None

    def prepare(self, deadline: float) -> None:
        n = min(256, self.max_n)
        while True:
            fn = self.make(n)
            fn()  # warm-up: allocations, kernel selection
            t = _time(fn)
            self.n, self.fn = n, fn
            if t >= MIN_PRODUCT_S or 2 * n > self.max_n or time.perf_counter() + 16 * t > deadline:
                return
            n *= 2

    def __call__(self, runs: int, deadline: float) -> float:
        best, done = _best(self.fn, runs, deadline)
        self.calls += done
        return 2 * self.n**3 / best

    def method(self, threads: int) -> str:
        return f"{self.what} {self.n}^3, {threads} threads, best of {self.calls} runs"


class _Bandwidth:
    """(bytes read + bytes written) / time of a numpy copy of `mib` MiB split over `threads` threads."""

    def __init__(self, threads: int, mib: int = 256):
        self.threads, self.mib, self.calls = threads, mib, 0
        self.src = self.dst = None

    @property
    def ready(self) -> bool:
        return self.src is not None

    def prepare(self, deadline: float) -> None:
        self.src = np.full(self.mib << 20, 1, dtype=np.uint8)
        self.dst = np.zeros_like(self.src)  # may be mapped lazily: the warm-up copy touches every page

    def __call__(self, runs: int, deadline: float) -> float:
        from concurrent.futures import ThreadPoolExecutor

        src, dst, threads = self.src, self.dst, self.threads
        bounds = [i * src.size // threads for i in range(threads + 1)]

        def part(i: int) -> None:
            np.copyto(dst[bounds[i]:bounds[i + 1]], src[bounds[i]:bounds[i + 1]])

        with ThreadPoolExecutor(threads) as pool:
            copy = lambda: list(pool.map(part, range(threads)))  # noqa: E731
            if self.calls == 0:
                copy()
            best, done = _best(copy, runs, deadline)
        self.calls += done
        return 2 * src.nbytes / best

    def method(self, threads: int) -> str:
        return (f"numpy copy of {self.mib} MiB over {threads} threads, (read + written) / time, best of "
                f"{self.calls} runs")

    def release(self) -> None:
        self.src = self.dst = None


def _ort_product(op: str, threads: int) -> Callable[[int], Callable[[], object]]:
    def make(n: int) -> Callable[[], object]:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        if op == "MatMul":
            a_type, b_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT
        else:
            a_type, b_type, y_type = TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32
        graph = helper.make_graph(
            [helper.make_node(op, ["A", "B"], ["Y"])], "peak",
            [helper.make_tensor_value_info("A", a_type, [n, n]), helper.make_tensor_value_info("B", b_type, [n, n])],
            [helper.make_tensor_value_info("Y", y_type, [n, n])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        if op == "MatMul":
            feeds = {"A": rng.standard_normal((n, n), dtype=np.float32),
                     "B": rng.standard_normal((n, n), dtype=np.float32)}
        else:
            feeds = {"A": rng.integers(0, 256, (n, n), dtype=np.uint8),
                     "B": rng.integers(-128, 128, (n, n), dtype=np.int8)}
        return lambda: session.run(None, feeds)
    return make


def _torch_product(dtype: str, threads: int) -> Callable[[int], Callable[[], object]]:
    def make(n: int) -> Callable[[], object]:
        import torch

        gen = torch.Generator().manual_seed(0)
        kind = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        a = torch.randn(n, n, generator=gen).to(kind)
        b = torch.randn(n, n, generator=gen).to(kind)

        def run() -> None:
            old = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                with torch.inference_mode():
                    torch.matmul(a, b)
            finally:
                torch.set_num_threads(old)
        return run
    return make


def _openvino_product(dtype: str, threads: int) -> Callable[[int], Callable[[], object]]:
    def make(n: int) -> Callable[[], object]:
        import openvino as ov
        import openvino.opset13 as ops

        hint = {"bf16": "bf16", "fp16": "f16"}[dtype]
        a, b = ops.parameter([n, n], ov.Type.f32), ops.parameter([n, n], ov.Type.f32)
        model = ov.Model([ops.matmul(a, b, False, False)], [a, b])
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                          "INFERENCE_NUM_THREADS": threads})
        if hint not in str(compiled.get_property("INFERENCE_PRECISION_HINT")):
            raise RuntimeError(f"OpenVINO did not honour the {hint} precision hint on this CPU")
        request = compiled.create_infer_request()
        x = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        return lambda: request.infer([x, x])
    return make


#: A measurer (`_Gemm`, `_Bandwidth`): `.prepare(deadline)` once unless `.ready` (build, size, warm up), then called with
#: (runs, deadline) returns the best flop/s (or bytes/s) seen; `.method(threads)` says how.
Measurer = Callable[[int, float], float]


def _host_measurers(native: tuple[str, ...], threads: int) -> dict[str, list[tuple[Measurer, int]]]:
    """Per figure ("fp32", "bf16", "fp16", "int8", "bandwidth"), the ways to measure it, tried in order
    (the next one when one fails), with the timed runs per round. Only native dtypes get one."""
    import importlib.util

    torch = importlib.util.find_spec("torch") is not None
    out: dict[str, list[tuple[Measurer, int]]] = {
        "fp32": [(_Gemm(_ort_product("MatMul", threads), 1024, "onnxruntime MatMul float32"), 12)]}
    for dtype in ("bf16", "fp16"):
        if dtype in native:
            ways = [(_Gemm(_openvino_product(dtype, threads), 2048,
                           f"openvino MatMul with {dtype} precision hint"), 4)]
            if torch:
                ways.insert(0, (_Gemm(_torch_product(dtype, threads), 2048, f"torch.matmul {dtype}"), 4))
            out[dtype] = ways
    out["int8"] = [(_Gemm(_ort_product("MatMulInteger", threads), 1024,
                          "onnxruntime MatMulInteger uint8 x int8"), 12)]
    out["bandwidth"] = [(_Bandwidth(threads), 3)]
    return out


#: the figures every host profile has (measured even when the budget has run out)
_REQUIRED = ("fp32", "bandwidth")


def measure_host(rounds: int = 2, budget_s: float = MEASURE_BUDGET_S,
                 features: frozenset[str] | set[str] | None = None) -> Target:
    """Measure the host's peaks now, within `budget_s` seconds; see the module docstring for the method.

    Only the dtypes `native_dtypes(features)` names (default: this CPU's features) are measured and listed.
    Each peak is the best of `rounds` rounds (the measurers take turns), so a burst of load from another
    process during one of them does not stick in the cache; a round that the budget cannot fit is skipped."""
    t0 = time.perf_counter()
    deadline = t0 + budget_s
    features = cpu_features() if features is None else frozenset(features)
    native = native_dtypes(features)
    cores = physical_cores()
    model_name, _ = cpu_description()
    measurers = _host_measurers(native, cores)
    methods = {d: f"not measured: {d} is not native on this CPU (features: {', '.join(sorted(features))})"
               for d in ("bf16", "fp16") if d not in native}
    peaks: dict[str, float] = {}
    slots = rounds * len(measurers)
    for _ in range(rounds):
        for figure, ways in measurers.items():
            slots -= 1
            while ways:
                # past the deadline only what a profile cannot do without is measured (once, one run)
                if time.perf_counter() >= deadline and (figure in peaks or figure not in _REQUIRED):
                    methods.setdefault(figure, f"not measured: the {budget_s:g} s budget ran out")
                    break
                measure, runs = ways[0]
                try:
                    if not measure.ready:
                        measure.prepare(deadline)
                    now = time.perf_counter()
                    slot_deadline = now + (deadline - now) / (slots + 1)
                    peaks[figure] = max(peaks.get(figure, 0.0), measure(runs, slot_deadline))
                    methods[figure] = f"{measure.method(cores)} in {rounds} round(s)"
                    break
                except Exception as exc:  # a runtime without the kernel or the precision: try the next way
                    if figure in peaks:  # measured in an earlier round: keep that figure
                        break
                    methods[figure] = f"not measured ({type(exc).__name__}: {' '.join(str(exc).split())[:80]})"
                    ways.pop(0)
    for ways in measurers.values():
        for measure, _ in ways:
            getattr(measure, "release", lambda: None)()
    if "fp32" not in peaks or "bandwidth" not in peaks:
        raise RuntimeError(f"could not measure the host's fp32 peak and bandwidth: {methods}")
    bandwidth = peaks.pop("bandwidth")
    versions = {}
    from hasten.backends import packages

    for name in ("numpy", "torch", *packages()):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            pass
    ordered = {d: peaks[d] for d in ("fp32", "bf16", "fp16", "int8") if d in peaks}
    details = {"cpu": model_name, "cpu_hash": cpu_hash(), "cores": cores, "machine": platform.machine(),
               "int8_isa": int8_isa(features), "int8_saturates": int8_dot_saturates(features),
               "native_dtypes": list(native), "methods": methods, "versions": versions,
               "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
               "measure_seconds": round(time.perf_counter() - t0, 2)}
    return Target("host", ordered, bandwidth, tuple(ordered), "measured", f"{model_name}, {cores} cores",
                  details, tuple(sorted(features)))


def host_cache_path():
    from hasten.paths import cache_dir

    return cache_dir() / f"host-{cpu_hash()}.json"


def host_target(refresh: bool = False) -> Target:
    """The host's measured profile, from the cache unless `refresh` (or the cache is unreadable).

    A refresh keeps, per figure, the larger of the new and the cached measurement: other load on a shared
    machine can only lower a measured peak, so the best figure seen is the closest to the true peak.
    """
    path = host_cache_path()
    cached = None
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            cached = Target.from_dict(data)
            # a profile from before features were recorded may list an emulated dtype: measure again
            if "features" not in data or not (cached.peak_flops.get("fp32", 0) > 0 and cached.bandwidth > 0):
                cached = None
        except (OSError, ValueError, KeyError, TypeError):
            cached = None
    if cached is not None and not refresh:
        return cached
    target = measure_host()
    if cached is not None:
        peaks = {k: max(v, cached.peak_flops.get(k, 0.0)) for k, v in target.peak_flops.items()}
        target = dataclasses.replace(target, peak_flops=peaks, bandwidth=max(target.bandwidth, cached.bandwidth))
    atomic_write_text(path, json.dumps(target.to_dict(), indent=2))
    return target


__all__ = ["DTYPE_SIZES", "PUBLISHED", "Floor", "Target", "get_target", "host_target", "measure_host",
           "roofline", "roofline_mixed", "targets"]
