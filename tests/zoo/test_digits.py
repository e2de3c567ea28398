import numpy as np
import onnxruntime as ort
import pytest
import torch

from hasten import zoo
from hasten.zoo import digits


@pytest.fixture(scope="module")
def entry():
    return zoo.get("digits")


@pytest.fixture(scope="module")
def session(entry):
    model = entry.model()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.proto().SerializeToString(), opts, providers=["CPUExecutionProvider"])


def test_model_specs(entry):
    model = entry.model()
    (inp,) = model.inputs
    (out,) = model.outputs
    assert (inp.name, inp.dtype, inp.shape) == ("image", np.dtype(np.float32), ("batch", 1, 8, 8))
    assert (out.name, out.shape) == ("logits", ("batch", 10))
    assert model.op_histogram().get("Conv") == 3


def test_onnx_top1_on_held_out(entry, session):
    held = entry.evaluation()
    assert len(held) == digits.EVAL_SIZE
    logits = session.run(["logits"], {"image": held.arrays["image"]})[0]
    accuracy = float((logits.argmax(1) == held.labels).mean())
    assert accuracy >= 0.97, accuracy


def test_onnx_matches_torch(entry, session):
    module, example = entry.torch_model()
    images = entry.calibration().arrays["image"][:64]
    with torch.no_grad():
        ref = module(torch.from_numpy(images)).numpy()
    got = session.run(["logits"], {"image": images})[0]
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    assert set(example) == {"image"} and example["image"].shape[1:] == (1, 8, 8)
    convs = [m.out_channels for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [32, 64, 64]


def test_splits_disjoint_and_labelled(entry):
    idx = digits.split_indices()
    assert not set(idx["calibration"]) & set(idx["evaluation"])
    assert not set(idx["train"]) & set(idx["evaluation"])
    assert set(idx["calibration"]) <= set(idx["train"])
    calib, held = entry.calibration(), entry.evaluation()
    assert len(calib) == 256 and calib.labels is not None and held.labels is not None
    for s in (calib, held):
        x = s.arrays["image"]
        assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
        assert set(np.unique(s.labels)) == set(range(10))


def test_training_is_deterministic(entry):
    cached, _ = entry.torch_model()
    fresh = digits.train_network()
    for (name, a), b in zip(cached.state_dict().items(), fresh.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
