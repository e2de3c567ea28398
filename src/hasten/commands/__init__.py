"""Sub-commands of the `hasten` CLI, one module each; importing this package registers them."""

from hasten.commands import (  # noqa: F401
    apply,
    bench,
    distill,
    export,
    inspect,
    optimize,
    prune,
    quantize,
    sensitivity,
)
