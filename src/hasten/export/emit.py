"""Write a `Program` as self-contained C99: `model.c`, `model.h` and a README of the API.

model.c holds the kernels the program uses (copied from `c/kernels/`), every weight, bias and scale as a
`const` array (flash), one static arena placed by `hasten.export.arena` (RAM), and `hs_model_run`. It calls
nothing from libc beyond `memcpy`/`memset`, allocates nothing and prints nothing.

Requantisation scales are formed here in single precision exactly as ONNX Runtime forms them before its
loops (`x_scale * w_scale[c] / y_scale` for QLinearConv and QGemm, `x_scale / (y_scale * H * W)` for
QLinearGlobalAveragePool), so the C multiplies the same float32 values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path

import numpy as np

from hasten.export.arena import ArenaPlan, plan_arena
from hasten.export.program import Layer, Program

KERNEL_FILES = {"conv": "conv.c", "dense": "dense.c", "max_pool": "pool.c", "average_pool": "pool.c",
                "global_average_pool": "pool.c", "add": "eltwise.c", "mul": "eltwise.c", "concat": "layout.c",
                "to_chw": "layout.c", "to_hwc": "layout.c", "permute": "layout.c", "softmax": "softmax.c"}
F32 = np.float32


@dataclass(frozen=True)
class Export:
    """The C sources of one program and the figures the exporter prints."""

    model_c: str
    model_h: str
    readme: str
    arena: ArenaPlan
    program: Program

    @property
    def input_size(self) -> int:
        return self.program.tensors[self.program.input].size

    @property
    def output_size(self) -> int:
        return self.program.tensors[self.program.output].size

    @property
    def output_dtype(self) -> str:
        return self.program.tensors[self.program.output].dtype

    def files(self) -> dict[str, str]:
        return {"model.c": self.model_c, "model.h": self.model_h, "README.md": self.readme}

    def write(self, folder) -> Path:
        """The files into `folder` (made if missing), replacing any there: for build folders of our own;
        a user's folder goes through `build.write_export` (no overwrite, atomic)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in self.files().items():
            (folder / name).write_text(text)
        return folder


def _kernel_source(name: str) -> str:
    return resources.files("hasten.export").joinpath("c", "kernels", name).read_text()


def _ident(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", text)


def _array(ctype: str, name: str, values: np.ndarray, per_line: int = 16) -> str:
    flat = np.asarray(values).reshape(-1)
    if ctype == "float":
        items = [_float(v) for v in flat.astype(F32)]
    else:
        items = [str(int(v)) for v in flat]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)] or ["0"]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{max(len(items), 1)}] = {{\n    {body}\n}};\n"


def fma32(x, y, z) -> np.float32:
    """x * y + z of float32s rounded once to float32 (nearest, ties to even), computed exactly."""
    exact = Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))
    near = F32(float(exact))
    candidates = (near, np.nextafter(near, F32(-np.inf)), np.nextafter(near, F32(np.inf)))
    return min(candidates, key=lambda v: (abs(Fraction(float(v)) - exact), int(F32(v).view(np.int32)) & 1))


def _float(v) -> str:
    """A float32 as an exact C literal (hex float, C99)."""
    v = float(F32(v))
    return "0.0f" if v == 0.0 else f"{v.hex()}f"


