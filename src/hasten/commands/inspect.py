"""`hasten inspect MODEL`: inputs/outputs, ops, parameters, FLOPs and bytes, costliest nodes, roofline."""

from hasten.commands.common import load_model
from hasten.commands.registry import add_model_options, command
from hasten.input_shapes import parse_shape_args


@command("inspect", "inputs, outputs, op histogram, FLOPs/bytes per node and the roofline floor")
def run(args, console):
    model = load_model(args)
    from hasten.inspect import inspect_model

    if args.refresh_host:
        from hasten.measure.targets import MEASURE_BUDGET_S, host_target

        with console.status(f"measuring this host's peak GEMM rates and memory bandwidth (at most "
                            f"{MEASURE_BUDGET_S:g} s)..."):
            host_target(refresh=True)

    from hasten.recipe import tuned_elsewhere

    warning = tuned_elsewhere(args.model)  # already logged by hasten.load; the JSON carries it too
    report = inspect_model(model, shapes=parse_shape_args(args.shape))
    if not args.json:
        report.render(console)
    return {**report.to_dict(), "warning": warning}


def arguments(p):
    add_model_options(p)
    p.add_argument("--refresh-host", action="store_true",
                   help="measure this host's peaks again (keeps the best figures seen; run on a quiet machine)")


run.arguments = arguments
