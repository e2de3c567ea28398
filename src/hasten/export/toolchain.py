"""Build an exported model with its test harness (c/harness/) and run it: on the host `cc`, or for a
Cortex-M target with arm-none-eabi-gcc in qemu-system-arm (mps2 boards, semihosting, `-icount shift=0`).

The harness runs `hs_model_run` once per input and prints each output's bytes; on target it also prints the
instructions of every call (SysTick x 40 under `-icount`: instructions, not cycles, identical run to run) and
the stack's high-water mark (painting). Flash and RAM are the model's own: `arm-none-eabi-size model.o`
(text + data, i.e. code + rodata + initialisers; data + bss, i.e. the arena) plus the stack high-water mark.
Every process runs under a timeout: QEMU runs for ever when a program does not exit."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from hasten.errors import ExportError

CFLAGS = ["-O2", "-std=c99", "-ffp-contract=off", "-Wall"]
BOARDS = {  # target -> (QEMU machine, gcc flags)
    "cortex-m3": ("mps2-an385", ["-mcpu=cortex-m3", "-mfloat-abi=soft"]),
    "cortex-m4": ("mps2-an386", ["-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]),
    "cortex-m7": ("mps2-an500", ["-mcpu=cortex-m7", "-mfloat-abi=hard", "-mfpu=fpv5-d16"]),
}
ARM_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"


@dataclass
class HarnessRun:
    """What one harness run printed: `outputs` [N, output bytes] uint8; on target the instructions of
    each inference, the stack high-water mark, and the model's flash and RAM (arena + stack) in bytes."""

    outputs: np.ndarray
    instructions: list[int] | None = None
    stack_bytes: int | None = None
    flash_bytes: int | None = None
    ram_bytes: int | None = None