class _Emitter:
    def __init__(self, program: Program, plan: ArenaPlan):
        self.p = program
        self.plan = plan
        self.decls: list[str] = []
        self.calls: list[str] = []

    def ptr(self, name: str) -> str:
        store = self.p.storage(name)
        if store == self.p.storage(self.p.input):
            return "input"
        if store == self.p.storage(self.p.output):
            return "output"
        return f"(hs_arena + {self.plan.slots[store].offset})"

    def layer(self, i: int, layer: Layer) -> None:
        tag = f"l{i}"
        getattr(self, f"_{layer.op}")(tag, layer)

    def _conv(self, tag, layer):
        q = layer.params
        x, y = self.p.tensors[layer.inputs[0]], self.p.tensors[layer.outputs[0]]
        h, w, c = x.hwc()
        oh, ow, oc = y.hwc()
        weights = np.ascontiguousarray(q["weights"].transpose(0, 2, 3, 1))  # [oc][kh][kw][cg]
        scale = (F32(q["x_scale"]) * q["w_scale"].astype(F32)) / F32(q["y_scale"])
        self.decls += [_array("int8_t", f"{tag}_w", weights), _array("int32_t", f"{tag}_b", q["bias"]),
                       _array("float", f"{tag}_s", scale)]
        kh, kw = weights.shape[1:3]
        st, pd, dl = q["strides"], q["pads"], q["dilations"]
        self.decls.append(
            f"static const hs_conv_t {tag} = {{{h}, {w}, {c}, {oh}, {ow}, {oc}, {kh}, {kw}, {st[0]}, {st[1]}, "
            f"{dl[0]}, {dl[1]}, {pd[0]}, {pd[1]}, {q['groups']}, {q['x_zp']}, {q['y_zp']}, {tag}_w, {tag}_b, "
            f"{tag}_s}};\n")
        self.calls.append(f"hs_conv(&{tag}, {self.ptr(layer.inputs[0])}, {self.ptr(layer.outputs[0])});")

    def _dense(self, tag, layer):
        q = layer.params
        n, k = q["weights"].shape
        xw = F32(q["x_scale"]) * q["w_scale"].astype(F32)
        scale = xw if q["y_scale"] is None else xw / F32(q["y_scale"])
        self.decls += [_array("int8_t", f"{tag}_w", q["weights"]), _array("int32_t", f"{tag}_b", q["bias"]),
                       _array("float", f"{tag}_s", scale)]
        self.decls.append(f"static const hs_dense_t {tag} = {{{k}, {n}, {q['x_zp']}, {q['y_zp'] or 0}, "
                          f"{tag}_w, {tag}_b, {tag}_s}};\n")
        fn = "hs_dense" if q["y_scale"] is not None else "hs_dense_f32"
        self.calls.append(f"{fn}(&{tag}, {self.ptr(layer.inputs[0])}, {self.ptr(layer.outputs[0])});")

    def _pool_struct(self, tag, layer, scales: np.ndarray, kernel=(1, 1), strides=(1, 1), pads=(0, 0, 0, 0),
                     include_pad=0, x_zp=0, y_zp=0):
        x, y = self.p.tensors[layer.inputs[0]], self.p.tensors[layer.outputs[0]]
        h, w, c = x.hwc()
        oh, ow, _ = y.hwc()
        self.decls.append(_array("float", f"{tag}_s", scales))
        self.decls.append(
            f"static const hs_pool_t {tag} = {{{h}, {w}, {c}, {oh}, {ow}, {kernel[0]}, {kernel[1]}, "
            f"{strides[0]}, {strides[1]}, {pads[0]}, {pads[1]}, {include_pad}, {x_zp}, {y_zp}, {tag}_s}};\n")

    def _max_pool(self, tag, layer):
        q = layer.params
        self._pool_struct(tag, layer, np.zeros(1, F32), q["kernel"], q["strides"], q["pads"])
        self.calls.append(f"hs_max_pool(&{tag}, {self.ptr(layer.inputs[0])}, {self.ptr(layer.outputs[0])});")

    def _average_pool(self, tag, layer):
        q = layer.params
        scales = np.array([q["x_scale"], q["y_scale"], q["y_zp_native"]], F32)
        self._pool_struct(tag, layer, scales, q["kernel"], q["strides"], q["pads"], q["count_include_pad"],
                          q["x_zp"], q["y_zp"])
        self.calls.append(f"hs_average_pool(&{tag}, {self.ptr(layer.inputs[0])}, "
                          f"{self.ptr(layer.outputs[0])});")

    def _global_average_pool(self, tag, layer):
        q = layer.params
        h, w, _ = self.p.tensors[layer.inputs[0]].hwc()
        scale = F32(q["x_scale"]) / (F32(q["y_scale"]) * F32(h * w))
        self._pool_struct(tag, layer, np.array([scale], F32), x_zp=q["x_zp"], y_zp=q["y_zp"])
        self.calls.append(f"hs_global_average_pool(&{tag}, {self.ptr(layer.inputs[0])}, "
                          f"{self.ptr(layer.outputs[0])});")

    def _binary(self, tag, layer, kernel: str, fields: list) -> None:
        """`kernel`(&tag, a, b, y) with `static const <kernel>_t tag = {n, fields...}`."""
        n = self.p.tensors[layer.outputs[0]].size
        self.decls.append(f"static const {kernel}_t {tag} = {{{', '.join(map(str, [n, *fields]))}}};\n")
        a, b = (self.ptr(name) for name in layer.inputs)
        self.calls.append(f"{kernel}(&{tag}, {a}, {b}, {self.ptr(layer.outputs[0])});")

    def _add(self, tag, layer):
        q = layer.params
        ratio_a, ratio_b = F32(q["a_scale"]) / F32(q["y_scale"]), F32(q["b_scale"]) / F32(q["y_scale"])
        offset = 128 if q["unsigned"] else 0  # native zero points: stored + offset
        inner = fma32(ratio_a, F32(q["a_zp"] + offset), ratio_b * F32(q["b_zp"] + offset))
        fixed = F32(q["y_zp"] + offset) - inner
        self._binary(tag, layer, "hs_add", [offset, _float(ratio_a), _float(ratio_b), _float(fixed)])

    def _mul(self, tag, layer):
        q = layer.params
        scale = F32(q["a_scale"]) * F32(q["b_scale"]) / F32(q["y_scale"])  # one ratio, formed before the loop
        offset = 128 if q["unsigned"] else 0
        self._binary(tag, layer, "hs_mul", [q["a_zp"], q["b_zp"], offset, _float(scale),
                                             _float(q["y_zp"] + offset)])

    def _concat(self, tag, layer):
        q = layer.params
        y = self.p.tensors[layer.outputs[0]]
        axis = q["axis"]
        if y.channels_last:  # stored HWC: channels are the innermost axis
            outer, widths = y.size // y.shape[1], [self.p.tensors[n].shape[1] for n in layer.inputs]
        else:
            outer = int(np.prod(y.shape[:axis]))
            widths = [int(np.prod(self.p.tensors[n].shape[axis:])) for n in layer.inputs]
        out_width, at = sum(widths), 0
        for name, width, s, z in zip(layer.inputs, widths, q["scales"], q["zps"], strict=True):
            same = F32(s) == F32(q["y_scale"]) and int(z) == int(q["y_zp"])
            ratio = 0.0 if same else F32(s) / F32(q["y_scale"])
            self.calls.append(f"hs_concat_part({self.ptr(name)}, {self.ptr(layer.outputs[0])} + {at}, {outer}, "
                              f"{width}, {out_width}, {_float(ratio)}, {int(z)}, {q['y_zp']});")
            at += width

    def _permute(self, tag, layer):
        q = layer.params
        pad = [1] * (6 - len(q["dims"]))
        dims, strides = ", ".join(map(str, list(q["dims"]) + pad)), ", ".join(map(str, list(q["strides"]) + pad))
        self.decls.append(f"static const hs_permute_t {tag} = {{{len(q['dims'])}, {{{dims}}}, {{{strides}}}}};\n")
        self.calls.append(f"hs_permute(&{tag}, {self.ptr(layer.inputs[0])}, {self.ptr(layer.outputs[0])});")

    def _softmax(self, tag, layer):
        q = layer.params
        self.decls.append(_array("float", f"{tag}_t", q["table"]))
        self.decls.append(f"static const hs_softmax_t {tag} = {{{q['outer']}, {q['d']}, {q['inner']}, "
                          f"{_float(q['y_scale'])}, {q['y_zp_native']}, {q['is_signed']}, {tag}_t}};\n")
        self.calls.append(f"hs_softmax(&{tag}, {self.ptr(layer.inputs[0])}, {self.ptr(layer.outputs[0])});")

    def _to_chw(self, tag, layer):
        h, w, c = layer.params["hwc"]
        self.calls.append(f"hs_transpose({self.ptr(layer.inputs[0])}, {self.ptr(layer.outputs[0])}, {h * w}, {c});")

    def _to_hwc(self, tag, layer):
        h, w, c = layer.params["hwc"]
        self.calls.append(f"hs_transpose({self.ptr(layer.inputs[0])}, {self.ptr(layer.outputs[0])}, {c}, {h * w});")


