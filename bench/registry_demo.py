"""The registry walk-through on the watch example (issue 17): three versions released,
gated, diffed, promoted and rolled back, and the model update on the emulated Cortex-M4F.

Versions (each `kiloml run` with QEMU, the library built updatable and trusting a demo
Ed25519 key; projects written into the work folder from examples/watch/):
  1.0.0  examples/watch/kiloml.toml       (forest depth 8, seed 0)
  1.1.0  examples/watch/candidate.toml    (depth 10, seed 1)
  1.0.1  kiloml.toml with [decision] min_margin = 0.15 (the same forest, another margin)
Then: release (signed model.kmlb), gate, promote, diff, a refused promote, rollback, the
history; and on QEMU mps2-an386 the 1.0.0 firmware takes updates: each hostile blob
refused with its reason while the running model keeps deciding as before, a valid one
switching the decisions to exactly that version's.

Writes bench/results/registry_demo.md and .json.
Usage: python bench/registry_demo.py [--work DIR] [--windows N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))
KILOML = [sys.executable, "-m", "kiloml"]

from kiloml.blob import format as fmt  # noqa: E402
from kiloml.blob import harness as bh  # noqa: E402
from kiloml.blob.keys import load_private_key  # noqa: E402
from kiloml.decision.layer import DecisionLayer  # noqa: E402
from kiloml.persist.pipeline_state import load_pipeline  # noqa: E402
from kiloml.verify.reference import REFERENCE_FILE, Reference  # noqa: E402

VERSIONS = {"1.0.0": ("kiloml.toml", {}),
            "1.1.0": ("candidate.toml", {}),
            "1.0.1": ("kiloml.toml", {"min_margin = 0.1": "min_margin = 0.15"})}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def sh(args: list[str], log: list[dict], *, ok: tuple[int, ...] = (0,)) -> str:
    t = time.time()
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "160", "NO_COLOR": "1"})
    out = ANSI.sub("", done.stdout + done.stderr)
    shown = "kiloml " + " ".join(os.path.relpath(a, ROOT) if a.startswith(str(ROOT)) else a
                                 for a in args[len(KILOML):])
    log.append({"command": shown, "exit": done.returncode,
                "seconds": round(time.time() - t, 1), "output": out.strip()})
    if done.returncode not in ok:
        raise SystemExit(f"{shown} exited {done.returncode}:\n{out}")
    return out


def keys(work: Path) -> tuple[Path, Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    paths = []
    for name in ("release-key", "other-key"):
        key = Ed25519PrivateKey.generate()
        p = work / f"{name}.pem"
        p.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        paths.append(p)
        if name == "release-key":
            pub = work / "release-key.pub.pem"
            pub.write_bytes(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
            paths.append(pub)
    return paths[0], paths[2], paths[1]  # release key, other key, release public key


def project(work: Path, version: str, pub: Path) -> Path:
    name, changes = VERSIONS[version]
    text = (ROOT / "examples" / "watch" / name).read_text()
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new)
    text += (f'\n[library]\nupdatable = true\nupdate_key = "{pub}"\n'
             f'\n[output]\ndir = "run-{version}"\n')
    toml = work / f"watch-{version}.toml"
    toml.write_text(text)
    return toml


def expected(run: Path, windows: np.ndarray) -> dict:
    """What the run's library decides on ``windows`` in order from kml_reset: labels, the
    device scores (float32, as the C computes them) and the decision layer's decisions."""
    pipeline = load_pipeline(run / "pipeline.json")
    features = np.asarray(pipeline.compute_features(windows), np.float32)
    tables = pipeline.model.tables or pipeline.model.compile(features.shape[1])
    labels, _, scores = tables.predict_batch(features)
    steps = DecisionLayer(pipeline.decision_params).run(scores, labels)
    return {"labels": np.asarray(labels, np.int64), "scores": np.asarray(scores, np.float32),
            "decisions": np.asarray(steps.decision, np.int64)}


def same(out: bh.Decisions, want: dict) -> bool:
    return bool(np.array_equal(out.labels, want["labels"])
                and np.array_equal(out.decisions, want["decisions"])
                and np.array_equal(out.scores.view(np.uint32), want["scores"].view(np.uint32)))


