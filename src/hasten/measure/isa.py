"""The CPU's instruction-set features, read from the CPU (never assumed), and what follows from them.

- `cpu_features()`: the features that matter for inference, from /proc/cpuinfo `flags` (x86) or
  `Features` (aarch64), e.g. {"avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16"}.
- `native_dtypes(features)`: the dtypes whose matrix products run natively (never an emulated one):
  fp32 always; int8 always (integer dot products exist on every x86-64 with SSE4.1 / every aarch64);
  bf16 only with avx512_bf16 / amx_bf16 (x86) or bf16 (aarch64); fp16 only with avx512_fp16 / amx_fp16
  (x86) or asimdhp (aarch64). f16c alone converts fp16 but computes in fp32: not native.
- `int8_dot_saturates(features)`: True on x86 without VNNI or AMX-INT8. There the u8 x s8 kernels of ONNX
  Runtime and oneDNN use `vpmaddubsw`, which adds the two products a0*w0 + a1*w1 of each byte pair into a
  *saturating* int16; with VNNI (`vpdpbusd`) or AMX the sums go straight into int32 and never saturate.
- `int8_isa(features)`: one short name of the int8 path ("amx", "vnni", "avx2-saturating", "neon-dotprod",
  ...) recorded in recipes, so a model tuned for one int8 path warns when used on another;
  `int8_features(features)` names the features behind it.
Without a `machine` argument the architecture is read from the features themselves (asimd: Arm; avx2...:
x86), else from this host, so a cpuinfo text of another machine is judged as that machine.
"""

from __future__ import annotations

import functools
import platform

#: x86 flags (cpuinfo spelling) worth knowing for inference
X86_FEATURES = ("sse4_1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")
#: aarch64 features (cpuinfo spelling): asimddp = dot product, i8mm = int8 matrix multiply
ARM_FEATURES = ("asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2")

_VNNI = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_X86_ONLY = frozenset(X86_FEATURES)
_ARM_ONLY = frozenset(ARM_FEATURES) - {"bf16"}  # a word that names only one architecture
#: the features that decide the int8 path (named in a recipe's "tuned for" warning)
_INT8_FEATURES = ("amx_int8", "avx512_vnni", "avx_vnni", "avx512bw", "avx2", "i8mm", "asimddp")


def parse_cpuinfo(text: str) -> frozenset[str]:
    """The known features in a /proc/cpuinfo text (first `flags` or `Features` line)."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            words = set(value.split())
            return frozenset(f for f in (*X86_FEATURES, *ARM_FEATURES) if f in words)
    return frozenset()


@functools.cache
def cpu_features() -> frozenset[str]:
    """This CPU's features (cached for the process); empty where /proc/cpuinfo cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return parse_cpuinfo(f.read())
    except OSError:
        return frozenset()


def is_x86(machine: str | None = None, features: frozenset[str] | set[str] = frozenset()) -> bool:
    """Whether `machine` (default: the features' architecture, else this host's) is x86."""
    if machine is None:
        if set(features) & _ARM_ONLY:
            return False
        if set(features) & _X86_ONLY:
            return True
        machine = platform.machine()
    return machine.lower() in ("x86_64", "amd64", "i686", "i386", "x86")


def native_dtypes(features: frozenset[str] | set[str], machine: str | None = None) -> tuple[str, ...]:
    """Dtypes whose matrix products this CPU runs natively, in the order fp32, bf16, fp16, int8."""
    f = set(features)
    if is_x86(machine, f):
        bf16 = bool(f & {"avx512_bf16", "amx_bf16"})
        fp16 = bool(f & {"avx512_fp16", "amx_fp16"})
    else:
        bf16 = "bf16" in f
        fp16 = "asimdhp" in f
    return tuple(d for d, ok in (("fp32", True), ("bf16", bf16), ("fp16", fp16), ("int8", True)) if ok)


def int8_dot_saturates(features: frozenset[str] | set[str], machine: str | None = None) -> bool:
    """True where int8 u8 x s8 products are summed in pairs into a saturating int16 (x86 without VNNI/AMX)."""
    return is_x86(machine, features) and not (set(features) & _VNNI)


def int8_isa(features: frozenset[str] | set[str], machine: str | None = None) -> str:
    """A short name of the int8 dot-product path: amx | vnni | avx512-saturating | avx2-saturating | ..."""
    f = set(features)
    if is_x86(machine, f):
        if "amx_int8" in f:
            return "amx"
        if f & _VNNI:
            return "vnni"
        if "avx512bw" in f:
            return "avx512-saturating"
        return "avx2-saturating" if "avx2" in f else "sse-saturating"
    if "i8mm" in f:
        return "neon-i8mm"
    return "neon-dotprod" if "asimddp" in f else "neon"


def int8_features(features: frozenset[str] | set[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The features among `features` that decide the int8 path, strongest first (e.g. ("avx512_vnni",
    "avx512bw", "avx2"))."""
    return tuple(f for f in _INT8_FEATURES if f in set(features))


def host_int8_saturates() -> bool:
    return int8_dot_saturates(cpu_features())


def host_int8_isa() -> str:
    return int8_isa(cpu_features())
