"""The on-device monitor (kml_monitor.c) on the emulated Cortex-M4F: flash, RAM and
instructions per kml_monitor_update, with parity against the Python twin.

Sizes: a minimal firmware linked with and without one monitor at the target's memory
sizes (gc-sections), the difference (code, constants, one monitor's parameters in flash;
its state in RAM), at -O2 (what kiloml verify builds with) and -Os. Instructions: QEMU
mps2-an386 with kiloml's counting plugin (deterministic), one count per update, on
synthetic streams of the watch example's shape (6 channels, 7 classes; 4 monitored
features of 20): in distribution, a drift ramp, stuck channels, float32 extremes. Every
stream also runs through the host build (gcc) and the twin: signals, flags and telemetry
records compared bit for bit.

Writes bench/results/monitor.json and bench/results/monitor.md.
Usage: python bench/monitor.py [--windows N] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))

from kiloml.monitor import Monitor, MonitorConfig, fit_monitor  # noqa: E402
from kiloml.monitor import harness as mh  # noqa: E402
from kiloml.verify.mcu.toolchain import find_toolchain  # noqa: E402

F32 = np.float32
FEATURES, CHANNELS, CLASSES = 20, 6, 7  # the watch example: 6 axes, 7 exercises
MODEL_ID = bytes(range(8))
EVERY = 100  # windows per telemetry record
SIZE_CONFIGS = [("default (k=4), watch-sized: 6 channels, 7 classes", 4, 6, 7),
                ("k=4, 3 channels, 5 classes", 4, 3, 5),
                ("k=8, 9 channels, 12 classes", 8, 9, 12)]


def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = (rng.normal(size=(n, FEATURES)) * np.linspace(1, 5, FEATURES) + 2).astype(F32)
    cv = rng.gamma(3.0, 1.0, size=(n, CHANNELS)).astype(F32)
    sm = rng.dirichlet(np.full(CLASSES, 0.3), size=n).astype(F32)
    return x, cv, sm


def streams(n: int) -> dict[str, mh.Stream]:
    rng = np.random.default_rng(1)
    out = {}
    for kind in ("in distribution", "drift ramp", "stuck channels", "float32 extremes"):
        x, cv, sm = draw(rng, n)
        if kind == "drift ramp":
            x[n // 3:] += np.linspace(0, 40, n - n // 3, dtype=F32)[:, None]
        elif kind == "stuck channels":
            cv[n // 4:n // 2, 0] = 0.0
            cv[n // 2:, 3] = F32(1e-30)
        elif kind == "float32 extremes":
            vals = np.array([3.4028235e38, -3.4028235e38, 1e-45, 0.0, 1e30, -1e30], F32)
            x = rng.choice(vals, size=x.shape).astype(F32)
            sm = rng.choice(np.array([0.0, 1.0, 1e-45, 0.5, 2.0], F32), size=sm.shape)
        out[kind] = mh.Stream(x, cv, sm, rng.integers(-1, CLASSES, n), rng.random(n) < 0.2,
                              np.arange(n, dtype=np.uint32) // 2)
    return out


def symbols(nm: str, path: Path) -> dict[str, int]:
    """Flash symbols (code with its literal pools, constants) and their sizes."""
    out = subprocess.run([nm, "-S", "-t", "d", str(path)], check=True, capture_output=True,
                         text=True).stdout
    return {f[3]: int(f[1]) for f in (line.split() for line in out.splitlines())
            if len(f) == 4 and f[2] in "tTrR"}


def content_bytes(nm: str, work: Path) -> int:
    """The with-minus-without difference of the bytes in symbols: the flash figure without
    the alignment padding the link moves (newlib's strlen, which the probe's semihosting
    pulls in after the monitor, is 64-byte aligned)."""
    return sum(symbols(nm, work / "with.elf").values()) - sum(
        symbols(nm, work / "without.elf").values())


def twin(p, s: mh.Stream) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
    m = Monitor(p)
    sig, flags, recs = [], [], []
    for i in range(len(s.features)):
        flags.append(m.update(s.features[i], s.channel_variance[i], s.smoothed[i],
                              int(s.decisions[i]), bool(s.uncertain[i])))
        sig.append(m.signals())
        if (i + 1) % EVERY == 0:
            recs.append(m.snapshot(MODEL_ID, int(s.uptime_s[i])))
    return np.array(sig, F32), np.array(flags, np.int64), recs


def equal(out: mh.HarnessOutput, ref: tuple) -> dict:
    sig, flags, recs = ref
    same = (out.signals.view(np.int32) == sig.view(np.int32)).all(axis=1) \
        & (out.flags == flags) & (out.returned == flags)
    return {"windows_equal": int(same.sum()), "windows": len(flags),
            "records_equal": sum(a == b for a, b in zip(out.records, recs, strict=True)),
            "records": len(recs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=2000)
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="kiloml-monitor-"))
    rng = np.random.default_rng(0)
    params = fit_monitor(*draw(rng, 3000)[:2], MonitorConfig(), rng.random(FEATURES),
                         n_classes=CLASSES, smoothed_train=draw(rng, 3000)[2])
    nm = find_toolchain().nm
    sizes, functions = [], {}
    for label, k, ch, cl in SIZE_CONFIGS:
        for opt in ("-O2", "-Os"):
            d = work / f"size{k}_{ch}_{cl}{opt}"
            s = mh.measure_sizes(d, k=k, channels=ch, classes=cl, optimize=opt)
            sizes.append({"config": label, "optimize": opt, "flash_bytes": s.flash_bytes,
                          "flash_content_bytes": content_bytes(nm, d),
                          "ram_bytes": s.ram_bytes})
            if label == SIZE_CONFIGS[0][0]:  # per function: kml_monitor.o of the default
                # what the link kept of it (a network's functions are there too, unlinked)
                kept = symbols(nm, d / "with.elf")
                functions[opt] = {name: size for name, size in
                                  symbols(nm, d / "with" / "kml_monitor.o").items()
                                  if name in kept}
    exe = mh.build_host(work / "host")
    fw = mh.build_qemu(work / "qemu")
    rows = []
    for kind, s in streams(args.windows).items():
        ref = twin(params, s)
        host = mh.run_host(exe, params, s, MODEL_ID, EVERY, work / "host")
        qemu = mh.run_qemu(fw, params, s, MODEL_ID, EVERY, work / "q" / kind.replace(" ", "_"))
        snap = mh.run_qemu(fw, params, s, MODEL_ID, EVERY,
                           work / "s" / kind.replace(" ", "_"), measure="snapshot")
        n = qemu.instructions
        rows.append({"stream": kind, "host": equal(host, ref), "qemu": equal(qemu, ref),
                     "instructions_mean": float(n.mean()), "instructions_min": int(n.min()),
                     "instructions_max": int(n.max()),
                     "snapshot_instructions_mean": float(snap.instructions.mean()),
                     "snapshot_instructions_max": int(snap.instructions.max()),
                     "flagged_windows": int((ref[1] != 0).sum())})
    result = {"target": "cortex-m4f", "machine": fw.machine, "config": MonitorConfig().__dict__,
              "sizes": sizes, "functions": functions, "streams": rows,
              "features": FEATURES, "channels": CHANNELS, "classes": CLASSES}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "monitor.json").write_text(json.dumps(result, indent=1, default=list) + "\n")
    (RESULTS / "monitor.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    lines = [
        "# The on-device monitor on the Cortex-M4F",
        "",
        "`python bench/monitor.py`: `kml_monitor.c` (kiloml/runtime) built with "
        "arm-none-eabi-gcc for the Cortex-M4F (`-mcpu=cortex-m4 -mfpu=fpv4-sp-d16 "
        "-mfloat-abi=hard`). Sizes: a minimal firmware linked with and without one monitor "
        "(update, flags, snapshot and the channel variances: code, its constants and one "
        "monitor's parameters in flash; its state in RAM; `--gc-sections`). Budget goal: "
        "256 B of RAM, 2 KB of flash. *In symbols*: the same difference counted over the "
        "linked symbols only, without the alignment padding the link moves (the probe's "
        "newlib strlen is 64-byte aligned and comes after the monitor, so the plain "
        "difference moves by up to 63 B with the code's size).",
        "",
        "| configuration | -O | flash | flash in symbols | RAM |",
        "|---|---|---:|---:|---:|",
    ]
    for s in r["sizes"]:
        lines.append(f"| {s['config']} | {s['optimize']} | {s['flash_bytes']:,} B | "
                     f"{s['flash_content_bytes']:,} B | {s['ram_bytes']:,} B |")
    fn = r["functions"]
    names = sorted(fn["-O2"], key=lambda n: -fn["-O2"][n])
    lines += ["", "Per function, `kml_monitor.o` of the default configuration "
              "(`arm-none-eabi-nm -S`; code with its literal pools; the parameters and the "
              "probe's calls are the rest of the flash figure):", "",
              "| symbol | -O2 | -Os |", "|---|---:|---:|"]
    lines += [f"| `{n}` | {fn['-O2'][n]:,} B | {fn['-Os'].get(n, 0):,} B |" for n in names]
    lines.append(f"| total | {sum(fn['-O2'].values()):,} B | {sum(fn['-Os'].values()):,} B |")
    lines += [
        "",
        f"Instructions per `kml_monitor_update` on QEMU {r['machine']} (the TCG counting "
        f"plugin, deterministic; -O2), {r['features']} features of which 4 monitored, "
        f"{r['channels']} channels, {r['classes']} classes; every stream also through the "
        "host build and the Python twin (signals, flags, 48-byte records bit for bit):",
        "",
        "| stream | instructions / update (mean, min, max) | instructions / snapshot "
        "(mean, max) | windows flagged | host parity (windows, records) | QEMU parity "
        "(windows, records) |",
        "|---|---|---|---:|---|---|",
    ]
    for s in r["streams"]:
        h, q = s["host"], s["qemu"]
        lines.append(
            f"| {s['stream']} | {s['instructions_mean']:,.0f}, {s['instructions_min']:,}, "
            f"{s['instructions_max']:,} | {s['snapshot_instructions_mean']:,.0f}, "
            f"{s['snapshot_instructions_max']:,} | {s['flagged_windows']:,} | "
            f"{h['windows_equal']}/{h['windows']}, {h['records_equal']}/{h['records']} | "
            f"{q['windows_equal']}/{q['windows']}, {q['records_equal']}/{q['records']} |")
    lines += ["", f"A snapshot (one {EVERY}-window record here) is mostly its bitwise "
              "CRC-16. The thresholds are the fit's training-distribution defaults (the "
              "instruction counts do not depend on them); a project's `false_alarm_every` "
              "calibrates them (bench/results/monitor_eval.md).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
