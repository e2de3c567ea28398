"""Model: one ONNX model in memory, its input/output specs, a content fingerprint and its lineage.

In memory a model is an `onnx_ir.Model`; `onnx.ModelProto` appears only at the edges (runtimes, tools that
want protos). Loading checks everything a user can get wrong and raises `ModelLoadError` naming the file;
saving is atomic (write to a temporary folder beside the target, then rename) and uses external data past a
size threshold.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from hasten.errors import ModelLoadError, ModelSaveError
from hasten.fileio import atomic_paths

#: Oldest and newest default-domain opsets hasten accepts.
MIN_OPSET = 7
MAX_OPSET = onnx.defs.onnx_opset_version()
#: Size given to a dynamic dim nobody set: the first (batch) dim, and every other one.
DEFAULT_BATCH = 1
DEFAULT_DIM = 128
#: Models whose initializers exceed this many bytes are saved with external data by default.
EXTERNAL_DATA_THRESHOLD = 1 << 30
#: Domains that are never imported explicitly (the default ONNX domain and its alias).
_DEFAULT_DOMAINS = ("", "ai.onnx")


def domain_version(domain: str, op_types: set[str] | frozenset[str] = frozenset()) -> int:
    """Opset version to import for `domain` when a model uses it without importing it: the newest version
    onnx knows for the ops used (ai.onnx.ml, ...), else 1 (com.microsoft and other contrib domains)."""
    version = 1
    for op in op_types:
        try:
            version = max(version, int(onnx.defs.get_schema(op, domain=domain).since_version))
        except Exception:  # no schema: a contrib or custom domain
            continue
    return version


def ensure_opset_imports(model: ir.Model) -> list[str]:
    """Add (in place) an opset import for every node domain `model` uses but does not import, functions'
    domains included; returns the domains added. A model without them fails the ONNX checker."""
    used: dict[str, set[str]] = {}
    for node in model.graph.all_nodes():
        used.setdefault(node.domain, set()).add(node.op_type)
    for function in model.functions.values():
        for node in function:
            used.setdefault(node.domain, set()).add(node.op_type)
    imports = model.opset_imports
    added = []
    for domain, ops in sorted(used.items()):
        if domain in _DEFAULT_DOMAINS or domain in imports:
            continue
        imports[domain] = domain_version(domain, ops)
        added.append(domain)
    return added


def _ensure_proto_imports(proto: onnx.ModelProto) -> list[str]:
    """`ensure_opset_imports` for a ModelProto (main graph, sub-graphs and functions)."""
    used: dict[str, set[str]] = {}

    def visit(nodes):
        for node in nodes:
            used.setdefault(node.domain, set()).add(node.op_type)
            for attr in node.attribute:
                for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    visit(g.node)

    visit(proto.graph.node)
    for function in proto.functions:
        visit(function.node)
    have = {o.domain for o in proto.opset_import}
    added = []
    for domain, ops in sorted(used.items()):
        if domain not in _DEFAULT_DOMAINS and domain not in have:
            proto.opset_import.append(onnx.helper.make_opsetid(domain, domain_version(domain, ops)))
            added.append(domain)
    return added


@dataclass(frozen=True)
class TensorSpec:
    """Name, numpy dtype and shape of a graph input or output; a dim is an int or a symbolic name."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str, ...]

    @property
    def is_dynamic(self) -> bool:
        return any(not isinstance(d, int) for d in self.shape)

    def concrete_shape(self, overrides: dict[str, int] | None = None) -> tuple[int, ...]:
        """Shape with symbolic dims resolved: by name from `overrides`, else batch 1 / sequence 128."""
        overrides = overrides or {}
        dims = []
        for i, d in enumerate(self.shape):
            if isinstance(d, int) and d > 0:
                dims.append(d)
            elif isinstance(d, str) and d in overrides:
                dims.append(int(overrides[d]))
            else:
                dims.append(DEFAULT_BATCH if i == 0 else DEFAULT_DIM)
        return tuple(dims)


def _spec(value: ir.Value) -> TensorSpec:
    dtype = value.dtype.numpy() if value.dtype is not None else np.dtype(np.float32)
    shape: tuple[int | str, ...] = ()
    if value.shape is not None:
        shape = tuple(d if isinstance(d, int) else (str(d) if d.value else "?") for d in value.shape)
    return TensorSpec(value.name, np.dtype(dtype), shape)