def emit(program: Program, name: str = "model") -> Export:
    """The C of `program`; `name` only labels the comments."""
    plan = plan_arena(program)
    em = _Emitter(program, plan)
    for i, layer in enumerate(program.layers):
        em.layer(i, layer)
    y = program.tensors[program.output]
    out_ctype = "float" if y.dtype == "float32" else "int8_t"
    kernels = []
    for op in dict.fromkeys(layer.op for layer in program.layers):
        if KERNEL_FILES[op] not in kernels:
            kernels.append(KERNEL_FILES[op])
    parts = [f"/* {name}: generated by hasten export. {len(program.layers)} layers, {program.macs()} MACs, "
             f"arena {plan.size} bytes (lower bound {plan.lower_bound}). */\n",
             '#include "model.h"\n', _kernel_source("hs_base.h")]
    parts += [_kernel_source(k) for k in kernels]
    parts.append(f"\n/* activations: one static arena, offsets from tensor lifetimes */\n"
                 f"static int8_t hs_arena[{max(plan.size, 4)}] __attribute__((aligned(4)));\n\n")
    parts += em.decls
    body = "\n    ".join(em.calls)
    parts.append(f"\nvoid hs_model_run(const int8_t *input, {out_ctype} *output)\n{{\n    {body}\n}}\n")
    model_c = "".join(parts)
    model_h = _header(program, plan, out_ctype)
    return Export(model_c, model_h, _readme(program, plan, name, out_ctype), plan, program)


