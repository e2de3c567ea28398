"""`hasten bench MODEL --backend onnxruntime,openvino`: one table, backends side by side."""

from rich.table import Table

from hasten.commands.common import bench_feeds, load_source
from hasten.commands.registry import add_model_options, command


@command("bench", "latency of a model on several backends, side by side in one run")
def run(args, console):
    from hasten.backends import physical_cores
    from hasten.measure.compare import compare_backends

    src = load_source(args)
    model = src.model
    feeds, origin = bench_feeds(src, args)
    specs = [s for s in args.backend.split(",") if s]
    threads = args.threads or physical_cores()
    with console.status("compiling and timing (interleaved rounds)..."):
        rows, peak = compare_backends(model, specs, feeds, threads=threads, min_seconds=args.seconds,
                                      rounds=args.rounds)
    shape = {k: tuple(v.shape) for k, v in feeds[0].items()}
    floor = _floor(model, args)
    if not args.json:
        table = Table(title=f"{args.model}: {shape}, {threads} threads, {origin}")
        for col in ("backend", "median ms", "p90 ms", "p99 ms", "items/s", "ratio", "× floor", "runs",
                    "max |Δ| vs first", "compile s"):
            table.add_column(col, justify="left" if col == "backend" else "right")
        base = rows[0].latency.median_ms
        for r in rows:
            lat = r.latency
            table.add_row(r.label, f"{lat.median_ms:.2f}", f"{lat.p90_ms:.2f}", f"{lat.p99_ms:.2f}",
                          f"{lat.throughput:.1f}", f"{base / lat.median_ms:.2f}x",
                          f"{lat.median_ms / floor['fp32_ms']:.1f}" if floor else "-", str(len(lat.times_ms)),
                          f"{r.max_abs_diff:.2e}", f"{r.compile_s:.1f}")
        console.print(table)
        if floor:
            console.print(f"floor on this host: fp32 {floor['fp32_ms']:.2f} ms, int8 linear layers "
                          f"{floor['int8_ms']:.2f} ms  (floor = max(FLOPs/peak, bytes/bandwidth))")
        console.print(f"ratio = first backend's median / this one's (higher is faster); peak RSS {peak:.0f} MiB")
    return {"model": args.model, "shapes": shape, "threads": threads, "inputs": origin,
            "rows": [r.to_dict() for r in rows], "floor": floor, "peak_rss_mb": peak}


def _floor(model, args):
    """fp32 and int8-linear floors (ms) on this host, from the cost model; None when unavailable."""
    from hasten.input_shapes import parse_shape_args
    from hasten.inspect import host_floors

    return host_floors(model, parse_shape_args(args.shape))


def arguments(p):
    from hasten.backends import backend_names

    add_model_options(p)
    names = ",".join(backend_names())
    p.add_argument("--backend", default=names,
                   help=f"comma-separated backends (default {names}); the first is the reference; NAME:VALUE "
                        "or NAME:OPTION=VALUE sets an option (openvino:bf16 for bf16)")
    p.add_argument("--threads", type=int, default=None, help="threads per backend (default: physical cores)")
    p.add_argument("--seconds", type=float, default=5.0, help="minimum timed seconds per backend")
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds")


run.arguments = arguments
