"""ISA features from cpuinfo texts of real CPUs -> native dtypes, saturating int8, the int8 path's name.

The texts are trimmed copies of /proc/cpuinfo lines of each machine (the flags hasten reads are kept as the
kernel spells them), so these hold on every host whatever its own CPU.
"""

from __future__ import annotations

import pytest

from hasten.measure import isa
from hasten.measure import targets as T

ZEN3 = """processor	: 0
vendor_id	: AuthenticAMD
model name	: AMD EPYC 7763 64-Core Processor
flags		: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht \
syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid pni pclmulqdq \
ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy \
cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext invpcid_single ssbd ibrs ibpb stibp vmmcall fsgsbase \
bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves clzero \
xsaveerptr rdpru wbnoinvd arat npt nrip_save umip pku ospke vaes vpclmulqdq rdpid fsrm
bogomips	: 4890.85

processor	: 1
flags		: fpu avx512f avx512_vnni
"""

ZEN4 = """model name	: AMD EPYC 9R14
flags		: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht \
syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl pni pclmulqdq ssse3 fma cx16 pcid sse4_1 \
sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm sse4a bmi1 avx2 smep bmi2 erms invpcid \
avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec \
xgetbv1 xsaves avx512_bf16 clzero xsaveerptr arat avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni \
avx512_bitalg avx512_vpopcntdq rdpid fsrm
"""

SAPPHIRE_RAPIDS = """model name	: Intel(R) Xeon(R) Platinum 8488C
flags		: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss \
ht syscall nx pdpe1gb rdtscp lm constant_tsc pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes \
xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch fsgsbase bmi1 hle avx2 smep bmi2 erms invpcid rtm \
avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec \
xgetbv1 xsaves avx_vnni avx512_bf16 wbnoinvd ida arat avx512vbmi umip pku ospke waitpkg avx512_vbmi2 gfni vaes \
vpclmulqdq avx512_vnni avx512_bitalg tme avx512_vpopcntdq rdpid cldemote movdiri movdir64b md_clear serialize \
tsxldtrk amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d arch_capabilities
"""

ALDER_LAKE = """flags		: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx_vnni
"""

NEOVERSE_N1 = """processor	: 0
BogoMIPS	: 243.75
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer	: 0x41
CPU part	: 0xd0c
"""

NEOVERSE_V1 = """Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc \
dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm \
bf16 dgh rng
"""

CASES = {
    # text: (features expected to be present, absent, native dtypes, saturates, int8 path)
    "zen3": (ZEN3, {"avx2", "fma", "f16c", "sse4_1"}, {"avx512f", "avx512_vnni", "avx512_bf16"},
             ("fp32", "int8"), True, "avx2-saturating"),
    "zen4": (ZEN4, {"avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}, {"amx_int8", "avx512_fp16"},
             ("fp32", "bf16", "int8"), False, "vnni"),
    "sapphire-rapids": (SAPPHIRE_RAPIDS, {"amx_tile", "amx_bf16", "amx_int8", "avx512_fp16", "avx_vnni"}, set(),
                        ("fp32", "bf16", "fp16", "int8"), False, "amx"),
    "alder-lake": (ALDER_LAKE, {"avx2", "avx_vnni"}, {"avx512f", "avx512bw"}, ("fp32", "int8"), False, "vnni"),
    "neoverse-n1": (NEOVERSE_N1, {"asimd", "asimdhp", "asimddp"}, {"i8mm", "bf16", "sve"},
                    ("fp32", "fp16", "int8"), False, "neon-dotprod"),
    "neoverse-v1": (NEOVERSE_V1, {"asimd", "asimddp", "i8mm", "bf16", "sve"}, set(),
                    ("fp32", "bf16", "fp16", "int8"), False, "neon-i8mm"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_cpuinfo_to_features_dtypes_and_int8_path(name):
    text, present, absent, native, saturates, path = CASES[name]
    features = isa.parse_cpuinfo(text)
    assert present <= features and not absent & features, sorted(features)
    assert features <= set(isa.X86_FEATURES) | set(isa.ARM_FEATURES)  # only the words hasten knows
    # the architecture comes from the features themselves, so the answer is the same on every host
    assert isa.native_dtypes(features) == native
    assert isa.int8_dot_saturates(features) is saturates
    assert isa.int8_isa(features) == path
    machine = "aarch64" if "asimd" in features else "x86_64"
    assert isa.native_dtypes(features, machine) == native and isa.int8_isa(features, machine) == path


def test_first_flags_line_only_and_unreadable_text():
    assert "avx512_vnni" not in isa.parse_cpuinfo(ZEN3)  # processor 1's line is not read
    assert isa.parse_cpuinfo("") == frozenset() and isa.parse_cpuinfo("model name : x\n") == frozenset()
    # a host whose features cannot be read still has fp32 and int8, nothing half-precision
    assert isa.native_dtypes(frozenset(), "x86_64") == ("fp32", "int8")
    assert isa.int8_dot_saturates(frozenset(), "x86_64") and not isa.int8_dot_saturates(frozenset(), "aarch64")


def test_f16c_and_avx512f_alone_are_not_native_half_precision():
    # f16c converts fp16 <-> fp32 only; AVX-512 without BF16/FP16 computes in fp32 (emulated bf16)
    features = frozenset({"avx2", "fma", "f16c", "avx512f", "avx512bw"})
    assert isa.native_dtypes(features) == ("fp32", "int8")
    assert isa.int8_isa(features) == "avx512-saturating" and isa.int8_dot_saturates(features)


def test_int8_features_name_the_path():
    assert isa.int8_features(isa.parse_cpuinfo(ZEN4)) == ("avx512_vnni", "avx512bw", "avx2")
    assert isa.int8_features(isa.parse_cpuinfo(ZEN3)) == ("avx2",)
    assert isa.int8_features(isa.parse_cpuinfo(NEOVERSE_V1)) == ("i8mm", "asimddp")


def test_host_features_are_read_and_consistent():
    features = isa.cpu_features()
    assert isa.host_int8_isa() == isa.int8_isa(features)
    assert isa.host_int8_saturates() == isa.int8_dot_saturates(features)
    assert {"fp32", "int8"} <= set(isa.native_dtypes(features))


@pytest.mark.parametrize("name", ["zen3", "zen4", "neoverse-n1"])
def test_target_int8_saturates_follows_its_features(name):
    text, *_, saturates, path = CASES[name]
    features = tuple(sorted(isa.parse_cpuinfo(text)))
    machine = "aarch64" if "asimd" in features else "x86_64"
    host = T.Target("host", {"fp32": 1e11}, 1e10, source="measured", details={"machine": machine},
                    features=features)
    assert host.int8_saturates is saturates and host.int8_isa == path
    assert T.Target.from_dict(host.to_dict()) == host


def test_published_targets_never_saturate():
    for target in T.PUBLISHED.values():
        assert not target.int8_saturates and target.int8_isa == ""
    assert T.PUBLISHED["cortex-m7"].features == ("dsp",) and T.PUBLISHED["nvidia-h100"].features == ()
