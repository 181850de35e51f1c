"""The README every package carries: the API, units, rates, memory figures and the parity
evidence of the run it was exported from (metrics.json)."""

from __future__ import annotations

from kiloml.export.common import HeldOut, RunSource
from kiloml.version import __version__


def _api(run: RunSource) -> str:
    a = run.api
    p = run.pipeline
    return f"""## API (`{a.header}`)

```c
#include "{a.header}"

{a.result_t} result;
{a.fn("reset")}();                       /* a new recording, or after a gap */
for (;;) {{
    float sample[{a.const("CHANNELS")}] = {{ /* {", ".join(p.channels)} */ }};
    if ({a.fn("push_sample")}(sample)) {{       /* 1 when a window is complete */
        int32_t label = {a.fn("classify_latest")}(&result);
        /* {a.fn("class_names")}[label], result.scores[0 .. {a.const("CLASSES")} - 1] */
    }}
}}
```

- `{a.fn("classify")}(window, &result)`: one window of `{a.const("WINDOW_SAMPLES")}` x
  `{a.const("CHANNELS")}` floats, row-major `[T][C]`, of preprocessed samples.
- `{a.fn("push_sample")}` / `{a.fn("classify_latest")}` / `{a.fn("reset")}`: streaming, one
  raw sample at a time (what the examples use).
- The header lists every function, macro and type; all state is static, no malloc.
"""


def _facts(run: RunSource) -> str:
    p = run.pipeline
    window_ms = p.window_samples * 1000.0 / p.sample_rate_hz
    stride_ms = p.stride_samples * 1000.0 / p.sample_rate_hz
    decim = (f"; preprocessing decimates by {p.decimation} to {p.sample_rate_hz:g} Hz"
             if p.decimation > 1 else "")
    return f"""## Input, rates and units

- channels ({p.n_channels}, in this order): {", ".join(f"`{c}`" for c in p.channels)}
- units: each channel in the units and scale of the training recordings' column of the
  same name; the library converts nothing, so feed it what the recordings held
- sample rate: {p.input_rate_hz:g} Hz (the samples you push){decim}
- window: {p.window_samples} samples ({window_ms:g} ms), a new decision every
  {p.stride_samples} samples ({stride_ms:g} ms)
- classes ({p.n_classes}, label = index): {", ".join(f"{i} `{c}`" for i, c in
                                                    enumerate(p.class_names))}
"""


def _n(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _memory(run: RunSource) -> str:
    rows = []
    for target, r in sorted(run.metrics.get("resources", {}).items()):
        if not isinstance(r, dict):
            continue
        latency = r.get("latency_us")
        clock = r.get("clock_hz") or 0
        when = "" if latency is None else f"{latency:g} us at {clock / 1e6:g} MHz"
        rows.append(f"| {target} | {_n(r.get('flash_bytes'))} | {_n(r.get('ram_bytes'))} | "
                    f"{_n(r.get('stack_bytes'))} | "
                    f"{_n(r.get('instructions_per_inference'))} | {when} | "
                    f"{r.get('measured_on', '')} |")
    if not rows:
        return "## Memory\n\nThe run measured no target (run `kiloml verify`).\n"
    compilers = sorted({r.get("compiler", "") for r in run.metrics["resources"].values()
                        if isinstance(r, dict) and r.get("compiler")})
    return ("## Memory and time (measured by the run)\n\n"
            "| target | flash B | RAM B | stack B | instructions per window | latency | "
            "measured on |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            + (f"Built with {'; '.join(compilers)}.\n" if compilers else ""))


def _parity(run: RunSource, data: HeldOut) -> str:
    lines = []
    for where, p in sorted(run.metrics.get("parity", {}).items()):
        if not isinstance(p, dict) or "n" not in p:
            continue
        stream = p.get("streaming") or {}
        place = f"{where} (QEMU {p['machine']})" if p.get("machine") else where
        text = f"- {place}: {p.get('decisions_equal')}/{p.get('n')} held-out windows decided " \
               f"as Python does"
        if p.get("features_bit_exact"):
            text += ", features bit-exact"
        if stream:
            text += (f"; streaming {stream.get('decisions_equal')}/{stream.get('n_windows')} "
                     f"equal")
        lines.append(text)
    evidence = "\n".join(lines) or "- none recorded (run `kiloml verify`)"
    return f"""## Parity evidence (from the run's metrics.json)

{evidence}

The examples carry {len(data.recordings)} of those held-out recordings ({data.n_samples:,}
samples, {len(data.labels)} windows) with Python's decision on each: the stream example
prints its decisions and how many equal Python's.

Parity holds with floating-point contraction off (`-ffp-contract=off`; no fused
multiply-add): keep it in your build.
"""


def readme(run: RunSource, name: str, fmt_title: str, body: str, data: HeldOut) -> str:
    p = run.pipeline
    return f"""# {name}: kiloml model library ({fmt_title})

The verified C99 library of kiloml project `{p.name}`, exported by kiloml {__version__} from
a `kiloml run` folder. Apache-2.0 (kiloml's runtime and the generated code).

{body}
{_api(run)}
{_facts(run)}
{_memory(run)}
{_parity(run, data)}"""
