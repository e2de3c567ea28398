"""This host's roofline floors for the report: the fastest a model could run here at each dtype.

One function for the search's report (search/finish.py) and `hasten bench` (hasten.inspect.host_floors,
which loads a model given by path first).
"""

from __future__ import annotations

#: the dtypes a floor is computed for ("int8": linear layers int8, the rest fp32)
FLOOR_DTYPES = ("fp32", "bf16", "int8")


def host_floors(model, shapes: dict | None = None) -> dict | None:
    """{"fp32_ms", "bf16_ms" (when the host has bf16), "int8_ms", "flops", "floor_bytes", "formulas"} for
    `model` (a Model) at input `shapes` ({input name: shape}); None when it cannot be costed or the host
    has not been measured (informative only)."""
    from hasten.input_shapes import split_shapes
    from hasten.measure.cost import estimate_cost
    from hasten.measure.shapes import infer_shapes
    from hasten.measure.targets import host_target, roofline, roofline_mixed

    try:
        overrides, input_shapes = split_shapes(model, shapes)
        cost = estimate_cost(infer_shapes(model, overrides, input_shapes), infer=False)
        host = host_target()
    except Exception:  # informative only: a report must not fail for want of a floor
        return None
    out: dict = {"flops": cost.total_flops, "floor_bytes": cost.floor_bytes, "formulas": {}}
    for dtype in FLOOR_DTYPES:
        if dtype == "int8":
            if "int8" not in host.peak_flops or "fp32" not in host.peak_flops:
                continue
            floor = roofline_mixed(cost, host, "int8", "fp32")
        elif dtype in host.peak_flops:
            floor = roofline(cost, host, dtype)
        else:
            continue
        out[f"{dtype}_ms"] = floor.seconds * 1e3
        out["formulas"][dtype] = floor.formula()
    return out if "fp32_ms" in out else None
