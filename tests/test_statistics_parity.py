"""The statistics feature stage: C kernel == Python reference, bit for bit; reference == maths.

Conventions of ``kiloml.dsp.statistics`` / ``kml_statistics`` (checked below):

* ``std`` is the population standard deviation (ddof=0), ``rms`` = sqrt(mean(x^2)),
  ``peak_to_peak`` = max - min.
* ``zero_crossing_rate`` = number of sign changes between consecutive samples, where a
  sample is "non-negative" when ``x >= 0`` (so 0.0 and -0.0 are both non-negative),
  divided by T - 1; ``mean_crossing_rate`` is the same on ``x - mean``. Both are 0 for
  T = 1.
* ``skewness`` = m3 / m2^1.5 and ``kurtosis`` = m4 / m2^2 - 3 (excess), from biased
  central moments (scipy's ``bias=True``, ``fisher=True``); both are 0 for a constant
  channel (no shape) instead of 0/0.

The C kernel is driven by a small program compiled with ``STRICT_CFLAGS -O2`` (and
once more with ASan/UBSan) that reads windows from a binary file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

import kiloml
from kiloml.codegen.library import STRICT_CFLAGS
from kiloml.dsp.statistics import Statistics, window_statistics
from kiloml.project import STATISTICS

RUNTIME = Path(kiloml.__file__).resolve().parent / "runtime"
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]
ALL_MASK = (1 << len(STATISTICS)) - 1
F32 = np.float32

# The reference overflows (to inf/NaN, like the C kernel) on the 1e18..FLT_MAX windows.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:kiloml.dsp.statistics")

# Input file: int32 n_records, then per record int32 [n_windows, rows, channels,
# start_row, stat_mask] followed by n_windows * rows * channels float32. Output: per
# record and window, channels * popcount(stat_mask) float32. Buffers are malloc'd at
# their exact size so that the sanitizer build catches any out-of-bounds access.
DRIVER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

#include "kml_statistics.h"

static int popcount(uint32_t m)
{
    int n = 0;
    while (m) {
        n += (int)(m & 1u);
        m >>= 1;
    }
    return n;
}

int main(int argc, char **argv)
{
    FILE *in, *out;
    int32_t n_records, r;
    if (argc != 3) {
        fprintf(stderr, "usage: driver in out\n");
        return 2;
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (in == NULL || out == NULL) {
        fprintf(stderr, "cannot open files\n");
        return 2;
    }
    if (fread(&n_records, sizeof n_records, 1, in) != 1) {
        fprintf(stderr, "short read\n");
        return 3;
    }
    for (r = 0; r < n_records; ++r) {
        int32_t head[5], w;
        size_t n_in, n_out;
        float *window, *result;
        if (fread(head, sizeof head[0], 5, in) != 5) {
            fprintf(stderr, "short read\n");
            return 3;
        }
        n_in = (size_t)head[1] * (size_t)head[2];
        n_out = (size_t)head[2] * (size_t)popcount((uint32_t)head[4]);
        window = (float *)malloc(n_in * sizeof(float));
        result = (float *)malloc(n_out * sizeof(float));
        if (window == NULL || result == NULL) {
            fprintf(stderr, "out of memory\n");
            return 4;
        }
        for (w = 0; w < head[0]; ++w) {
            if (fread(window, sizeof(float), n_in, in) != n_in) {
                fprintf(stderr, "short read\n");
                return 3;
            }
            kml_statistics(window, head[1], head[2], head[3], (uint32_t)head[4], result);
            if (fwrite(result, sizeof(float), n_out, out) != n_out) {
                fprintf(stderr, "short write\n");
                return 5;
            }
        }
        free(window);
        free(result);
    }
    fclose(in);
    return fclose(out) == 0 ? 0 : 5;
}
"""


# ---------------------------------------------------------------- building and running


