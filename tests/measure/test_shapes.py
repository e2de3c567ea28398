"""infer_shapes: fixed input dims, concrete intermediate shapes, overrides, contrib-op fallback, errors."""

from __future__ import annotations

import numpy as np
import pytest
from modelkit import make_mlp
from onnx import TensorProto, helper, numpy_helper

import hasten
from hasten.errors import DataError
from hasten.input_shapes import parse_dims, resolve_input_shapes, split_shapes
from hasten.measure.shapes import infer_shapes


def _shapes(model: hasten.Model) -> dict[str, tuple]:
    out = {}
    for node in model.graph:
        for v in node.outputs:
            out[v.name] = None if v.shape is None else tuple(v.shape)
    return out


def test_defaults_fix_batch_to_one_and_every_value_is_concrete(mlp):
    shaped = infer_shapes(mlp)
    assert shaped.inputs[0].shape == (1, 16)
    assert _shapes(shaped) == {"h0": (1, 32), "h1": (1, 32), "h2": (1, 32), "h3": (1, 8), "y": (1, 8)}
    assert shaped.outputs[0].shape == (1, 8)
    assert shaped.lineage[-1] == "infer_shapes(x=1x16)"
    assert mlp.inputs[0].shape == ("N", 16)  # the original is untouched


def test_dim_override_and_full_input_shape(mlp):
    assert _shapes(infer_shapes(mlp, {"N": 4}))["y"] == (4, 8)
    assert _shapes(infer_shapes(mlp, input_shapes={"x": (3, 16)}))["h2"] == (3, 32)


def test_other_dynamic_dims_default_to_128():
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", "t", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", "t", 4])])
    model = hasten.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert resolve_input_shapes(model) == {"x": (1, 128, 128, 4)}
    assert _shapes(infer_shapes(model, {"s": 7}))["y"] == (1, 7, 128, 4)


def test_bad_names_and_shapes_raise_data_error_naming_the_inputs(mlp):
    with pytest.raises(DataError, match=r"seq.*x\[N x 16\].*dynamic dims: N"):
        infer_shapes(mlp, {"seq": 4})
    with pytest.raises(DataError, match="rank 2"):
        infer_shapes(mlp, input_shapes={"x": (1, 2, 16)})
    with pytest.raises(DataError, match="fixed at 16"):
        infer_shapes(mlp, input_shapes={"x": (2, 15)})
    with pytest.raises(DataError, match="positive"):
        infer_shapes(mlp, {"N": 0})
    with pytest.raises(DataError, match="not an input"):
        split_shapes(mlp, {"nope": 3})


def test_split_shapes_and_parse_dims(mlp):
    assert split_shapes(mlp, {"N": 4}) == ({"N": 4}, {})
    assert split_shapes(mlp, {"x": "2x16"}) == ({}, {"x": (2, 16)})
    assert split_shapes(mlp, {"x": (5, 16)}) == ({}, {"x": (5, 16)})
    assert parse_dims("1x128") == (1, 128) and parse_dims("3,4") == (3, 4) and parse_dims(7) == (7,)
    with pytest.raises(DataError):
        parse_dims("1xfoo")
    with pytest.raises(DataError):
        split_shapes(mlp, {"N": "2x3"})


def test_contrib_ops_are_shaped_by_the_symbolic_fallback():
    """onnx knows no com.microsoft.SkipLayerNormalization; ONNX Runtime's symbolic inference does."""
    h = 8
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(h).astype(np.float32), "gamma"),
             numpy_helper.from_array(rng.standard_normal(h).astype(np.float32), "beta"),
             numpy_helper.from_array(rng.standard_normal((h, 3)).astype(np.float32), "w")]
    nodes = [helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta"], ["n"],
                              domain="com.microsoft", epsilon=1e-5),
             helper.make_node("MatMul", ["n", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", h]),
                                           helper.make_tensor_value_info("skip", TensorProto.FLOAT, ["B", "S", h])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    shaped = infer_shapes(hasten.load(proto), {"S": 5})
    shapes = _shapes(shaped)
    assert shapes["n"] == (1, 5, h)
    assert shapes["y"] == (1, 5, 3)
    assert shaped.outputs[0].shape == (1, 5, 3)


def test_large_weights_are_kept_intact():
    """Inference hides big initializers' bytes from onnx; the derived model must still hold them."""
    proto = make_mlp(d_in=256, d_hidden=512)  # w1 is 512 KiB, above the stripping threshold
    model = hasten.load(proto)
    shaped = infer_shapes(model)
    w1 = shaped.graph.initializers["w1"].const_value.numpy()
    np.testing.assert_array_equal(w1, numpy_helper.to_array(proto.graph.initializer[0]))


def test_dynamic_batch_and_spatial_dims_take_the_samples_sizes():
    from modelkit import make_thirdparty, thirdparty_images

    from hasten.data import Samples
    from hasten.input_shapes import resolve_input_dims, sample_shapes

    model = hasten.load(make_thirdparty())
    shapes = sample_shapes(Samples({"x": thirdparty_images(4, 0)}))
    assert shapes == {"x": (1, 3, 48, 320)} == sample_shapes({"x": thirdparty_images(2, 1)})
    s = _shapes(infer_shapes(model, input_shapes=shapes))
    assert s["c"] == (1, 8, 48, 320) and s["t"] == (1, 48 * 320, 8) and s["m"] == (1, 48 * 320, 16)
    assert s["y"] == (1, 10)
    # nothing sized: the dims stay symbolic rather than take a guess
    assert resolve_input_dims(model) == {"x": ("batch", 3, "height", "width")}
    assert resolve_input_dims(model, {"height": 48}) == {"x": ("batch", 3, 48, "width")}
    kept = infer_shapes(model, keep_dynamic=True)
    assert kept.inputs[0].shape == ("batch", 3, "height", "width")
    c = _shapes(kept)["c"]
    assert str(c[0]) == "batch" and c[1] == 8 and not isinstance(c[2], int) and not isinstance(c[3], int)
