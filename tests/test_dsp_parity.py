"""DSP stages: C runtime == Python reference, bit for bit; Python reference == float64 maths.

Every block of ``kiloml.dsp`` (real FFT, logf/expf, IIR/pre-emphasis/decimation,
spectral features, MFE/MFCC, scaling) is driven here by a small C program compiled
from the runtime in ``kiloml/runtime`` with ``STRICT_CFLAGS -O2`` (and once more with
ASan/UBSan for the adversarial inputs). The drivers read float32 records from a
binary file and write float32 results; the generated constant tables come from the
Python objects, so the C compiled here is the C the firmware gets.

Conventions checked against independent float64 computations:

* FFT: the packed output of ``kml_rfft`` is the unscaled DFT (numpy.fft.rfft).
* logf/expf: within 1 ulp of float64 log/exp over the normal range; logf clamps
  inputs below FLT_MIN (denormals, 0, negatives, -inf) to FLT_MIN, passes +inf/NaN.
* Filters: direct form II transposed sections from a zero state (scipy.signal.sosfilt).
* Spectral: Welch-style averaged periodogram (frames of fft_length every fft_length/2,
  periodic window), scaled by 1 / (frames * sum(w^2)), no one-sided doubling.
* MFE/MFCC: HTK mel, triangular filters of peak 1 at the bin frequencies, |X|^2,
  ln(max(E, 1e-10)), orthonormal DCT-II.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import signal
from scipy.fft import dct
from scipy.io import wavfile

import kiloml
from kiloml.codegen.library import STRICT_CFLAGS
from kiloml.dsp import fft
from kiloml.dsp.filters import Butterworth, Decimate, PreEmphasis, design_butterworth, run_sos
from kiloml.dsp.math32 import expf, logf
from kiloml.dsp.mfcc import Mfcc, mel_filterbank
from kiloml.dsp.scaling import Scale
from kiloml.dsp.spectral import Spectral
from kiloml.errors import KilomlError
from kiloml.project import MfccStageConfig, SpectralStageConfig
from kiloml.stage import EmitContext

RUNTIME = Path(kiloml.__file__).resolve().parent / "runtime"
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]
F32 = np.float32
FLT_MAX = np.finfo(F32).max
FLT_MIN = np.finfo(F32).tiny
FFT_SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
WHERE = "[features.0]"
SOUNDS = Path("/usr/share/asterisk/sounds")

# Overflow to inf / NaN on the adversarial inputs is expected (the C does the same).
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


# ==================================================================== building and running

# Shared by every driver: exact-size buffers (so that ASan sees any overrun), records
# read until the end of the input file, every read and write checked.
PRELUDE = r"""
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static FILE *in_file;
static FILE *out_file;

static void fail(const char *what, int code)
{
    fprintf(stderr, "driver: %s\n", what);
    exit(code);
}

static float *alloc_floats(size_t count)
{
    float *p = (float *)malloc((count ? count : 1) * sizeof(float));
    if (p == NULL) {
        fail("out of memory", 4);
    }
    return p;
}

static void read_ints(int32_t *p, size_t count)
{
    if (count && fread(p, sizeof(int32_t), count, in_file) != count) {
        fail("short read", 3);
    }
}

static void read_floats(float *p, size_t count)
{
    if (count && fread(p, sizeof(float), count, in_file) != count) {
        fail("short read", 3);
    }
}

static void write_floats(const float *p, size_t count)
{
    if (count && fwrite(p, sizeof(float), count, out_file) != count) {
        fail("short write", 5);
    }
}

static int more_records(void)
{
    const int c = fgetc(in_file);
    if (c == EOF) {
        return 0;
    }
    if (ungetc(c, in_file) == EOF) {
        fail("ungetc", 3);
    }
    return 1;
}

