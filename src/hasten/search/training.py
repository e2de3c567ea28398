"""Student candidates for the search (`--allow-training`): pruned and distilled copies of a torch source's model.

What the source's structure suggests: BERT-style encoders keep 2/3 of the layers (6 -> 4) with 1/4 or 1/2 of
the heads removed; CNNs lose 1/2 or 1/4 of their conv channels. Each student is one `compress` recipe step
(hasten.compress.step): trained once, then its fp32 export goes through the same stages as the input model
(graph passes of each backend's base, every scheme, options), judged by the same evaluator, i.e. always
against the ORIGINAL model's fp32 outputs, never against the student.

Time: all distillations together get `TRAIN_SHARE` of --time-budget, split evenly. A few probe steps on a
copy of the student measure steps/s and the teacher's set-up cost per item; the step count is then fixed
before training (min(max steps, what the cap affords); `--train-steps N` overrides it), so the recipe
records it and `hasten apply` reproduces the student bit for bit. A student that cannot get `MIN_STEPS`
steps in its cap is recorded as not tried, with why.

Cache: OUT/cache/student-<slot>.json (the step chosen for these options) and
OUT/cache/student-<config>.safetensors (the trained weights and the pruning plan; never pickle). A resumed
run finds both and does not train again (delete them, or OUT/cache, to retrain with another time budget).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from hasten.errors import HastenError, SearchError
from hasten.outcome.records import Record, Status
from hasten.recipe import Step, normalized
from hasten.search.cache import atomic_write_json, digest, read_json
from hasten.source import is_function_spec, load_input, torch_spec  # noqa: F401  (moved to hasten.source)

#: share of the time budget all distillations together may use
TRAIN_SHARE = 0.5
#: a student that the time cap allows fewer steps than this is not trained
MIN_STEPS = 20
#: steps timed on a copy of the student to estimate the training speed
PROBE_STEPS = 4
#: the cap only affords this share of what the probe says (the probe is short and noisy)
SAFETY = 0.85
#: per kind of source: peak learning rate, frozen parameters, training items (None: all), max steps
KIND_DEFAULTS = {"embedding": (1e-3, ("word_embeddings",), 4096, 8000), "classifier": (3e-3, (), None, 400),
                 "custom": (1e-3, (), None, 1000)}


class StudentSkipped(HastenError):
    """A student was not trained (the time budget cannot afford it); the message says why."""


# -- what to try -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudentOption:
    """One student shape: pruning options, distillation options (all but steps), and limits."""

    note: str
    prune: dict
    distill: dict
    max_steps: int
    train_items: int | None
    data: str


def student_options(src, seed: int = 0, calib_items: int | None = None) -> list[StudentOption]:
    """The students worth trying for `src` (a TorchSource), from its structure; [] when none is known."""
    from torch import nn

    from hasten.compress.prune import find_encoder_layers, layer_keep
    from hasten.measure.isa import cpu_features, native_dtypes

    lr, freeze, items, max_steps = KIND_DEFAULTS.get(src.kind, KIND_DEFAULTS["custom"])
    data = "source" if src.kind in ("embedding", "classifier") else "calibration"
    if data == "calibration":
        items = calib_items
    found = find_encoder_layers(src.module)
    bf16 = found is not None and "bf16" in native_dtypes(cpu_features())
    distill = {"batch_size": 32, "lr": lr, "freeze": list(freeze), "seed": seed, "bf16": bf16}
    shapes = []
    if found is not None:
        n = len(found[1])
        keep = layer_keep(n, max(1, round(n * 2 / 3)))
        importance = "taylor" if src.calibration is not None else "magnitude"
        for heads, what in ((0.25, "1/4"), (0.5, "1/2")):
            shapes.append((f"{n} -> {len(keep)} layers, {what} of the heads removed",
                           {"keep_layers": keep, "heads": heads, "importance": importance, "seed": seed}))
    elif any(isinstance(m, nn.Conv2d) for m in src.module.modules()):
        for channels, what in ((0.5, "1/2"), (0.25, "1/4")):
            shapes.append((f"{what} of the conv channels removed", {"channels": channels, "seed": seed}))
    return [StudentOption(note, prune, distill, max_steps, items, data) for note, prune in shapes]


# -- training and the student cache ----------------------------------------------------------------------
class Students:
    """Trains (or loads from OUT/cache) the students of one search; `model(step)` is a student's fp32 export.

    source: a torch-source spec or a TorchSource; teacher: the input model's fingerprint; emit(kind, message)
    reports progress (one line before and one after each distillation)."""

    def __init__(self, source, cache_dir: Path, teacher: str, calib, settings, emit, calib_fingerprint=None):
        self.spec = source if isinstance(source, str) else source.name
        self._src = None if isinstance(source, str) else source
        self.dir = Path(cache_dir)
        self.teacher = teacher
        self.calib = calib
        self.calib_fingerprint = calib_fingerprint
        self.seed = settings.seed
        self.threads = settings.threads[0] if settings.threads else 1
        self.train_steps = settings.train_steps
        self.calib_items = None if calib is None else min(len(calib), settings.calibration_items)
        self.emit = emit
        self._models: dict[str, object] = {}
        self.reports: dict[str, dict] = {}  # config digest -> distillation summary

    @property
    def src(self):
        if self._src is None:
            from hasten.compress.sources import torch_source

            self._src = torch_source(self.spec)
        return self._src

    def options(self) -> list[StudentOption]:
        return student_options(self.src, self.seed, self.calib_items)

    def step_for(self, option: StudentOption, steps: int) -> Step:
        """The compress step for `option` trained `steps` steps (every option in full)."""
        from hasten.compress.step import NAMES

        config = {"source": self.spec, "teacher": self.teacher, "prune": dict(option.prune),
                  "distill": {**option.distill, "steps": int(steps)}, "train_items": option.train_items,
                  "data": option.data, "threads": self.threads}
        return normalized(Step("compress", NAMES[0], config))

    def _slot(self, option: StudentOption) -> Path:
        what = [self.teacher, self.spec, dataclasses.asdict(option), self.threads, self.train_steps,
                self.calib_fingerprint if option.data == "calibration" else None]
        return self.dir / f"student-{digest(*what)}.json"

    def _weights(self, step: Step) -> Path:
        return self.dir / f"student-{digest(step.config)}.safetensors"

    def prepare(self, option: StudentOption, cap_s: float, left_s: float) -> Step:
        """The trained student's step: from the cache, else probed, sized to `cap_s` seconds (or
        --train-steps within `left_s`) and trained now. StudentSkipped when the time does not allow it."""
        slot = self._slot(option)
        saved = read_json(slot)
        if isinstance(saved, dict) and isinstance(saved.get("step"), dict):  # sized by an earlier run
            step = Step(**saved["step"])
            if self._weights(step).is_file():
                self.reports[digest(step.config)] = saved.get("distill") or {}
                self.emit("train", f"student {step.label()}: distilled by an earlier run (cached in "
                                   f"{self.dir}), not trained again")
                return step
            steps, estimate = step.config["distill"]["steps"], float(saved.get("estimate_s") or 0.0)
        else:
            steps, estimate = self._size(option, cap_s, left_s)
            step = self.step_for(option, steps)
        self.emit("train", f"distilling student {step.label()} ({option.note}): {steps} steps, about "
                           f"{estimate:.0f} s, {self.threads} thread(s)")
        self.model(step)
        atomic_write_json(slot, {"step": step.to_dict(), "distill": self.reports.get(digest(step.config)),
                                 "estimate_s": estimate})
        return step

    def _size(self, option: StudentOption, cap_s: float, left_s: float) -> tuple[int, float]:
        """(steps, estimated seconds) for `option` within `cap_s` (--train-steps: within `left_s`)."""
        rate, setup_s = self.probe(option)
        if self.train_steps is not None:
            estimate = setup_s + self.train_steps / rate
            if estimate > left_s:
                raise StudentSkipped(f"{self.train_steps} steps (--train-steps) need about {estimate:.0f} s "
                                     f"at {rate:.1f} steps/s; the time budget leaves {max(left_s, 0):.0f} s")
            return self.train_steps, estimate
        steps = min(option.max_steps, int((cap_s - setup_s) * rate * SAFETY))
        if steps < MIN_STEPS:
            raise StudentSkipped(f"its share of the time budget ({max(cap_s, 0):.0f} s) affords "
                                 f"{max(steps, 0)} distillation steps at {rate:.1f} steps/s (at least {MIN_STEPS} "
                                 "are needed): give a longer --time-budget or --train-steps N")
        return steps, setup_s + steps / rate

    def probe(self, option: StudentOption) -> tuple[float, float]:
        """(steps per second, set-up seconds: pruning and the teacher's pass over the training data), from
        PROBE_STEPS steps on a throw-away copy of the student."""
        import time

        from hasten.compress.step import CompressSpec, distill_module, prune_student, training_data

        step = self.step_for(option, PROBE_STEPS)
        spec = CompressSpec.from_config(step.name, step.config)
        t0 = time.perf_counter()
        student, plan = prune_student(spec, self.src)
        prune_s = time.perf_counter() - t0
        data = training_data(spec, self.src, self.calib)
        batch = spec.distill["batch_size"]
        # one untimed step first: the first calls of a new shape pay one-off costs that do not scale with data
        warm = dataclasses.replace(spec.distill_config(), steps=1)
        distill_module.distill(self.src.module, student, data.take(min(len(data), batch)), warm, plan=plan,
                               threads=spec.threads)
        n = min(len(data), batch * PROBE_STEPS)
        res = distill_module.distill(self.src.module, student, data.take(n), spec.distill_config(), plan=plan,
                                     threads=spec.threads)
        train_s = res.steps * min(batch, n) / max(res.items_per_s, 1e-9)
        per_item = max(0.0, res.seconds - train_s) / max(n, 1)
        return res.steps / max(train_s, 1e-9), prune_s + per_item * len(data)

    def model(self, step: Step):
        """The student's fp32 Model: in memory, else rebuilt from its cached weights, else trained now."""
        from hasten.compress.common import CompressError
        from hasten.compress.prune import load_student, save_student
        from hasten.compress.step import CompressSpec, train_student

        key = digest(step.config)
        if key in self._models:
            return self._models[key]
        path = self._weights(step)
        module = None
        if path.is_file():
            try:
                module = load_student(path, self.src.module, self.src.example_inputs)
            except CompressError:
                module = None  # a damaged file: train again
        if module is None:
            spec = CompressSpec.from_config(step.name, step.config)
            if spec.teacher != self.teacher:
                raise SearchError(f"{step.label()} is a student of another model (fingerprint {spec.teacher}, "
                                  f"not {self.teacher})")
            module, plan, res = train_student(spec, self.src, self.calib)
            save_student(path, module, plan, self.src.name)
            summary = res.to_dict()
            rate = res.items_per_s / spec.distill["batch_size"]
            setup = max(0.0, res.seconds - res.steps / max(rate, 1e-9))
            self.reports[key] = {k: summary[k] for k in ("steps", "seconds", "first_loss", "final_loss")}
            self.emit("train", f"distilled student {step.label()}: {res.steps} steps in {res.seconds:.1f} s "
                               f"({rate:.2f} steps/s after {setup:.1f} s of set-up), loss "
                               f"{_g(summary['first_loss'])} -> {_g(summary['final_loss'])}")
        model = self.src.export(module)
        self._models[key] = model
        return model


def _g(value) -> str:
    return "-" if value is None else f"{value:.4g}"


# -- the tuner's stage -----------------------------------------------------------------------------------
def make_students(settings, source, cache_dir, context: dict, calib, emit):
    """A Students for the search when `settings.allow_training` (SearchError without a torch source), else
    None. context: the search's (model and calibration fingerprints); emit(kind, message): progress."""
    if not settings.allow_training:
        return None
    if source is None:
        raise SearchError("--allow-training trains students from the torch model; give zoo:minilm, zoo:digits "
                          "or package.module:function (an .onnx file has no torch module)")
    return Students(source, cache_dir, context["model_fingerprint"], calib, settings, emit, context["calibration"])


def student_stage(tuner, bases: dict) -> tuple[list[Record], list[str]]:
    """Train each student (or load it), evaluate its fp32 export on every backend's graph base against the
    input model's references; returns the in-budget, timed ones (the scheme stage's extra bases) and the
    lines for the search's notes."""
    from hasten.search.runner import _one_line

    students = tuner.students
    notes: list[str] = []
    if students is None or not bases:
        return [], notes
    tuner.emit("stage", "students: pruned and distilled copies of the torch model (--allow-training)")
    try:
        options = students.options()
    except HastenError as exc:
        return [], [f"no student candidates: {_one_line(exc)}"]
    if not options:
        return [], [f"no student candidates: {students.spec} has neither BERT-style encoder layers nor "
                    "conv channels to prune"]
    share = TRAIN_SHARE * tuner.settings.time_budget_s / len(options)
    recs: list[Record] = []
    for option in options:
        left = tuner.time_left() - tuner.reserve_s() - len(bases) * tuner.runner.estimate_s()
        try:
            step = students.prepare(option, min(share, left), left)
        except StudentSkipped as exc:
            _record_untrained(tuner, option, bases, Status.NOT_TRIED, str(exc))
            continue
        except Exception as exc:  # a source that cannot be pruned, a diverging run: recorded, search goes on
            _record_untrained(tuner, option, bases, Status.FAILED, _one_line(exc))
            continue
        report = students.reports.get(digest(step.config)) or {}
        note = f"student: {option.note}; distilled {step.config['distill']['steps']} steps"
        if report.get("final_loss") is not None:
            note += f" (loss {_g(report.get('first_loss'))} -> {_g(report['final_loss'])})"
        for base in bases.values():
            cand = tuner.space.student_candidate(step, base.recipe, note)
            if not tuner.can_start():
                tuner.not_tried([cand])
                continue
            recs.append(tuner.add(cand))
    tuner.screen([r for r in recs if r.within], "fp32 students")
    for r in recs:
        if r.status == Status.REJECTED:
            notes.append(f"student {r.label} misses the budget in fp32 ({r.reason}); its quantised "
                         "variants were not tried")
    return [r for r in recs if r.within and r.speedup], notes


def _record_untrained(tuner, option: StudentOption, bases: dict, status: Status, why: str) -> None:
    """Records (one per backend) for a student that was not trained, with why."""
    students = tuner.students
    step = students.step_for(option, students.train_steps or option.max_steps)
    for base in bases.values():
        cand = tuner.space.student_candidate(step, base.recipe, f"student: {option.note}")
        tuner.runner.mark([cand], status, f"not trained: {why}", stage="train")
    tuner.emit("train", f"student ({option.note}) not trained: {why}")
