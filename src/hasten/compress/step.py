"""The `compress` recipe step: a pruned and distilled student of a torch model, rebuilt deterministically.

    - kind: compress
      name: prune-distill
      config:
        source: zoo:digits             # torch_source spec of the teacher
        teacher: 79fb0b919f874085      # fingerprint of the ONNX model the step must be applied to
        prune: {channels: 0.5, importance: magnitude, ...}   # student_from_options arguments, all of them
        distill: {steps: 300, lr: 0.003, batch_size: 32, seed: 0, ...}  # DistillConfig.fingerprint()
        train_items: null              # the first N training items (null: all)
        data: source                   # "source": the source's training split; "calibration": the
                                       #   calibration samples given to `apply` (module:function sources)
        threads: 2                     # torch threads while distilling

Applying it: the input model's fingerprint must be `teacher` (RecipeError otherwise); then
torch_source(source) -> student_from_options(**prune) -> distill(DistillConfig(**distill), threads) ->
source.export(student). With the same torch build, machine and thread count the student is bit-exact, so
the exported model has the same fingerprint every time.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass

from hasten.compress.common import CompressError

#: the distillation module (the package `hasten.compress` exports its function under the same name)
distill_module = importlib.import_module("hasten.compress.distill")

NAMES = ("prune-distill",)
#: every student_from_options argument a step records, with its default
PRUNE_DEFAULTS = {"keep_layers": None, "heads": None, "ffn": None, "channels": None, "target_flops": None,
                  "importance": "magnitude", "calib_size": 64, "multiple_of": 1, "seed": 0}
DATA = ("source", "calibration")
_REQUIRED = ("source", "teacher", "prune", "distill")


@dataclass(frozen=True)
class CompressSpec:
    """A compress step's config, checked and with every default filled in (its fields are the config keys)."""

    source: str
    teacher: str
    prune: dict
    distill: dict
    train_items: int | None = None
    data: str = "source"
    threads: int = 1

    @classmethod
    def from_config(cls, name: str, config: dict) -> CompressSpec:
        """Check `config` (CompressError naming the key); unknown keys and options are refused."""
        if name not in NAMES:
            raise CompressError(f"unknown compress step {name!r}; known: {', '.join(NAMES)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise CompressError(f"unknown key(s) {unknown}; a compress step has {sorted(known)}")
        missing = [k for k in _REQUIRED if k not in config]
        if missing:
            raise CompressError(f"missing key(s) {missing}")
        for key in ("source", "teacher"):
            if not isinstance(config[key], str) or not config[key]:
                raise CompressError(f"'{key}' must be a non-empty string, got {config[key]!r}")
        prune = config["prune"] or {}
        if not isinstance(prune, dict) or set(prune) - set(PRUNE_DEFAULTS):
            raise CompressError(f"'prune' must be a mapping with keys from {sorted(PRUNE_DEFAULTS)}, got {prune!r}")
        prune = {**PRUNE_DEFAULTS, **prune}
        if prune["keep_layers"] is not None:
            prune["keep_layers"] = [int(i) for i in prune["keep_layers"]]
        dist = dict(config["distill"] or {})
        fields = {f.name for f in dataclasses.fields(distill_module.DistillConfig)} - {"checkpoint_every"}
        if set(dist) - fields:
            raise CompressError(f"'distill' has unknown option(s) {sorted(set(dist) - fields)}; known: "
                                f"{sorted(fields)}")
        if "freeze" in dist:
            dist["freeze"] = tuple(dist["freeze"] or ())
        try:
            dist = distill_module.DistillConfig(**dist).fingerprint()
        except TypeError as exc:
            raise CompressError(f"'distill': {exc}") from exc
        items = config.get("train_items")
        if items is not None and (not isinstance(items, int) or isinstance(items, bool) or items < 1):
            raise CompressError(f"'train_items' must be an integer >= 1 or null, got {items!r}")
        data = config.get("data", "source")
        if data not in DATA:
            raise CompressError(f"'data' must be one of {DATA}, got {data!r}")
        threads = config.get("threads", 1)
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise CompressError(f"'threads' must be an integer >= 1, got {threads!r}")
        return cls(config["source"], config["teacher"], prune, dist, items, data, threads)

    def distill_config(self):
        return distill_module.DistillConfig(**{**self.distill, "freeze": tuple(self.distill.get("freeze") or ())})

    def label(self) -> str:
        """Short: `prune-distill(layers=[0,2,3,5],heads=0.25,steps=300)`."""
        parts = []
        if self.prune.get("keep_layers") is not None:
            parts.append("layers=[" + ",".join(str(i) for i in self.prune["keep_layers"]) + "]")
        for key in ("heads", "ffn", "channels", "target_flops"):
            if self.prune.get(key) is not None:
                parts.append(f"{key}={self.prune[key]:g}")
        parts.append(f"steps={self.distill['steps']}")
        return f"{NAMES[0]}({','.join(parts)})"


def compress_label(config: dict) -> str:
    """The label of a compress step's config (its raw text when the config is not valid)."""
    try:
        return CompressSpec.from_config(NAMES[0], config).label()
    except CompressError:
        return f"{NAMES[0]}(?)"


def training_data(spec: CompressSpec, src, calib=None):
    """The samples the student learns from: the source's training split, or the given calibration samples."""
    from hasten.errors import DataError

    if spec.data == "source":
        return src.training_data(spec.train_items)
    if calib is None:
        raise DataError(f"the compress step trains on the calibration data ({spec.train_items or 'all'} items) "
                        f"of {spec.source}: give the calibration samples the search used (--calib)")
    if spec.train_items is not None and len(calib) < spec.train_items:
        raise DataError(f"the compress step was trained on {spec.train_items} calibration items; only "
                        f"{len(calib)} were given: give the same calibration data to reproduce it")
    return calib.take(spec.train_items) if spec.train_items else calib


def prune_student(spec: CompressSpec, src):
    """(student module before training, plan): `student_from_options` with the step's options."""
    from hasten.compress.workflow import student_from_options

    student, plan, _ = student_from_options(src, **spec.prune)
    return student, plan


def train_student(spec: CompressSpec, src=None, calib=None):
    """(trained student module, plan, DistillResult): prune, then distill exactly as `spec` says."""
    from hasten.compress.sources import torch_source

    src = src if src is not None else torch_source(spec.source)
    student, plan = prune_student(spec, src)
    data = training_data(spec, src, calib)
    result = distill_module.distill(src.module, student, data, spec.distill_config(), plan=plan,
                                    threads=spec.threads)
    return result.student, plan, result


def check_teacher(spec: CompressSpec, model) -> None:
    """RecipeError unless `model` is the teacher the step was made from."""
    from hasten.errors import RecipeError

    found = model.fingerprint()
    if found != spec.teacher:
        raise RecipeError(f"the compress step distils a student of {spec.source} (model fingerprint "
                          f"{spec.teacher}); the input model has fingerprint {found}: give the same teacher "
                          f"model ({spec.source}) the recipe was made from")


def run_compress(spec: CompressSpec, model, calib=None):
    """Apply a compress step to `model` (the teacher, checked): (exported student Model, report dict)."""
    from hasten.compress.sources import torch_source

    check_teacher(spec, model)
    src = torch_source(spec.source)
    student, _, result = train_student(spec, src, calib)
    return src.export(student), {"distill": result.to_dict()}
