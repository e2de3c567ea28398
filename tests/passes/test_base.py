"""Pass infrastructure: config handling, lineage, registry, Sequence and FixedPoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import onnx_ir as ir
import pytest
from onnx import helper

from hasten.errors import HastenError
from hasten.passes import _REGISTRY as REGISTRY
from hasten.passes import (
    FixedPoint,
    Pass,
    PassResult,
    Sequence,
    get_pass,
    register,
    registered,
)

from .helpers import assert_same_outputs, make_model, op_types, random_feeds, vinfo


def _identity_chain(n: int):
    """x -> Identity x n -> Relu -> y"""
    nodes, prev = [], "x"
    for i in range(n):
        nodes.append(helper.make_node("Identity", [prev], [f"t{i}"]))
        prev = f"t{i}"
    nodes.append(helper.make_node("Relu", [prev], ["y"]))
    return make_model(nodes, [vinfo("x", [2, 3])], [vinfo("y", [2, 3])])


class RemoveOneIdentity(Pass):
    """Test pass: removes the first Identity it finds (so a fixed point needs one round per Identity)."""

    name = "test_remove_one_identity"

    @dataclass(frozen=True)
    class Config:
        tag: str = "a"

    def run(self, model):
        work = self.working_copy(model)
        for node in work.graph:
            if node.op_type == "Identity":
                ir.convenience.replace_all_uses_with(node.outputs[0], node.inputs[0])
                work.graph.remove(node, safe=True)
                return work, True, {"removed": 1}
        return work, False, {}


class AlwaysModifies(Pass):
    name = "test_always_modifies"

    def run(self, model):
        return self.working_copy(model), True, {"calls": 1}


def test_registry_lists_builtin_passes():
    names = registered()
    for name in ("cleanup", "constant_folding", "fold_batchnorm", "matmul_add_to_gemm",
                 "transformer_fusion", "infer_shapes"):
        assert name in names
    assert names == sorted(names)


def test_double_registration_raises():
    register(RemoveOneIdentity)
    try:
        with pytest.raises(HastenError, match="already registered"):
            register(RemoveOneIdentity)
        assert isinstance(get_pass("test_remove_one_identity", tag="b"), RemoveOneIdentity)
    finally:
        REGISTRY.pop("test_remove_one_identity")
    with pytest.raises(HastenError, match="already registered"):
        register(type("Other", (RemoveOneIdentity,), {"name": "cleanup"}))
    with pytest.raises(TypeError):
        register(object)


def test_get_pass_config_and_errors():
    p = get_pass("constant_folding", input_size_limit=16)
    assert p.config.input_size_limit == 16
    assert p.step() == "constant_folding(input_size_limit=16, output_size_limit=262144)"
    with pytest.raises(HastenError, match="unknown option"):
        get_pass("constant_folding", no_such_option=1)
    with pytest.raises(HastenError, match="unknown pass 'nope'"):
        get_pass("nope")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.config.input_size_limit = 3


def test_domains_and_search_space():
    fusion = get_pass("transformer_fusion")
    assert fusion.emits_domains == ("com.microsoft",)
    assert fusion.runs_on(("", "com.microsoft")) and not fusion.runs_on(("", "ai.onnx"))
    assert fusion.search_space() == {"gelu_approximation": [False, True]}
    for name in ("cleanup", "constant_folding", "fold_batchnorm", "matmul_add_to_gemm", "infer_shapes"):
        assert get_pass(name).emits_domains == () and get_pass(name).runs_on(())
        assert get_pass(name).search_space() == {}
        assert get_pass(name).in_place is False
    seq = Sequence([get_pass("cleanup"), fusion])
    assert seq.emits_domains == ("com.microsoft",) and not seq.runs_on(("",))


def test_pass_does_not_mutate_input_and_records_lineage():
    model = _identity_chain(2)
    fp = model.fingerprint()
    result = RemoveOneIdentity()(model)
    assert isinstance(result, PassResult)
    assert result.modified and result.stats == {"removed": 1}
    assert result.model is not model
    assert model.fingerprint() == fp and op_types(model) == ["Identity", "Identity", "Relu"]
    assert op_types(result.model) == ["Identity", "Relu"]
    assert result.model.lineage == (*model.lineage, "test_remove_one_identity(tag='a')")
    assert_same_outputs(model, result.model, random_feeds(model, seed=1))


def test_unmodified_returns_the_same_model():
    model = _identity_chain(0)
    result = RemoveOneIdentity()(model)
    assert result.modified is False and result.model is model and result.stats == {}


def test_sequence_chains_and_merges_stats():
    model = _identity_chain(3)
    result = Sequence([RemoveOneIdentity(), RemoveOneIdentity()])(model)
    assert result.modified
    assert result.stats == {"test_remove_one_identity.removed": 2}
    assert op_types(result.model) == ["Identity", "Relu"]
    assert len(result.model.lineage) == len(model.lineage) + 2
    with pytest.raises(HastenError):
        Sequence([])


def test_fixed_point_runs_until_nothing_changes():
    model = _identity_chain(3)
    result = FixedPoint([RemoveOneIdentity()], max_iterations=10)(model)
    assert result.modified
    assert op_types(result.model) == ["Relu"]
    assert result.stats == {"test_remove_one_identity.removed": 3, "iterations": 4}
    assert len(result.model.lineage) == len(model.lineage) + 3
    feeds = random_feeds(model, seed=2)
    assert_same_outputs(model, result.model, feeds)
    # nothing to do: one round, unmodified, same object
    again = FixedPoint([RemoveOneIdentity()])(result.model)
    assert again.modified is False and again.model is result.model and again.stats["iterations"] == 1


def test_fixed_point_stops_at_max_iterations():
    model = _identity_chain(0)
    result = FixedPoint([AlwaysModifies()], max_iterations=3)(model)
    assert result.modified and result.stats == {"test_always_modifies.calls": 3, "iterations": 3}
    with pytest.raises(HastenError):
        FixedPoint([AlwaysModifies()], max_iterations=0)
    assert len(result.model.lineage) == len(model.lineage) + 3
