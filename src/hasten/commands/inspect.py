"""`hasten inspect MODEL`: inputs/outputs, ops, parameters, FLOPs and bytes, costliest nodes, roofline."""

from hasten.cli import add_model_options, command, parse_shapes
from hasten.commands.common import load_model


@command("inspect", "inputs, outputs, op histogram, FLOPs/bytes per node and the roofline floor")
def run(args, console):
    model = load_model(args)
    from hasten.inspect import inspect_model

    report = inspect_model(model, shapes=parse_shapes(args.shape))
    if not args.json:
        report.render(console)
    return report.to_dict()


def arguments(p):
    add_model_options(p)


run.arguments = arguments
