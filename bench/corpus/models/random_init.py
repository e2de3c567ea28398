"""Architectures built from `transformers` configs at random init (seed 0), exported by this script with
both torch exporters at opsets 11 to 18, with dynamic batch and dynamic spatial / sequence dims.

| entry        | architecture (config)                    | exporter     | opset | dynamic dims           | data      |
|--------------|------------------------------------------|--------------|-------|------------------------|-----------|
| mobilenet-v2 | MobileNetV2ForImageClassification (1.0)  | dynamo       | 18    | batch, height, width   | 1x3x192x256 |
| resnet-50    | ResNetForImageClassification (ResNet-50) | TorchScript  | 11    | batch, height, width   | 1x3x224x224 |
| vit-small    | ViTForImageClassification (ViT-S/16)     | TorchScript  | 14    | batch                  | 1x3x224x224 |
| distilbert   | DistilBertModel (distilbert-base)        | dynamo       | 18    | batch, sequence        | 1x128 ids + mask |
| wav2vec2     | Wav2Vec2Model (base, 6 layers)           | TorchScript  | 13    | batch, samples         | 1x16000 (1 s) |
| tiny-bert    | BertModel (2 layers, hidden 64: the CI one) | TorchScript | 12   | batch, sequence        | 1x32 ids + mask |

Transformer weights are drawn with std 0.05 (tiny-bert 0.2), not the configs' 0.02, so that every layer
changes the output as trained layers do. The data is random in each input's valid range (rendered scenes in [0, 1] then standardised, token ids inside the
vocabulary, a waveform of tones and noise), calibration and evaluation drawn from different seeds. The models
are untrained, so there is no task: the metric is fidelity, the centred cosine of the first output against
the fp32 model's (bench.corpus.metrics.centred_cosine). The CNNs' BatchNorm statistics are recalibrated on
fresh inputs before export.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.corpus.models import save_npz


@dataclass(frozen=True)
class Arch:
    name: str
    build_module: str  # function name in this module: () -> torch.nn.Module returning one tensor
    exporter: str  # "torchscript" | "dynamo"
    opset: int
    inputs: dict  # input name -> (shape of one item with batch 1, dtype, dynamic axes {axis: name})
    output: str
    transformer: bool
    n_calib: int = 64
    n_eval: int = 100


def _wrap(model, attr: str, n_inputs: int = 1):
    """A module returning only `attr` of the model's output (one tensor: what hasten's metric reads), with
    positional inputs (torch.export matches dynamic_shapes to a fixed signature)."""
    import torch

    class One(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return getattr(self.inner(x), attr)

    class Two(One):
        def forward(self, x, mask):
            return getattr(self.inner(x, mask), attr)

    return (One if n_inputs == 1 else Two)().eval()


#: weight init std of the transformers (their default 0.02 leaves the residual stream almost untouched by the
#: layers, so any quantisation looks perfect; trained weights are larger)
INIT = 0.05


def mobilenet_v2():
    import torch
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    model = MobileNetV2ForImageClassification(MobileNetV2Config(num_labels=1000, tf_padding=False))
    for m in model.modules():  # variance-keeping init: the config std 0.02 makes the logits vanish (~1e-21)
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in")  # fan_in: right for depthwise too
        elif isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, 0, 0.01)
    return _wrap(model, "logits")


def resnet_50():
    from transformers import ResNetConfig, ResNetForImageClassification

    return _wrap(ResNetForImageClassification(ResNetConfig(num_labels=1000)), "logits")


def vit_small():
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                       image_size=224, patch_size=16, num_labels=1000, attn_implementation="eager",
                       initializer_range=INIT)
    return _wrap(ViTForImageClassification(config), "logits")


def distilbert():
    from transformers import DistilBertConfig, DistilBertModel

    return _wrap(DistilBertModel(DistilBertConfig(attn_implementation="eager", initializer_range=INIT)), "last_hidden_state", 2)


def wav2vec2():
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(num_hidden_layers=6, attn_implementation="eager", do_stable_layer_norm=False,
                            initializer_range=INIT)
    return _wrap(Wav2Vec2Model(config), "last_hidden_state")


def tiny_bert():
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=128, attn_implementation="eager",
                        initializer_range=0.2)  # SQNR of int8 ~28 dB: every layer matters
    return _wrap(BertModel(config), "last_hidden_state", 2)


IMAGE = {0: "batch", 2: "height", 3: "width"}
TEXT = {0: "batch", 1: "sequence"}
ARCHS = (
    Arch("mobilenet-v2", "mobilenet_v2", "dynamo", 18, {"pixel_values": ((1, 3, 192, 256), "float32", IMAGE)},
         "logits", transformer=False),
    Arch("resnet-50", "resnet_50", "torchscript", 11, {"pixel_values": ((1, 3, 224, 224), "float32", IMAGE)},
         "logits", transformer=False),
    Arch("vit-small", "vit_small", "torchscript", 14,
         {"pixel_values": ((1, 3, 224, 224), "float32", {0: "batch"})}, "logits", transformer=True),
    Arch("distilbert", "distilbert", "dynamo", 18,
         {"input_ids": ((1, 128), "int64", TEXT), "attention_mask": ((1, 128), "int64", TEXT)},
         "last_hidden_state", transformer=True),
    Arch("wav2vec2", "wav2vec2", "torchscript", 13,
         {"input_values": ((1, 16000), "float32", {0: "batch", 1: "samples"})}, "last_hidden_state",
         transformer=True, n_calib=32, n_eval=48),
    Arch("tiny-bert", "tiny_bert", "torchscript", 12,
         {"input_ids": ((1, 32), "int64", TEXT), "attention_mask": ((1, 32), "int64", TEXT)},
         "last_hidden_state", transformer=True),
)
VOCAB = {"distilbert": 30522, "tiny-bert": 1000}


def _scene(rng, height: int, width: int) -> np.ndarray:
    """A 3xHxW standardised image of a textured backdrop with shapes (bench.corpus.models.detect)."""
    from PIL import ImageDraw

    from bench.corpus.models.detect import _background, _shapes

    im = _background(rng, width, height)
    _shapes(ImageDraw.Draw(im), rng, width, height, int(rng.integers(2, 7)))
    x = np.asarray(im, np.float32) / 255.0
    return ((x - 0.45) / 0.25).transpose(2, 0, 1).astype(np.float32)


def make_inputs(arch: Arch, n: int, seed: int) -> dict[str, np.ndarray]:
    """n items of valid random inputs (leading batch axis)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, _dtype, _) in arch.inputs.items():
        full = (n, *shape[1:])
        if name == "pixel_values":  # rendered scenes (gradients, shapes, noise), standardised: varied
            out[name] = np.stack([_scene(rng, full[2], full[3]) for _ in range(n)])  # content, unlike noise
        elif name == "input_ids":
            ids = rng.integers(1000 if VOCAB[arch.name] > 1000 else 1, VOCAB[arch.name], size=full)
            ids[:, 0] = 101 if VOCAB[arch.name] > 1000 else 1
            out[name] = ids.astype(np.int64)
        elif name == "attention_mask":
            mask = np.ones(full, np.int64)
            lengths = rng.integers(full[1] // 2, full[1] + 1, size=n)
            for i, length in enumerate(lengths):
                mask[i, length:] = 0
            out[name] = mask
        elif name == "input_values":
            t = np.arange(full[1], dtype=np.float32) / 16000
            f = rng.uniform(100, 2000, size=(n, 3, 1)).astype(np.float32)
            wave = np.sin(2 * np.pi * f * t).sum(1) + rng.normal(0, 0.3, size=full)
            out[name] = (wave / np.abs(wave).max(1, keepdims=True)).astype(np.float32)
        else:
            raise KeyError(name)
    return out


def export(module, arch: Arch, path: Path) -> None:
    """Export `module` with the arch's exporter and opset, dynamic axes as declared, weights inline."""
    import torch

    example = tuple(torch.from_numpy(v) for v in make_inputs(arch, 2, seed=99).values())  # batch 2: not 0/1-specialised
    names = list(arch.inputs)
    axes = {n: dict(spec[2]) for n, spec in arch.inputs.items()}
    with torch.no_grad():
        if arch.exporter == "torchscript":
            torch.onnx.export(module, example, str(path), dynamo=False, opset_version=arch.opset,
                              input_names=names, output_names=[arch.output],
                              dynamic_axes={**axes, arch.output: {0: "batch"}})
        else:
            dims = {}
            shapes = {}
            for n, spec in arch.inputs.items():
                shapes[n] = {a: dims.setdefault(d, torch.export.Dim(d, min=1 if d == "batch" else 64, max=4096))
                             for a, d in spec[2].items()}
            program = torch.onnx.export(module, example, dynamo=True, opset_version=arch.opset,
                                        input_names=names, output_names=[arch.output],
                                        dynamic_shapes=tuple(shapes[n] for n in names))
            program.save(str(path), external_data=False)


def recalibrate_batchnorm(module, arch: Arch, n: int = 32) -> bool:
    """Set every BatchNorm's running statistics to those of `n` fresh inputs (seed 3: neither calibration
    nor evaluation data), as for any untrained or pruned CNN: with the init's mean 0 / variance 1 the
    activations blow up and every input gives nearly the same logits. Returns whether there was any."""
    import torch

    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    x = make_inputs(arch, n, seed=3)
    module.train()
    with torch.no_grad():
        for start in range(0, n, 8):
            module(*[torch.from_numpy(v[start:start + 8]) for v in x.values()])
    module.eval()
    return True


def builder(arch: Arch):
    def build(folder: Path, small: bool) -> dict:
        import torch

        torch.manual_seed(0)
        module = globals()[arch.build_module]()
        bn = recalibrate_batchnorm(module, arch)
        n_calib, n_eval = (16, 16) if small else (arch.n_calib, arch.n_eval)
        export(module, arch, folder / "model.onnx")
        save_npz(folder / "calib.npz", make_inputs(arch, n_calib, seed=1))
        save_npz(folder / "eval.npz", make_inputs(arch, n_eval, seed=2))
        params = sum(p.numel() for p in module.parameters())
        return {"source": f"transformers {arch.build_module} config, random init (seed 0)",
                "exporter": arch.exporter, "opset": arch.opset, "params": params, "batchnorm_recalibrated": bn,
                "dynamic": {n: spec[2] for n, spec in arch.inputs.items()},
                "shape": {n: [1, *spec[0][1:]] for n, spec in arch.inputs.items()},
                "n_calib": n_calib, "n_eval": n_eval}

    return build


def entries() -> list:
    from bench.corpus import Entry

    return [Entry(a.name, "random-init", builder(a), metric="bench.corpus.metrics:centred_cosine", max_drop=0.01,
                  transformer=a.transformer,
                  description=f"{a.build_module} at random init, {a.exporter} opset {a.opset}, centred cosine vs fp32",
                  ci=a.name == "tiny-bert")
            for a in ARCHS]
