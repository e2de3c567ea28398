"""Helpers shared by CLI commands: resolve the model argument (hasten.source) and its samples."""

from __future__ import annotations

from hasten.input_shapes import parse_shape_args
from hasten.source import resolve


def load_source(args):
    """The Source of the command's model argument (its Model, and a zoo model's data and metrics)."""
    return resolve(args.model)


def load_model(args):
    return load_source(args).model


def bench_feeds(src, args, count: int = 16) -> tuple[list[dict], str]:
    """Feeds for timing the Source `src`: its own evaluation data (a zoo model's), else synthetic inputs in
    valid ranges."""
    from hasten.data import Samples

    model = src.model
    shapes = parse_shape_args(args.shape)
    if src.entry is not None and not shapes:
        samples = src.evaluation.take(count)
        return list(samples.feeds(1)), f"{samples.name or 'evaluation'} data"
    from hasten.input_shapes import concrete_input_shapes

    batch = next(iter(concrete_input_shapes(model, shapes).values()))[0]
    samples = Samples.synthetic(model, count * batch, seed=0, shapes=shapes)
    return list(samples.feeds(batch)), "synthetic inputs in valid ranges"