@dataclass
class Model:
    """An ONNX model in memory plus where it came from and which passes made it."""

    ir: ir.Model
    source: Path | None = None
    lineage: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        ensure_opset_imports(self.ir)  # every domain a pass or scheme added is imported

    # -- conversions -------------------------------------------------------------------------------
    @classmethod
    def from_proto(cls, proto: onnx.ModelProto, source: Path | None = None,
                   lineage: tuple[str, ...] = ()) -> Model:
        return cls(ir.serde.deserialize_model(proto), source, tuple(lineage))

    def proto(self) -> onnx.ModelProto:
        """A fresh `onnx.ModelProto` (weights inlined); safe to hand to tools that mutate it."""
        ensure_opset_imports(self.ir)
        return ir.serde.serialize_model(self.ir)

    def derive(self, new_ir: ir.Model | onnx.ModelProto, step: str) -> Model:
        """A new Model made from this one by `step` (recorded in the lineage)."""
        if isinstance(new_ir, onnx.ModelProto):
            new_ir = ir.serde.deserialize_model(new_ir)
        return Model(new_ir, self.source, (*self.lineage, step))

    def copy(self) -> Model:
        return Model.from_proto(self.proto(), self.source, self.lineage)

    # -- facts -------------------------------------------------------------------------------------
    @property
    def graph(self) -> ir.Graph:
        return self.ir.graph

    @property
    def inputs(self) -> list[TensorSpec]:
        """Real inputs: graph inputs that are not also initializers."""
        inits = set(self.ir.graph.initializers)
        return [_spec(v) for v in self.ir.graph.inputs if v.name not in inits]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [_spec(v) for v in self.ir.graph.outputs]

    @property
    def opset(self) -> int:
        return int(self.ir.opset_imports.get("", 0))

    def parameter_count(self) -> int:
        return sum(int(np.prod(v.shape.numpy())) if v.shape is not None else 0
                   for v in self.ir.graph.initializers.values())

    def parameter_bytes(self) -> int:
        total = 0
        for v in self.ir.graph.initializers.values():
            if v.const_value is not None:
                total += v.const_value.nbytes
        return total

    def op_histogram(self) -> dict[str, int]:
        hist: dict[str, int] = {}
        for node in self.ir.graph.all_nodes():
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            hist[key] = hist.get(key, 0) + 1
        return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))

    def fingerprint(self) -> str:
        """sha256 (hex, first 16 chars) of the weights' values and the graph's deterministic serialisation."""
        h = hashlib.sha256()
        for name, value in sorted(self.ir.graph.initializers.items()):
            array = value.const_value.numpy() if value.const_value is not None else np.zeros(0)
            h.update(f"{name}|{array.dtype}|{array.shape}|".encode())
            h.update(np.ascontiguousarray(array).tobytes())
        proto = self.proto()
        proto.graph.ClearField("initializer")
        h.update(proto.SerializeToString(deterministic=True))
        return h.hexdigest()[:16]

    # -- saving ------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> Path:
        """Write atomically to `path`; weights go to `<name>.data` beside it when larger than the threshold.

        Refuses to overwrite the file this model was loaded from (or its external data).
        """
        path = Path(path)
        if path.suffix != ".onnx":
            raise ModelSaveError(f"{path}: output must end in .onnx")
        data_name = path.name + ".data"
        if self.source is not None:
            src = self.source.resolve()
            protected = {src, src.with_name(src.name + ".data")}
            protected |= _external_data_files(src)
            if path.resolve() in protected or (path.parent / data_name).resolve() in protected:
                raise ModelSaveError(f"{path}: refusing to overwrite the input model {self.source}; "
                                     "choose another output path")
        path.parent.mkdir(parents=True, exist_ok=True)
        ensure_opset_imports(self.ir)
        external = self.parameter_bytes() > external_data_threshold
        try:
            with atomic_paths(path.parent / data_name, path) as (_, tmp_model):  # the data first, then the model
                if external:
                    ir.save(self.ir, tmp_model, external_data=data_name)
                else:
                    ir.save(self.ir, tmp_model)
        except OSError as exc:
            raise ModelSaveError(f"{path}: cannot write model ({exc})") from exc
        return path


def _external_data_files(path: Path) -> set[Path]:
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:
        return set()
    files = set()
    for tensor in onnx.external_data_helper._get_all_tensors(proto):
        if onnx.external_data_helper.uses_external_data(tensor):
            info = onnx.external_data_helper.ExternalDataInfo(tensor)
            files.add((path.parent / info.location).resolve())
    return files


# -- loading ---------------------------------------------------------------------------------------
def load_onnx(path: str | os.PathLike) -> Model:
    """Load and validate an ONNX file (external data resolved beside it)."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a folder; give the .onnx file inside it")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: file is empty; re-export the model")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning or others on garbage
        raise ModelLoadError(f"{path}: not an ONNX model or truncated (cannot parse: "
                             f"{type(exc).__name__}); re-export it") from exc
    missing = sorted(str(f) for f in _external_data_files(path) if not f.is_file())
    if missing:
        raise ModelLoadError(f"{path}: external data file(s) missing: {', '.join(missing)}; "
                             "copy them next to the model")
    try:
        onnx.load_external_data_for_model(proto, str(path.parent))
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot read external data ({exc}); re-save the model") from exc
    _ensure_proto_imports(proto)  # files written before every used domain was imported still load
    _check_proto(proto, path)
    try:
        model = Model.from_proto(proto, source=path)
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {exc})") from exc
    if not model.inputs:
        raise ModelLoadError(f"{path}: the model has no inputs; hasten needs at least one graph input")
    return model


def _check_proto(proto: onnx.ModelProto, path: Path) -> None:
    if proto.ir_version <= 0 or not proto.HasField("graph"):
        raise ModelLoadError(f"{path}: not an ONNX model (no graph or IR version); re-export it")
    opsets = {o.domain: o.version for o in proto.opset_import}
    default = opsets.get("", opsets.get("ai.onnx"))
    if default is None:
        raise ModelLoadError(f"{path}: model declares no default-domain opset; re-export it")
    if not MIN_OPSET <= default <= MAX_OPSET:
        raise ModelLoadError(f"{path}: opset {default} is not supported (hasten supports "
                             f"{MIN_OPSET}..{MAX_OPSET}); convert it with onnx.version_converter")
    try:
        onnx.checker.check_model(proto, full_check=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path}: invalid ONNX model ({first}); re-export it") from exc
    if len(proto.graph.node) == 0:
        raise ModelLoadError(f"{path}: the graph has no nodes; re-export the model")