def arm_missing() -> str | None:
    """None when QEMU verification can run here; else one line saying what it needs."""
    missing = [t for t in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm") if not shutil.which(t)]
    if not missing and not _rdimon_specs():
        missing = ["newlib's rdimon.specs"]
    if not missing:
        return None
    return (f"QEMU verification needs {', '.join(missing)}: the Debian packages {ARM_PACKAGES} "
            "(`make mcu-toolchain` installs them as root)")


def _rdimon_specs() -> bool:
    try:
        out = subprocess.run(["arm-none-eabi-gcc", "-print-file-name=rdimon.specs"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return False
    return Path(out).is_file()


def harness_dir() -> Path:
    return Path(str(resources.files("hasten.export") / "c" / "harness"))


def write_inputs(inputs: np.ndarray, path: Path) -> None:
    """inputs.h: HS_N_INPUTS and hs_inputs[][HS_MODEL_INPUT_SIZE] (placed by HS_INPUTS_PLACE when defined)."""
    rows = np.ascontiguousarray(inputs, dtype=np.int8).reshape(len(inputs), -1)
    lines = ["#ifndef HS_INPUTS_PLACE", "#define HS_INPUTS_PLACE", "#endif",
             f"#define HS_N_INPUTS {len(rows)}",
             "static const int8_t hs_inputs[HS_N_INPUTS][HS_MODEL_INPUT_SIZE] HS_INPUTS_PLACE = {"]
    for row in rows:
        lines.append("  {" + ",".join(str(int(v)) for v in row) + "},")
    lines.append("};")
    path.write_text("\n".join(lines) + "\n")


def _run(cmd: list[str], what: str, timeout_s: float, cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise ExportError(f"{what} did not finish in {timeout_s:.0f} s") from e
    except OSError as e:
        raise ExportError(f"{what}: cannot run {cmd[0]} ({e})") from e
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        raise ExportError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail))
    return proc.stdout


def _prepare(model_dir: Path, inputs: np.ndarray, workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    write_inputs(inputs, workdir / "inputs.h")
    if not (Path(model_dir) / "model.c").is_file():
        raise ExportError(f"{model_dir} holds no model.c (write it with `hasten export`)")
    return Path(model_dir)


def _parse(stdout: str, count: int) -> tuple[np.ndarray, list[int], int | None]:
    outs: dict[int, bytes] = {}
    insn: dict[int, int] = {}
    stack = None
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "out":
            outs[int(parts[1])] = bytes.fromhex(parts[2])
        elif len(parts) == 3 and parts[0] == "insn":
            insn[int(parts[1])] = int(parts[2])
        elif len(parts) == 2 and parts[0] == "stack":
            stack = int(parts[1])
    if sorted(outs) != list(range(count)):
        raise ExportError(f"the harness printed {len(outs)} of {count} outputs")
    rows = [np.frombuffer(outs[i], dtype=np.uint8) for i in range(count)]
    return np.stack(rows), [insn[i] for i in sorted(insn)], stack


def run_host(model_dir: Path, inputs: np.ndarray, workdir: Path, timeout_s: float = 60) -> HarnessRun:
    """Build model.c with the host `cc` and run it on `inputs` (int8 [N, input size])."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise ExportError("no host C compiler (cc) to verify the export with")
    model_dir = _prepare(model_dir, inputs, workdir)
    exe = workdir / "harness"
    _run([cc, *CFLAGS, "-I", str(model_dir), "-I", str(workdir), str(harness_dir() / "harness.c"),
          str(model_dir / "model.c"), "-o", str(exe), "-lm"], "host build", timeout_s)
    outputs, _, _ = _parse(_run([str(exe)], "host run", timeout_s), len(inputs))
    return HarnessRun(outputs)


def run_qemu(target: str, model_dir: Path, inputs: np.ndarray, workdir: Path, timeout_s: float = 120,
             flash_size: str | None = None, ram_size: str | None = None) -> HarnessRun:
    """Build for `target` (cortex-m3|m4|m7) and run in QEMU; `flash_size`/`ram_size` (e.g. "256K") make a
    model that does not fit a real part fail at link time."""
    if target not in BOARDS:
        raise ExportError(f"unknown target {target!r} for QEMU (one of {', '.join(BOARDS)})")
    missing = arm_missing()
    if missing:
        raise ExportError(missing)
    machine, flags = BOARDS[target]
    model_dir = _prepare(model_dir, inputs, workdir)
    h = harness_dir()
    gcc = ["arm-none-eabi-gcc", *flags, "-mthumb", *CFLAGS]
    obj = workdir / "model.o"
    _run([*gcc, "-c", "-I", str(model_dir), str(model_dir / "model.c"), "-o", str(obj)],
         f"{target} build of model.c", timeout_s)
    link = []
    if flash_size:
        link.append(f"-Wl,--defsym=FLASH_SIZE={flash_size}")
    if ram_size:
        link.append(f"-Wl,--defsym=RAM_SIZE={ram_size}")
    elf = workdir / "harness.elf"
    _run([*gcc, "-DHS_ON_TARGET", "--specs=rdimon.specs", "-nostartfiles", "-T", str(h / "link.ld"),
          "-I", str(model_dir), "-I", str(workdir), str(h / "startup.c"), str(h / "harness.c"), str(obj),
          *link, "-o", str(elf), "-lm"], f"{target} link", timeout_s)
    text, data, bss = _size(obj, timeout_s)
    cmd = ["timeout", str(int(timeout_s)), "qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none",
           "-serial", "none", "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
           "-kernel", str(elf)]
    stdout = _run(cmd, f"{target} run in QEMU", timeout_s + 10)
    outputs, insn, stack = _parse(stdout, len(inputs))
    if stack is None or len(insn) != len(inputs):
        raise ExportError(f"{target}: the harness printed no instruction counts or stack mark")
    return HarnessRun(outputs, insn, stack, flash_bytes=text + data, ram_bytes=data + bss + stack)


def _size(obj: Path, timeout_s: float) -> tuple[int, int, int]:
    """text (code + rodata), data, bss of an object, from `arm-none-eabi-size` (Berkeley format)."""
    out = _run(["arm-none-eabi-size", str(obj)], "arm-none-eabi-size", timeout_s).splitlines()
    text, data, bss = (int(v) for v in out[1].split()[:3])
    return text, data, bss
