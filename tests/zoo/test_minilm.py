import numpy as np
import onnxruntime as ort
import pytest
import torch

from hasten import zoo
from hasten.zoo import minilm, text


@pytest.fixture(scope="module")
def entry():
    return zoo.get("minilm")


@pytest.fixture(scope="module")
def model(entry):
    return entry.model()  # exported once, then read from the disk cache


@pytest.fixture(scope="module")
def session(model):
    return ort.InferenceSession(model.proto().SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def module(entry):
    net, example = entry.torch_model()
    assert set(example) == set(minilm.INPUT_NAMES)
    return net


def _feeds(texts, max_length):
    return minilm.tokenize(texts, max_length)


def test_specs(model):
    assert [(s.name, s.dtype, s.shape) for s in model.inputs] == [
        (n, np.dtype(np.int64), ("batch", "sequence")) for n in minilm.INPUT_NAMES]
    (out,) = model.outputs
    assert (out.name, out.shape) == ("sentence_embedding", ("batch", 384))
    assert 22_000_000 < model.parameter_count() < 23_000_000
    assert minilm.cache_path().exists()


def test_tokenize_pads_and_truncates():
    feeds = minilm.tokenize(["A short sentence.", "word " * 300], max_length=128)
    for name in minilm.INPUT_NAMES:
        assert feeds[name].dtype == np.int64 and feeds[name].shape == (2, 128)
    ids, mask = feeds["input_ids"], feeds["attention_mask"]
    assert ids[0, 0] == 101 and mask[0].sum() == 6 and ids[0, 5] == 102 and ids[0, 6:].max() == 0
    assert mask[1].sum() == 128 and ids[1, -1] == 102
    assert feeds["token_type_ids"].max() == 0


@pytest.mark.parametrize("batch,max_length", [(4, 128), (3, 24)])
def test_export_matches_torch(session, module, batch, max_length):
    texts = text.sentences("evaluation")[:batch]
    feeds = _feeds(texts, max_length)
    with torch.no_grad():
        ref = module(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
    got = session.run(["sentence_embedding"], feeds)[0]
    assert got.shape == (batch, 384)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    sims = got @ got.T
    assert sims[~np.eye(batch, dtype=bool)].max() < 0.95  # different sentences, different embeddings


def test_matches_sentence_transformers(session):
    from sentence_transformers import SentenceTransformer

    texts = text.sentences("calibration")[:4]
    st = SentenceTransformer(str(minilm.model_dir()), device="cpu", local_files_only=True)
    ref = st.encode(texts, convert_to_numpy=True, normalize_embeddings=False)
    got = session.run(["sentence_embedding"], _feeds(texts, 128))[0]
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_ort_bert_fusion_is_complete(model, session, tmp_path):
    from onnxruntime.transformers.optimizer import optimize_model

    path = model.save(tmp_path / "minilm.onnx")
    opt = optimize_model(str(path), model_type="bert", num_heads=12, hidden_size=384, opt_level=0)
    stats = opt.get_fused_operator_statistics()
    assert stats["Attention"] == 6
    assert stats["SkipLayerNormalization"] == 12
    assert stats["EmbedLayerNormalization"] == 1
    assert stats["BiasGelu"] == 6
    ops = {n.op_type for n in opt.model.graph.node}
    assert not ops & {"Softmax", "LayerNormalization", "Erf"}  # nothing left unfused
    fused = ort.InferenceSession(opt.model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = _feeds(text.sentences("evaluation")[:3], 128)
    np.testing.assert_allclose(fused.run(["sentence_embedding"], feeds)[0],
                               session.run(["sentence_embedding"], feeds)[0], atol=1e-4, rtol=0)


def test_samples(entry, model):
    calib, held = entry.calibration(), entry.evaluation()
    assert (len(calib), len(held)) == (512, 300)
    calib.validate(model)
    held.validate(model)
    assert calib.arrays["input_ids"].shape == (512, 128)
    assert not set(calib.meta["texts"]) & set(held.meta["texts"])
