"""Helpers shared by CLI commands: load a model and its samples from the command line."""

from __future__ import annotations

from hasten.input_shapes import parse_shape_args
from hasten.source import load, zoo_name


def load_model(args):
    return load(args.model)


def bench_feeds(model, args, count: int = 16) -> tuple[list[dict], str]:
    """Feeds for timing: a zoo model's own evaluation data, else synthetic inputs in valid ranges."""
    from hasten.data import Samples

    shapes = parse_shape_args(args.shape)
    if zoo_name(args.model) is not None and not shapes:
        from hasten import zoo

        samples = zoo.get(args.model).evaluation().take(count)
        return list(samples.feeds(1)), f"{samples.name or 'evaluation'} data"
    from hasten.input_shapes import concrete_input_shapes

    batch = next(iter(concrete_input_shapes(model, shapes).values()))[0]
    samples = Samples.synthetic(model, count * batch, seed=0, shapes=shapes)
    return list(samples.feeds(batch)), "synthetic inputs in valid ranges"
