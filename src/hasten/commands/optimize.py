"""`hasten optimize MODEL`: the fastest model inside an accuracy budget, with results and a report in OUT/.

`--allow-training` (torch sources: zoo:minilm, zoo:digits, package.module:function) adds pruned and distilled
students to the candidates; `--train-steps N` fixes their distillation steps (default: what the time budget
affords)."""

from __future__ import annotations

import time

from rich.live import Live
from rich.markup import escape as esc
from rich.table import Table
from rich.text import Text

from hasten.commands.registry import command


class LiveProgress:
    """The search's live display: stage, candidates tried, best so far, time left, last result."""

    def __init__(self, console, enabled: bool = True):
        """enabled: show anything at all; a live panel on a terminal, else one line per stage."""
        self.console, self.enabled = console, enabled
        self.stage, self.last, self.tried, self.best, self.deadline = "starting", "", 0, None, None
        self.live = None

    def __enter__(self):
        if self.enabled and self.console.is_terminal:
            self.live = Live(self, console=self.console, refresh_per_second=2, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.__exit__(*exc)

    def __call__(self, event) -> None:
        if event.kind == "stage":
            self.stage = event.message
            if self.enabled and self.live is None:
                best = f"; best so far {esc(event.best.label)} ({event.best.speedup or 1.0:.2f}x)" \
                    if event.best else ""
                self.console.print(f"[bold]{esc(event.message)}[/bold] ({event.tried} tried, "
                                   f"{max(event.time_left_s, 0):.0f} s left{best})")
        elif event.kind == "train":  # one line per distillation: worth keeping on screen
            self.last = event.message
            if self.enabled:
                self.console.print(esc(event.message))
        elif event.kind == "benchmark":
            self.last = event.message
        else:
            self.last = event.message
        self.tried, self.best = event.tried, event.best
        self.deadline = time.perf_counter() + event.time_left_s
        if self.live is not None:
            self.live.refresh()

    def __rich__(self):  # re-drawn on every refresh, so the time left counts down between events
        return self.render()

    def render(self):
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_row("stage", Text(self.stage))
        grid.add_row("tried", str(self.tried))
        if self.best is not None:
            grid.add_row("best so far", Text(f"{self.best.label}  ({self.best.speedup or 1.0:.2f}x, screen)"))
        if self.deadline is not None:
            grid.add_row("time left", f"{max(self.deadline - time.perf_counter(), 0):.0f} s")
        grid.add_row("last", Text(self.last[:160]))
        return grid


@command("optimize", "search for the fastest model inside an accuracy budget; writes model, recipe, results "
                     "and an HTML report")
def run(args, console):
    from hasten.api import optimize

    t0 = time.perf_counter()
    with LiveProgress(console, enabled=not args.json) as live:
        result = optimize(args.model, calib=args.calib, eval=args.eval, metric=args.metric,
                          max_drop=args.max_drop, target=args.target, backends=args.backends,
                          time_budget=args.time_budget, threads=args.threads, out=args.out,
                          resume=args.resume, force=args.force, progress=live, **_space(args))
    elapsed = time.perf_counter() - t0
    import json

    data = json.loads(result.results_path.read_text())
    if not args.json:
        print_summary(console, data, result, elapsed)
    return {"out": str(result.out), "elapsed_s": elapsed, "summary": data.get("summary"),
            "floor": data.get("floor"), "counts": data.get("counts"), "notes": data.get("notes"),
            "report": str(result.report_path), "recipe": str(result.recipe_path),
            "model": str(result.model_path)}


def print_summary(console, data, result, elapsed: float) -> None:
    """The short final table (fits 80 columns): baseline, chosen, floor; then the recipes and the paths."""
    base, chosen = result.baseline, result.chosen
    metrics = data["metrics"]
    table = Table(title=f"{data['model']}: budget " + ", ".join(f"{k} drop <= {v:g}"
                                                               for k, v in data["budget"].items()))
    table.add_column("", justify="left")
    table.add_column("median ms", justify="right")
    table.add_column("p90 ms", justify="right")
    table.add_column("speed-up", justify="right")
    for m in metrics:
        table.add_column(f"{m}\nmean / worst", justify="right")
    rows = [("baseline", base)] + ([("chosen", chosen)] if chosen is not base else [])
    for name, r in rows:
        lat = r.latency  # a hasten.outcome.records.Latency, or None
        acc = r.accuracy
        cells = [f"{acc.scores[m].mean:.4f} / {acc.scores[m].worst:.4f}" if acc and m in acc.scores else "-"
                 for m in metrics]
        table.add_row(name, _ms(lat and lat.median_ms), _ms(lat and lat.p90_ms), f"{(lat and lat.ratio) or 1.0:.2f}x",
                      *cells)
    floor = data.get("floor") or {}
    for dtype in ("fp32", "int8"):
        if floor.get(f"{dtype}_ms"):
            what = "floor fp32" if dtype == "fp32" else "floor int8*"
            table.add_row(what, _ms(floor[f"{dtype}_ms"]), "", "", *([""] * len(metrics)))
    console.print(table)
    console.print(f"baseline: {esc(base.label)}")
    if chosen is not base:
        console.print(f"chosen:   {esc(chosen.label)}")
        if chosen.accuracy:
            change = ", ".join(f"{m} {0.0 - chosen.accuracy.drops[m] + 0.0:+.4f}" for m in metrics)
            console.print(f"speed-up {chosen.latency.ratio:.2f}x, accuracy change {change} (absolute, against "
                          "fp32 on the same backend)")
    if floor.get("fp32_ms"):
        console.print("floor = max(FLOPs / peak, bytes / bandwidth) with this host's measured peaks; "
                      "* linear layers in int8, the rest fp32")
    failures = (data.get("summary") or {}).get("failures")
    if failures:
        console.print(f"[red]{esc(failures)}[/red]")
    host = data.get("host") or {}
    final = (data.get("noise") or {}).get("final") or {}
    if host.get("int8_isa") or final.get("spread") is not None:
        noise = (f"; host noise {final['spread']:.0%} between the final measurement's {final.get('rounds')} "
                 "interleaved rounds" if final.get("spread") is not None else "")
        console.print(f"tuned for int8 path {host.get('int8_isa', '?')}{noise}")
    for note in data.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {esc(note)}")
    counts = data.get("counts", {})
    console.print(f"{sum(counts.values())} candidates (" + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
                  + f") in {elapsed:.0f} s")
    console.print(esc(f"report: {result.report_path}\nrecipe: {result.recipe_path}\nmodel:  {result.model_path}"))


def _space(args) -> dict:
    out = {}
    if args.schemes is not None:
        out["schemes"] = tuple(s.strip() for s in args.schemes.split(",") if s.strip())
    if args.final_seconds is not None:
        out["final_seconds"] = args.final_seconds
    if args.passes is not None:
        out["passes"] = tuple(s.strip() for s in args.passes.split(",") if s.strip())
    if args.allow_training:
        out["allow_training"] = True
    if args.train_steps is not None:
        out["train_steps"] = args.train_steps
    return out


def _ms(v) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if v >= 1 else f"{v:.3g}"


def arguments(p):
    p.add_argument("model", help="an .onnx file, zoo:NAME (zoo:minilm, zoo:digits) or package.module:function "
                                 "returning (torch module, example inputs)")
    p.add_argument("--calib", default=None, help="calibration data (.npz, image folder, .jsonl for zoo text "
                                                 "models); a zoo model's own by default")
    p.add_argument("--eval", default=None, help="evaluation data, disjoint from --calib; a zoo model's own by "
                                                "default")
    p.add_argument("--metric", default=None, help="top1, cosine, retrieval, retrieval@K, sqnr or module:function; "
                                                  "comma-separated for several (the first is the task metric)")
    p.add_argument("--max-drop", default=None, help="max absolute drop of the task metric (0.01), or NAME=V,... "
                                                    "per metric; defaults: top1/cosine 0.01, retrieval 0.10")
    p.add_argument("--target", default="cpu", help="hardware target (cpu)")
    from hasten.backends import installed_backends

    p.add_argument("--backends", default=None, help="comma-separated backends (default: all installed: "
                                                    f"{','.join(installed_backends())})")
    p.add_argument("--time-budget", default=None, help="wall-clock budget, e.g. 10m, 90s (default 8m)")
    p.add_argument("--threads", default=None, help="threads per session, or a comma list to search over "
                                                   "(default: physical cores)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="reuse OUT/ even if it holds another model's results")
    g.add_argument("--force", action="store_true", help="delete earlier results in OUT/ and start again")
    p.add_argument("--schemes", default=None, help="only these quantisation schemes (comma-separated; '' for "
                                                   "none); default: every registered one the target can run")
    p.add_argument("--passes", default=None, help="only these graph passes (comma-separated; '' for none)")
    p.add_argument("--final-seconds", type=float, default=None, help="timed seconds per finalist in the final "
                                                                      "measurement (default 5, BENCHMARKING.md)")
    p.add_argument("--allow-training", action="store_true", help="also try pruned + distilled students (torch "
                                                                  "sources only; training takes minutes)")
    p.add_argument("--train-steps", type=int, default=None, help="distillation steps per student (default: "
                                                                 "what the time budget affords)")
    p.add_argument("-o", "--out", default=None, help="output folder (default ./out/<model name>)")


run.arguments = arguments
