"""transformer_fusion: ONNX Runtime's transformer fusions (Attention, SkipLayerNormalization,
EmbedLayerNormalization, BiasGelu / FastGelu, ...), via `onnxruntime.transformers.optimizer.optimize_model`
with `opt_level=0` (the Python fusions only; no ORT session optimisation baked into the file).

The output holds `com.microsoft` contrib ops (only ONNX Runtime runs them), so
`emits_domains = ("com.microsoft",)`.

`num_heads` / `hidden_size` = 0 means detect. ORT's own detection reads the Q Reshape's target shape and
fails on graphs that reshape to `(batch, seq, -1, head_size)` (transformers >= 5); this pass then reads
`head_size` from that shape and `hidden_size` from the Q projection (MatMul weight or bias), and passes
both to ORT. `gelu_approximation=True` also turns Gelu into the tanh-approximate FastGelu (changes numbers
by about 1e-3: only worth it under an accuracy budget).

The pass is `modified` when the op histogram changed; `stats` counts the fused ops it created.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

from hasten.errors import HastenError
from hasten.model import Model
from hasten.passes.base import Pass

logger = logging.getLogger(__name__)

#: Ops whose creation counts as a fusion that fired (ORT's BertOnnxModel statistics).
FUSED_OPS = ("EmbedLayerNormalization", "Attention", "MultiHeadAttention", "Gelu", "FastGelu", "BiasGelu",
             "GemmFastGelu", "LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
             "SkipSimplifiedLayerNormalization", "RotaryEmbedding")


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.is_graph_input():
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else np.asarray(tensor.numpy()).reshape(-1)


def _projection_width(value: ir.Value) -> int:
    """Output width of the `Add(MatMul(x, W), b)` / `MatMul(x, W)` producing `value`; 0 if unknown."""
    node = value.producer()
    for _ in range(3):
        if node is None:
            return 0
        if node.op_type == "MatMul":
            tensor = ir.convenience.get_const_tensor(node.inputs[1]) if node.inputs[1] is not None else None
            return int(tensor.shape[-1]) if tensor is not None and len(tensor.shape) == 2 else 0
        if node.op_type == "Add":
            for v in node.inputs:
                c = _const(v)
                if c is not None and c.size > 1:
                    return int(c.size)
            nxt = [v.producer() for v in node.inputs if v is not None and v.producer() is not None]
            node = next((p for p in nxt if p.op_type == "MatMul"), None)
            continue
        return 0
    return 0


def detect_heads(model: Model) -> tuple[int, int]:
    """(num_heads, hidden_size) from the attention head-split Reshapes; (0, 0) when not found."""
    found: Counter[tuple[int, int]] = Counter()
    for node in model.graph.all_nodes():
        if node.op_type != "Reshape" or len(node.inputs) < 2:
            continue
        if not any(u.node.op_type == "Transpose" for u in node.outputs[0].uses()):
            continue
        shape = _const(node.inputs[1])
        if shape is not None and shape.size == 4 and shape[2] > 0 and shape[3] > 0:
            found[(int(shape[2]), int(shape[2] * shape[3]))] += 1
            continue
        concat = node.inputs[1].producer()
        if concat is None or concat.op_type != "Concat" or len(concat.inputs) != 4:
            continue
        heads, head_size = _const(concat.inputs[2]), _const(concat.inputs[3])
        if heads is None or head_size is None or heads.size != 1 or head_size.size != 1 or head_size[0] <= 0:
            continue
        if heads[0] > 0:
            found[(int(heads[0]), int(heads[0] * head_size[0]))] += 1
        elif heads[0] == -1:
            hidden = _projection_width(node.inputs[0])
            if hidden > 0 and hidden % int(head_size[0]) == 0:
                found[(hidden // int(head_size[0]), hidden)] += 1
    if not found:
        return 0, 0
    return found.most_common(1)[0][0]


#: every fusion of ORT's tool starts from one of these: a layer norm (fused or as ReduceMean ... Sqrt) or a Gelu
_NORM_OR_GELU = {"LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
                 "SkipSimplifiedLayerNormalization", "Erf", "Gelu", "FastGelu", "BiasGelu", "Tanh"}


def has_fusable_ops(model: Model) -> bool:
    """Can any fusion fire? Attention, Skip/Embed-LayerNorm and Gelu fusions all need a layer norm or a Gelu."""
    ops = {node.op_type for node in model.graph.all_nodes()}
    return bool(ops & _NORM_OR_GELU) or ("ReduceMean" in ops and bool(ops & {"Sqrt", "Pow"}))


def _histogram(proto: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in proto.graph.node)


@contextlib.contextmanager
def _quiet_ort_logs():
    log = logging.getLogger("onnxruntime.transformers")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


class TransformerFusion(Pass):
    """ONNX Runtime transformer fusions (BERT-style encoders); the output holds com.microsoft ops."""

    name = "transformer_fusion"
    emits_domains = ("com.microsoft",)

    @dataclass(frozen=True)
    class Config:
        num_heads: int = 0
        hidden_size: int = 0
        gelu_approximation: bool = False
        model_type: str = "bert"

    def search_space(self) -> dict[str, list]:
        return {"gelu_approximation": [False, True]}

    def run(self, model: Model):
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import MODEL_TYPES, optimize_model

        cfg = self.config
        if cfg.model_type not in MODEL_TYPES:
            raise HastenError(f"transformer_fusion: unknown model_type {cfg.model_type!r}; "
                              f"ONNX Runtime knows {sorted(MODEL_TYPES)}")
        if not has_fusable_ops(model):  # a CNN: ORT's tool would spend a minute finding nothing
            logger.info("transformer_fusion: no layer norm or Gelu in the graph; nothing to fuse")
            return model.ir, False, {}
        num_heads, hidden_size = cfg.num_heads, cfg.hidden_size
        if num_heads <= 0 or hidden_size <= 0:
            heads, hidden = detect_heads(model)
            num_heads = num_heads if num_heads > 0 else heads
            hidden_size = hidden_size if hidden_size > 0 else hidden
            logger.info("transformer_fusion: num_heads=%d hidden_size=%d", num_heads, hidden_size)
        options = FusionOptions(cfg.model_type)
        options.enable_gelu_approximation = cfg.gelu_approximation
        proto = model.proto()  # fresh: ORT's optimizer mutates the proto it is given
        before = _histogram(proto)
        try:
            with _quiet_ort_logs():
                optimized = optimize_model(proto, model_type=cfg.model_type, num_heads=num_heads,
                                           hidden_size=hidden_size, optimization_options=options,
                                           opt_level=0, use_gpu=False)
        except Exception as exc:
            raise HastenError(f"transformer_fusion: ONNX Runtime's fusion tool failed ({type(exc).__name__}: "
                              f"{exc}); run without this pass or set num_heads/hidden_size") from exc
        out = optimized.model
        after = _histogram(out)
        stats = {op: after[op] - before[op] for op in FUSED_OPS if after[op] > before[op]}
        modified = after != before
        return out, modified, stats
