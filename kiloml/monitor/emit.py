"""MonitorParams as C: the constants of one kml_monitor (hex float literals, so every
float32 is the twin's bit for bit), its state arrays and an init function."""

from __future__ import annotations

import numpy as np

from kiloml.monitor.config import RUN_INIT, MonitorParams

F32 = np.float32


def c_float(v: float) -> str:
    """A float32 as an exact C99 hex literal (finite values only)."""
    x = F32(v)
    if not np.isfinite(x):
        raise ValueError(f"monitor constant {x} is not finite")
    return float(x).hex() + "f" if x != 0 else ("-0.0f" if np.signbit(x) else "0.0f")


def _floats(values: np.ndarray) -> str:
    return "{" + ", ".join(c_float(v) for v in values) + "}"


def emit_monitor_c(p: MonitorParams, name: str) -> str:
    """C defining ``<name>_params`` (const), ``<name>_state`` and ``<name>_init()`` (attaches
    the state's arrays and resets it); the file including it includes kml_monitor.h."""
    c, t = p.constants(), p.thresholds.as_float32()
    k, ch = p.n_monitored, p.n_channels
    ints = ", ".join(str(int(i)) for i in p.index)
    lines = [
        f"/* monitor {name}: {k} features, {ch} channels, {p.n_classes} classes; limits: "
        f"{p.thresholds.source} */",
        f"static const int32_t {name}_index[{k}] = {{{ints}}};",
        *(f"static const float {name}_{a}[{k}] = {_floats(getattr(p, a))};"
          for a in ("mean", "inv_sd", "lo", "hi")),
        f"static const float {name}_floor[{ch}] = {_floats(p.floor)};",
        f"const kml_monitor_params {name}_params = {{",
        f"    {k}, {ch}, {p.n_classes}, {p.stuck_windows}, {name}_index, {name}_mean, "
        f"{name}_inv_sd, {name}_lo, {name}_hi, {name}_floor,",
        "    " + ", ".join(c_float(c[x]) for x in ("alpha", "one_minus_alpha", "z_clip",
                                                  "inv_k", "inv_log2_classes")) + ",",
        "    " + ", ".join(c_float(t[x]) for x in ("z_limit", "var_lo", "var_hi")) + ",",
        f"    {_floats(c['run_init'][RUN_INIT])},",
        f"    {_floats(c['run_limit'])},",
        f"    {_floats(t['ph_delta'])}, {_floats(t['ph_lambda'])},",
        f"    {c_float(c['ph_cap'])}, {c_float(c['ph_min_windows'])}}};",
        f"static float {name}_z_mean[{k}], {name}_z_var[{k}];",
        f"static uint16_t {name}_flat_run[{ch}];",
        f"kml_monitor_state {name}_state; /* .bss: {name}_init() attaches the arrays */",
        "",
        f"void {name}_init(void)",
        "{",
        f"    {name}_state.z_mean = {name}_z_mean;",
        f"    {name}_state.z_var = {name}_z_var;",
        f"    {name}_state.flat_run = {name}_flat_run;",
        f"    kml_monitor_reset(&{name}_params, &{name}_state);",
        "}",
        "",
    ]
    return "\n".join(lines)