def _build(directory: Path, sanitize: bool) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("kml_statistics.c", "kml_statistics.h", "kml_fp.h"):
        shutil.copyfile(RUNTIME / name, directory / name)
    (directory / "driver.c").write_text(DRIVER_C)
    exe = directory / ("driver_asan" if sanitize else "driver")
    cmd = [gcc, *STRICT_CFLAGS, "-O2", *(SANITIZE_FLAGS if sanitize else []),
           f"-I{directory}", str(directory / "driver.c"), str(directory / "kml_statistics.c"),
           "-lm", "-o", str(exe)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr}"
    assert result.stderr == "", result.stderr  # -Werror, but also no notes
    return exe


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("stats_o2"), sanitize=False)


@pytest.fixture(scope="module")
def driver_asan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("stats_asan"), sanitize=True)


Record = tuple[np.ndarray, int, int]  # ring windows [N, T, C], start_row, stat_mask


def run_c(exe: Path, records: list[Record], work: Path) -> list[np.ndarray]:
    """Run the driver; one float32 [N, C * n_stats] array per record."""
    parts = [np.array([len(records)], "<i4").tobytes()]
    shapes = []
    for x, start_row, mask in records:
        x = np.ascontiguousarray(x, dtype="<f4")
        n, rows, channels = x.shape
        assert 0 <= start_row < rows and 0 < mask <= ALL_MASK
        parts.append(np.array([n, rows, channels, start_row, mask], "<i4").tobytes())
        parts.append(x.tobytes())
        shapes.append((n, channels * bin(mask).count("1")))
    work.mkdir(parents=True, exist_ok=True)
    src, dst = work / f"{exe.name}.in", work / f"{exe.name}.out"
    src.write_bytes(b"".join(parts))
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    result = subprocess.run([str(exe), str(src), str(dst)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == "", result.stderr[-3000:]  # no sanitizer report, no warnings
    raw = np.fromfile(dst, dtype="<f4")
    assert raw.size == sum(n * k for n, k in shapes)
    out, at = [], 0
    for n, k in shapes:
        out.append(raw[at:at + n * k].reshape(n, k).astype(F32))
        at += n * k
    return out


def reference(x: np.ndarray, mask: int = ALL_MASK) -> np.ndarray:
    names = [s for i, s in enumerate(STATISTICS) if mask >> i & 1]
    stage = Statistics(names)
    assert stage.mask == mask
    return stage.transform(x)


def assert_bits_equal(c_out: np.ndarray, py_out: np.ndarray, what: str) -> None:
    assert c_out.shape == py_out.shape, what
    assert c_out.dtype == py_out.dtype == F32, what
    diff = c_out.view(np.int32) != py_out.view(np.int32)
    if diff.any():
        rows, cols = np.nonzero(diff)
        detail = [(int(r), int(c), float(c_out[r, c]), float(py_out[r, c]))
                  for r, c in zip(rows[:8], cols[:8], strict=True)]
        pytest.fail(f"{what}: {int(diff.sum())} of {diff.size} values differ in their bits "
                    f"(window, feature, C, Python): {detail}")


def check_parity(exe: Path, cases: list[tuple[str, np.ndarray]], work: Path,
                 mask: int = ALL_MASK) -> None:
    outputs = run_c(exe, [(x, 0, mask) for _, x in cases], work)
    for (name, x), c_out in zip(cases, outputs, strict=True):
        assert_bits_equal(c_out, reference(x, mask), name)


# ---------------------------------------------------------------- inputs


def random_windows(seed: int, scale: float, n: int = 200, rows: int = 100,
                   channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    offset = rng.normal(size=(n, 1, channels)) * scale
    x = offset + scale * rng.standard_normal((n, rows, channels))
    return x.astype(F32)


def adversarial_cases() -> list[tuple[str, np.ndarray]]:
    """Named windows [N, T, C] that stress the special cases of the kernel."""
    rng = np.random.default_rng(7)
    c: list[tuple[str, np.ndarray]] = []
    rows = 64

    def stack(*columns: np.ndarray) -> np.ndarray:
        return np.stack(columns, axis=-1)[None].astype(F32)

    c.append(("zeros", np.zeros((2, rows, 3), F32)))
    c.append(("negative zeros", np.full((1, rows, 3), -0.0, F32)))
    c.append(("constants", np.broadcast_to(
        np.array([2.5, -7.0, 0.1, 9.81, 1e4, -1e-3], F32), (1, rows, 6)).copy()))
    for where in (0, rows // 2, rows - 1):
        spike = np.zeros((rows, 4), F32)
        spike[where] = [1.0, -1.0, 1e18, -3e-3]
        c.append((f"spike at {where}", spike[None]))
    alt = np.where(np.arange(rows) % 2 == 0, F32(1), F32(-1)).astype(F32)
    c.append(("alternating", stack(alt, -alt, alt + 1, 1000 * alt)))
    signed_zeros = rng.choice(np.array([0.0, -0.0, 1e-45, -1e-45], F32), size=(3, rows, 3))
    c.append(("around +-0", signed_zeros.astype(F32)))
    zero_run = np.zeros(rows, F32)
    zero_run[1::3] = -0.0
    zero_run[2::5] = 1.0
    c.append(("0 and -0 between positives", stack(zero_run, -zero_run, zero_run - 1)))
    denormal = (rng.choice([-1, 1], size=(3, rows, 3)) * 1e-40).astype(F32)
    c.append(("denormals 1e-40", denormal))
    c.append(("random denormals", (rng.standard_normal((3, rows, 3)) * 1e-39).astype(F32)))
    c.append(("constant denormal", np.full((1, rows, 2), 1e-40, F32)))
    # tiny spreads put m2 * std and m2 * m2 between 0 and FLT_MIN: the "no shape" guard
    tiny = 10.0 ** -np.linspace(9, 14, 16)
    c.append(("tiny spreads", (rng.standard_normal((4, rows, len(tiny))) * tiny).astype(F32)))
    c.append(("large 1e18", np.full((1, rows, 2), 1e18, F32)))
    c.append(("random large 1e18", (rng.standard_normal((3, rows, 3)) * 1e18).astype(F32)))
    c.append(("large offset small noise",
              (1e4 + 1e-3 * rng.standard_normal((3, rows, 3))).astype(F32)))
    c.append(("overflowing squares 1e30", (rng.standard_normal((2, rows, 2)) * 1e30).astype(F32)))
    c.append(("float32 max", np.full((1, rows, 2), np.finfo(F32).max, F32)))
    non_finite = rng.standard_normal((4, rows, 4)).astype(F32)
    non_finite[0, 5, 0] = np.inf
    non_finite[1, 0, 1] = np.nan  # NaN as the first (min/max seed) row
    non_finite[2, 9, 2] = np.nan
    non_finite[3, :, 3] = -np.inf
    c.append(("inf and NaN samples", non_finite))
    c.append(("mixed scales", np.concatenate(
        [rng.standard_normal((4, rows, 1)) * s for s in (1e-30, 1e-3, 1.0, 1e20)],
        axis=2).astype(F32)))
    for t in (1, 2, 3):
        c.append((f"T={t} random", rng.standard_normal((20, t, 3)).astype(F32)))
        c.append((f"T={t} zeros", np.zeros((2, t, 3), F32)))
        c.append((f"T={t} constant", np.full((2, t, 3), 0.1, F32)))
        c.append((f"T={t} signed zeros", rng.choice(np.array([0.0, -0.0], F32),
                                                    size=(4, t, 3)).astype(F32)))
    c.append(("T=2 +-1", np.array([[[1.0, -1.0, 0.0], [-1.0, 1.0, -0.0]]], F32)))
    c.append(("one channel", rng.standard_normal((5, 17, 1)).astype(F32)))
    return c


# ---------------------------------------------------------------- C == Python, bit for bit


def test_header_bits_follow_statistics_order() -> None:
    header = (RUNTIME / "kml_statistics.h").read_text()
    bits = dict(re.findall(r"#define KML_STAT_(\w+)\s+\(1u << (\d+)\)", header))
    assert {name.lower(): int(b) for name, b in bits.items()} == {
        name: i for i, name in enumerate(STATISTICS)}
    assert re.search(rf"#define KML_STAT_COUNT\s+{len(STATISTICS)}\b", header)
    assert Statistics().mask == ALL_MASK
    assert Statistics(["kurtosis", "skewness"]).mask == (1 << 8) | (1 << 9)
    assert Statistics(["kurtosis", "mean"]).statistics == ["mean", "kurtosis"]  # canonical


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e4])
def test_random_normal_bit_exact(driver: Path, tmp_path: Path, scale: float) -> None:
    cases = [(f"normal scale {scale} seed {seed}", random_windows(seed, scale))
             for seed in range(3)]
    cases.append((f"normal scale {scale} long", random_windows(9, scale, n=20, rows=1000)))
    check_parity(driver, cases, tmp_path)


def test_watch_windows_bit_exact(driver: Path, tmp_path: Path) -> None:
    pytest.importorskip("seglearn")  # the data ships inside seglearn (kiloml's [data] extra)
    from kiloml.data.public import load_watch
    from kiloml.data.windows import make_windows

    windows = make_windows(load_watch(), 2000, 500)
    assert windows.x.dtype == F32 and windows.x.shape[1:] == (100, 6)
    pick = np.random.default_rng(0).choice(len(windows), size=400, replace=False)
    x = windows.x[np.sort(pick)]
    check_parity(driver, [("watch windows", x)], tmp_path)
    # The same windows through subset masks and a ring.
    subset = Statistics(["skewness", "kurtosis"]).mask
    check_parity(driver, [("watch windows skew/kurt", x)], tmp_path, mask=subset)
    ring = np.roll(x, 37, axis=1)
    (c_out,) = run_c(driver, [(ring, 37, ALL_MASK)], tmp_path)
    assert_bits_equal(c_out, window_statistics(x).reshape(len(x), -1), "watch ring")


def test_adversarial_bit_exact(driver: Path, tmp_path: Path) -> None:
    check_parity(driver, adversarial_cases(), tmp_path)


SUBSETS = [["skewness", "kurtosis"], ["mean"], ["kurtosis"], ["min", "max", "peak_to_peak"],
           ["zero_crossing_rate", "mean_crossing_rate"], ["std", "rms", "kurtosis"],
           [s for i, s in enumerate(STATISTICS) if i % 2]]


@pytest.mark.parametrize("names", SUBSETS, ids=["+".join(s) for s in SUBSETS])
def test_subset_mask_bit_exact(driver: Path, tmp_path: Path, names: list[str]) -> None:
    stage = Statistics(names)
    cases = [("normal", random_windows(3, 1.0, n=50)), *adversarial_cases()[:12]]
    outputs = run_c(driver, [(x, 0, stage.mask) for _, x in cases], tmp_path)
    for (name, x), c_out in zip(cases, outputs, strict=True):
        py = stage.transform(x)
        # channel-major: channel c's statistics are columns c*k .. c*k + k - 1
        full = window_statistics(x)
        expected = full[:, :, stage.index].reshape(len(x), -1)
        assert_bits_equal(py, expected, f"{name}: transform layout")
        assert py.shape == (len(x), x.shape[2] * len(names))
        assert_bits_equal(c_out, py, f"{name} with {names}")


@pytest.mark.parametrize("start_row", [1, 2, 50, 99])
def test_ring_start_row_bit_exact(driver: Path, tmp_path: Path, start_row: int) -> None:
    """A ring whose oldest row is start_row holds window row t at (start_row + t) % T."""
    x = random_windows(5, 1.0, n=60, rows=100)
    x[:4] = np.round(x[:4])  # many exact zeros and ties with the mean
    x[5, :, 0] = 0.0  # constant channel
    x[6, :, 1] = np.where(np.arange(100) % 2, 1, -1)
    x[7, 0, :] = 1e6  # spike on the oldest row: a wrong start gives a wrong min/max
    ring = np.roll(x, start_row, axis=1)
    assert np.array_equal(ring[:, start_row], x[:, 0])
    subset = Statistics(["min", "zero_crossing_rate", "skewness"]).mask
    full, part = run_c(driver, [(ring, start_row, ALL_MASK), (ring, start_row, subset)],
                       tmp_path)
    assert_bits_equal(full, reference(x), f"ring start_row={start_row}")
    assert_bits_equal(part, reference(x, subset), f"ring start_row={start_row}, subset")
    # The rotation matters (order-dependent statistics), so the test can fail:
    naive = reference(ring)
    assert not np.array_equal(naive.view(np.int32), full.view(np.int32))


def test_ring_tiny_windows(driver: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    records, expected = [], []
    for rows in (2, 3, 5):
        x = rng.standard_normal((10, rows, 2)).astype(F32)
        for start in range(rows):
            records.append((np.roll(x, start, axis=1), start, ALL_MASK))
            expected.append(reference(x))
    for i, (c_out, py) in enumerate(zip(run_c(driver, records, tmp_path), expected,
                                        strict=True)):
        assert_bits_equal(c_out, py, f"tiny ring record {i}")


def test_sanitizers_clean(driver_asan: Path, tmp_path: Path) -> None:
    """ASan + UBSan build over the adversarial set, subsets and rings: no report, exit 0,
    and still the reference bits."""
    cases = adversarial_cases()
    records: list[Record] = [(x, 0, ALL_MASK) for _, x in cases]
    expected = [reference(x) for _, x in cases]
    skew_kurt = Statistics(["skewness", "kurtosis"]).mask
    records += [(x, 0, skew_kurt) for _, x in cases]
    expected += [reference(x, skew_kurt) for _, x in cases]
    for rows in (1, 2, 64):
        x = np.random.default_rng(rows).standard_normal((3, rows, 3)).astype(F32)
        start = rows - 1
        records.append((np.roll(x, start, axis=1), start, ALL_MASK))
        expected.append(reference(x))
    outputs = run_c(driver_asan, records, tmp_path)
    for i, (c_out, py) in enumerate(zip(outputs, expected, strict=True)):
        assert_bits_equal(c_out, py, f"sanitized record {i}")


# ---------------------------------------------------------------- reference == maths


def float64_statistics(x: np.ndarray) -> np.ndarray:
    """Independent float64 computation [N, C, 10] with numpy/scipy."""
    x = x.astype(np.float64)
    rows = x.shape[1]
    mean = x.mean(axis=1)
    d = x - mean[:, None, :]
    if rows > 1:
        zcr = np.sum((x[:, 1:] >= 0) != (x[:, :-1] >= 0), axis=1) / (rows - 1)
        mcr = np.sum((d[:, 1:] >= 0) != (d[:, :-1] >= 0), axis=1) / (rows - 1)
    else:
        zcr = mcr = np.zeros_like(mean)
    return np.stack([
        mean,
        x.std(axis=1, ddof=0),
        x.min(axis=1),
        x.max(axis=1),
        np.sqrt(np.mean(x * x, axis=1)),
        np.ptp(x, axis=1),
        zcr,
        mcr,
        sps.skew(x, axis=1, bias=True),
        sps.kurtosis(x, axis=1, fisher=True, bias=True),
    ], axis=-1)


SCALED = ["mean", "std", "min", "max", "rms", "peak_to_peak"]  # in the units of x


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e4])
@pytest.mark.parametrize("dist", ["normal", "exponential", "uniform", "sine"])
def test_reference_matches_float64(scale: float, dist: str) -> None:
    rng = np.random.default_rng(int(scale * 1000) % 97 + len(dist))
    n, rows, channels = 100, 128, 3
    if dist == "normal":
        z = rng.standard_normal((n, rows, channels))
    elif dist == "exponential":  # skewness 2, excess kurtosis 6
        z = rng.exponential(size=(n, rows, channels)) * rng.choice([-1, 1], (n, 1, channels))
    elif dist == "uniform":  # excess kurtosis -1.2
        z = rng.uniform(-1, 1, (n, rows, channels))
    else:
        t = np.arange(rows)[None, :, None]
        z = np.sin(2 * np.pi * rng.uniform(1, 20, (n, 1, channels)) * t / rows
                   + rng.uniform(0, 6, (n, 1, channels)))
    x = ((z + rng.uniform(-1, 1, (n, 1, channels))) * scale).astype(F32)
    got = window_statistics(x).astype(np.float64)
    want = float64_statistics(x)
    assert got.shape == want.shape == (n, channels, len(STATISTICS))
    for i, name in enumerate(STATISTICS):
        atol = 1e-4 * scale if name in SCALED else 1e-4
        np.testing.assert_allclose(got[..., i], want[..., i], rtol=1e-3, atol=atol,
                                   err_msg=f"{name} ({dist}, scale {scale})")
    # Sanity of the data itself: the shape statistics are not all trivially ~0.
    if dist == "exponential":
        assert np.median(np.abs(got[..., 8])) > 1.0 and np.median(got[..., 9]) > 2.0
    if dist == "uniform":
        assert np.median(got[..., 9]) < -1.0


def _one(values: list[float]) -> dict[str, float]:
    x = np.array(values, F32)[None, :, None]
    return dict(zip(STATISTICS, window_statistics(x)[0, 0].tolist(), strict=True))


def test_documented_conventions() -> None:
    # population std (ddof=0): [0, 2] has std 1, not sqrt(2)
    s = _one([0.0, 2.0])
    assert s["std"] == 1.0 and s["mean"] == 1.0 and s["rms"] == np.float32(np.sqrt(2.0))
    assert s["peak_to_peak"] == 2.0 and s["min"] == 0.0 and s["max"] == 2.0
    # crossings counted between consecutive samples, divided by T - 1
    s = _one([1, -1, 1, -1])
    assert s["zero_crossing_rate"] == 1.0 and s["mean_crossing_rate"] == 1.0
    assert s["skewness"] == 0.0 and s["kurtosis"] == -2.0  # m4/m2^2 - 3 = 1 - 3
    s = _one([1, 2, -3, -4, 5])
    assert s["zero_crossing_rate"] == 2 / 4
    # 0 and -0 count as non-negative (x >= 0): no crossing between them and positives
    s = _one([0.0, -0.0, 1.0, 0.0, -0.0])
    assert s["zero_crossing_rate"] == 0.0
    s = _one([-1.0, 0.0, -1.0, -0.0])
    assert s["zero_crossing_rate"] == 1.0
    # mean-crossing rate is the zero-crossing rate of x - mean
    s = _one([10, 11, 10, 11, 12])  # mean 10.8: - + - + +
    assert s["mean"] == np.float32(10.8) and s["mean_crossing_rate"] == 3 / 4
    assert s["zero_crossing_rate"] == 0.0
    # T = 1: rates, spread and shape are all 0
    s = _one([3.5])
    assert s == {**dict.fromkeys(STATISTICS, 0.0), "mean": 3.5, "min": 3.5, "max": 3.5,
                 "rms": 3.5}
    # a skewed sample: scipy's biased skewness / excess kurtosis
    values = [0, 0, 0, 1, 5]
    s = _one(values)
    assert s["skewness"] == pytest.approx(sps.skew(values, bias=True), rel=1e-6)
    assert s["kurtosis"] == pytest.approx(sps.kurtosis(values, bias=True), abs=1e-6)


@pytest.mark.parametrize("value", [0.0, -0.0, 1.0, 2.5, -7.0, 1e4, 1e-40, 2.0**60])
@pytest.mark.parametrize("rows", [1, 2, 64, 100])
def test_constant_channel_has_no_shape(value: float, rows: int) -> None:
    """Values whose running sum is exact: mean == value, std 0, skewness = kurtosis = 0."""
    s = window_statistics(np.full((1, rows, 1), value, F32))[0, 0]
    assert s[0] == np.float32(value) and s[1] == 0.0 and s[5] == 0.0
    assert s[6] == 0.0 and s[7] == 0.0
    assert s[8] == 0.0 and s[9] == 0.0


@pytest.mark.parametrize("value", [9.81, 0.1, 1e18, 1000.1, -3.3e-3])
@pytest.mark.parametrize("rows", [3, 50, 64, 100, 1000])
def test_constant_channel_inexact_mean_has_no_shape(value: float, rows: int) -> None:
    """A sensor resting at a value with no exact float32 running sum: still no shape."""
    s = window_statistics(np.full((1, rows, 1), value, F32))[0, 0]
    assert s[0] == np.float32(value) and s[1] == 0.0
    assert s[7] == 0.0 and s[8] == 0.0 and s[9] == 0.0
