"""Sub-commands of the `hasten` CLI, one module each; importing this package registers them."""

from hasten.commands import bench, inspect, quantize, sensitivity  # noqa: F401
