"""The update checks on the emulated Cortex-M4F: flash, RAM and instructions of kml_sha256
and of kml_ed25519_verify (with its kml_sha512), the hand-written C a device runs before it
accepts a model update (issue 17).

Sizes: crypto_probe.c (a minimal firmware) linked with and without the call at the target's
memory sizes (gc-sections), the difference: code and constants in flash, static RAM; and
the bytes the link kept of the crypto objects, per function. Stack: the deepest the call
went on QEMU (kiloml's stack painting, KML_MEASURE), over the cases below. Instructions:
QEMU mps2-an386 with kiloml's counting plugin (deterministic): SHA-256 of 1 KB and 16 KB,
one Ed25519 verify of a 16 KB message (the same message for all, 10 keys: mean / min /
max; the count depends on the scalars' bits) and of an empty one, SHA-512 of 16 KB (the
verify's hashing share). Every answer is checked against hashlib and OpenSSL. At -O2
(what kiloml verify builds with) and -Os.

Writes bench/results/crypto.json and bench/results/crypto.md.
Usage: python bench/crypto.py [--work DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from kiloml.blob import crypto_harness as ch  # noqa: E402
from kiloml.targets.profiles import load_profile  # noqa: E402
from kiloml.verify.mcu.toolchain import find_toolchain  # noqa: E402

PROFILE = "cortex-m4f"
OBJECTS = {"sha256": ["kml_sha256.o"], "ed25519": ["kml_ed25519.o", "kml_sha512.o"]}


def symbols(nm: str, path: Path) -> dict[str, int]:
    """Flash symbols (code with its literal pools, constants) and their sizes."""
    out = subprocess.run([nm, "-S", "-t", "d", str(path)], check=True, capture_output=True,
                         text=True).stdout
    return {f[3]: int(f[1]) for f in (line.split() for line in out.splitlines())
            if len(f) == 4 and f[2] in "tTrR"}


def sizes(work: Path, nm: str) -> tuple[list[dict], dict]:
    rows, functions = [], {}
    for what in ("sha256", "ed25519"):
        for opt in ("-O2", "-Os"):
            d = work / f"size_{what}{opt}"
            s = ch.measure_sizes(d, what, optimize=opt, profile_name=PROFILE)
            kept = symbols(nm, d / "with.elf")
            per = {}
            for obj in OBJECTS[what]:
                per.update({n: size for n, size in symbols(nm, d / "with" / obj).items()
                            if n in kept})
            functions[f"{what}{opt}"] = per
            content = sum(kept.values()) - sum(symbols(nm, d / "without.elf").values())
            rows.append({"code": what, "optimize": opt, "flash_bytes": s.flash_bytes,
                         "flash_content_bytes": content,
                         "objects_flash_bytes": s.objects_flash_bytes,
                         "static_ram_bytes": s.ram_bytes})
    return rows, functions


def cases() -> tuple[list[ch.Case], list[tuple[str, object]]]:
    """The QEMU cases and, for each, (what it measures, the expected answer)."""
    rng = random.Random(16)
    kb, big = rng.randbytes(1024), rng.randbytes(16384)
    out = [(ch.sha(256, kb), ("sha256 1 KB", hashlib.sha256(kb).digest())),
           (ch.sha(256, big), ("sha256 16 KB", hashlib.sha256(big).digest())),
           (ch.sha(512, big), ("sha512 16 KB", hashlib.sha512(big).digest()))]
    for _ in range(10):
        k = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        pk = k.public_key().public_bytes_raw()
        out.append((ch.verify(k.sign(big), big, pk), ("verify 16 KB", 1)))
        out.append((ch.verify(k.sign(b""), b"", pk), ("verify empty", 1)))
    return [c for c, _ in out], [w for _, w in out]


def qemu(work: Path) -> dict:
    runs, want = cases()
    result = {}
    for opt in ("-O2", "-Os"):
        q = ch.build_qemu(work / f"qemu{opt}", optimize=opt, profile_name=PROFILE)
        got, instructions = ch.run_qemu(q, runs, work / f"run{opt}")
        by: dict[str, dict] = {}
        for (what, expected), r, n in zip(want, got, instructions, strict=True):
            if r.value != expected:
                raise SystemExit(f"{what} at {opt}: wrong answer on QEMU")
            row = by.setdefault(what, {"instructions": [], "stack_bytes": 0, "correct": 0})
            row["instructions"].append(int(n))
            row["stack_bytes"] = max(row["stack_bytes"], r.stack_bytes)
            row["correct"] += 1
        for row in by.values():
            n = row.pop("instructions")
            row.update(runs=len(n), instructions_mean=sum(n) / len(n),
                       instructions_min=min(n), instructions_max=max(n))
        result[opt] = by
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="kiloml-crypto-"))
    tc = find_toolchain()
    profile = load_profile(PROFILE)
    size_rows, functions = sizes(work, tc.nm)
    gcc = subprocess.run([tc.gcc, "-dumpversion"], capture_output=True, text=True,
                         check=True).stdout.strip()
    result = {"target": PROFILE, "machine": profile.qemu_machine,
              "arm_none_eabi_gcc": gcc, "clock_hz": profile.clock_hz,
              "cycles_per_instruction": profile.cycles_per_instruction,
              "sizes": size_rows, "functions": functions, "qemu": qemu(work)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "crypto.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "crypto.md").write_text(markdown(result))
    print(markdown(result))


def ms(r: dict, instructions: float) -> float:
    return instructions * r["cycles_per_instruction"] / r["clock_hz"] * 1e3


def markdown(r: dict) -> str:
    size = {(s["code"], s["optimize"]): s for s in r["sizes"]}
    q = r["qemu"]
    lines = [
        "# The update checks on the Cortex-M4F (SHA-256, Ed25519 verify)",
        "",
        "`python bench/crypto.py`: `kml_sha256.c`, `kml_ed25519.c` and `kml_sha512.c` "
        f"(kiloml/runtime) built with arm-none-eabi-gcc {r['arm_none_eabi_gcc']} for the "
        "Cortex-M4F (`-mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard`, kiloml's strict "
        "flags). *Flash*: a minimal firmware (kiloml/verify/mcu/crypto_probe.c) linked with "
        "and without the call (`--gc-sections`), the difference: code and constants; *in "
        "symbols*: the same over the linked symbols only (no alignment padding); *objects*: "
        "what the link kept of the crypto objects. *Static RAM*: .data + .bss it adds. "
        "*Stack*: the deepest the call went on QEMU (stack painting), the whole of its "
        "working RAM: the caller owns nothing else (a SHA-256 context, 112 B, is part of "
        "the one-shot call's stack here).",
        "",
        "| code | -O | flash | flash in symbols | objects | static RAM | stack | RAM + stack |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    stack_of = {"sha256": "sha256 16 KB", "ed25519": "verify 16 KB"}
    label = {"sha256": "SHA-256 (`kml_sha256`)",
             "ed25519": "Ed25519 verify with its SHA-512 (`kml_ed25519_verify`)"}
    for what in ("sha256", "ed25519"):
        for opt in ("-O2", "-Os"):
            s = size[(what, opt)]
            stack = q[opt][stack_of[what]]["stack_bytes"]
            lines.append(f"| {label[what]} | {opt} | {s['flash_bytes']:,} B | "
                         f"{s['flash_content_bytes']:,} B | {s['objects_flash_bytes']:,} B | "
                         f"{s['static_ram_bytes']:,} B | {stack:,} B | "
                         f"{s['static_ram_bytes'] + stack:,} B |")
    lines += ["", f"Instructions on QEMU {r['machine']} (kiloml's TCG counting plugin, "
              "deterministic), one call each; the time is an estimate at the profile's "
              f"{r['clock_hz'] / 1e6:.0f} MHz and {r['cycles_per_instruction']} cycles per "
              "instruction. Every answer checked against hashlib / OpenSSL.", "",
              "| call | -O | runs | instructions (mean) | min | max | ~ time | stack |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for what in ("sha256 1 KB", "sha256 16 KB", "sha512 16 KB", "verify empty", "verify 16 KB"):
        for opt in ("-O2", "-Os"):
            row = q[opt][what]
            lines.append(f"| {what} | {opt} | {row['runs']} | {row['instructions_mean']:,.0f} | "
                         f"{row['instructions_min']:,} | {row['instructions_max']:,} | "
                         f"{ms(r, row['instructions_mean']):.1f} ms | "
                         f"{row['stack_bytes']:,} B |")
    fn = r["functions"]
    lines += ["", "Per function, what the link kept (`arm-none-eabi-nm -S`; code with its "
              "literal pools, and the constant tables):", "",
              "| symbol | -O2 | -Os |", "|---|---:|---:|"]
    for what in ("sha256", "ed25519"):
        o2, os_ = fn[f"{what}-O2"], fn[f"{what}-Os"]
        for n in sorted(set(o2) | set(os_), key=lambda n: -o2.get(n, 0)):
            lines.append(f"| `{n}` | {o2.get(n, 0):,} B | {os_.get(n, 0):,} B |")
        lines.append(f"| total ({what}) | {sum(o2.values()):,} B | {sum(os_.values()):,} B |")
    v = q["-O2"]
    share = v["sha512 16 KB"]["instructions_mean"] / v["verify 16 KB"]["instructions_mean"]
    lines += ["", "A verify is the SHA-512 of R, the key and the message (about "
              f"{v['sha512 16 KB']['instructions_mean'] / 16384:.0f} instructions per byte at "
              f"-O2: {share:.0%} of a 16 KB message's verify) plus a fixed ~"
              f"{v['verify empty']['instructions_mean'] / 1e6:.1f} M for the key's decoding, "
              "the joint double-and-add [S]B - [k]A (253 doublings, ~190 additions: its "
              "count moves with the scalars' bits) and the encoding of the result. Variable "
              "time: it handles public data only.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
