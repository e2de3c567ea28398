"""The op types int8 quantises (a leaf: `int8` quantises them, `stats` observes their inputs)."""

#: ops with a weight: quantised per channel or per tensor
WEIGHTED_OPS = ("MatMul", "Gemm", "Conv")
#: ops that run int8 with their input's quantisation parameters (ONNX Runtime drops their Q/DQ)
SAME_PARAMS_OPS = ("MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze")
#: ops with int8 kernels of their own (QLinearGlobalAveragePool, QLinearAveragePool)
OWN_RANGE_OPS = ("GlobalAveragePool", "AveragePool")
QUANTISABLE_OPS = WEIGHTED_OPS + SAME_PARAMS_OPS + OWN_RANGE_OPS
DEFAULT_OP_TYPES = ("MatMul", "Gemm", "Conv", "MaxPool", "Flatten", "GlobalAveragePool", "AveragePool")
