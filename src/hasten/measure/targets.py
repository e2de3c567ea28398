"""Hardware targets (peak compute per dtype, memory bandwidth) and the roofline floor.

floor = max(FLOPs / peak[dtype], bytes / bandwidth): no implementation can beat it on that target.

The host's profile is measured once and cached in `cache_dir()/host-<cpu hash>.json` (`host_target`):
- fp32: ONNX Runtime MatMul 1024x1024x1024 float32, intra-op threads = physical cores, best of several runs;
- bf16: torch.matmul 2048^3 bfloat16 with torch.set_num_threads(cores) when torch is installed, else an
  OpenVINO MatMul compiled with INFERENCE_PRECISION_HINT=bf16 (skipped when neither works);
- int8: ONNX Runtime MatMulInteger uint8 x int8 1024^3 (VNNI kernels where the CPU has them);
- bandwidth: numpy copy of a 256 MiB array split over the cores, (bytes read + bytes written) / time.
The whole measurement takes a few seconds. These are achieved peaks, so a floor against them is reachable.

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
from hasten.measure.cost_report import DTYPE_SIZES, CostReport

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
    """A hardware profile: peak flop/s per dtype name, memory bandwidth in bytes/s, where the numbers came from."""

    name: str
    peak_flops: dict[str, float]
    bandwidth: float
    dtypes: tuple[str, ...] = ()
    source: str = "published"  # "measured" | "published"
    description: str = ""
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.dtypes:
            object.__setattr__(self, "dtypes", tuple(self.peak_flops))

    def peak(self, dtype: str) -> float:
        if dtype not in self.peak_flops:
            raise DataError(f"target {self.name}: no peak for dtype {dtype!r}; it has "
                            f"{', '.join(self.peak_flops)}")
        return self.peak_flops[dtype]

    def to_dict(self) -> dict:
        return {"name": self.name, "peak_flops": dict(self.peak_flops), "bandwidth": self.bandwidth,
                "dtypes": list(self.dtypes), "source": self.source, "description": self.description,
                "details": dict(self.details)}

    @classmethod
    def from_dict(cls, data: dict) -> Target:
        return cls(str(data["name"]), {str(k): float(v) for k, v in data["peak_flops"].items()},
                   float(data["bandwidth"]), tuple(data.get("dtypes", ())), str(data.get("source", "")),
                   str(data.get("description", "")), dict(data.get("details", {})))


PUBLISHED: dict[str, Target] = {
    t.name: t for t in [
        Target("nvidia-h100", {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12, "fp16": 989.4e12,
                               "fp8": 1978.9e12, "int8": 1978.9e12}, 3.35e12,
               source="published", description="NVIDIA H100 SXM5 80 GB (datasheet, dense)"),
        Target("nvidia-a100", {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12,
                               "int8": 624e12}, 2.039e12,
               source="published", description="NVIDIA A100 SXM4 80 GB (datasheet, dense)"),
        Target("cortex-m7", {"fp32": 1.92e9, "int8": 1.92e9}, 1.92e9,
               source="published", description="Cortex-M7 @ 480 MHz (STM32H7), AXI SRAM; see targets.py"),
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
    model, flags = cpu_description()
    text = f"{model}|{flags}|{physical_cores()}|{os.cpu_count()}|{platform.machine()}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _best(fn: Callable[[], object], runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    best = math.inf
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - t0) * 1e-9)
    return best


#: A measurer: called with a number of runs, returns the best flop/s (or bytes/s) seen.
Measurer = Callable[[int], float]


def _ort_gemm(op: str, n: int, threads: int) -> Measurer:
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
    return lambda runs: 2 * n**3 / _best(lambda: session.run(None, feeds), runs)


def _torch_bf16(n: int, threads: int) -> Measurer:
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(torch.bfloat16)
    b = torch.randn(n, n, generator=gen).to(torch.bfloat16)

    def measure(runs: int) -> float:
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.inference_mode():
                return 2 * n**3 / _best(lambda: torch.matmul(a, b), runs)
        finally:
            torch.set_num_threads(old)
    return measure


def _openvino_bf16(n: int, threads: int) -> Measurer:
    import openvino as ov
    import openvino.opset13 as ops

    a, b = ops.parameter([n, n], ov.Type.f32), ops.parameter([n, n], ov.Type.f32)
    model = ov.Model([ops.matmul(a, b, False, False)], [a, b])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16",
                                                      "INFERENCE_NUM_THREADS": threads})
    if "bf" not in str(compiled.get_property("INFERENCE_PRECISION_HINT")):
        raise RuntimeError("OpenVINO did not honour the bf16 precision hint on this CPU")
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    return lambda runs: 2 * n**3 / _best(lambda: request.infer([x, x]), runs)


def _bandwidth(threads: int, runs: int, mib: int = 256) -> float:
    """(bytes read + bytes written) / time of a numpy copy of `mib` MiB split over `threads` threads."""
    from concurrent.futures import ThreadPoolExecutor

    src = np.full(mib << 20, 1, dtype=np.uint8)
    dst = np.zeros_like(src)  # may be mapped lazily: the warm-up copy touches every page
    bounds = [i * src.size // threads for i in range(threads + 1)]

    def part(i: int) -> None:
        np.copyto(dst[bounds[i]:bounds[i + 1]], src[bounds[i]:bounds[i + 1]])

    with ThreadPoolExecutor(threads) as pool:
        best = _best(lambda: list(pool.map(part, range(threads))), runs)
    return 2 * src.nbytes / best


def measure_host(rounds: int = 2) -> Target:
    """Measure the host's peaks now (a few seconds); see the module docstring for the method.

    Each peak is the best of `rounds` rounds (the measurers take turns), so a burst of load from another
    process during one of them does not stick in the cache."""
    import importlib.util

    cores = physical_cores()
    model_name, flags = cpu_description()
    t0 = time.perf_counter()
    measurers: dict[str, tuple[Measurer, int]] = {}
    methods: dict[str, str] = {}
    measurers["fp32"] = (_ort_gemm("MatMul", 1024, cores), 12)
    methods["fp32"] = f"onnxruntime MatMul 1024^3 float32, {cores} threads"
    try:
        measurers["int8"] = (_ort_gemm("MatMulInteger", 1024, cores), 12)
        methods["int8"] = f"onnxruntime MatMulInteger 1024^3 uint8 x int8, {cores} threads"
    except Exception as exc:  # an onnxruntime build without the kernel
        methods["int8"] = f"not measured ({type(exc).__name__})"
    if importlib.util.find_spec("torch") is not None:
        try:
            measurers["bf16"] = (_torch_bf16(2048, cores), 4)
            methods["bf16"] = f"torch.matmul 2048^3 bfloat16, {cores} threads"
        except Exception:
            pass
    if "bf16" not in measurers:
        try:
            measurers["bf16"] = (_openvino_bf16(2048, cores), 4)
            methods["bf16"] = f"openvino MatMul 2048^3 with bf16 precision hint, {cores} threads"
        except Exception as exc:
            methods["bf16"] = f"not measured ({type(exc).__name__})"
    peaks: dict[str, float] = {}
    for _ in range(rounds):
        for dtype, (measure, runs) in measurers.items():
            try:
                peaks[dtype] = max(peaks.get(dtype, 0.0), measure(runs))
            except Exception as exc:
                methods[dtype] = f"not measured ({type(exc).__name__})"
    for dtype, (_, runs) in measurers.items():
        methods[dtype] += f", best of {rounds} x {runs} runs"
    if "fp32" not in peaks:
        raise RuntimeError("could not measure the host's fp32 peak with onnxruntime")
    bandwidth = _bandwidth(cores, 6)
    methods["bandwidth"] = f"numpy copy of 256 MiB over {cores} threads, (read + written) / time, best of 6"
    versions = {}
    for name in ("onnxruntime", "numpy", "torch", "openvino"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            pass
    ordered = {d: peaks[d] for d in ("fp32", "bf16", "fp16", "int8") if d in peaks}
    details = {"cpu": model_name, "cpu_hash": cpu_hash(), "cores": cores,
               "isa": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
                                   "amx_int8", "avx512_fp16") if f in flags.split()],
               "methods": methods, "versions": versions,
               "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
               "measure_seconds": round(time.perf_counter() - t0, 2)}
    return Target("host", ordered, bandwidth, tuple(ordered), "measured", f"{model_name}, {cores} cores",
                  details)


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
            cached = Target.from_dict(json.loads(path.read_text(encoding="utf-8")))
            if not (cached.peak_flops.get("fp32", 0) > 0 and cached.bandwidth > 0):
                cached = None
        except (OSError, ValueError, KeyError, TypeError):
            cached = None
    if cached is not None and not refresh:
        return cached
    target = measure_host()
    if cached is not None:
        peaks = {k: max(v, cached.peak_flops.get(k, 0.0)) for k, v in target.peak_flops.items()}
        target = dataclasses.replace(target, peak_flops=peaks, bandwidth=max(target.bandwidth, cached.bandwidth))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(target.to_dict(), indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return target


__all__ = ["DTYPE_SIZES", "PUBLISHED", "Floor", "Target", "get_target", "host_target", "measure_host",
           "roofline", "roofline_mixed", "targets"]
