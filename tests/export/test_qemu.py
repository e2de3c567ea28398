"""zoo:digits in int8 C on Cortex-M3, M4 and M7 under QEMU: bit-exact with ONNX Runtime on 100 inputs, with
flash, RAM and instruction counts; instructions identical over runs; a flash limit fails at link time.
Skipped where the Arm toolchain is missing (`make mcu-toolchain` installs it)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from graphs import quantised
from test_export import GRAPHS

from hasten.errors import ExportError
from hasten.export import toolchain
from hasten.export.build import export_model, random_inputs, verify

needs_arm = pytest.mark.skipif(toolchain.arm_missing() is not None, reason=str(toolchain.arm_missing()))


@pytest.fixture(scope="module")
def digits(digits_int8, tmp_path_factory):
    proto = onnx.load(digits_int8)
    export = export_model(proto)
    return proto, export, export.write(tmp_path_factory.mktemp("digits-c"))


@needs_arm
@pytest.mark.parametrize("target", ["cortex-m3", "cortex-m4", "cortex-m7"])
def test_digits_is_bit_exact_in_qemu(digits, target, tmp_path):
    proto, export, _ = digits
    rows = verify(export, proto, [target], random_inputs(export, 100, seed=1), tmp_path)
    assert [(r.where, r.inputs, r.mismatches) for r in rows] == [("host", 100, 0), (target, 100, 0)]
    on_target = rows[1]
    assert export.program.weight_bytes() < on_target.flash_bytes < 4 * export.program.weight_bytes()
    assert on_target.ram_bytes >= export.arena.size + on_target.stack_bytes > export.arena.size
    assert len(on_target.instructions) == 100
    assert min(on_target.instructions) >= export.program.macs()  # at least one instruction a MAC


@needs_arm
@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_every_kernel_is_bit_exact_on_a_soft_float_cortex_m3(graph, tmp_path):
    proto = quantised(*GRAPHS[graph]())
    export = export_model(proto)
    rows = verify(export, proto, ["cortex-m3"], random_inputs(export, 100, seed=3), tmp_path)
    assert [(r.where, r.mismatches) for r in rows] == [("host", 0), ("cortex-m3", 0)]


@needs_arm
def test_instructions_are_identical_over_runs(digits, tmp_path):
    _, export, model_dir = digits
    inputs = random_inputs(export, 4, seed=2)
    runs = [toolchain.run_qemu("cortex-m4", model_dir, inputs, tmp_path / str(k)) for k in range(2)]
    assert runs[0].instructions == runs[1].instructions
    assert np.array_equal(runs[0].outputs, runs[1].outputs)
    assert runs[0].stack_bytes == runs[1].stack_bytes > 0


@needs_arm
def test_a_model_over_the_flash_limit_fails_at_link_time(digits, tmp_path):
    _, export, model_dir = digits
    with pytest.raises(ExportError, match="flash overflow"):
        toolchain.run_qemu("cortex-m4", model_dir, random_inputs(export, 1), tmp_path, flash_size="16K")


def test_without_the_toolchain_one_line_says_what_is_needed(monkeypatch):
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    message = toolchain.arm_missing()
    assert message.count("\n") == 0
    assert "qemu-system-arm" in message and "gcc-arm-none-eabi" in message and "make mcu-toolchain" in message


def test_an_unknown_target_is_refused(digits, tmp_path):
    _, export, model_dir = digits
    with pytest.raises(ExportError, match="unknown target"):
        toolchain.run_qemu("cortex-m0", model_dir, random_inputs(export, 1), tmp_path)