def _header(program: Program, plan: ArenaPlan, out_ctype: str) -> str:
    x, y = program.tensors[program.input], program.tensors[program.output]
    lines = ["/* generated by hasten export: the API of model.c */", "#ifndef HS_MODEL_H", "#define HS_MODEL_H",
             "#include <stdint.h>", "",
             "/* input: int8, q = round_half_even(x / HS_MODEL_INPUT_SCALE) + HS_MODEL_INPUT_ZERO_POINT, clamped to"
             " [-128, 127] */",
             f"#define HS_MODEL_INPUT_SIZE {x.size}",
             f"#define HS_MODEL_INPUT_SHAPE {{{', '.join(str(d) for d in _source_shape(program, x))}}}",
             f"#define HS_MODEL_INPUT_SCALE {_float(x.scale)}",
             f"#define HS_MODEL_INPUT_ZERO_POINT {x.zero_point}",
             f"#define HS_MODEL_OUTPUT_SIZE {y.size}",
             f"#define HS_MODEL_OUTPUT_SHAPE {{{', '.join(str(d) for d in _source_shape(program, y))}}}"]
    if out_ctype == "float":
        lines += ["/* output: float, as ONNX Runtime's last kernel computes it */", "#define HS_MODEL_OUTPUT_FLOAT 1"]
    else:
        lines += ["/* output: int8; x = (q - HS_MODEL_OUTPUT_ZERO_POINT) * HS_MODEL_OUTPUT_SCALE */",
                  f"#define HS_MODEL_OUTPUT_SCALE {_float(y.scale)}",
                  f"#define HS_MODEL_OUTPUT_ZERO_POINT {y.zero_point}"]
    lines += [f"typedef {out_ctype} hs_output_t;", f"#define HS_MODEL_ARENA_BYTES {plan.size}", "",
              "/* One inference: input in ONNX (NCHW) order, output in ONNX order. Not re-entrant (one arena). */",
              "void hs_model_run(const int8_t *input, hs_output_t *output);", "", "#endif", ""]
    return "\n".join(lines)


def _source_shape(program: Program, t) -> tuple[int, ...]:
    """The ONNX shape of a boundary tensor (the NCHW view of a transposed 4-D one)."""
    for layer in program.layers:
        if layer.op in ("to_hwc", "to_chw") and t.name in layer.inputs + layer.outputs:
            h, w, c = layer.params["hwc"]
            return (1, c, h, w)
    return t.shape


def _readme(program: Program, plan: ArenaPlan, name: str, out_ctype: str) -> str:
    x, y = program.tensors[program.input], program.tensors[program.output]
    ops = sorted({layer.op for layer in program.layers})
    out_doc = ("`float` values, exactly as ONNX Runtime's last kernel computes them" if out_ctype == "float"
               else "`int8_t` values; dequantise with `HS_MODEL_OUTPUT_SCALE` and `HS_MODEL_OUTPUT_ZERO_POINT`")
    from hasten.export.toolchain import BOARDS, CFLAGS  # the flags --verify builds with

    flags, m4 = " ".join(f for f in CFLAGS if f != "-Wall"), " ".join(BOARDS["cortex-m4"][1])
    return f"""# {name}: int8 C generated by hasten export

Two files, plain C99: `model.c` (kernels, weights as `const` arrays, one static arena) and `model.h` (the
API). No malloc, no printf, nothing from libc beyond `memcpy`/`memset`. Build with `-ffp-contract=off`
(no fused multiply-add) so the requantisation rounds as ONNX Runtime's does, e.g.

    cc {flags} -c model.c
    arm-none-eabi-gcc {m4} -mthumb {flags} -c model.c

## API

    #include "model.h"
    int8_t input[HS_MODEL_INPUT_SIZE];
    hs_output_t output[HS_MODEL_OUTPUT_SIZE];
    hs_model_run(input, output);

- input: {x.size} `int8_t` values in ONNX order, shape {list(_source_shape(program, x))}, quantised as
  `q = round_half_even(x / HS_MODEL_INPUT_SCALE) + HS_MODEL_INPUT_ZERO_POINT` clamped to [-128, 127]
  (scale {float(x.scale):.9g}, zero point {x.zero_point}; a uint8 model's zero point is shown less 128).
- output: {y.size} {out_doc}, shape {list(_source_shape(program, y))}.
- `hs_model_run` is not re-entrant: all activations share one static arena of {plan.size} bytes
  (`HS_MODEL_ARENA_BYTES`; the peak of the bytes live at once is {plan.lower_bound}).

Layers: {len(program.layers)} ({", ".join(ops)}); {program.macs()} multiply-accumulates;
{program.weight_bytes()} bytes of int8 weights.
"""