def resigned(blob: bytes, key_path: Path, **header) -> bytes:
    h, payload = fmt.unpack(blob)
    return fmt.pack(dataclasses.replace(h, **header), payload, load_private_key(key_path))


def device_updates(work: Path, runs: dict[str, Path], packages: dict[str, Path],
                   release_key: Path, other_key: Path, n_windows: int) -> dict:
    windows = Reference.load(runs["1.0.0"] / "verify" / REFERENCE_FILE,
                             load_pipeline(runs["1.0.0"] / "pipeline.json")).windows[:n_windows]
    want = {v: expected(runs[v], windows) for v in runs}
    blob = {v: (packages[v] / "model.kmlb").read_bytes() for v in packages}
    flipped = bytearray(blob["1.0.1"])
    flipped[-20] ^= 0x01
    h, payload = fmt.unpack(blob["1.0.1"])
    steps = [  # (what, blob, the version that must be deciding afterwards)
        ("1.0.1 with one payload byte flipped", bytes(flipped), "1.0.0"),
        ("1.0.1 truncated by 100 bytes", blob["1.0.1"][:-100], "1.0.0"),
        ("1.0.1 for another interface (header field, re-signed)",
         resigned(blob["1.0.1"], release_key, interface_hash=h.interface_hash ^ 1), "1.0.0"),
        ("1.0.1 signed with another key", resigned(blob["1.0.1"], other_key), "1.0.0"),
        ("1.0.1 unsigned", fmt.pack(dataclasses.replace(h, signed=False), payload, None),
         "1.0.0"),
        ("1.0.1 (valid, signed)", blob["1.0.1"], "1.0.1"),
        ("1.0.0 again (an older version)", blob["1.0.0"], "1.0.1"),
        ("1.1.0 (valid, signed: another forest)", blob["1.1.0"], "1.1.0"),
    ]
    ops = bh.Ops(windows).classify()
    for _, data, _ in steps:
        ops.blob(data).classify()
    q = bh.build_qemu(runs["1.0.0"] / "firmware", work / "blob-fw")
    results, instructions = bh.run_qemu(q, ops, len(want["1.0.0"]["scores"][0]),
                                        work / "blob-qemu", timeout_s=900)
    rows = [{"blob": "(none: the flashed 1.0.0)", "bytes": 0, "check": "-", "activate": "-",
             "deciding": "1.0.0", "decisions_equal": same(results[0], want["1.0.0"])}]
    for i, (what, data, deciding) in enumerate(steps):
        r, after = results[1 + 2 * i], results[2 + 2 * i]
        rows.append({"blob": what, "bytes": len(data), "check": bh.reason_name(r.check),
                     "activate": bh.reason_name(r.activate), "deciding": deciding,
                     "decisions_equal": same(after, want[deciding]),
                     "active_counter": r.active_counter,
                     "check_instructions": int(instructions[2 * i]),
                     "activate_instructions": int(instructions[2 * i + 1]),
                     "activate_stack_bytes": r.activate_stack_bytes})
    changed = {v: int((want[v]["decisions"] != want["1.0.0"]["decisions"]).sum())
               for v in ("1.0.1", "1.1.0")}
    return {"windows": len(windows), "rows": rows, "decisions_changed_vs_1.0.0": changed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "registry-demo")
    ap.add_argument("--windows", type=int, default=200)
    a = ap.parse_args()
    work = a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    reg = work / "registry"
    if reg.exists():
        subprocess.run(["chmod", "-R", "u+w", str(reg)], check=True)
        subprocess.run(["rm", "-rf", str(reg)], check=True)
    release_key, other_key, pub = keys(work)
    log: list[dict] = []
    runs = {}
    for v in VERSIONS:
        toml = project(work, v, pub)
        sh([*KILOML, "run", str(toml)], log)
        runs[v] = work / f"run-{v}"
    r = str(reg)

    def release(v: str, notes: str) -> None:
        sh([*KILOML, "release", str(runs[v]), "--registry", r, "--version", v, "--notes",
            notes, "--signing-key", str(release_key)], log)

    release("1.0.0", "watch forest, depth 8")
    sh([*KILOML, "gate", r, "1.0.0"], log)
    sh([*KILOML, "promote", r, "1.0.0", "--to", "production"], log)
    release("1.1.0", "candidate: depth 10, seed 1")
    sh([*KILOML, "gate", r, "1.1.0", "--against", "production"], log, ok=(0, 1))
    sh([*KILOML, "diff", r, "production", "1.1.0", "--out", str(work / "diff-1.1.0")], log)
    sh([*KILOML, "promote", r, "1.1.0", "--to", "production"], log, ok=(2,))
    release("1.0.1", "decision layer: min_margin 0.15")
    sh([*KILOML, "gate", r, "1.0.1", "--against", "production"], log, ok=(0, 1))
    sh([*KILOML, "diff", r, "production", "1.0.1", "--out", str(work / "diff-1.0.1")], log)
    sh([*KILOML, "promote", r, "1.0.1", "--to", "production"], log, ok=(0, 2))
    sh([*KILOML, "rollback", r], log, ok=(0, 2))
    sh([*KILOML, "registry", "list", r], log)
    sh([*KILOML, "registry", "verify", r], log)
    history = (reg / "history.jsonl").read_text().strip().splitlines()
    diffs = {v: json.loads((work / f"diff-{v}" / "diff.json").read_text())
             for v in ("1.1.0", "1.0.1")}
    packages = {v: reg / "packages" / json.loads((reg / "versions" / f"{v}.json").read_text())
                ["package"] for v in VERSIONS}
    device = device_updates(work, runs, packages, release_key, other_key, a.windows)
    result = {"log": log, "history": [json.loads(h) for h in history],
              "diffs": {v: {k: d[k] for k in ("n_windows", "changed_windows", "transitions")
                            if k in d} | {"segments": len(d.get("segments", []))}
                        for v, d in diffs.items()},
              "device": device}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "registry_demo.json").write_text(json.dumps(result, indent=2, default=int)
                                                + "\n")
    (RESULTS / "registry_demo.md").write_text(markdown(result))
    print((RESULTS / "registry_demo.md").read_text())


