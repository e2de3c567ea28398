"""Targets and the roofline: floor maths on a fake target, published profiles, the measured host (cached,
native dtypes only, bounded in time)."""

from __future__ import annotations

import json
import time

import pytest

from hasten.errors import DataError
from hasten.measure import isa
from hasten.measure import targets as T
from hasten.measure.cost_report import CostReport, CostRow, TensorBytes


def _report(linear=8e9, other=2e9, weight_bytes=1_000_000, io_bytes=200_000) -> CostReport:
    rows = [CostRow("fc", "MatMul", "", int(linear), 0, "linear", "fp32"),
            CostRow("act", "Gelu", "", int(other), 0, "elementwise", "fp32")]
    tensors = [TensorBytes("w", weight_bytes, weight_bytes // 4, True, "weight", linear_weight=True),
               TensorBytes("x", io_bytes, io_bytes // 4, True, "input"),
               TensorBytes("h", 10**9, 10**9 // 4, True, "activation")]
    return CostReport(rows, {"x": (1, 4)}, tensors)


FAKE = T.Target("fake", {"fp32": 1e12, "bf16": 4e12, "int8": 8e12}, bandwidth=1e9, source="published")


def test_roofline_compute_bound_exact():
    floor = T.roofline(_report(), FAKE, "fp32")
    assert floor.compute_s == pytest.approx(10e9 / 1e12)
    assert floor.memory_s == pytest.approx(1.2e6 / 1e9)  # intermediate activations are not in the floor
    assert floor.seconds == floor.compute_s and floor.bound == "compute"
    assert floor.formula().startswith("floor = max(FLOPs/peak, bytes/bandwidth) = max(10 GFLOP / 1 TFLOP/s, "
                                      "1.2 MB / 1 GB/s) = max(10 ms, 1.2 ms) = 10 ms (compute-bound)")


def test_roofline_memory_bound_and_dtype_rescales_bytes():
    report = _report(linear=1e6, other=0, weight_bytes=400_000_000)
    floor = T.roofline(report, FAKE, "bf16")
    assert floor.bytes == (400_000_000 + 200_000) // 2
    assert floor.memory_s == pytest.approx(floor.bytes / 1e9)
    assert floor.compute_s == pytest.approx(1e6 / 4e12)
    assert floor.bound == "memory" and floor.seconds == floor.memory_s


def test_roofline_mixed_linear_int8_rest_fp32():
    floor = T.roofline_mixed(_report(), FAKE, "int8", "fp32")
    assert floor.compute_s == pytest.approx(8e9 / 8e12 + 2e9 / 1e12)
    assert floor.bytes == 1_000_000 // 4 + 200_000  # linear weights at 1 byte, io stays fp32
    assert floor.dtype == "int8+fp32"
    assert floor.peak == pytest.approx(10e9 / floor.compute_s)


def test_missing_dtype_and_unknown_target_raise():
    with pytest.raises(DataError, match="no peak for dtype 'fp16'"):
        T.roofline(_report(), FAKE, "fp16")
    with pytest.raises(DataError, match="nvidia-h100"):
        T.get_target("tpu-v9")


def test_published_profiles():
    assert {"host", "nvidia-h100", "nvidia-a100", "cortex-m7"} <= set(T.targets())
    h100 = T.get_target("nvidia-h100")
    assert h100.bandwidth == 3.35e12 and h100.source == "published"
    assert h100.peak("bf16") == pytest.approx(989.4e12) and h100.peak("int8") > h100.peak("bf16")
    a100 = T.get_target("nvidia-a100")
    assert a100.peak("bf16") == 312e12 and a100.peak("fp32") < h100.peak("fp32")
    m7 = T.get_target("cortex-m7")
    assert 0.5e9 < m7.peak("fp32") < 3e9 and "bf16" not in m7.dtypes
    assert m7.features == ("dsp",) and h100.features == () and not m7.int8_saturates
    assert T.Target.from_dict(json.loads(json.dumps(h100.to_dict()))) == h100
    assert T.Target.from_dict(json.loads(json.dumps(m7.to_dict()))) == m7
    old = {k: v for k, v in m7.to_dict().items() if k != "features"}  # written before features existed
    assert T.Target.from_dict(old).features == ()


def test_host_is_measured_once_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    t0 = time.perf_counter()
    host = T.host_target()
    first = time.perf_counter() - t0
    assert host.source == "measured" and host.name == "host"
    assert 1e9 < host.peak("fp32") < 1e13
    assert 1e8 < host.bandwidth < 1e13
    native = isa.native_dtypes(isa.cpu_features())
    assert set(host.dtypes) <= set(native) and host.dtypes == tuple(host.peak_flops)
    for dtype in ("bf16", "fp16", "int8"):
        if dtype in host.dtypes:
            assert 1e9 < host.peak(dtype) < 1e15
    assert host.features == tuple(sorted(isa.cpu_features()))
    assert host.details["int8_isa"] == host.int8_isa == isa.host_int8_isa()
    assert host.int8_saturates == isa.host_int8_saturates()
    # bounded by construction (every timing stops at the deadline): about 5 s on an idle 2-core host
    assert host.details["measure_seconds"] <= 15 and first < 30
    path = T.host_cache_path()
    assert path.parent == tmp_path / "hasten" and path.name.startswith("host-") and path.exists()
    t0 = time.perf_counter()
    again = T.host_target()
    assert time.perf_counter() - t0 < 0.5
    assert again == host
    path.write_text("{not json", encoding="utf-8")  # a damaged cache is measured afresh, not trusted
    monkeypatch.setattr(T, "measure_host", lambda: FAKE)
    assert T.host_target() == FAKE
    assert T.Target.from_dict(json.loads(path.read_text(encoding="utf-8"))) == FAKE
    other = T.Target("host", {"fp32": 5e10}, 2e10, source="measured")
    monkeypatch.setattr(T, "measure_host", lambda: other)
    assert T.host_target() == FAKE  # cached
    refreshed = T.host_target(refresh=True)  # a lower (loaded) measurement never replaces a better one
    assert refreshed.peak("fp32") == FAKE.peak("fp32") and refreshed.bandwidth == max(FAKE.bandwidth, 2e10)
    better = T.Target("host", {"fp32": 5e12}, 9e11, source="measured")
    monkeypatch.setattr(T, "measure_host", lambda: better)
    assert T.host_target(refresh=True).peak("fp32") == 5e12 and T.host_target().bandwidth == 9e11


ZEN3 = frozenset({"sse4_1", "avx", "avx2", "fma", "f16c"})  # AVX2 only: bf16 would be emulated


class _Fake:
    """A product `make(n)` that counts its calls and takes `seconds` each (a sleep: not the CPU's speed)."""

    def __init__(self, seconds=0.0):
        self.seconds, self.calls = seconds, 0

    def __call__(self, n):
        def run():
            self.calls += 1
            if self.seconds:
                time.sleep(self.seconds)
        return run


def test_only_native_dtypes_are_measured_and_listed(monkeypatch):
    made = []
    monkeypatch.setattr(T, "_torch_product", lambda dtype, threads: made.append(dtype) or _Fake())
    monkeypatch.setattr(T, "_openvino_product", lambda dtype, threads: made.append(dtype) or _Fake())
    host = T.measure_host(budget_s=3, features=ZEN3)
    assert made == []  # bf16 is not even set up for timing, let alone timed
    assert host.dtypes == ("fp32", "int8") and set(host.peak_flops) == {"fp32", "int8"}
    assert host.details["methods"]["bf16"].startswith("not measured: bf16 is not native")
    assert host.features == tuple(sorted(ZEN3)) and host.int8_saturates
    assert host.details["int8_isa"] == "avx2-saturating" and host.details["native_dtypes"] == ["fp32", "int8"]
    # the same rule lists bf16 where it is native (a stand-in product: this checks the rule, not the speed)
    host = T.measure_host(budget_s=3, features=ZEN3 | {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"})
    assert made[:1] == ["bf16"] and host.dtypes == ("fp32", "bf16", "int8") and not host.int8_saturates
    assert host.details["int8_isa"] == "vnni"


def test_measurement_stops_at_its_budget(monkeypatch):
    step = T.MIN_PRODUCT_S + 0.01  # each product takes this long, so it is not grown
    slow = _Fake(step)  # 1000 runs are asked for, 2 rounds: two minutes if nothing stopped it
    monkeypatch.setattr(T, "_host_measurers", lambda native, threads: {
        "fp32": [(T._Gemm(slow, 1024, "slow"), 1000)],
        "bandwidth": [(T._Gemm(_Fake(), 256, "copy"), 3)]})
    host = T.measure_host(budget_s=0.6)
    assert slow.calls <= 2 + 0.6 / step + 1  # warm-up + sizing, then runs until the deadline, then one late
    assert host.details["measure_seconds"] < 0.6 + 1.0 and host.peak("fp32") > 0
    assert "slow 256^3" in host.details["methods"]["fp32"]


def test_a_failing_way_falls_back_to_the_next(monkeypatch):
    def broken(n):
        raise RuntimeError("no such kernel here")

    monkeypatch.setattr(T, "_host_measurers", lambda native, threads: {
        "fp32": [(T._Gemm(_Fake(), 512, "fast"), 2)],
        "bf16": [(T._Gemm(broken, 512, "broken"), 2), (T._Gemm(_Fake(), 512, "fallback"), 2)],
        "fp16": [(T._Gemm(broken, 512, "broken"), 2)],
        "bandwidth": [(T._Gemm(_Fake(), 256, "copy"), 2)]})
    host = T.measure_host(budget_s=3, features=ZEN3)
    assert host.dtypes == ("fp32", "bf16") and "fallback 512^3" in host.details["methods"]["bf16"]
    assert host.details["methods"]["fp16"] == "not measured (RuntimeError: no such kernel here)"


def test_cache_key_follows_features_and_old_profiles_are_measured_again(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(T, "cpu_features", lambda: ZEN3)
    zen3 = T.host_cache_path()
    monkeypatch.setattr(T, "cpu_features", lambda: ZEN3 | {"avx512_vnni"})
    assert T.host_cache_path() != zen3
    old = {k: v for k, v in FAKE.to_dict().items() if k != "features"}  # written before features existed
    T.host_cache_path().write_text(json.dumps(old), encoding="utf-8")
    fresh = T.Target("host", {"fp32": 5e10, "int8": 9e10}, 2e10, source="measured", features=("avx2",))
    monkeypatch.setattr(T, "measure_host", lambda: fresh)
    assert T.host_target() == fresh  # the old profile (it lists bf16) is not trusted
    assert T.Target.from_dict(json.loads(T.host_cache_path().read_text(encoding="utf-8"))) == fresh


def test_fp32_and_bandwidth_are_measured_even_past_the_budget(monkeypatch):
    slow, copy, other = _Fake(T.MIN_PRODUCT_S + 0.01), _Fake(), _Fake()
    monkeypatch.setattr(T, "_host_measurers", lambda native, threads: {
        "fp32": [(T._Gemm(slow, 1024, "slow"), 1000)], "int8": [(T._Gemm(other, 256, "int8"), 5)],
        "bandwidth": [(T._Gemm(copy, 256, "copy"), 1000)]})
    host = T.measure_host(budget_s=0.05)  # fp32's warm-up alone takes longer
    assert host.peak("fp32") > 0 and host.bandwidth > 0 and copy.calls == 3  # warm-up, sizing, one run
    assert other.calls == 0 and host.dtypes == ("fp32",)
    assert host.details["methods"]["int8"] == "not measured: the 0.05 s budget ran out"
