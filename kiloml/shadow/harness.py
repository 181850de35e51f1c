"""The shadow image on the host: production + candidate libraries (one copy of each shared
kernel) + the glue + a streaming main, compiled with gcc and the strict flags; the held-out
streams through it. What the device would count, computed by the same C."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.codegen.library import STRICT_CFLAGS, FirmwareLibrary
from kiloml.errors import ToolchainError
from kiloml.shadow import glue
from kiloml.shadow.record import RECORD_BYTES, decode
from kiloml.verify.combined import split_sources
from kiloml.verify.host import recording_payload, require_tool

MAIN = r"""/* SPDX-License-Identifier: Apache-2.0 */
/* Shadow harness: in: int32 recordings, then per recording int32 n and n samples x channels
 * float32; out: per decided window int32 recording, production and candidate decision, then
 * one kml_shadow_v1 record after each recording. Host (KML_SHADOW_HOST: argv files) or QEMU
 * (semihosting kml_in.bin / kml_out.bin; every push bracketed for the instruction count). */
#include <stdint.h>

#include "shadow.h"

#ifdef KML_SHADOW_HOST
#include <stdio.h>
typedef FILE *handle_t;
static int rd(handle_t h, void *buf, uint32_t n) { return fread(buf, 1, n, h) == n ? 0 : 1; }
static int wr(handle_t h, const void *buf, uint32_t n) { return fwrite(buf, 1, n, h) == n ? 0 : 1; }
#define BENCH_BEGIN()
#define BENCH_END()
#else
#include "measure.h"
#include "semihost.h"
typedef int32_t handle_t;
#define rd sh_read
#define wr sh_write
#define BENCH_BEGIN() kml_bench_begin()
#define BENCH_END() kml_bench_end()
#endif

static float sample[PROD_CHANNELS];

static int run(handle_t in, handle_t out)
{
    int32_t n_rec, r, n, t, cand, ready;
    PROD_DECISION_T d;
    uint8_t rec[SHADOW_RECORD_BYTES];
    if (rd(in, &n_rec, sizeof n_rec) != 0) {
        return 1;
    }
    for (r = 0; r < n_rec; ++r) {
        if (rd(in, &n, sizeof n) != 0) {
            return 1;
        }
        shadow_reset(); /* each recording from the start, as the reference streams it */
        for (t = 0; t < n; ++t) {
            if (rd(in, sample, sizeof sample) != 0) {
                return 1;
            }
            BENCH_BEGIN(); /* every sample: a decided one runs both models and compares */
            ready = shadow_push_sample(sample, &d);
            BENCH_END();
            if (ready) {
                cand = shadow_candidate_decision();
                if (wr(out, &r, sizeof r) != 0 || wr(out, &d.decision, 4) != 0 ||
                    wr(out, &cand, sizeof cand) != 0) {
                    return 1;
                }
            }
        }
        shadow_snapshot((uint32_t)r, rec);
        if (wr(out, "REC!", 4) != 0 || wr(out, rec, sizeof rec) != 0) {
            return 1;
        }
    }
    return 0;
}

