"""The integer program an exported model runs: int8 tensors and the layers between them.

`hasten.export.lower` builds it from an int8 QDQ model; `arena` places its tensors; `emit` writes it as C.

Conventions (batch 1):
- every activation is int8; a uint8 tensor of the ONNX model is stored as int8 `v - 128` with its zero point
  also lowered by 128, which leaves `v - zp` (all the integer kernels see) unchanged;
- a 4-D tensor [1, C, H, W] is stored channels-last (HWC), anything else in ONNX order;
- `Tensor.alias` names the tensor whose bytes a reshaped view shares.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tensor:
    """An int8 tensor of the program. `shape` is the ONNX (logical) shape; `scale` and `zero_point` are
    those of the int8 values (None where no op fixes them)."""

    name: str
    shape: tuple[int, ...]
    scale: float | None = None
    zero_point: int | None = None
    alias: str | None = None  # shares the bytes of this tensor (a reshape)
    kind: str = "activation"  # "input" | "output" | "activation"
    dtype: str = "int8"  # "float32" only for a model output that ONNX Runtime computes in float (QGemm)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def channels_last(self) -> bool:
        return len(self.shape) == 4

    def hwc(self) -> tuple[int, int, int]:
        """(H, W, C) of a 4-D tensor."""
        _, c, h, w = self.shape
        return h, w, c


@dataclass
class Layer:
    """One kernel call: `op` names the kernel, `params` its arguments (numbers and numpy arrays)."""

    op: str
    name: str  # the ONNX node it came from
    inputs: list[str]
    outputs: list[str]
    params: dict = field(default_factory=dict)

    @property
    def weights(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in self.params.items() if isinstance(v, np.ndarray)}


@dataclass
class Program:
    """Tensors by name, layers in execution order, and the one input and one output."""

    tensors: dict[str, Tensor]
    layers: list[Layer]
    input: str
    output: str
    source_nodes: int = 0  # nodes of the ONNX graph ONNX Runtime runs (after its fusions)

    def storage(self, name: str) -> str:
        """The tensor whose bytes `name` lives in (follows aliases)."""
        while self.tensors[name].alias:
            name = self.tensors[name].alias
        return name

    def macs(self) -> int:
        """Multiply-accumulates of the weighted layers."""
        return sum(int(layer.params.get("macs", 0)) for layer in self.layers)

    def weight_bytes(self) -> int:
        return sum(int(v.nbytes) for layer in self.layers for k, v in layer.weights.items()
                   if k in ("weights", "bits"))
