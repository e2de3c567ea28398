"""Pieces the bench scripts share: the NNCF int8 reference, hasten's most faithful OpenVINO int8 recipe and
embedding fidelity."""

from __future__ import annotations

import numpy as np

from hasten.backends.base import model_on_disk
from hasten.measure.accuracy import CosineFidelity, RetrievalAgreement

#: hasten's static int8 for transformers on OpenVINO: SmoothQuant 0.8 on every MatMul input, GPTQ-rounded
#: weights, int8 self-attention (Q, K, V and probabilities); bench/quantize_minilm.py measures its parts
HASTEN_OV_INT8 = dict(smoothquant=0.8, smoothquant_scope="all", weight_rounding="gptq", attention="all")


def nncf_ov_int8(model, calib, transformer: bool = False, subset: int | None = None):
    """NNCF's post-training int8 of `model` as an openvino.Model (OpenVINO's own reader, default settings,
    `ModelType.TRANSFORMER` when `transformer`), calibrated on the first `subset` items of `calib`."""
    import nncf
    import openvino as ov

    nncf.set_log_level(40)
    with model_on_disk(model) as path:
        ov_model = ov.Core().read_model(str(path))
    kwargs = {"subset_size": min(subset or len(calib), len(calib))}
    if transformer:
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    return nncf.quantize(ov_model, nncf.Dataset(list(calib.feeds(1))), **kwargs)


def embedding_fidelity(out: np.ndarray, ref: np.ndarray) -> dict:
    """Cosine (mean, worst) and retrieval top-10 agreement (50 queries) of embeddings against a reference."""
    cos = CosineFidelity().score(out, ref)
    top = RetrievalAgreement(k=10, queries=50).score(out, ref)
    return {"cos_mean": cos.mean, "cos_worst": cos.worst, "top10": top.mean}
