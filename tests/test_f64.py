"""kml_f64: exact float64 arithmetic in integers, checked bit for bit against numpy."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import kiloml
from kiloml.codegen.library import STRICT_CFLAGS

RUNTIME = Path(kiloml.__file__).resolve().parent / "runtime"
DRIVER = r"""
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include "kml_f64.h"
/* in: records of uint32 op + operands; out: uint64 result (float bits for op 3) */
int main(int argc, char **argv)
{
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    uint32_t op, u, v, bits;
    uint64_t a, b, r;
    float f;
    (void)argc;
    while (fread(&op, 4, 1, in) == 1) {
        size_t ok = 1;
        if (op == 0) {
            ok = fread(&u, 4, 1, in) + fread(&v, 4, 1, in) == 2;
            r = kml_f64_ratio(u, v);
        } else if (op == 1) {
            ok = fread(&a, 8, 1, in) + fread(&b, 8, 1, in) == 2;
            r = kml_f64_add(a, b);
        } else if (op == 2) {
            ok = fread(&a, 8, 1, in) + fread(&u, 4, 1, in) == 2;
            r = kml_f64_div_u32(a, u);
        } else {
            ok = fread(&a, 8, 1, in) == 1;
            f = kml_f64_to_f32(a);
            memcpy(&bits, &f, 4);
            r = bits;
        }
        if (!ok) {
            return 3;
        }
        fwrite(&r, 8, 1, out);
    }
    return fclose(out) != 0;
}
"""


def cases(rng: np.random.Generator, n: int) -> tuple[list[bytes], list[int]]:
    ops: list[bytes] = []
    want: list[int] = []

    def bits(x: float) -> int:
        return int(np.float64(x).view(np.uint64))

    edge = [(0, 1), (1, 1), (5, 5), (1, 65535), (65534, 65535), (1, 3), (2, 3), (1, 7)]
    for _ in range(n):
        den = int(rng.integers(1, 2 ** int(rng.integers(1, 17))))
        edge.append((int(rng.integers(0, den + 1)), den))
    for num, den in edge:
        ops.append(struct.pack("<III", 0, num, den))
        want.append(bits(np.float64(num) / np.float64(den)))
    for _ in range(n):
        a = np.float64(rng.integers(1, 1000)) / rng.integers(1, 5000) * 2.0 ** rng.integers(-10, 8)
        b = np.float64(rng.integers(1, 1000)) / rng.integers(1, 5000) * 2.0 ** rng.integers(-80, 8)
        for x, y in ((a, b), (a, a), (b, np.nextafter(b, 1.0)), (a, 0.0), (0.0, b)):
            ops.append(struct.pack("<Idd", 1, x, y))
            want.append(bits(np.float64(x) + np.float64(y)))
    for _ in range(n):
        a = np.float64(rng.integers(1, 1000)) / rng.integers(1, 5000) * 2.0 ** rng.integers(-20, 10)
        for d in (1, 2, 3, int(rng.integers(1, 65536))):
            ops.append(struct.pack("<IdI", 2, a, d))
            want.append(bits(a / np.float64(d)))
    for _ in range(n):
        a = np.float64(rng.integers(1, 2**53)) * 2.0 ** rng.integers(-90, -40)
        tie = np.float64(np.float32(rng.random())) + np.spacing(np.float32(0.75)) / 2
        for x in (a, tie, 1.0, 16.0):
            ops.append(struct.pack("<Id", 3, x))
            want.append(int(np.float32(x).view(np.uint32)))
    return ops, want


@pytest.mark.parametrize("portable", [False, True])
def test_f64_matches_numpy(tmp_path: Path, portable: bool) -> None:
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed"
    (tmp_path / "driver.c").write_text(DRIVER)
    exe = tmp_path / "driver"
    flags = [f for f in STRICT_CFLAGS if f != "-Wextra"] + ["-O2", "-fsanitize=address,undefined",
                                                          "-fno-sanitize-recover=all"]
    subprocess.run([gcc, *flags, *(["-DKML_F64_PORTABLE"] if portable else []),
                    f"-I{RUNTIME}", str(tmp_path / "driver.c"), str(RUNTIME / "kml_f64.c"),
                    "-o", str(exe)], check=True)
    ops, want = cases(np.random.default_rng(7 + portable), 12000)
    (tmp_path / "in.bin").write_bytes(b"".join(ops))
    subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True)
    got = np.fromfile(tmp_path / "out.bin", dtype="<u8")
    want_arr = np.array(want, dtype=np.uint64)
    assert len(got) == len(want_arr)
    bad = np.flatnonzero(got != want_arr)
    assert not len(bad), f"{len(bad)} of {len(got)} differ, first at {bad[:5]}"
