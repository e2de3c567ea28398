"""Sub-commands of the `hasten` CLI, one module each; importing this package registers them."""

from hasten.commands import apply, bench, inspect, optimize, quantize, sensitivity  # noqa: F401