#ifdef KML_SHADOW_HOST
int main(int argc, char **argv)
{
    FILE *in, *out;
    int status;
    if (argc != 3 || (in = fopen(argv[1], "rb")) == NULL || (out = fopen(argv[2], "wb")) == NULL) {
        return 2;
    }
    status = run(in, out);
    fclose(in);
    return status | (fclose(out) != 0);
}
#else
int main(void)
{
    int32_t in = sh_open("kml_in.bin", 1);
    int32_t out = sh_open("kml_out.bin", 5);
    int status;
    if (in < 0 || out < 0) {
        return 1;
    }
    status = run(in, out);
    sh_close(in);
    sh_close(out);
    return status;
}
#endif
"""


@dataclass
class ShadowOutputs:
    recording: np.ndarray   # int32 [M]: the recording of each decided window
    production: np.ndarray  # int32 [M]: production's debounced decision (-1 uncertain)
    candidate: np.ndarray   # int32 [M]
    records: list[dict]     # the kml_shadow_v1 record after each recording (decoded)
    raw_records: list[bytes]


def write_glue(production: FirmwareLibrary, candidate: FirmwareLibrary, out: Path
               ) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    h, c = out / f"{glue.GLUE_NAME}.h", out / f"{glue.GLUE_NAME}.c"
    h.write_text(glue.header(production.prefix, candidate.prefix))
    c.write_text(glue.source(production.prefix, candidate.prefix))
    return h, c


def write_sources(production: FirmwareLibrary, candidate: FirmwareLibrary, work: Path
                  ) -> tuple[Path, Path]:
    """The glue and the harness main of the shadow image (host or QEMU) into ``work``."""
    _, glue_c = write_glue(production, candidate, work / "glue")
    main = work / "shadow_main.c"
    p = production.prefix
    main.write_text(MAIN.replace("PROD_CHANNELS", f"{p.upper()}_CHANNELS")
                    .replace("PROD_DECISION_T", f"{p}_decision_t"))
    return glue_c, main


def build(production: FirmwareLibrary, candidate: FirmwareLibrary, work: Path) -> Path:
    cc = require_tool("gcc", "gcc")
    glue_c, main = write_sources(production, candidate, work)
    own, shared = split_sources([production, candidate])
    exe = work / "shadow_host"
    includes = [f"-I{d}" for d in (work / "glue", production.directory, candidate.directory)]
    cmd = [cc, *STRICT_CFLAGS, "-O2", "-DKML_SHADOW_HOST", *includes, *map(str, own + shared),
           str(glue_c), str(main), "-Wl,--warn-common", "-lm", "-o", str(exe)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or "multiple definition" in result.stderr:
        raise ToolchainError(f"the shadow host build failed: {result.stderr.strip()[:600]}")
    return exe


def parse(raw: bytes) -> ShadowOutputs:
    rows, raw_records, i = [], [], 0
    while i < len(raw):
        if raw[i:i + 4] == b"REC!":
            raw_records.append(raw[i + 4:i + 4 + RECORD_BYTES])
            i += 4 + RECORD_BYTES
        else:
            rows.append(np.frombuffer(raw[i:i + 12], "<i4"))
            i += 12
    table = np.array(rows, dtype=np.int32).reshape(-1, 3)
    return ShadowOutputs(table[:, 0], table[:, 1], table[:, 2],
                         [decode(r) for r in raw_records], raw_records)


def run(exe: Path, recordings: list[np.ndarray], work: Path) -> ShadowOutputs:
    work.mkdir(parents=True, exist_ok=True)
    (work / "in.bin").write_bytes(recording_payload(recordings))
    done = subprocess.run([str(exe), str(work / "in.bin"), str(work / "out.bin")],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolchainError(f"the shadow host program failed (exit {done.returncode})")
    return parse((work / "out.bin").read_bytes())


def build_firmware(production: FirmwareLibrary, candidate: FirmwareLibrary, profile,
                   machine: str, work: Path, optimize: str = "-O2") -> Path:
    """The shadow image for QEMU: start-up, semihosting, the harness, both libraries' own
    objects, one copy of each shared kernel and the glue, linked with --warn-common."""
    from kiloml.verify.mcu import build as mcu
    from kiloml.verify.mcu.toolchain import find_toolchain

    toolchain = find_toolchain()
    glue_c, main = write_sources(production, candidate, work)
    own, shared = split_sources([production, candidate])
    dirs = [work / "glue", production.directory, candidate.directory]
    objects = []
    for lib in (production, candidate):
        mine = [s for s in own if s.parent == lib.directory]
        objects += mcu.compile_objects(toolchain, mine, [lib.directory], profile, optimize,
                                       work / f"obj_{lib.prefix}")
    objects += mcu.compile_objects(toolchain, [*shared, glue_c], dirs, profile, optimize,
                                   work / "obj_shared")
    objects += mcu.compile_objects(
        toolchain, [mcu.MCU_DIR / "startup.c", mcu.MCU_DIR / "semihost.c",
                    mcu.MCU_DIR / "measure.c", main], [mcu.MCU_DIR, *dirs], profile,
        optimize, work / "obj_harness")
    memory = mcu.MACHINE_MEMORY[machine]
    script = mcu.write_linker_script(work / "shadow.ld", f"shadow on {machine}", memory,
                                     mcu.DEFAULT_HARNESS_STACK_BYTES)
    elf = work / "shadow.elf"
    cmd = [toolchain.gcc, *mcu.cpu_flags(profile), "-nostartfiles", "-T", str(script),
           "-Wl,--gc-sections", "-Wl,--warn-common", *map(str, objects), *mcu.LINK_LIBS,
           "-o", str(elf)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or "multiple definition" in result.stderr:
        raise ToolchainError(f"linking the shadow firmware failed: {result.stderr.strip()[:600]}")
    return elf


def run_firmware(elf: Path, recordings: list[np.ndarray], machine: str, work: Path
                 ) -> tuple[ShadowOutputs, np.ndarray]:
    """The outputs and the instructions of every shadow_push_sample call, in sample order."""
    from kiloml.verify.mcu import qemu
    from kiloml.verify.mcu.toolchain import find_toolchain

    toolchain = find_toolchain()
    plugin = qemu.build_plugin(toolchain, work / "plugin")
    n = sum(len(r) for r in recordings)
    done = qemu.run_harness(toolchain, elf, machine, recording_payload(recordings), plugin,
                            work / "run", timeout_s=120 + 0.01 * n)
    if len(done.instructions) != n:
        raise ToolchainError(f"QEMU counted {len(done.instructions)} pushes for {n} samples")
    return parse(done.output), np.asarray(done.instructions)