def markdown(res: dict) -> str:
    lines = ["# The registry walk-through on the watch example", "",
             "`python bench/registry_demo.py`: three versions of the watch model run with "
             "QEMU, the library built updatable and trusting a demo Ed25519 key; released, "
             "gated, diffed, promoted and rolled back; then model updates on QEMU mps2-an386. "
             "Commands and their output as a user sees them.", ""]
    for entry in res["log"]:
        if entry["command"].split()[1:2] == ["run"]:
            out = [ln for ln in entry["output"].splitlines()
                   if ln.split(" ")[0] in ("test", "parity", "resources", "events")]
        else:
            out = entry["output"].splitlines()
        lines += [f"`{entry['command']}` (exit {entry['exit']}, {entry['seconds']} s)", "",
                  "```", *out, "```", ""]
    lines += ["History (history.jsonl):", "", "```",
              *(json.dumps(h) for h in res["history"]), "```", ""]
    d = res["device"]
    lines += [f"## Model updates on the emulated Cortex-M4F ({d['windows']} held-out windows "
              "classified after each blob)", "",
              "| blob | bytes | kml_blob_check | kml_blob_activate | then deciding as | "
              "decisions, scores bit for bit | check / activate instructions |",
              "|---|---:|---|---|---|---|---|"]
    for row in d["rows"]:
        ins = (f"{row['check_instructions']:,} / {row['activate_instructions']:,}"
               if "check_instructions" in row else "-")
        lines.append(f"| {row['blob']} | {row['bytes']:,} | {row['check']} | "
                     f"{row['activate']} | {row['deciding']} | "
                     f"{'yes' if row['decisions_equal'] else 'NO'} | {ins} |")
    lines += ["", f"Decisions that differ from 1.0.0's on these windows: "
              f"{d['decisions_changed_vs_1.0.0']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