static void run_record(void);
"""

MAIN = r"""
int main(int argc, char **argv)
{
    if (argc != 3) {
        fail("usage: driver in out", 2);
    }
    in_file = fopen(argv[1], "rb");
    out_file = fopen(argv[2], "wb");
    if (in_file == NULL || out_file == NULL) {
        fail("cannot open files", 2);
    }
    while (more_records()) {
        run_record();
    }
    fclose(in_file);
    return fclose(out_file) == 0 ? 0 : 5;
}
"""


def build(directory: Path, name: str, body: str, modules: list[str], sanitize: bool,
          runtime: Path | None = None) -> Path:
    """Compile PRELUDE + body + MAIN with the runtime modules (from `runtime`, by default
    kiloml's own)."""
    runtime = runtime or RUNTIME
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / f"{name}.c"
    source.write_text(PRELUDE + body + MAIN)
    exe = directory / (f"{name}_asan" if sanitize else name)
    cmd = [gcc, *STRICT_CFLAGS, "-O2", *(SANITIZE_FLAGS if sanitize else []), f"-I{runtime}",
           str(source), *(str(runtime / f"{m}.c") for m in modules), "-lm", "-o", str(exe)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr}"
    assert result.stderr == "", result.stderr
    return exe


def run_driver(exe: Path, payload: bytes, work: Path) -> np.ndarray:
    """Run a driver on one input file: exit 0, nothing on stderr; its float32 output."""
    work.mkdir(parents=True, exist_ok=True)
    src, dst = work / f"{exe.name}.in", work / f"{exe.name}.out"
    src.write_bytes(payload)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    result = subprocess.run([str(exe), str(src), str(dst)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == "", result.stderr[-3000:]
    return np.fromfile(dst, dtype="<f4").astype(F32)


def ints(*values: int) -> bytes:
    return np.array(values, "<i4").tobytes()


def floats(x: np.ndarray) -> bytes:
    return np.ascontiguousarray(x, dtype="<f4").tobytes()


def hexf(value: float) -> str:
    """An exact C99 float literal (hexadecimal), independent of kiloml's own writer."""
    v = float(F32(value))
    assert np.isfinite(v)
    return f"{v.hex()}f"


def bit_diff(c_out: np.ndarray, py_out: np.ndarray) -> np.ndarray:
    """Where the bits differ. Two NaNs count as equal: C leaves the sign and payload of a
    NaN result unspecified, and gcc does swap the operands of a commutative + (seen in
    kml_rfft_power: re*re + im*im with both terms NaN gives +NaN in C, -NaN in numpy)."""
    assert c_out.shape == py_out.shape, (c_out.shape, py_out.shape)
    assert c_out.dtype == py_out.dtype == F32, (c_out.dtype, py_out.dtype)
    return (c_out.view(np.int32) != py_out.view(np.int32)) & ~(np.isnan(c_out)
                                                               & np.isnan(py_out))


def assert_bits_equal(c_out: np.ndarray, py_out: np.ndarray, what: str) -> None:
    diff = bit_diff(c_out, py_out)
    if diff.any():
        where = np.argwhere(diff)[:6]
        detail = [(tuple(int(i) for i in w), float(c_out[tuple(w)]), float(py_out[tuple(w)]))
                  for w in where]
        pytest.fail(f"{what}: {int(diff.sum())} of {diff.size} values differ in their bits "
                    f"(index, C, Python): {detail}")


def ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| in units of the float32 spacing at want (want in float64)."""
    spacing = np.spacing(np.abs(want).astype(F32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / spacing


# ==================================================================== data


@cache
def watch_recordings() -> list[np.ndarray]:
    pytest.importorskip("seglearn")
    from kiloml.data.public import load_watch

    return [r.samples for r in load_watch()]


@cache
def speech() -> np.ndarray:
    """The spoken digits 0-9 of every installed voice, 8 kHz, scaled to [-1, 1) and
    zero-padded to 8000 samples: [n_files, 8000] float32."""
    files = sorted(SOUNDS.glob("*/digits/[0-9].wav"))
    if not files:
        pytest.skip(f"no spoken digits under {SOUNDS}")
    out = []
    for path in files:
        rate, data = wavfile.read(path)
        assert rate == 8000 and data.dtype == np.int16 and data.ndim == 1, path
        x = np.zeros(8000, F32)
        x[:min(len(data), 8000)] = data[:8000].astype(F32) / F32(32768)
        out.append(x)
    return np.stack(out)


def adversarial_signals(length: int, seed: int = 5) -> list[tuple[str, np.ndarray]]:
    """Named 1-D float32 signals of `length` samples that stress special cases."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    noise = rng.standard_normal(length)
    cases = [
        ("zeros", np.zeros(length)),
        ("negative zeros", np.full(length, -0.0)),
        ("constant", np.full(length, 0.7)),
        ("constant -3e4", np.full(length, -3e4)),
        ("impulse at 0", (t == 0) * 1.0),
        ("impulse at 1", (t == 1) * 1.0),
        ("impulse in the middle", (t == length // 2) * -2.5),
        ("impulse at the end", (t == length - 1) * 1.0),
        ("alternating", np.where(t % 2, -1.0, 1.0)),
        ("step", (t >= length // 3) * 1.0),
        ("large 1e18", noise * 1e18),
        ("large 1e30", noise * 1e30),
        ("float32 max", np.full(length, FLT_MAX)),
        ("float32 max alternating", np.where(t % 2, -FLT_MAX, FLT_MAX)),
        ("small 1e-20", noise * 1e-20),
        ("small 1e-36", noise * 1e-36),
        ("denormals 1e-40", noise * 1e-40),
        ("smallest denormal", np.full(length, 1e-45)),
        ("mixed scales", noise * 10.0 ** rng.integers(-40, 30, length)),
        ("large offset small noise", 1e4 + 1e-3 * noise),
    ]
    return [(name, np.asarray(x, dtype=np.float64).astype(F32)) for name, x in cases]


def non_finite_signals(length: int) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(9)
    out = []
    for name, value in (("inf", np.inf), ("-inf", -np.inf), ("nan", np.nan)):
        x = rng.standard_normal(length).astype(F32)
        x[length // 3] = value
        out.append((f"one {name}", x))
    return out


# ==================================================================== 1. real FFT


def fft_driver_body() -> str:
    constants, cases = [], []
    for n in FFT_SIZES:
        text, name = fft.make_plan(n).c_constants(f"p{n}_")
        constants.append(text)
        cases.append(f"    case {n}:\n        return &{name};")
    return ('#include "kml_fft.h"\n\n' + "\n".join(constants) + r"""
static const kml_rfft_t *plan_for(int32_t n)
{
    switch (n) {
""" + "\n".join(cases) + r"""
    default:
        return NULL;
    }
}

/* record: int32 n, int32 frames, frames * n floats -> per frame: packed[n], power[n/2+1] */
static void run_record(void)
{
    int32_t head[2], i;
    const kml_rfft_t *plan;
    float *data, *power;
    read_ints(head, 2);
    plan = plan_for(head[0]);
    if (plan == NULL) {
        fail("no plan for this length", 6);
    }
    data = alloc_floats((size_t)head[0]);
    power = alloc_floats((size_t)head[0] / 2 + 1);
    for (i = 0; i < head[1]; ++i) {
        read_floats(data, (size_t)head[0]);
        kml_rfft(plan, data);
        kml_rfft_power(head[0], data, power);
        write_floats(data, (size_t)head[0]);
        write_floats(power, (size_t)head[0] / 2 + 1);
    }
    free(data);
    free(power);
}
""")


def build_fft(directory: Path, sanitize: bool, runtime: Path | None = None) -> Path:
    return build(directory, "fft_driver", fft_driver_body(), ["kml_fft"], sanitize, runtime)


@pytest.fixture(scope="module")
def fft_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fft(tmp_path_factory.mktemp("fft"), sanitize=False)


def run_fft(exe: Path, frames: dict[int, np.ndarray], work: Path
            ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """C (packed [F, n], power [F, n/2+1]) per length for frames {n: [F, n]}."""
    payload = b"".join(ints(n, len(x)) + floats(x) for n, x in frames.items())
    raw = run_driver(exe, payload, work)
    out, at = {}, 0
    for n, x in frames.items():
        rows = raw[at:at + len(x) * (n + n // 2 + 1)].reshape(len(x), n + n // 2 + 1)
        at += rows.size
        out[n] = (rows[:, :n], rows[:, n:])
    assert at == raw.size
    return out


def check_fft_parity(exe: Path, frames: dict[int, np.ndarray], work: Path, what: str) -> None:
    for n, (packed, power) in run_fft(exe, frames, work).items():
        py = fft.rfft(fft.make_plan(n), frames[n])
        assert_bits_equal(packed, py, f"{what}: kml_rfft n={n}")
        assert_bits_equal(power, fft.power(py), f"{what}: kml_rfft_power n={n}")


def random_frames(n: int, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.array([1e-3, 1.0, 1e4, 3e-8, 2e6])[np.arange(count) % 5, None]
    x = rng.standard_normal((count, n)) * scales
    x[1::5] = rng.uniform(-1, 1, (len(x[1::5]), n)) + 0.3  # offset: a large DC bin
    return x.astype(F32)


def unpack(packed: np.ndarray) -> np.ndarray:
    """Packed spectrum [..., n] -> complex128 [..., n/2 + 1]."""
    n = packed.shape[-1]
    p = packed.astype(np.float64)
    out = np.zeros((*p.shape[:-1], n // 2 + 1), complex)
    out[..., 0] = p[..., 0]
    out[..., n // 2] = p[..., 1]
    out[..., 1:n // 2] = p[..., 2::2] + 1j * p[..., 3::2]
    return out


def test_fft_random_bit_exact(fft_exe: Path, tmp_path: Path) -> None:
    frames = {n: random_frames(n, 40 if n <= 512 else 10, seed=n) for n in FFT_SIZES}
    check_fft_parity(fft_exe, frames, tmp_path, "random frames")


def test_fft_real_data_bit_exact(fft_exe: Path, tmp_path: Path) -> None:
    voices = speech()
    frames = {n: voices[:, 1000:1000 + n] for n in (256, 512, 1024, 4096)}
    watch = np.concatenate([r[:128].T for r in watch_recordings()[:20]])  # [120, 128]
    frames[128] = watch
    frames[64] = np.ascontiguousarray(watch[:, 32:96])
    check_fft_parity(fft_exe, frames, tmp_path, "speech and watch frames")


def fft_adversarial(n: int) -> np.ndarray:
    return np.stack([x for _, x in adversarial_signals(n, seed=n) + non_finite_signals(n)])


def test_fft_adversarial_bit_exact(fft_exe: Path, tmp_path: Path) -> None:
    check_fft_parity(fft_exe, {n: fft_adversarial(n) for n in FFT_SIZES}, tmp_path,
                     "adversarial frames")


def test_fft_sanitizers_clean(tmp_path: Path) -> None:
    exe = build_fft(tmp_path / "asan", sanitize=True)
    frames = {n: np.concatenate([fft_adversarial(n), random_frames(n, 3, n)]) for n in FFT_SIZES}
    check_fft_parity(exe, frames, tmp_path, "sanitized")


@pytest.mark.parametrize("n", FFT_SIZES)
def test_fft_matches_numpy_float64(n: int) -> None:
    rng = np.random.default_rng(n + 1)
    for scale in (1e-6, 1.0, 1e5):
        x = (scale * (rng.standard_normal((8, n)) + rng.uniform(-1, 1, (8, 1)))).astype(F32)
        got = unpack(fft.rfft(fft.make_plan(n), x))
        want = np.fft.rfft(x.astype(np.float64), axis=-1)
        peak = np.abs(want).max(axis=-1, keepdims=True)
        err = np.abs(got - want) / peak
        assert err.max() < 1e-6, (scale, float(err.max()))
        # power: |X|^2 with the same relative accuracy
        power = fft.power(fft.rfft(fft.make_plan(n), x)).astype(np.float64)
        np.testing.assert_allclose(power, np.abs(want) ** 2, rtol=0,
                                   atol=3e-6 * float(peak.max()) ** 2)


@pytest.mark.parametrize("n", [16, 128, 4096])
def test_fft_parseval(n: int) -> None:
    x = np.random.default_rng(3).standard_normal((5, n)).astype(F32)
    power = fft.power(fft.rfft(fft.make_plan(n), x)).astype(np.float64)
    energy = (power[:, 0] + power[:, -1] + 2 * power[:, 1:-1].sum(axis=1)) / n
    np.testing.assert_allclose(energy, (x.astype(np.float64) ** 2).sum(axis=1), rtol=1e-6)


@pytest.mark.parametrize("n", [16, 64, 1024, 4096])
def test_fft_sine_lands_in_its_bin(n: int) -> None:
    t = np.arange(n)
    bins = sorted({1, 2, 3, n // 8, n // 4, n // 4 + 1, n // 2 - 1})
    for k in bins:
        cos = np.cos(2 * np.pi * k * t / n).astype(F32)
        sin = np.sin(2 * np.pi * k * t / n).astype(F32)
        spec = unpack(fft.rfft(fft.make_plan(n), np.stack([cos, sin])))
        expected = np.zeros((2, n // 2 + 1), complex)
        expected[0, k], expected[1, k] = n / 2, -1j * n / 2  # sin = (e^i - e^-i) / 2i
        np.testing.assert_allclose(spec, expected, rtol=0, atol=1e-5 * n, err_msg=f"k={k}")
    # DC and Nyquist are the two real values of the packed output
    packed = fft.rfft(fft.make_plan(n), np.stack([np.full(n, 2.0, F32),
                                                  np.where(t % 2, -1, 1).astype(F32)]))
    assert packed[0, 0] == 2.0 * n and packed[0, 1] == 0.0
    assert packed[1, 0] == 0.0 and packed[1, 1] == n
    np.testing.assert_array_equal(packed[:, 2:], 0.0)


def test_fft_length_errors() -> None:
    for n in FFT_SIZES:
        fft.check_fft_length(n, "here")
        assert fft.make_plan(n).n == n
    for n in (0, -16, 1, 2, 8, 17, 48, 100, 1000, 8192, 3 * 1024):
        with pytest.raises(KilomlError, match="power of two") as err:
            fft.check_fft_length(n, "[features.0] fft_length")
        assert err.value.where == "[features.0] fft_length"
        with pytest.raises(KilomlError):
            fft.make_plan(n)


# ==================================================================== 2. logf / expf

MATH_BODY = r"""
#include "kml_math.h"

/* record: int32 op (0 log, 1 exp), int32 count, count floats -> count floats */
static void run_record(void)
{
    int32_t head[2], i;
    float *values;
    read_ints(head, 2);
    values = alloc_floats((size_t)head[1]);
    read_floats(values, (size_t)head[1]);
    for (i = 0; i < head[1]; ++i) {
        values[i] = head[0] == 0 ? kml_logf(values[i]) : kml_expf(values[i]);
    }
    write_floats(values, (size_t)head[1]);
    free(values);
}
"""


@pytest.fixture(scope="module")
def math_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("math"), "math_driver", MATH_BODY, ["kml_math"],
                 sanitize=False)


def run_math(exe: Path, op: int, x: np.ndarray, work: Path) -> np.ndarray:
    return run_driver(exe, ints(op, x.size) + floats(x), work)


def neighbours(values: list[float], k: int = 3) -> np.ndarray:
    """Each value and its k float32 neighbours on both sides."""
    out = []
    for v in np.asarray(values, F32):
        lo = hi = v
        out.append(v)
        for _ in range(k):
            lo, hi = np.nextafter(lo, F32(-np.inf)), np.nextafter(hi, F32(np.inf))
            out += [lo, hi]
    return np.asarray(out, F32)


def log_inputs() -> np.ndarray:
    rng = np.random.default_rng(1)
    bits = rng.integers(1, 0x7F7FFFFF, 400_000, dtype=np.uint32)  # every positive finite
    every = bits.view(F32)
    log_uniform = np.exp(rng.uniform(np.log(1e-45), np.log(3.4e38), 400_000)).astype(F32)
    near_one = (1 + rng.uniform(-0.3, 0.5, 200_000)).astype(F32)
    special = np.array([0.0, -0.0, -1.0, -1e-45, -FLT_MAX, -np.inf, np.inf, np.nan, -np.nan,
                        FLT_MAX, FLT_MIN, 1e-45, 1.0, 2.0, 0.5, np.e, 10.0], F32)
    edges = neighbours([1.0, FLT_MIN, 1.41421353816986083984375, 0.70710677, 2.0, FLT_MAX,
                        *[2.0 ** e for e in range(-126, 128, 11)]])
    return np.concatenate([every, log_uniform, near_one, special, edges]).astype(F32)


def exp_inputs() -> np.ndarray:
    rng = np.random.default_rng(2)
    uniform = rng.uniform(-100, 100, 400_000).astype(F32)
    small = (rng.standard_normal(100_000) * 10.0 ** rng.integers(-45, 0, 100_000)).astype(F32)
    every = rng.integers(0, 0xFFFFFFFF, 200_000, dtype=np.uint32, endpoint=True).view(F32)
    ln2 = np.log(2.0)
    halfway = ((np.arange(-130, 131) + 0.5) * ln2).astype(F32)  # k = n + 1/2 rounding
    special = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, FLT_MAX, -FLT_MAX,
                        1e-45, -1e-45, 88.0, -87.0, 100.0, -100.0, 1e30, -1e30], F32)
    edges = neighbours([88.7228317261, -87.3365402222, 88.72283935546875, 88.0, -87.0,
                        0.0, *(np.arange(-126, 128, 7) * ln2)], k=4)
    return np.concatenate([uniform, small, every, halfway, special, edges]).astype(F32)


def test_logf_bit_exact(math_exe: Path, tmp_path: Path) -> None:
    x = log_inputs()
    assert_bits_equal(run_math(math_exe, 0, x, tmp_path), logf(x), "kml_logf")


def test_expf_bit_exact(math_exe: Path, tmp_path: Path) -> None:
    x = exp_inputs()
    assert_bits_equal(run_math(math_exe, 1, x, tmp_path), expf(x), "kml_expf")


def test_math_sanitizers_clean(tmp_path: Path) -> None:
    exe = build(tmp_path / "asan", "math_driver", MATH_BODY, ["kml_math"], sanitize=True)
    x = np.concatenate([log_inputs()[::50], exp_inputs()[::50]])
    assert_bits_equal(run_math(exe, 0, x, tmp_path), logf(x), "sanitized kml_logf")
    assert_bits_equal(run_math(exe, 1, x, tmp_path), expf(x), "sanitized kml_expf")


def test_logf_within_one_ulp() -> None:
    x = log_inputs()
    x = x[np.isfinite(x) & (x >= FLT_MIN)]
    err = ulps(logf(x), np.log(x.astype(np.float64)))
    assert err.max() <= 1.0, (float(err.max()), float(x[np.argmax(err)]))
    assert logf(np.array([1.0], F32))[0] == 0.0
    assert logf(np.array([2.0], F32))[0] == F32(np.log(2.0))


def test_logf_special_values() -> None:
    clamp = logf(np.array([FLT_MIN], F32))[0]
    assert clamp == F32(np.log(np.float64(FLT_MIN)))
    # below FLT_MIN (denormals, zeros, negatives, -inf) is taken as FLT_MIN
    below = np.array([1e-45, 1e-40, 0.0, -0.0, -1.0, -FLT_MAX, -np.inf], F32)
    np.testing.assert_array_equal(logf(below), clamp)
    out = logf(np.array([np.inf, np.nan], F32))
    assert out[0] == np.inf and np.isnan(out[1])
    assert logf(np.array([FLT_MAX], F32))[0] == F32(np.log(np.float64(FLT_MAX)))


def test_expf_within_one_ulp() -> None:
    x = exp_inputs()
    x = x[(x > -87.33) & (x < 88.72)]
    err = ulps(expf(x), np.exp(x.astype(np.float64)))
    assert err.max() <= 1.0, (float(err.max()), float(x[np.argmax(err)]))


def test_expf_special_values() -> None:
    out = expf(np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 89.0, 1e30, -88.0, -1e30], F32))
    assert out[0] == 1.0 and out[1] == 1.0
    assert out[2] == np.inf and out[3] == 0.0 and np.isnan(out[4])
    assert out[5] == np.inf and out[6] == np.inf and out[7] == 0.0 and out[8] == 0.0
    # exp(log(x)) round trip within a few ulp
    x = np.geomspace(1e-30, 1e30, 1001).astype(F32)
    assert ulps(expf(logf(x)), x.astype(np.float64)).max() <= 64  # |ln x| <= 69: 2^6 ulp


# ========================================================== 3. IIR, pre-emphasis, decimation


@dataclass
class FilterCase:
    name: str
    make: Callable[[], Butterworth | PreEmphasis | Decimate]
    channels: int
    rate_hz: float

    @property
    def stage(self):
        return _stage(self.name)


FILTER_CASES = [
    FilterCase("watch lowpass 5 Hz o4", lambda: Butterworth("lowpass", 5.0, 4, 50.0, "f"), 6,
               50.0),
    FilterCase("watch highpass 0.5 Hz o2", lambda: Butterworth("highpass", 0.5, 2, 50.0, "f"),
               6, 50.0),
    FilterCase("watch bandpass 1-10 Hz o3",
               lambda: Butterworth("bandpass", [1.0, 10.0], 3, 50.0, "f"), 6, 50.0),
    FilterCase("watch lowpass 20 Hz o1", lambda: Butterworth("lowpass", 20.0, 1, 50.0, "f"), 6,
               50.0),
    FilterCase("watch decimate 5", lambda: Decimate(5, 50.0, "f"), 6, 50.0),
    FilterCase("watch decimate 2", lambda: Decimate(2, 50.0, "f"), 6, 50.0),
    FilterCase("watch pre-emphasis 0.9", lambda: PreEmphasis(0.9), 6, 50.0),
    FilterCase("speech lowpass 3400 Hz o6",
               lambda: Butterworth("lowpass", 3400.0, 6, 8000.0, "f"), 1, 8000.0),
    FilterCase("speech highpass 300 Hz o5",
               lambda: Butterworth("highpass", 300.0, 5, 8000.0, "f"), 1, 8000.0),
    FilterCase("speech bandpass 300-3400 Hz o4",
               lambda: Butterworth("bandpass", [300.0, 3400.0], 4, 8000.0, "f"), 1, 8000.0),
    FilterCase("speech decimate 3", lambda: Decimate(3, 8000.0, "f"), 1, 8000.0),
    FilterCase("speech decimate 16", lambda: Decimate(16, 8000.0, "f"), 1, 8000.0),
    FilterCase("speech pre-emphasis 0.97", lambda: PreEmphasis(0.97), 1, 8000.0),
    FilterCase("speech pre-emphasis 0", lambda: PreEmphasis(0.0), 1, 8000.0),
]


@cache
def _stage(name: str):
    return next(c for c in FILTER_CASES if c.name == name).make()


def _manual_filter(i: int, stage, channels: int) -> tuple[str, str, str]:
    """(definitions, reset statement, step expression) built by hand from the Python
    object's numbers, with exact hexadecimal literals."""
    p = f"m{i}_"
    if isinstance(stage, PreEmphasis):
        return (f"static float {p}previous[{channels}];\n"
                f"static const kml_preemphasis_t {p}pre = {{{channels}, "
                f"{hexf(stage.coefficient)}, {p}previous}};\n",
                f"kml_preemphasis_reset(&{p}pre);",
                f"kml_preemphasis_step(&{p}pre, in, out);\n    return 1;")
    coeffs = ", ".join(hexf(v) for v in stage.coeffs.ravel())
    n = len(stage.coeffs)
    defs = (f"static const float {p}coeffs[{5 * n}] = {{{coeffs}}};\n"
            f"static float {p}state[{2 * n * channels}];\n")
    if isinstance(stage, Decimate):
        defs += (f"static int32_t {p}phase;\n"
                 f"static const kml_decimator_t {p}dec = {{{stage.decimation}, "
                 f"{{{n}, {channels}, {p}coeffs, {p}state}}, &{p}phase}};\n")
        return (defs, f"kml_decimator_reset(&{p}dec);",
                f"return kml_decimator_step(&{p}dec, in, out);")
    defs += f"static const kml_sos_t {p}sos = {{{n}, {channels}, {p}coeffs, {p}state}};\n"
    return defs, f"kml_sos_reset(&{p}sos);", f"kml_sos_step(&{p}sos, in, out);\n    return 1;"


def filter_variants() -> list[tuple[str, FilterCase]]:
    """Driver configurations: each case by hand ("manual") and through emit_c ("emitted")."""
    return [(kind, case) for case in FILTER_CASES for kind in ("manual", "emitted")]


def filter_driver_body() -> str:
    parts = ['#include <string.h>\n\n#include "kml_filters.h"\n']
    channels = []
    for i, (kind, case) in enumerate(filter_variants()):
        if kind == "manual":
            defs, reset, step = _manual_filter(i, case.stage, case.channels)
        else:
            ctx = EmitContext(prefix=f"e{i}_", window="w", start_row="start", input="in",
                              output="out", window_rows=1, channels=case.channels,
                              n_inputs=case.channels)
            emitted = case.stage.emit_c(ctx)
            assert emitted.runtime == ["kml_filters"]
            defs, reset = emitted.state + emitted.constants, emitted.reset
            step = emitted.call + "\n    return 1;"
        parts.append(f"/* {kind}: {case.name} */\n{defs}\n"
                     f"static void reset_{i}(void)\n{{\n    {reset}\n}}\n\n"
                     f"static int32_t step_{i}(const float *in, float *out)\n{{\n    {step}\n}}\n")
        channels.append(str(case.channels))
    k = len(channels)
    parts.append(
        f"#define N_CONFIGS {k}\n"
        f"static void (*const resets[{k}])(void) = {{"
        + ", ".join(f"reset_{i}" for i in range(k)) + "};\n"
        f"static int32_t (*const steps[{k}])(const float *, float *) = {{"
        + ", ".join(f"step_{i}" for i in range(k)) + "};\n"
        f"static const int32_t channels_of[{k}] = {{{', '.join(channels)}}};\n")
    parts.append(r"""
/* record: int32 config, recordings, samples, in_place; then recordings * samples *
 * channels floats. Each recording is streamed one sample at a time after a reset;
 * every output sample (channels floats) is written. */
static void run_record(void)
{
    int32_t head[4], b, t;
    size_t channels, total;
    float *input, *output, *sample;
    read_ints(head, 4);
    if (head[0] < 0 || head[0] >= N_CONFIGS) {
        fail("bad config", 6);
    }
    channels = (size_t)channels_of[head[0]];
    total = (size_t)head[2] * channels;
    input = alloc_floats(total);
    output = alloc_floats(channels);
    sample = alloc_floats(channels);
    for (b = 0; b < head[1]; ++b) {
        read_floats(input, total);
        resets[head[0]]();
        for (t = 0; t < head[2]; ++t) {
            const float *in = input + (size_t)t * channels;
            if (head[3]) {
                memcpy(sample, in, channels * sizeof(float));
                if (steps[head[0]](sample, sample)) {
                    write_floats(sample, channels);
                }
            } else if (steps[head[0]](in, output)) {
                write_floats(output, channels);
            }
        }
    }
    free(input);
    free(output);
    free(sample);
}
""")
    return "\n".join(parts)


def build_filters(directory: Path, sanitize: bool, runtime: Path | None = None) -> Path:
    return build(directory, "filters_driver", filter_driver_body(), ["kml_filters"], sanitize,
                 runtime)


@pytest.fixture(scope="module")
def filters_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_filters(tmp_path_factory.mktemp("filters"), sanitize=False)


FilterRun = tuple[int, np.ndarray, bool]  # variant index, recordings [B, T, C], in place


def run_filters(exe: Path, runs: list[FilterRun], work: Path) -> list[np.ndarray]:
    variants = filter_variants()
    payload, shapes = [], []
    for index, x, in_place in runs:
        case = variants[index][1]
        b, t, c = x.shape
        assert c == case.channels
        payload.append(ints(index, b, t, int(in_place)) + floats(x))
        shapes.append((b, -(-t // case.stage.decimation), c))
    raw = run_driver(exe, b"".join(payload), work)
    out, at = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(raw[at:at + size].reshape(shape))
        at += size
    assert at == raw.size
    return out


def check_filter_parity(exe: Path, inputs: Callable[[FilterCase], list[tuple[str, np.ndarray]]],
                        work: Path) -> None:
    runs, expected = [], []
    references: dict[tuple[str, str], np.ndarray] = {}
    for index, (kind, case) in enumerate(filter_variants()):
        for name, x in inputs(case):
            if (case.name, name) not in references:
                references[case.name, name] = case.stage.process(x)
            for in_place in (False, True):
                runs.append((index, x, in_place))
                expected.append((f"{kind} {case.name}: {name}"
                                 + (" (in place)" if in_place else ""),
                                 references[case.name, name]))
    for c_out, (what, py) in zip(run_filters(exe, runs, work), expected, strict=True):
        assert py.shape == c_out.shape, what
        assert_bits_equal(c_out, py, what)


def random_recordings(case: FilterCase, seed: int, b: int = 3, t: int = 400) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = np.array([1e-3, 1.0, 1e4])[:b, None, None]
    x = rng.standard_normal((b, t, case.channels)) * scale + rng.normal(size=(b, 1, 1)) * scale
    return x.astype(F32)


def test_filters_random_bit_exact(filters_exe: Path, tmp_path: Path) -> None:
    def inputs(case: FilterCase) -> list[tuple[str, np.ndarray]]:
        return [("random 3 scales", random_recordings(case, 1)),
                ("one sample", random_recordings(case, 2, t=1)),
                (f"T = factor + 1 = {case.stage.decimation + 1}",
                 random_recordings(case, 3, t=case.stage.decimation + 1)),
                ("T = 101", random_recordings(case, 4, t=101))]

    check_filter_parity(filters_exe, inputs, tmp_path)


def padded(recordings: list[np.ndarray]) -> np.ndarray:
    """Recordings of different lengths zero-padded at the end (causal filters: the
    prefix is unchanged, and the tail is streamed by both sides alike)."""
    t = max(len(r) for r in recordings)
    out = np.zeros((len(recordings), t, recordings[0].shape[1]), F32)
    for i, r in enumerate(recordings):
        out[i, :len(r)] = r
    return out


def test_filters_real_data_bit_exact(filters_exe: Path, tmp_path: Path) -> None:
    watch = padded(watch_recordings()[::7])  # 20 recordings of 6 axes, 50 Hz
    voices = speech()[::3, :4000, None]  # 20 spoken digits (first half second), 8 kHz

    def inputs(case: FilterCase) -> list[tuple[str, np.ndarray]]:
        return [("watch", watch)] if case.channels == 6 else [("speech", voices)]

    check_filter_parity(filters_exe, inputs, tmp_path)


def filter_adversarial(case: FilterCase) -> list[tuple[str, np.ndarray]]:
    cases = adversarial_signals(97) + non_finite_signals(97)
    x = np.stack([np.stack([s] * case.channels, axis=-1) for _, s in cases])
    if case.channels > 1:  # different signals on the channels of one recording
        x[:, :, 1] = np.roll(x[:, :, 1], 1, axis=0)
    return [("adversarial", x.astype(F32)), ("zero length", np.zeros((2, 0, case.channels), F32))]


def test_filters_adversarial_bit_exact(filters_exe: Path, tmp_path: Path) -> None:
    check_filter_parity(filters_exe, filter_adversarial, tmp_path)


def test_filters_sanitizers_clean(tmp_path: Path) -> None:
    exe = build_filters(tmp_path / "asan", sanitize=True)
    check_filter_parity(exe, filter_adversarial, tmp_path)


def test_filters_state_carries_and_resets(filters_exe: Path, tmp_path: Path) -> None:
    """Streaming is not per-sample: a second recording after a reset equals the first,
    and without the reset (one long recording) it does not."""
    index = next(i for i, (k, c) in enumerate(filter_variants())
                 if k == "manual" and c.name == "watch lowpass 5 Hz o4")
    x = random_recordings(filter_variants()[index][1], 8, b=1, t=50)
    twice, joined = run_filters(filters_exe, [(index, np.concatenate([x, x]), False),
                                              (index, np.concatenate([x, x], axis=1), False)],
                                tmp_path)
    assert_bits_equal(twice[0], twice[1], "same recording after a reset")
    assert not np.array_equal(joined[0, 50:], twice[1])


def sos64(coeffs: np.ndarray) -> np.ndarray:
    c = coeffs.astype(np.float64)
    return np.concatenate([c[:, :3], np.ones((len(c), 1)), c[:, 3:]], axis=1)


@pytest.mark.parametrize("case", [c for c in FILTER_CASES if not isinstance(c.stage, PreEmphasis)],
                         ids=lambda c: c.name)
def test_filters_match_scipy_sosfilt(case: FilterCase) -> None:
    stage = case.stage
    rng = np.random.default_rng(11)
    t = 3000
    time = np.arange(t) / case.rate_hz
    for scale in (1e-3, 1.0, 1e4):
        tone = np.sin(2 * np.pi * case.rate_hz / 37 * time)[None, :, None]
        x = (scale * (rng.standard_normal((2, t, case.channels)) + 3 * tone + 0.5)).astype(F32)
        got = stage.process(x).astype(np.float64)
        want = signal.sosfilt(sos64(stage.coeffs), x.astype(np.float64), axis=1)
        want = want[:, ::stage.decimation]
        # float32 arithmetic against float64 with the same coefficients
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(x).max(),
                                   err_msg=f"scale {scale}")


@pytest.mark.parametrize("case", [c for c in FILTER_CASES if isinstance(c.stage, Butterworth)],
                         ids=lambda c: c.name)
def test_butterworth_frequency_response(case: FilterCase) -> None:
    """The float32 sections keep Butterworth's response: -3 dB at each cutoff, ~0 dB in
    the pass band, attenuated in the stop band (steady-state tone amplitudes)."""
    stage = case.stage
    rate = case.rate_hz
    edges = stage.cutoff_hz if isinstance(stage.cutoff_hz, list) else [stage.cutoff_hz]
    if stage.type == "lowpass":
        passband, stopband = edges[0] / 4, min(edges[0] * 3, rate * 0.49)
    elif stage.type == "highpass":
        passband, stopband = min(edges[0] * 4, rate * 0.45), edges[0] / 4
    else:
        passband, stopband = np.sqrt(edges[0] * edges[1]), edges[0] / 5
    freqs = np.array([*edges, passband, stopband])
    t = int(rate * 20 / freqs.min())  # 20 periods of the slowest tone; the last 10 count
    time = np.arange(t) / rate
    x = np.sin(2 * np.pi * freqs[:, None] * time).astype(F32)[:, :, None]
    y = stage.process(np.repeat(x, case.channels, axis=2))[:, t // 2:].astype(np.float64)
    gains = []
    for i, f in enumerate(freqs):  # least-squares amplitude of the tone at f
        basis = np.stack([np.sin(2 * np.pi * f * time[t // 2:]),
                          np.cos(2 * np.pi * f * time[t // 2:])], axis=1)
        for c in range(case.channels):
            coef = np.linalg.lstsq(basis, y[i, :, c], rcond=None)[0]
            gains.append((f, float(np.hypot(*coef))))
    for f, g in gains:
        if f in edges:
            assert g == pytest.approx(1 / np.sqrt(2), abs=0.005), f
        elif f == passband:
            assert g == pytest.approx(1.0, abs=0.01), f
        else:
            assert g < 0.2, f


def test_preemphasis_and_decimation_maths() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 501, 2)).astype(F32)
    x64 = x.astype(np.float64)
    for a in (0.0, 0.5, 0.97):
        want = x64.copy()
        want[:, 1:] -= a * x64[:, :-1]  # x[-1] = 0
        got = PreEmphasis(a).process(x).astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=0, atol=4e-7 * np.abs(x64).max())
    for factor in (2, 3, 7, 16):
        stage = Decimate(factor, 1000.0, "f")
        y = stage.process(x)
        assert y.shape == (3, -(-501 // factor), 2)
        full = run_sos(stage.coeffs, x)
        assert_bits_equal(y, np.ascontiguousarray(full[:, ::factor]), f"decimate {factor}")
        # the anti-alias filter is an order-6 Butterworth at 80% of the new Nyquist
        sos = signal.butter(6, 0.8 * 1000.0 / factor / 2, btype="low", output="sos", fs=1000.0)
        np.testing.assert_allclose(stage.coeffs, np.concatenate([sos[:, :3], sos[:, 4:]], 1)
                                   .astype(F32), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind,cutoff,rate", [
    ("lowpass", 25.0, 50.0), ("lowpass", 30.0, 50.0), ("highpass", 4000.0, 8000.0),
    ("bandpass", [10.0, 25.0], 50.0), ("bandpass", [10.0, 100.0], 50.0),
    ("bandpass", [30.0, 40.0], 50.0)])
def test_cutoff_at_or_above_nyquist(kind: str, cutoff: float | list[float], rate: float) -> None:
    with pytest.raises(KilomlError, match="Nyquist") as err:
        Butterworth(kind, cutoff, 4, rate, "[preprocess.0] cutoff_hz")
    assert err.value.where == "[preprocess.0] cutoff_hz"
    with pytest.raises(KilomlError, match="Nyquist"):
        design_butterworth(kind, cutoff, 2, rate, "here")


# ==================================================================== window-stage drivers


@dataclass
class WindowCase:
    name: str
    stage: Spectral | Mfcc
    rows: int
    channels: int

    @property
    def n_features(self) -> int:
        return len(self.stage.feature_names([f"c{i}" for i in range(self.channels)]))


def window_driver_body(header: str, cases: list[WindowCase], frames: bool) -> str:
    """Per case: the emitted constants and call inside run_<i>(w, start, out), with
    `static float scratch[scratch_floats]` of the exact size asked. With `frames`
    (MFCC stages), also kml_mfcc_frame on one contiguous frame."""
    parts = [f'#include "{header}"\n']
    for i, case in enumerate(cases):
        p = f"s{i}_"
        ctx = EmitContext(prefix=p, window="w", start_row="start", input="w", output="out",
                          window_rows=case.rows, channels=case.channels,
                          n_inputs=case.channels, scratch="scratch")
        emitted = case.stage.emit_c(ctx)
        assert emitted.scratch_floats > 0 and emitted.state == ""
        parts.append(f"/* {case.name} */\n{emitted.constants}\n"
                     f"static void run_{i}(const float *w, int32_t start, float *out)\n{{\n"
                     f"    static float scratch[{emitted.scratch_floats}];\n"
                     f"    {emitted.call}\n}}\n")
        if frames:
            parts.append(f"static void frame_{i}(const float *samples, float *out)\n{{\n"
                         f"    static float scratch[{emitted.scratch_floats}];\n"
                         f"    kml_mfcc_frame(&{p}mfcc, samples, 1, scratch, out);\n}}\n")
    k = len(cases)

    def table(ctype: str, name: str, values: list) -> str:
        return f"static const {ctype} {name}[{k}] = {{{', '.join(map(str, values))}}};\n"

    parts.append(
        f"#define N_CONFIGS {k}\n"
        + table("int32_t", "rows_of", [c.rows for c in cases])
        + table("int32_t", "channels_of", [c.channels for c in cases])
        + table("int32_t", "features_of", [c.n_features for c in cases])
        + f"static void (*const runs[{k}])(const float *, int32_t, float *) = {{"
        + ", ".join(f"run_{i}" for i in range(k)) + "};\n")
    if frames:
        parts.append(
            table("int32_t", "frame_length_of", [c.stage.frame_length for c in cases])
            + table("int32_t", "values_of", [c.stage.n_values for c in cases])
            + f"static void (*const frame_fns[{k}])(const float *, float *) = {{"
            + ", ".join(f"frame_{i}" for i in range(k)) + "};\n")
    frame_mode = r"""
    if (head[3] == 1) {
        const size_t length = (size_t)frame_length_of[k], values = (size_t)values_of[k];
        float *samples = alloc_floats(length), *result = alloc_floats(values);
        for (i = 0; i < head[1]; ++i) {
            read_floats(samples, length);
            frame_fns[k](samples, result);
            write_floats(result, values);
        }
        free(samples);
        free(result);
        return;
    }""" if frames else ""
    parts.append(r"""
/* record: int32 config, windows, start_row, mode; mode 0: windows * rows * channels
 * floats (a ring whose oldest row is start_row) -> windows * features floats; mode 1
 * (MFCC): windows * frame_length floats -> windows * values floats (kml_mfcc_frame). */
static void run_record(void)
{
    int32_t head[4], i, k;
    size_t n_in, n_out;
    float *w, *out;
    read_ints(head, 4);
    k = head[0];
    if (k < 0 || k >= N_CONFIGS || head[2] < 0 || head[2] >= rows_of[k]) {
        fail("bad record", 6);
    }""" + frame_mode + r"""
    n_in = (size_t)rows_of[k] * (size_t)channels_of[k];
    n_out = (size_t)features_of[k];
    w = alloc_floats(n_in);
    out = alloc_floats(n_out);
    for (i = 0; i < head[1]; ++i) {
        read_floats(w, n_in);
        runs[k](w, head[2], out);
        write_floats(out, n_out);
    }
    free(w);
    free(out);
}
""")
    return "\n".join(parts)


WindowRun = tuple[int, np.ndarray, int]  # case index, ring windows [N, T, C], start_row


def run_windows(exe: Path, cases: list[WindowCase], runs: list[WindowRun], work: Path
                ) -> list[np.ndarray]:
    payload, shapes = [], []
    for index, x, start in runs:
        case = cases[index]
        assert x.shape[1:] == (case.rows, case.channels), (case.name, x.shape)
        payload.append(ints(index, len(x), start, 0) + floats(x))
        shapes.append((len(x), case.n_features))
    raw = run_driver(exe, b"".join(payload), work)
    out, at = [], 0
    for n, k in shapes:
        out.append(raw[at:at + n * k].reshape(n, k))
        at += n * k
    assert at == raw.size
    return out


def edge_starts(case: WindowCase) -> list[int]:
    """Start rows at which a frame begins exactly at the end of the ring, and one row
    either side: where an off-by-one in the ring arithmetic would show."""
    stage = case.stage
    hop = stage.cfg.fft_length // 2 if isinstance(stage, Spectral) else stage.frame_stride
    return sorted({(case.rows - f * hop + d) % case.rows
                   for f in range(1, stage.n_frames) for d in (-1, 0, 1)})


def check_window_parity(exe: Path, cases: list[WindowCase],
                        inputs: list[tuple[int, str, np.ndarray]], work: Path,
                        starts: tuple[int | str, ...] = (0,)) -> None:
    """C on each input (and on the same windows as rings rotated by each start; "edges"
    stands for edge_starts) == stage.transform of the unrotated windows."""
    runs, expected = [], []
    for index, name, x in inputs:
        case = cases[index]
        py = case.stage.transform(x)
        rows = [s for start in starts
                for s in (edge_starts(case) if start == "edges" else [start])]
        for start in dict.fromkeys(r % case.rows for r in rows):
            runs.append((index, np.roll(x, start, axis=1), start))
            expected.append((f"{case.name}: {name}, start_row {start}", py))
    for c_out, (what, py) in zip(run_windows(exe, cases, runs, work), expected, strict=True):
        assert_bits_equal(c_out, py, what)


# ==================================================================== 4. spectral features

SPECTRAL_SUBSETS = [
    ["band_energies", "peaks", "centroid", "entropy", "flatness"],
    ["band_energies"], ["peaks"], ["centroid"], ["entropy"], ["flatness"],
    ["flatness", "peaks"], ["entropy", "band_energies", "centroid"]]
WATCH_CHANNELS = ["ax", "ay", "az", "wx", "wy", "wz"]


def spectral(rate: float = 50.0, rows: int = 100, names: list[str] | None = None,
             **kw) -> Spectral:
    kw.setdefault("fft_length", 64)
    kw.setdefault("n_bands", 6)
    kw.setdefault("n_peaks", 3)
    cfg = SpectralStageConfig(stage="spectral", **kw)
    return Spectral(cfg, rate, rows, names or ["a", "b", "c"], where=WHERE)


def make_spectral_cases() -> list[WindowCase]:
    cases = []
    for i, subset in enumerate(SPECTRAL_SUBSETS):
        for log in (True, False):
            spacing = "log" if i % 2 else "linear"
            stage = spectral(features=subset, log=log, band_spacing=spacing,
                             f_min_hz=0.5 if spacing == "log" else 0.0,
                             f_max_hz=20.0 if i % 3 == 0 else None,
                             window_function=("hann", "hamming", "rectangular")[i % 3])
            cases.append(WindowCase(f"{'+'.join(subset)} log={log} {spacing}", stage, 100, 3))
    cases += [
        WindowCase("watch all features", spectral(names=WATCH_CHANNELS), 100, 6),
        WindowCase("fft 16, more peaks than bins, 1 frame", spectral(
            rows=16, fft_length=16, n_peaks=9, n_bands=3, window_function="rectangular",
            names=["x"]), 16, 1),
        WindowCase("fft 32, 33 rows, one peak", spectral(
            rows=33, fft_length=32, n_peaks=1, n_bands=2, names=["x", "y"], log=False),
            33, 2),
        WindowCase("fft 256, channels c and a, log bands", spectral(
            rows=1000, fft_length=256, n_bands=12, band_spacing="log", f_min_hz=1.0,
            f_max_hz=20.0, window_function="hamming", channels=["c", "a"]), 1000, 3),
        WindowCase("fft 64, 40 bands (empty log bands)", spectral(
            fft_length=64, n_bands=40, band_spacing="log", f_min_hz=0.1, n_peaks=32), 100, 3),
    ]
    return cases


@cache
def spectral_cases() -> list[WindowCase]:
    return make_spectral_cases()


def spectral_index(name: str) -> int:
    return next(i for i, c in enumerate(spectral_cases()) if c.name == name)


def build_spectral(directory: Path, sanitize: bool, runtime: Path | None = None) -> Path:
    return build(directory, "spectral_driver",
                 window_driver_body("kml_spectral.h", spectral_cases(), frames=False),
                 ["kml_spectral", "kml_fft", "kml_math"], sanitize, runtime)


@pytest.fixture(scope="module")
def spectral_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_spectral(tmp_path_factory.mktemp("spectral"), sanitize=False)


def random_windows(case: WindowCase, seed: int, n: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = np.array([1e-3, 1.0, 1e4])[np.arange(n) % 3, None, None]
    t = np.arange(case.rows)[None, :, None]
    freq = rng.uniform(0, 0.5, (n, 1, case.channels))
    x = (rng.standard_normal((n, case.rows, case.channels)) * 0.3
         + np.sin(2 * np.pi * freq * t) + rng.normal(size=(n, 1, case.channels))) * scale
    return x.astype(F32)


def test_spectral_random_bit_exact(spectral_exe: Path, tmp_path: Path) -> None:
    cases = spectral_cases()
    inputs = [(i, "random", random_windows(c, i)) for i, c in enumerate(cases)]
    check_window_parity(spectral_exe, cases, inputs, tmp_path, starts=(0, 1, 37, -1))
    inputs = [(i, "random", random_windows(c, i + 100, n=3)) for i, c in enumerate(cases)]
    check_window_parity(spectral_exe, cases, inputs, tmp_path, starts=("edges",))


def watch_windows(rows: int, count: int) -> np.ndarray:
    """`count` windows of `rows` rows from the watch recordings long enough for them."""
    recs = [r for r in watch_recordings() if len(r) >= rows]
    out = []
    for i in range(count):
        rec = recs[i % len(recs)]
        start = (i * 53) % (len(rec) - rows + 1)
        out.append(rec[start:start + rows])
    return np.stack(out).astype(F32)


def test_spectral_watch_bit_exact(spectral_exe: Path, tmp_path: Path) -> None:
    cases = spectral_cases()
    inputs = [(spectral_index("watch all features"), "watch", watch_windows(100, 300))]
    for i, case in enumerate(cases):
        if case.channels == 3:  # accelerometer axes
            inputs.append((i, "watch accelerometer", watch_windows(case.rows, 40)[:, :, :3]))
    check_window_parity(spectral_exe, cases, inputs, tmp_path, starts=(0, 50))


# Inputs whose averaged power overflows to inf in an isolated bin (a local maximum): see
# test_spectral_overflowing_peak_bit_exact.
OVERFLOW_PEAK = ("large 1e18", "float32 max alternating")


def window_adversarial(case: WindowCase, keep: Callable[[str], bool] = lambda name: True
                       ) -> np.ndarray:
    signals = [s for name, s in adversarial_signals(case.rows, seed=case.rows) if keep(name)]
    x = np.stack([np.stack([s] * case.channels, axis=-1) for s in signals])
    if case.channels > 1:
        x[:, :, 0] = np.roll(x[:, :, 0], 3, axis=0)
    return x.astype(F32)


def no_overflow_peak(name: str) -> bool:
    return name not in OVERFLOW_PEAK


def test_spectral_adversarial_bit_exact(spectral_exe: Path, tmp_path: Path) -> None:
    cases = spectral_cases()
    inputs = [(i, "adversarial", window_adversarial(c, no_overflow_peak))
              for i, c in enumerate(cases)]
    check_window_parity(spectral_exe, cases, inputs, tmp_path, starts=(0, 5))
    # the overflowing inputs agree where no peak is asked for
    inputs = [(i, "overflowing bin", window_adversarial(c, lambda n: n in OVERFLOW_PEAK))
              for i, c in enumerate(cases) if "peaks" not in c.stage.what]
    check_window_parity(spectral_exe, cases, inputs, tmp_path)


def overflowing_tone(case: WindowCase) -> np.ndarray:
    """A tone on bin 8 (rectangular window: one bin) whose power overflows float32 there
    only: (1e18 * 64 / 2)^2 > FLT_MAX."""
    n = case.stage.cfg.fft_length
    t = np.arange(case.rows)
    x = 1e18 * np.cos(2 * np.pi * 8 * t / n)
    return np.repeat(x.astype(F32)[None, :, None], case.channels, axis=2)


def test_spectral_overflowing_peak_bit_exact(spectral_exe: Path, tmp_path: Path) -> None:
    cases = spectral_cases()
    inputs = [(i, "overflowing bin", window_adversarial(c, lambda n: n in OVERFLOW_PEAK))
              for i, c in enumerate(cases) if "peaks" in c.stage.what]
    check_window_parity(spectral_exe, cases, inputs, tmp_path)


def test_spectral_overflowing_peak_is_found() -> None:
    stage = spectral(features=["peaks"], n_peaks=1, log=False, window_function="rectangular",
                     rows=128)
    case = WindowCase("tone", stage, 128, 3)
    peak_hz = stage.transform(overflowing_tone(case)).reshape(3, 2)[:, 0]
    np.testing.assert_array_equal(peak_hz, 8 * 50.0 / 64)


def test_spectral_sanitizers_clean(tmp_path: Path) -> None:
    exe = build_spectral(tmp_path / "asan", sanitize=True)
    cases = spectral_cases()
    inputs = [(i, "adversarial", window_adversarial(c, no_overflow_peak))
              for i, c in enumerate(cases)]
    check_window_parity(exe, cases, inputs, tmp_path, starts=(0, -1))
    inputs = [(i, "random", random_windows(c, i, n=2)) for i, c in enumerate(cases)]
    check_window_parity(exe, cases, inputs, tmp_path, starts=(0, 1, -1, "edges"))
    # the overflowing inputs too (peaks of infinite power)
    runs = [(i, window_adversarial(c, lambda n: n in OVERFLOW_PEAK), 0)
            for i, c in enumerate(cases)]
    runs += [(i, overflowing_tone(c), 1) for i, c in enumerate(cases)]
    outputs = run_windows(exe, cases, runs, tmp_path)
    assert all(o.shape[1] == c.n_features for o, c in zip(outputs, cases * 2, strict=True))


def welch_power(x: np.ndarray, stage: Spectral) -> np.ndarray:
    """float64 averaged power [N, C, bins]: scipy.signal.welch's one-sided density undone
    (times rate, halved off DC/Nyquist) = mean over frames of |FFT|^2 / sum(w^2)."""
    n = stage.cfg.fft_length
    name = stage.cfg.window_function
    window = np.ones(n) if name == "rectangular" else signal.get_window(name, n, fftbins=True)
    xs = x.astype(np.float64)[:, :, stage.channel_index].transpose(0, 2, 1)
    _, p = signal.welch(xs, fs=stage.rate_hz, window=window, nperseg=n, noverlap=n // 2,
                        detrend=False, scaling="density", return_onesided=True, axis=-1,
                        average="mean")
    p = p * stage.rate_hz
    p[..., 1:n // 2] /= 2
    # the same numbers by hand, to pin what welch computes
    hop = n // 2
    frames = 1 + (x.shape[1] - n) // hop
    assert frames == stage.n_frames
    segs = np.stack([xs[..., f * hop:f * hop + n] for f in range(frames)], axis=-2)
    direct = (np.abs(np.fft.rfft(segs * window, axis=-1)) ** 2).sum(axis=-2)
    direct /= frames * np.sum(window ** 2)
    np.testing.assert_allclose(p, direct, rtol=1e-9, atol=1e-12 * direct.max())
    return p


def band_masks(stage: Spectral) -> np.ndarray:
    """[bands, bins]: bin k (at k * rate / n Hz) is in band b when lo <= f < hi, the
    last band closed at f_max."""
    cfg = stage.cfg
    n, rate = cfg.fft_length, stage.rate_hz
    f_max = cfg.f_max_hz if cfg.f_max_hz is not None else rate / 2
    space = np.linspace if cfg.band_spacing == "linear" else np.geomspace
    edges = space(cfg.f_min_hz, f_max, cfg.n_bands + 1)
    f = np.arange(n // 2 + 1) * rate / n
    tol = 1e-9 * rate / n
    masks = (f[None] >= edges[:-1, None] - tol) & (f[None] < edges[1:, None] - tol)
    masks[-1] |= np.abs(f - f_max) <= tol
    return masks


@pytest.mark.parametrize("spacing,window,log,f_max", [
    ("linear", "hann", False, 24.0), ("log", "hamming", True, 24.0),
    ("linear", "rectangular", True, 24.0), ("linear", "hann", False, 12.5),  # on bin 16
    ("linear", "hamming", False, None), ("log", "hann", False, None)])  # up to Nyquist
def test_spectral_band_energies_match_periodogram(spacing: str, window: str, log: bool,
                                                  f_max: float | None) -> None:
    rng = np.random.default_rng(5)
    stage = spectral(rows=300, features=["band_energies"], band_spacing=spacing,
                     f_min_hz=0.5 if spacing == "log" else 0.0, window_function=window,
                     n_bands=7, log=log, f_max_hz=f_max)
    t = np.arange(300)[None, :, None] / 50.0
    x = (rng.standard_normal((20, 300, 3)) + 2 * np.sin(2 * np.pi * 6.25 * t)).astype(F32)
    x = np.concatenate([x, watch_windows(300, 20)[:, :, :3]])
    p = welch_power(x, stage)
    want = p @ band_masks(stage).T.astype(np.float64)  # [N, C, bands]
    got = stage.transform(x).reshape(want.shape).astype(np.float64)
    total = p.sum(axis=-1, keepdims=True)
    if log:
        big = want > 1e-4 * total
        np.testing.assert_allclose(got[big], np.log(want[big]), rtol=0, atol=1e-4)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * total.max())
    assert (want > 1e-4 * total).mean() > 0.5  # not a vacuous comparison


def test_spectral_other_features_match_float64() -> None:
    """Centroid, entropy, flatness and peak heights from the float64 periodogram."""
    rng = np.random.default_rng(6)
    stage = spectral(rows=400, features=["peaks", "centroid", "entropy", "flatness"],
                     n_peaks=2, log=False)
    x = np.concatenate([rng.standard_normal((20, 400, 3)),
                        watch_windows(400, 20)[:, :, :3]]).astype(F32)
    p = welch_power(x, stage)
    bins = p.shape[-1]
    got = stage.transform(x).reshape(*p.shape[:2], -1).astype(np.float64)
    hz = np.arange(bins) * 50.0 / 64
    total = p.sum(-1)
    centroid = (p * hz).sum(-1) / total
    q = p / total[..., None]
    entropy = -(q * np.log(q)).sum(-1) / np.log(bins)
    flatness = np.exp(np.log(np.maximum(p, 1e-10)).mean(-1)) / (total / bins)
    np.testing.assert_allclose(got[..., 4], centroid, rtol=1e-5)
    np.testing.assert_allclose(got[..., 5], entropy, rtol=1e-5)
    np.testing.assert_allclose(got[..., 6], flatness, rtol=1e-4)
    # the highest local maximum: its bin and height
    inner = np.arange(1, bins - 1)
    is_peak = (p[..., 1:-1] > p[..., :-2]) & (p[..., 1:-1] >= p[..., 2:])
    top = inner[np.argmax(np.where(is_peak, p[..., 1:-1], -1), axis=-1)]
    np.testing.assert_allclose(got[..., 0], hz[top])
    np.testing.assert_allclose(got[..., 1], np.take_along_axis(p, top[..., None], -1)[..., 0],
                               rtol=1e-5)


@pytest.mark.parametrize("f0", [3.0, 7.7, 12.5, 20.1])
def test_spectral_single_tone(f0: float) -> None:
    rate, n = 50.0, 64
    hz_per_bin = rate / n
    stage = spectral(rows=640, features=["peaks", "centroid", "entropy"], n_peaks=1, log=False)
    t = np.arange(640) / rate
    x = np.stack([np.sin(2 * np.pi * f0 * t + phase) for phase in (0.0, 1.0, 2.0)], axis=-1)
    peak_hz, _, centroid, entropy = stage.transform(x[None].astype(F32)).reshape(3, 4).T
    assert np.all(np.abs(peak_hz - f0) <= hz_per_bin), peak_hz
    assert np.all(np.abs(centroid - f0) <= hz_per_bin / 2), centroid
    assert np.all(entropy < 0.3), entropy  # Hann: three bins of 33
    # a tone on a bin with a rectangular window: one bin, entropy ~ 0
    rect = spectral(rows=640, features=["entropy", "centroid"], window_function="rectangular",
                    log=False)
    x = np.sin(2 * np.pi * 8 * hz_per_bin * t).astype(F32)[None, :, None].repeat(3, axis=2)
    centroid, entropy = rect.transform(x).reshape(3, 2).T  # canonical feature order
    assert np.all(entropy < 0.01), entropy
    np.testing.assert_allclose(centroid, 8 * hz_per_bin, rtol=1e-4)


def test_spectral_white_noise() -> None:
    stage = spectral(rows=64 * 64, features=["entropy", "flatness"], log=False)
    x = np.random.default_rng(7).standard_normal((4, 64 * 64, 3)).astype(F32)
    entropy, flatness = stage.transform(x).reshape(-1, 2).T
    assert np.all(entropy > 0.99) and np.all(entropy <= 1.0 + 1e-6), entropy
    assert np.all(flatness > 0.95) and np.all(flatness <= 1.0 + 1e-6), flatness


def test_spectral_zeros_and_constants() -> None:
    stage = spectral(features=["band_energies", "peaks", "centroid", "entropy", "flatness"],
                     n_bands=2, n_peaks=1, log=True)
    floor = float(logf(np.array([1e-10], F32))[0])
    out = stage.transform(np.zeros((1, 100, 3), F32)).reshape(3, -1)
    # bands at the floor, no peak (0 Hz, floor), centroid 0, entropy 0, flatness ~1
    np.testing.assert_array_equal(out[:, :6], np.array([[floor, floor, 0.0, floor, 0.0, 0.0]]
                                                       * 3, F32))
    np.testing.assert_allclose(out[:, 6], 1.0, rtol=1e-5)
    # a constant: all power in the DC bin, no local maximum, centroid 0 Hz
    out = spectral(features=["peaks", "centroid", "entropy"], n_peaks=1, log=False,
                   window_function="rectangular").transform(np.full((1, 100, 3), 2.5, F32))
    np.testing.assert_array_equal(out.reshape(3, -1), np.array([[0.0, 1e-10, 0.0, 0.0]] * 3,
                                                               F32))


@pytest.mark.parametrize("kw,rows,match", [
    ({"fft_length": 48}, 100, "power of two"),
    ({"fft_length": 8}, 100, "power of two"),
    ({"fft_length": 8192}, 10000, "power of two"),
    ({"fft_length": 128}, 100, "shorter than the FFT"),
    ({"f_max_hz": 25.1}, 100, "Nyquist"),
    ({"f_max_hz": 30.0}, 100, "Nyquist"),
    ({"f_min_hz": 25.0}, 100, "Nyquist"),
    ({"f_min_hz": 10.0, "f_max_hz": 5.0}, 100, "not below"),
    ({"band_spacing": "log", "f_min_hz": 0.0}, 100, "log-spaced"),
])
def test_spectral_bad_inputs(kw: dict, rows: int, match: str) -> None:
    with pytest.raises(KilomlError, match=match) as err:
        spectral(rows=rows, **kw)
    assert err.value.where is not None and err.value.where.startswith(WHERE)


# ==================================================================== 5. MFE / MFCC


def mfcc_stage(stage: str = "mfcc", rows: int = 8000, names: list[str] | None = None,
               rate: float = 8000.0, **kw) -> Mfcc:
    for key, value in (("frame_ms", 32), ("frame_stride_ms", 16), ("fft_length", 256),
                       ("n_filters", 26), ("n_coefficients", 13)):
        kw.setdefault(key, value)
    cfg = MfccStageConfig(stage=stage, **kw)
    return Mfcc(cfg, rate_hz=rate, window_rows=rows, channels=names or ["ch0"], where=WHERE)


@cache
def mfcc_cases() -> list[WindowCase]:
    return [
        WindowCase("mfcc", mfcc_stage("mfcc"), 8000, 1),
        WindowCase("mfe", mfcc_stage("mfe"), 8000, 1),
        WindowCase("mfcc 25 ms hann 40 of 40, 100-3800 Hz, channels b a", mfcc_stage(
            "mfcc", rows=4000, names=["a", "b"], frame_ms=25, frame_stride_ms=10,
            n_filters=40, n_coefficients=40, f_min_hz=100.0, f_max_hz=3800.0,
            window_function="hann", channels=["b", "a"]), 4000, 2),
        WindowCase("mfe fft 64 rectangular", mfcc_stage(
            "mfe", rows=203, frame_ms=8, frame_stride_ms=4, fft_length=64, n_filters=8,
            window_function="rectangular"), 203, 1),
    ]


def build_mfcc(directory: Path, sanitize: bool, runtime: Path | None = None) -> Path:
    return build(directory, "mfcc_driver",
                 window_driver_body("kml_mfcc.h", mfcc_cases(), frames=True),
                 ["kml_mfcc", "kml_fft", "kml_math"], sanitize, runtime)


@pytest.fixture(scope="module")
def mfcc_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mfcc(tmp_path_factory.mktemp("mfcc"), sanitize=False)


def test_mfcc_speech_bit_exact(mfcc_exe: Path, tmp_path: Path) -> None:
    voices = speech()[:, :, None]
    check_window_parity(mfcc_exe, mfcc_cases(), [(0, "speech", voices), (1, "speech", voices)],
                        tmp_path, starts=(0, 4321))


def test_mfcc_random_and_ring_bit_exact(mfcc_exe: Path, tmp_path: Path) -> None:
    cases = mfcc_cases()
    rng = np.random.default_rng(8)
    inputs = []
    for i, case in enumerate(cases):
        noise = rng.standard_normal((4, case.rows, case.channels))
        scale = np.array([1e-4, 1.0, 300.0, 1.0])[:, None, None]
        inputs.append((i, "noise", (noise * scale).astype(F32)))
    voices = speech()
    two = np.stack([voices[:10, :4000], voices[10:20, 2000:6000]], axis=-1)
    inputs.append((2, "speech, two channels", two))
    check_window_parity(mfcc_exe, cases, inputs, tmp_path, starts=(0, 1, 777, -1))
    inputs = [(i, name, x[:2]) for i, name, x in inputs]
    check_window_parity(mfcc_exe, cases, inputs, tmp_path, starts=("edges",))


def test_mfcc_frame_function_bit_exact(mfcc_exe: Path, tmp_path: Path) -> None:
    """kml_mfcc_frame on one frame == frames_of == the transform's frame."""
    cases = mfcc_cases()
    voices = speech()
    payload, expected = [], []
    for i, case in enumerate(cases):
        length = case.stage.frame_length
        frames = voices[:, 2000:2000 + length]
        payload.append(ints(i, len(frames), 0, 1) + floats(frames))
        expected.append(case.stage.frames_of(frames))
    raw = run_driver(mfcc_exe, b"".join(payload), tmp_path)
    at = 0
    for case, py in zip(cases, expected, strict=True):
        assert_bits_equal(raw[at:at + py.size].reshape(py.shape), py, f"{case.name} frame")
        at += py.size
    assert at == raw.size
    # frames_of agrees with transform frame by frame (frame-major output)
    stage = cases[0].stage
    x = voices[:3, :, None]
    full = stage.transform(x).reshape(3, stage.n_frames, stage.n_values)
    starts = np.arange(stage.n_frames) * stage.frame_stride
    frames = np.stack([voices[:3, s:s + stage.frame_length] for s in starts], axis=1)
    assert_bits_equal(full, stage.frames_of(frames), "transform vs frames_of")


def test_mfcc_adversarial_bit_exact(mfcc_exe: Path, tmp_path: Path) -> None:
    cases = mfcc_cases()
    inputs = [(i, "adversarial", window_adversarial(c)) for i, c in enumerate(cases)]
    check_window_parity(mfcc_exe, cases, inputs, tmp_path, starts=(0, 3))


def test_mfcc_sanitizers_clean(tmp_path: Path) -> None:
    exe = build_mfcc(tmp_path / "asan", sanitize=True)
    cases = mfcc_cases()
    inputs = [(i, "adversarial", window_adversarial(c)[::2]) for i, c in enumerate(cases)]
    check_window_parity(exe, cases, inputs, tmp_path, starts=(0, -1))
    voices = speech()[:1, :, None]
    check_window_parity(exe, cases, [(0, "speech", voices), (1, "speech", voices)], tmp_path,
                        starts=(0, 1, -1, "edges"))
    # and one frame through kml_mfcc_frame per case
    payload = b"".join(ints(i, 1, 0, 1) + floats(np.ones(c.stage.frame_length))
                       for i, c in enumerate(cases))
    raw = run_driver(exe, payload, tmp_path)
    assert raw.size == sum(c.stage.n_values for c in cases)


def mfcc_float64(x: np.ndarray, stage: Mfcc) -> tuple[np.ndarray, np.ndarray]:
    """Independent float64 MFE and MFCC of signals x [N, T]: [N, frames, filters],
    [N, frames, n_coefficients]."""
    cfg = stage.cfg
    rate = 8000.0
    length = round(cfg.frame_ms * rate / 1000)
    stride = round(cfg.frame_stride_ms * rate / 1000)
    n = cfg.fft_length
    window = signal.get_window(cfg.window_function, length, fftbins=True)
    count = 1 + (x.shape[1] - length) // stride
    frames = np.stack([x[:, i * stride:i * stride + length] for i in range(count)], axis=1)
    power = np.abs(np.fft.rfft(frames.astype(np.float64) * window, n=n, axis=-1)) ** 2
    f_max = cfg.f_max_hz or rate / 2
    mel_lo, mel_hi = (2595 * np.log10(1 + f / 700) for f in (cfg.f_min_hz, f_max))
    hz = 700 * (10 ** (np.linspace(mel_lo, mel_hi, cfg.n_filters + 2) / 2595) - 1)
    freqs = np.arange(n // 2 + 1) * rate / n
    bank = np.zeros((cfg.n_filters, n // 2 + 1))
    for m in range(cfg.n_filters):
        left, centre, right = hz[m:m + 3]
        up = (freqs >= left) & (freqs <= centre)
        down = (freqs > centre) & (freqs <= right)
        bank[m, up] = (freqs[up] - left) / (centre - left)
        bank[m, down] = (right - freqs[down]) / (right - centre)
    energy = power @ bank.T
    log_e = np.log(np.maximum(energy, 1e-10))
    return log_e, dct(log_e, type=2, norm="ortho", axis=-1)[..., :cfg.n_coefficients]


def test_mel_filterbank_is_htk_triangles() -> None:
    bank = mel_filterbank(26, 256, 8000.0, 0.0, 4000.0)
    assert bank.shape == (26, 129)
    assert np.all(bank >= 0) and np.all(bank <= 1)
    centres = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 4000 / 700), 28) / 2595) - 1)
    freqs = np.arange(129) * 8000 / 256
    for m in range(26):
        # peak 1 exactly where a bin falls on the centre, else at the bin nearest to it
        k = int(np.argmax(bank[m]))
        assert abs(freqs[k] - centres[m + 1]) <= 8000 / 256
        assert np.all(bank[m][(freqs <= centres[m]) | (freqs >= centres[m + 2])] == 0)


def test_mfcc_matches_float64() -> None:
    voices = speech()[::2]
    noise = np.random.default_rng(9).standard_normal((5, 8000)).astype(F32)
    x = np.concatenate([voices, noise])
    for case in mfcc_cases()[:3]:
        stage = case.stage
        if case.channels == 1:
            log_e, cep = mfcc_float64(x, stage)
            got = stage.transform(x[:, :, None]).reshape(len(x), stage.n_frames, -1)
        else:  # channels ["a", "b"], stage reads b then a: b is the reversed signal
            two = np.stack([x[:, :case.rows], x[:, ::-1][:, :case.rows]], axis=-1)
            out = stage.transform(two).reshape(len(x), 2, stage.n_frames, -1)
            log_e, cep = mfcc_float64(two[:, :, 1], stage)
            got = out[:, 0]
            _, a_cep = mfcc_float64(two[:, :, 0], stage)
            np.testing.assert_allclose(out[:, 1], a_cep, rtol=0,
                                       atol=1e-4 * np.abs(a_cep).max())
        want = log_e if stage.kind == "mfe" else cep
        assert got.shape == want.shape
        # float32 power is accurate to ~1e-6 of each frame's largest bin: compare the
        # energies that are not buried under it
        energy = np.exp(log_e)
        loud = energy > 1e-5 * energy.max(axis=-1, keepdims=True)
        if stage.kind == "mfe":
            err = np.abs(got - want)[loud]
            assert err.max() < 1e-4, float(err.max())
        else:
            frames = loud.all(axis=-1)  # frames whose every energy is well resolved
            assert frames.mean() > 0.3
            scale = np.abs(want).max(axis=-1, keepdims=True)
            err = (np.abs(got - want) / scale)[frames]
            assert err.max() < 1e-4, float(err.max())


def test_mfcc_silence_is_the_floor() -> None:
    stage = mfcc_stage("mfe", rows=512)
    out = stage.transform(np.zeros((1, 512, 1), F32))
    np.testing.assert_array_equal(out, logf(np.array([1e-10], F32))[0])
    mfcc = mfcc_stage("mfcc", rows=512).transform(np.zeros((1, 512, 1), F32))
    c0 = np.log(1e-10) * np.sqrt(26)  # orthonormal DCT of a constant: all in c0
    np.testing.assert_allclose(mfcc.reshape(-1, 13)[:, 0], c0, rtol=1e-5)
    np.testing.assert_allclose(mfcc.reshape(-1, 13)[:, 1:], 0, atol=1e-4)


def test_mfcc_config_errors() -> None:
    with pytest.raises(ValidationError, match="more MFCCs than mel filters"):
        MfccStageConfig(stage="mfcc", n_filters=12, n_coefficients=13)
    MfccStageConfig(stage="mfe", n_filters=12, n_coefficients=13)  # MFE has no DCT
    with pytest.raises(KilomlError, match="does not fit the FFT") as err:
        mfcc_stage(frame_ms=64)  # 512 samples, fft_length 256
    assert err.value.where == f"{WHERE} fft_length"
    with pytest.raises(KilomlError, match="power of two"):
        mfcc_stage(fft_length=200)
    with pytest.raises(KilomlError, match="Nyquist"):
        mfcc_stage(f_max_hz=4001.0)
    with pytest.raises(KilomlError, match="covers no FFT bin"):
        mfcc_stage(fft_length=64, frame_ms=8, n_filters=60, n_coefficients=13)


# ==================================================================== 6. scaling

SCALE_BODY = r"""
#include "kml_scale.h"

/* record: int32 n, rows; offset[n], gain[n], rows * n floats -> rows * n floats */
static void run_record(void)
{
    int32_t head[2], r;
    size_t n;
    float *offset, *gain, *values;
    read_ints(head, 2);
    n = (size_t)head[0];
    offset = alloc_floats(n);
    gain = alloc_floats(n);
    values = alloc_floats(n);
    read_floats(offset, n);
    read_floats(gain, n);
    for (r = 0; r < head[1]; ++r) {
        read_floats(values, n);
        kml_scale(offset, gain, head[0], values);
        write_floats(values, n);
    }
    free(offset);
    free(gain);
    free(values);
}
"""


@pytest.fixture(scope="module")
def scale_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("scale"), "scale_driver", SCALE_BODY, ["kml_scale"],
                 sanitize=False)


def run_scale(exe: Path, runs: list[tuple[Scale, np.ndarray]], work: Path) -> list[np.ndarray]:
    payload = b"".join(ints(x.shape[1], len(x)) + floats(s.offset) + floats(s.gain) + floats(x)
                       for s, x in runs)
    raw = run_driver(exe, payload, work)
    out, at = [], 0
    for _, x in runs:
        out.append(raw[at:at + x.size].reshape(x.shape))
        at += x.size
    assert at == raw.size
    return out


def scale_inputs() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(10)
    x = rng.standard_normal((200, 12)) * 10.0 ** rng.integers(-6, 7, 12) + rng.normal(size=12)
    x[:, 3] = 4.2  # constant columns
    x[:, 7] = 0.0
    x[:, 9] = -1e30
    x[::2, 11] = -0.0
    feats = spectral(names=WATCH_CHANNELS).transform(watch_windows(100, 150))
    adversarial = np.stack([s for _, s in adversarial_signals(64, 3)], axis=1)  # [64, 20]
    return [("random scales", x.astype(F32)), ("watch spectral features", feats),
            ("adversarial columns", adversarial)]


@pytest.mark.parametrize("method", ["standard", "minmax"])
def test_scale_bit_exact(scale_exe: Path, tmp_path: Path, method: str) -> None:
    cases = scale_inputs()
    stages = [Scale(method).fit(x) for _, x in cases]
    rng = np.random.default_rng(12)
    runs = [(s, x) for s, (_, x) in zip(stages, cases, strict=True)]
    runs += [(s, (x[:50] * F32(1.5) + rng.normal(size=x.shape[1])).astype(F32))
             for s, (_, x) in zip(stages, cases, strict=True)]  # unseen data
    for (stage, x), c_out in zip(runs, run_scale(scale_exe, runs, tmp_path), strict=True):
        assert_bits_equal(c_out, stage.transform(x), method)


def test_scale_sanitizers_clean(tmp_path: Path) -> None:
    exe = build(tmp_path / "asan", "scale_driver", SCALE_BODY, ["kml_scale"], sanitize=True)
    odd = Scale("standard")
    odd.offset = np.array([0.0, np.inf, np.nan, 1e-40, -FLT_MAX], F32)
    odd.gain = np.array([np.inf, 1.0, 2.0, 1e30, 0.0], F32)
    x = np.array([[0.0, 1.0, 2.0, 1e-40, FLT_MAX], [1.0, np.inf, -1.0, 0.0, 1.0]], F32)
    runs = [(Scale(m).fit(x), x) for _, x in scale_inputs() for m in ("standard", "minmax")]
    runs += [(odd, x), (Scale("minmax").fit(np.zeros((1, 0), F32)), np.zeros((3, 0), F32))]
    for (stage, x), c_out in zip(runs, run_scale(exe, runs, tmp_path), strict=True):
        assert_bits_equal(c_out, stage.transform(x), "sanitized scale")


def scale_emitted_body(stages: list[Scale]) -> str:
    """Each stage's emitted constants and call, as kiloml_model.c would hold them."""
    parts = ['#include "kml_scale.h"\n']
    for i, stage in enumerate(stages):
        ctx = EmitContext(prefix=f"s{i}_", window="w", start_row="start", input="values",
                          output="values", window_rows=1, channels=1,
                          n_inputs=len(stage.offset))
        emitted = stage.emit_c(ctx)
        assert emitted.runtime == ["kml_scale"]
        parts.append(f"{emitted.constants}\nstatic void scale_{i}(float *values)\n{{\n"
                     f"    {emitted.call}\n}}\n")
    k = len(stages)
    parts.append(
        f"#define N_CONFIGS {k}\n"
        f"static const int32_t n_of[{k}] = {{{', '.join(str(len(s.offset)) for s in stages)}}};\n"
        f"static void (*const scales[{k}])(float *) = {{"
        + ", ".join(f"scale_{i}" for i in range(k)) + "};\n")
    parts.append(r"""
/* record: int32 config, rows; rows * n floats -> rows * n floats */
static void run_record(void)
{
    int32_t head[2], r;
    size_t n;
    float *values;
    read_ints(head, 2);
    if (head[0] < 0 || head[0] >= N_CONFIGS) {
        fail("bad config", 6);
    }
    n = (size_t)n_of[head[0]];
    values = alloc_floats(n);
    for (r = 0; r < head[1]; ++r) {
        read_floats(values, n);
        scales[head[0]](values);
        write_floats(values, n);
    }
    free(values);
}
""")
    return "\n".join(parts)


def test_scale_emitted_constants_bit_exact(tmp_path: Path) -> None:
    """The offsets and gains written into the C by emit_c are the Python numbers."""
    cases = []
    for _, x in scale_inputs():  # gains stay finite (see the near-constant tests)
        finite = np.isfinite(Scale("standard").fit(x).gain) & np.isfinite(
            Scale("minmax").fit(x).gain)
        cases.append(("", np.ascontiguousarray(x[:, finite])))
    assert sum(x.shape[1] for _, x in cases) > 40
    stages = [Scale(m).fit(x) for _, x in cases for m in ("standard", "minmax")]
    tiny = np.array([[1e-38, 3.0], [2e-38, -1e-30], [9e-38, 7.0]], F32)  # gain ~1e37
    stages.append(Scale("minmax").fit(tiny))
    inputs = [x for _, x in cases for _ in range(2)] + [tiny]
    exe = build(tmp_path, "scale_emitted", scale_emitted_body(stages), ["kml_scale"],
                sanitize=False)
    payload = b"".join(ints(i, len(x)) + floats(x) for i, x in enumerate(inputs))
    raw = run_driver(exe, payload, tmp_path)
    at = 0
    for stage, x in zip(stages, inputs, strict=True):
        assert_bits_equal(raw[at:at + x.size].reshape(x.shape), stage.transform(x),
                          f"emitted {stage.method}")
        at += x.size
    assert at == raw.size


def test_scale_emitted_denormal_spread_compiles(tmp_path: Path) -> None:
    stage = Scale("standard").fit(np.array([[0.0], [1e-40], [2e-40]], F32))
    build(tmp_path, "scale_emitted", scale_emitted_body([stage]), ["kml_scale"],
          sanitize=False)


@pytest.mark.parametrize("method", ["standard", "minmax"])
def test_scale_maths(method: str) -> None:
    _, x = scale_inputs()[0]
    stage = Scale(method).fit(x)
    y = stage.transform(x).astype(np.float64)
    varying = [c for c in range(x.shape[1]) if c not in (3, 7, 9)]
    x64 = x.astype(np.float64)[:, varying]
    y = y[:, varying]
    # the float32 offset is off by up to half an ulp of itself: that much, over the spread
    if method == "standard":
        slack = np.abs(x64.mean(0)) * 2.0 ** -24 / x64.std(0)
        np.testing.assert_array_less(np.abs(y.mean(0)), 1e-6 + 1.01 * slack)
        np.testing.assert_allclose(y.std(0), 1, rtol=1e-5)
    else:
        slack = np.abs(x64.min(0)) * 2.0 ** -24 / np.ptp(x64, 0)
        np.testing.assert_array_less(np.abs(y.min(0)), 1e-6 + 1.01 * slack)
        np.testing.assert_array_less(np.abs(y.max(0) - 1), 1e-6 + 1.01 * slack)
    assert np.sum(slack > 1e-3) >= 2  # the random columns include badly scaled ones


@pytest.mark.parametrize("method", ["standard", "minmax"])
@pytest.mark.parametrize("value", [0.0, -0.0, 4.2, 0.1, -1e30, FLT_MAX, 1e-40, 1e-45])
def test_scale_constant_feature_is_zero(method: str, value: float) -> None:
    x = np.full((37, 2), value, F32)
    x[:, 1] = np.arange(37)
    stage = Scale(method).fit(x)
    y = stage.transform(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_array_equal(y[:, 0], 0.0)
    assert stage.gain[0] == 1.0


@pytest.mark.parametrize("method", ["standard", "minmax"])
def test_scale_near_constant_denormal_feature_is_finite(method: str) -> None:
    x = np.array([[0.0], [1e-40], [2e-40]], F32)
    stage = Scale(method).fit(x)
    assert np.all(np.isfinite(stage.gain))
    assert np.all(np.isfinite(stage.transform(x)))


# ==================================================================== the tests can fail


def mutated_runtime(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """A copy of the runtime with one change in one file."""
    runtime = tmp_path / "mutated_runtime"
    shutil.copytree(RUNTIME, runtime)
    text = (runtime / name).read_text()
    assert text.count(old) == 1, old
    (runtime / name).write_text(text.replace(old, new))
    return runtime


def test_mutated_fft_is_caught(tmp_path: Path) -> None:
    """Reassociating one sum in the fused radix-2 pass changes the bits."""
    runtime = mutated_runtime(tmp_path, "kml_fft.c", "b0r = p0[0] + t;",
                              "b0r = (p0[0] + w[0] * p1[0]) - w[1] * p1[1];")
    exe = build_fft(tmp_path / "mut", sanitize=False, runtime=runtime)
    frames = {n: random_frames(n, 20, n) for n in (64, 1024)}
    for n, (packed, _) in run_fft(exe, frames, tmp_path).items():
        assert bit_diff(packed, fft.rfft(fft.make_plan(n), frames[n])).any(), n


def test_mutated_sos_is_caught(tmp_path: Path) -> None:
    runtime = mutated_runtime(tmp_path, "kml_filters.c", "z[0] = k[1] * x - k[3] * y + z[1];",
                              "z[0] = k[1] * x + (z[1] - k[3] * y);")
    exe = build_filters(tmp_path / "mut", sanitize=False, runtime=runtime)
    index = next(i for i, (k, c) in enumerate(filter_variants())
                 if k == "emitted" and c.name == "speech bandpass 300-3400 Hz o4")
    x = speech()[:2, :, None]
    (c_out,) = run_filters(exe, [(index, x, False)], tmp_path)
    assert bit_diff(c_out, filter_variants()[index][1].stage.process(x)).any()


def test_mutated_spectral_is_caught(tmp_path: Path) -> None:
    """Weighting the centroid in another order changes the bits."""
    runtime = mutated_runtime(tmp_path, "kml_spectral.c",
                              "weighted += ((float)k * s->hz_per_bin) * avg[k];",
                              "weighted += (float)k * (s->hz_per_bin * avg[k]);")
    exe = build_spectral(tmp_path / "mut", sanitize=False, runtime=runtime)
    cases = spectral_cases()
    index = next(i for i, c in enumerate(cases) if c.name.startswith("centroid log=True"))
    x = random_windows(cases[index], 1, n=60)
    (c_out,) = run_windows(exe, cases, [(index, x, 0)], tmp_path)
    assert bit_diff(c_out, cases[index].stage.transform(x)).any()


def test_mutated_logf_is_caught(tmp_path: Path) -> None:
    runtime = mutated_runtime(tmp_path, "kml_math.c", "s = f / (2.0f + f);",
                              "s = f * (1.0f / (2.0f + f));")
    exe = build(tmp_path / "mut", "math_driver", MATH_BODY, ["kml_math"], sanitize=False,
                runtime=runtime)
    x = log_inputs()[:100_000]
    assert bit_diff(run_math(exe, 0, x, tmp_path), logf(x)).any()
