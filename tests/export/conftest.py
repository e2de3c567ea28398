"""Makes the small graphs of this folder (graphs.py) importable; the int8 zoo:digits model the CLI and QEMU
tests share."""

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hasten", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def digits_int8(tmp_path_factory):
    """zoo:digits as `hasten quantize --scheme int8-static` writes it."""
    path = tmp_path_factory.mktemp("digits") / "digits-int8.onnx"
    # 7-bit weights: ONNX Runtime itself is then exact on every x86 host (without VNNI its u8s8 kernels
    # saturate int16 pair sums of 8-bit weights; the C never saturates)
    proc = run_cli("quantize", "zoo:digits", "--scheme", "int8-static", "-o", str(path), "--no-speed-check",
                   "--eval-items", "16", "--set", "overflow_fix=all")
    assert proc.returncode == 0, proc.stderr
    return path
