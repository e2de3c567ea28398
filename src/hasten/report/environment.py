"""The machine and software a figure was measured on (BENCHMARKING.md: state the machine)."""

from __future__ import annotations

import os
import platform

from hasten.paths import package_version

#: CPU flags that decide which kernels a runtime can use
FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
         "amx_bf16", "amx_int8", "amx_tile")
#: besides these, the packages of the registered backends (`hasten.backends.packages()`)
PACKAGES = ("hasten", "numpy", "onnx", "onnx-ir", "onnxscript", "nncf", "torch", "transformers")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(settings=None) -> dict:
    from hasten.backends import packages, physical_cores
    from hasten.measure.isa import cpu_features

    flags = cpu_features()
    versions = {}
    for name in (*PACKAGES, *packages()):
        versions[name] = package_version(name)
    out = {
        "cpu": cpu_model(), "machine": platform.machine(), "physical_cores": physical_cores(),
        "logical_cores": os.cpu_count(), "flags": {f: f in flags for f in FLAGS},
        "python": platform.python_version(), "os": f"{platform.system()} {platform.release()}",
        "packages": versions,
    }
    try:
        from hasten.measure.isa import cpu_features, int8_dot_saturates, int8_isa

        out["int8_isa"] = int8_isa(cpu_features())
        out["int8_saturates"] = int8_dot_saturates(cpu_features())
    except Exception:  # informative only
        pass
    if settings is not None:
        out["threads"] = list(settings.threads)
    try:
        import psutil

        out["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:
        pass
    return out
