"""`hasten export`'s job: an int8 QDQ model (or an optimize result) to C, written safely, and verified.

- `load_quantised(spec)`: the ONNX model of an .onnx path, an optimize result folder (its model.onnx) or a
  zoo name; a float model is refused with the command that quantises it.
- `export_model(proto)`: lower (as ONNX Runtime runs it) and emit; ExportError lists every node that
  cannot be exported, before anything is written.
- `write_export(export, out, force)`: model.c, model.h and README.md appear together or not at all.
- `quantise_input` / `as_output`: the C API's int8 input codes from float inputs, and its output bytes as
  int8 codes or float values.
- `verify(export, proto, targets, inputs)`: the C built with the host `cc` (and for each Cortex-M target in
  QEMU) against ONNX Runtime's outputs on the same int8 inputs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from hasten.errors import ExportError
from hasten.export.emit import Export, emit
from hasten.export.lower import fixed_batch, lower

TARGETS = ("c99", "cortex-m3", "cortex-m4", "cortex-m7")
QUANTISED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd"}


def load_quantised(spec: str) -> tuple[onnx.ModelProto, str]:
    """(the model, a name for it) of an .onnx file, an optimize result folder or zoo:NAME; refuses a float
    model with one line naming the command that quantises it."""
    from hasten.source import resolve

    path = Path(spec)
    if path.is_dir():
        if not (path / "model.onnx").is_file():
            raise ExportError(f"{spec}: a folder without model.onnx (give an .onnx model or the output folder "
                              f"of hasten optimize)")
        path = path / "model.onnx"
        spec = str(path)
    src = resolve(spec)
    proto = src.model.proto()
    if not any(n.op_type in QUANTISED_OPS for n in proto.graph.node):
        raise ExportError(f"{spec} is a float model (no quantisation in it); quantise it first: hasten quantize "
                          f"{spec} --scheme int8-static -o {src.name}-int8.onnx, then hasten export "
                          f"{src.name}-int8.onnx")
    name = path.parent.name if path.name == "model.onnx" and path.parent.name else src.name
    return proto, name


def export_model(proto: onnx.ModelProto, name: str = "model") -> Export:
    return emit(lower(proto), name)


def write_export(export: Export, out: str | os.PathLike, force: bool = False) -> Path:
    """Write model.c, model.h and README.md into `out`. An existing export there is replaced only with
    `force`; any other file in `out` is left alone. The files are written in a hidden folder beside them
    and moved in once all are written."""
    out = Path(out)
    names = list(export.files())
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    existing = [n for n in names if (out / n).exists()]
    if existing and not force:
        raise ExportError(f"{out}: already holds {', '.join(existing)}; pass --force to replace them")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".hasten-export-", dir=out))
    try:
        for fname, text in export.files().items():
            (tmp / fname).write_text(text)
        for fname in names:
            os.replace(tmp / fname, out / fname)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@dataclass
class Verified:
    """One build's outputs against ONNX Runtime's: `mismatches` inputs differ, by at most `max_lsb`."""

    where: str  # "host" or a target
    inputs: int
    mismatches: int
    max_lsb: float
    flash_bytes: int | None = None
    ram_bytes: int | None = None
    stack_bytes: int | None = None
    instructions: list[int] = field(default_factory=list)


def random_inputs(export: Export, count: int, seed: int = 0) -> np.ndarray:
    """`count` int8 inputs, uniform over [-128, 127] (saturation both ways included)."""
    return np.random.default_rng(seed).integers(-128, 128, (count, export.input_size)).astype(np.int8)


def ort_outputs(proto: onnx.ModelProto, export: Export, inputs: np.ndarray) -> np.ndarray:
    """ONNX Runtime's outputs of the QDQ model on int8 `inputs`, in the C API's terms: int8 codes, or the
    float values of a float output."""
    import onnxruntime as ort

    x = export.program.tensors[export.program.input]
    y = export.program.tensors[export.program.output]
    model = fixed_batch(proto)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in feed.shape]
    floats = (inputs.astype(np.int32) - x.zero_point).astype(np.float32) * np.float32(x.scale)
    rows = [sess.run(None, {feed.name: row.reshape(shape)})[0].reshape(-1) for row in floats]
    out = np.stack(rows).astype(np.float32)
    if y.dtype == "float32":
        return out
    return np.clip(np.rint(out / np.float32(y.scale)) + y.zero_point, -128, 127).astype(np.int8)


def compare(where: str, got: np.ndarray, want: np.ndarray) -> Verified:
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    rows = diff.reshape(len(diff), -1).max(axis=1) if diff.size else np.zeros(len(got))
    return Verified(where, len(got), int((rows > 0).sum()), float(rows.max() if len(rows) else 0.0))


def verify(export: Export, proto: onnx.ModelProto, targets: list[str], inputs: np.ndarray,
           workdir: Path, timeout_s: float = 300) -> list[Verified]:
    """Build and run the export on the host and on each Cortex-M target in `targets`; ExportError when a
    build or run fails (QEMU targets need the Arm toolchain: `toolchain.arm_missing()`)."""
    from hasten.export import toolchain

    want = ort_outputs(proto, export, inputs)
    model_dir = export.write(workdir / "model")
    results = []
    host = toolchain.run_host(model_dir, inputs, workdir / "host", timeout_s=timeout_s)
    results.append(compare("host", as_output(export, host.outputs), want))
    for target in targets:
        run = toolchain.run_qemu(target, model_dir, inputs, workdir / target, timeout_s=timeout_s)
        row = compare(target, as_output(export, run.outputs), want)
        row.flash_bytes, row.ram_bytes, row.stack_bytes = run.flash_bytes, run.ram_bytes, run.stack_bytes
        row.instructions = list(run.instructions or [])
        results.append(row)
    return results


def quantise_input(export: Export, values: np.ndarray) -> np.ndarray:
    """Float model inputs [N, ...] as the int8 codes `hs_model_run` reads: round_half_even(v / scale) + zp,
    clamped (the model's own QuantizeLinear)."""
    x = export.program.tensors[export.program.input]
    flat = np.asarray(values, np.float32).reshape(len(values), -1)
    return np.clip(np.rint(flat / np.float32(x.scale)) + x.zero_point, -128, 127).astype(np.int8)


def as_output(export: Export, outputs: np.ndarray) -> np.ndarray:
    """The harness's raw output bytes as the API's type (int8 codes or float32 values)."""
    raw = np.ascontiguousarray(outputs).view(np.uint8).reshape(len(outputs), -1)
    if export.output_dtype == "float32":
        return raw.view(np.float32).reshape(len(outputs), export.output_size)
    return raw.view(np.int8).reshape(len(outputs), export.output_size)
