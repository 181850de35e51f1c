"""The on-device monitor: kml_monitor.c against its Python twin (kiloml/monitor/), bit for bit
(signals, flags, telemetry records) on the host and on QEMU mps2-an386 (Cortex-M4F), on
random and adversarial streams; a changed operation order is caught; the fit; the flags'
meaning; the Cortex-M4F cost (flash, RAM, instructions per update) as upper bounds."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from kiloml.codegen.library import RUNTIME_DIR, STRICT_CFLAGS
from kiloml.monitor import FLAGS, Monitor, MonitorConfig, fit_monitor, flag_names, importances_of
from kiloml.monitor import harness as mh
from kiloml.monitor.emit import c_float, emit_monitor_c
from kiloml.monitor.fit import choose_features
from kiloml.monitor.signals import F32_MIN, channel_variance, channel_variances, log2
from kiloml.monitor.snapshot import crc16_ccitt_false

F32 = np.float32
F, CHANNELS, K = 10, 3, 4
MODEL_ID = bytes.fromhex("0123456789abcdef")
EVERY = 50  # windows per telemetry record
# Cortex-M4F, -O2, the default configuration (k=4) at the watch example's 6 channels and 7
# classes, channel variances included: measured 2,040 B of flash (the 2 KB budget;
# the link's 64-byte alignment of newlib's strlen puts the next step at 2,104 B, 10 B of code
# away) and 168 B of RAM; this test's streams (3 channels, 4 classes) take at most ~870
# instructions per update (bench/results/monitor.md has the figures)
M4_FLASH_MAX, M4_RAM_MAX, M4_INSTRUCTIONS_MAX = 2048, 256, 1000
M4_SNAPSHOT_INSTRUCTIONS_MAX = 4500  # measured at most 3,952 (the bitwise CRC: ~3,000)


def training(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = (rng.normal(size=(2000, F)) * np.arange(1, F + 1) + 5).astype(F32)
    cv = rng.gamma(3.0, 1.0, size=(2000, CHANNELS)).astype(F32)
    sm = rng.dirichlet(np.full(K, 0.4), size=2000).astype(F32)
    return x, cv, sm


@pytest.fixture(scope="module")
def params():
    rng = np.random.default_rng(16)
    x, cv, sm = training(rng)
    return fit_monitor(x, cv, MonitorConfig(), rng.random(F), n_classes=K, smoothed_train=sm)


def stream(kind: str, n: int = 400, seed: int = 3) -> mh.Stream:
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, F)) * np.arange(1, F + 1) + 5).astype(F32)
    cv = rng.gamma(3.0, 1.0, size=(n, CHANNELS)).astype(F32)
    sm = rng.dirichlet(np.full(K, 0.4), size=n).astype(F32)
    dec = rng.integers(-1, K, n)
    unc = rng.random(n) < 0.2
    if kind == "constant":
        x[:], cv[:], sm[:] = F32(5.0), F32(0.0), F32(0.25)
        dec[:], unc[:] = 2, False
    elif kind == "drift_ramp":
        x[n // 4:] += (np.linspace(0, 60, n - n // 4)[:, None] * np.arange(1, F + 1)).astype(F32)
        sm[n // 2:] = rng.dirichlet(np.full(K, 5.0), size=n - n // 2).astype(F32)
    elif kind == "stuck":
        cv[50:80, 0] = 0.0          # frozen for 30 windows
        cv[120:125, 1] = 0.0        # shorter than stuck_windows
        cv[200:, 2] = F32(1e-30)    # nearly flat to the end
    elif kind == "extremes":  # finite but far off: float32's limits, subnormals, zeros
        vals = np.array([3.4028235e38, -3.4028235e38, 1e-45, -1e-45, 0.0, 1e30, -1e30,
                         1.17549435e-38], F32)
        x = rng.choice(vals, size=(n, F)).astype(F32)
        cv = rng.choice(np.abs(vals), size=(n, CHANNELS)).astype(F32)
        sm = rng.choice(np.array([0.0, 1.0, 1e-45, 2.0, -1.0, 0.5, 1e-38, 3.4e38], F32),
                        size=(n, K)).astype(F32)
        dec = rng.integers(-1, 9, n)  # classes beyond 5 fold into slot 5
    elif kind == "non_finite":  # NaN and infinities where a broken sensor would put them
        x[rng.random((n, F)) < 0.1] = np.nan
        x[rng.random((n, F)) < 0.05] = np.inf
        cv[rng.random((n, CHANNELS)) < 0.1] = np.nan
        sm[rng.random((n, K)) < 0.05] = np.nan
        sm[rng.random((n, K)) < 0.02] = np.inf
    return mh.Stream(x, cv, sm, dec, unc, (np.arange(n) * 2).astype(np.uint32))


KINDS = ["random", "constant", "drift_ramp", "stuck", "extremes", "non_finite"]


def twin_run(p, s: mh.Stream) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
    m = Monitor(p)
    signals, flags, records = [], [], []
    for i in range(len(s.features)):
        flags.append(m.update(s.features[i], s.channel_variance[i], s.smoothed[i],
                              int(s.decisions[i]), bool(s.uncertain[i])))
        signals.append(m.signals())
        if (i + 1) % EVERY == 0:
            records.append(m.snapshot(MODEL_ID, int(s.uptime_s[i])))
    return np.array(signals, F32), np.array(flags, np.int64), records


def assert_same(out: mh.HarnessOutput, twin: tuple) -> None:
    signals, flags, records = twin
    assert np.array_equal(out.signals.view(np.int32), signals.view(np.int32))
    np.testing.assert_array_equal(out.returned, flags)
    np.testing.assert_array_equal(out.flags, flags)
    assert out.records == records


@pytest.fixture(scope="module")
def host_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mh.build_host(tmp_path_factory.mktemp("monitor_host"))


@pytest.fixture(scope="module")
def qemu_fw(tmp_path_factory: pytest.TempPathFactory) -> mh.QemuMonitor:
    return mh.build_qemu(tmp_path_factory.mktemp("monitor_qemu"))


def test_crc_is_ccitt_false() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1


@pytest.mark.parametrize("kind", KINDS)
def test_c_is_bit_exact_with_the_twin_on_the_host(host_exe: Path, params, tmp_path: Path,
                                                  kind: str) -> None:
    s = stream(kind)
    assert_same(mh.run_host(host_exe, params, s, MODEL_ID, EVERY, tmp_path), twin_run(params, s))


def test_c_is_bit_exact_with_the_twin_on_qemu_m4(qemu_fw: mh.QemuMonitor, params,
                                                 tmp_path: Path) -> None:
    counts = []
    for kind in KINDS:
        s = stream(kind)
        out = mh.run_qemu(qemu_fw, params, s, MODEL_ID, EVERY, tmp_path / kind)
        assert_same(out, twin_run(params, s))
        assert len(out.instructions) == len(s.features)
        counts.append(out.instructions)
    every = np.concatenate(counts)
    assert every.max() <= M4_INSTRUCTIONS_MAX, every.max()
    again = mh.run_qemu(qemu_fw, params, stream("random"), MODEL_ID, EVERY, tmp_path / "again")
    np.testing.assert_array_equal(again.instructions, counts[0])  # deterministic
    snaps = mh.run_qemu(qemu_fw, params, stream("random"), MODEL_ID, EVERY, tmp_path / "snap",
                        measure="snapshot")
    assert snaps.records == again.records and len(snaps.instructions) == len(snaps.records)
    assert snaps.instructions.max() <= M4_SNAPSHOT_INSTRUCTIONS_MAX, snaps.instructions


@pytest.mark.parametrize("flags", [["-O0"], ["-O3", "-std=gnu11", "-ffp-contract=fast"],
                                   ["-Os", "-march=native", "-ffp-contract=fast"]],
                         ids=["O0", "O3-gnu11-contract", "Os-native-contract"])
def test_bit_exact_under_other_host_flags(params, tmp_path: Path, flags: list[str]) -> None:
    """kml_fp.h keeps contraction off whatever the flags (after kiloml's own)."""
    exe = mh.build_host(tmp_path, flags)
    for kind in ("random", "extremes"):
        s = stream(kind)
        assert_same(mh.run_host(exe, params, s, MODEL_ID, EVERY, tmp_path), twin_run(params, s))


def fused_ops(elf: Path) -> int:
    from kiloml.verify.mcu.toolchain import find_toolchain
    objdump = find_toolchain().gcc.replace("gcc", "objdump")
    text = subprocess.run([objdump, "-d", str(elf)], capture_output=True, text=True,
                          check=True).stdout
    return sum(w in text for w in ("vfma", "vfms", "vfnma", "vfnms"))


def test_bit_exact_on_qemu_m4_with_fused_multiply_add_allowed(params, tmp_path: Path) -> None:
    """The Cortex-M4F has vfma: -ffp-contract=fast at -O3 must not reach the monitor; the
    control (kml_monitor.c without its kml_fp.h) fuses and is caught."""
    fast = ["-std=gnu11", "-ffp-contract=fast"]
    s = stream("random")
    fw = mh.build_qemu(tmp_path / "fw", optimize="-O3", extra=fast)
    assert fused_ops(fw.elf) == 0
    assert_same(mh.run_qemu(fw, params, s, MODEL_ID, EVERY, tmp_path / "ok"),
                twin_run(params, s))
    src = (RUNTIME_DIR / "kml_monitor.c").read_text()
    (tmp_path / "kml_monitor.c").write_text(src.replace('#include "kml_fp.h"', "", 1))
    control = mh.build_qemu(tmp_path / "control", optimize="-O3", extra=fast,
                            sources=[tmp_path / "kml_monitor.c"])
    assert fused_ops(control.elf) > 0
    out = mh.run_qemu(control, params, s, MODEL_ID, EVERY, tmp_path / "control_run")
    assert not np.array_equal(out.signals.view(np.int32), twin_run(params, s)[0].view(np.int32))


def test_emitted_constants_are_the_twins(params, tmp_path: Path) -> None:
    """kiloml.monitor.emit's C (hex float literals) in place of the streamed parameters:
    the same signals, flags and records, so the constants are bit-identical."""
    odd = copy.deepcopy(params)
    odd.mean[0], odd.lo[1], odd.floor[0] = F32(1e-45), F32(-0.0), F32(F32_MIN)
    (tmp_path / "emitted.c").write_text(emit_monitor_c(odd, "kml_emitted"))
    exe = mh.build_host(tmp_path / "build", emitted=tmp_path / "emitted.c")
    for kind in ("random", "drift_ramp", "extremes"):
        s = stream(kind)  # the stream carries the unchanged parameters: the build ignores them
        assert_same(mh.run_host(exe, params, s, MODEL_ID, EVERY, tmp_path), twin_run(odd, s))
    assert not np.array_equal(twin_run(odd, s)[0], twin_run(params, s)[0])
    with pytest.raises(ValueError, match="not finite"):
        c_float(np.inf)


def test_a_changed_operation_order_is_caught(params, tmp_path: Path) -> None:
    """One EWMA step written as (1 - a) * run + a * x instead of run + a * (x - run): the
    same value in real numbers, other float32 bits, and the parity check sees it."""
    src = (RUNTIME_DIR / "kml_monitor.c").read_text()
    step = "s->run[i] + alpha * (x[i] - s->run[i])"
    assert src.count(step) == 1
    (tmp_path / "kml_monitor.c").write_text(
        src.replace(step, "p->one_minus_alpha * s->run[i] + alpha * x[i]"))
    exe = tmp_path / "mutant"
    subprocess.run(["gcc", *STRICT_CFLAGS, "-O2", "-DKML_MONITOR_HOST", f"-I{RUNTIME_DIR}",
                    str(tmp_path / "kml_monitor.c"), str(mh.HARNESS), "-o", str(exe)],
                   check=True)
    s = stream("random")
    out = mh.run_host(exe, params, s, MODEL_ID, EVERY, tmp_path)
    signals, _, _ = twin_run(params, s)
    assert not np.array_equal(out.signals.view(np.int32), signals.view(np.int32))
    np.testing.assert_allclose(out.signals, signals, rtol=1e-4, atol=1e-5)  # close, not equal


CV_HARNESS = r"""
#include <stdio.h>
#include "kml_monitor.h"
static float w[4096], v[16];
int main(int argc, char **argv)
{
    int32_t head[3];
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    (void)argc;
    while (fread(head, 4, 3, in) == 3) {
        if (fread(w, 4, (size_t)(head[0] * head[1]), in) != (size_t)(head[0] * head[1]))
            return 1;
        kml_monitor_channel_variance(w, head[0], head[1], head[2], v);
        fwrite(v, 4, (size_t)head[1], out);
    }
    fclose(out);
    return 0;
}
"""


def test_channel_variance_is_bit_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    windows = [rng.normal(size=(64, 3)).astype(F32) * F32(1e3) + F32(9.81),
               np.full((50, 2), 7.25, F32),  # flat: exactly 0
               rng.integers(-2048, 2048, size=(128, 6)).astype(F32),
               rng.normal(size=(33, 1)).astype(F32) * F32(1e-20)]
    (tmp_path / "main.c").write_text(CV_HARNESS)
    exe = tmp_path / "cv"
    subprocess.run(["gcc", *STRICT_CFLAGS, "-O2", f"-I{RUNTIME_DIR}",
                    str(RUNTIME_DIR / "kml_monitor.c"), str(tmp_path / "main.c"), "-o", str(exe)],
                   check=True)
    starts = [0, 0, 0, 0, 17, 63]  # the last two: rings whose oldest row is not the first
    windows += [np.roll(windows[0], 17, axis=0), np.roll(windows[0], 63, axis=0)]
    payload = b"".join(np.array([*w.shape, r], "<i4").tobytes() + w.astype("<f4").tobytes()
                       for w, r in zip(windows, starts, strict=True))
    (tmp_path / "in.bin").write_bytes(payload)
    subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True)
    c = np.frombuffer((tmp_path / "out.bin").read_bytes(), "<f4")
    py = np.concatenate([channel_variance(w, r) for w, r in zip(windows, starts, strict=True)])
    assert np.array_equal(c.view(np.int32), py.view(np.int32))
    for w, r in ((windows[4], 17), (windows[5], 63)):  # the ring read in time order
        assert np.array_equal(channel_variance(w, r), channel_variance(windows[0]))
    batch = np.stack([windows[0], windows[0] * F32(-3.0), np.full((64, 3), 2.5, F32)])
    one = np.stack([channel_variance(w) for w in batch])
    assert np.array_equal(channel_variances(batch).view(np.int32), one.view(np.int32))
    assert (channel_variance(windows[1]) == 0).all()


def test_log2_is_close_and_exact_at_powers_of_two() -> None:
    """For normal floats (the entropy takes smaller scores as 0)."""
    xs = np.array([2e-38, 1e-10, 0.001, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 1000.0], F32)
    for x in xs:
        assert abs(float(log2(x)) - np.log2(float(x))) < 3e-5
    for e in range(-20, 20):
        assert log2(F32(2.0 ** e)) == F32(e)


def test_flags_mean_what_they_say(params) -> None:
    def bits(flags: np.ndarray, name: str) -> np.ndarray:
        return (flags & FLAGS[name]) != 0

    clean = stream("random", n=600, seed=11)
    signals, flags, _ = twin_run(params, clean)
    steps = Monitor(params).run(clean.features, clean.channel_variance, clean.smoothed,
                                clean.decisions, clean.uncertain)  # records change no signal
    assert np.array_equal(steps.signals, signals) and np.array_equal(steps.flags, flags)
    assert steps.signals.shape[1] == len(Monitor.signal_names(params))
    for name in ("INPUT_DRIFT", "OUT_OF_RANGE", "STUCK_CHANNEL", "OOD"):
        assert not bits(flags, name).any(), name  # in distribution: quiet
    drift = stream("drift_ramp", n=600)
    _, flags, _ = twin_run(params, drift)
    for name in ("INPUT_DRIFT", "OUT_OF_RANGE", "OOD", "CHANGE"):
        assert bits(flags, name)[150:].any(), name
        assert not bits(flags, name)[:100].any(), name  # before the ramp
    stuck = stream("stuck")
    _, flags, _ = twin_run(params, stuck)
    st = bits(flags, "STUCK_CHANNEL")
    n = params.stuck_windows
    assert not st[:50 + n - 1].any() and st[50 + n - 1:80].all()  # from the n-th flat window
    assert not st[80:200 + n - 1].any()  # channel 1's 5 flat windows are too few
    assert st[200 + n - 1:].all()  # 1e-30 is below the floor
    assert flag_names(FLAGS["OOD"] | FLAGS["CHANGE"] | 0x8000) == ["OOD", "CHANGE"]


def test_records_hold_the_counts_since_the_previous_one(params) -> None:
    s = stream("drift_ramp")
    _, flags, records = twin_run(params, s)
    assert len(records) == len(s.features) // EVERY
    for r, rec in enumerate(records):
        assert len(rec) == 48 and rec[:2] == b"KT" and rec[2] == 1 and rec[3] == K
        assert rec[4:12] == MODEL_ID
        assert int.from_bytes(rec[46:48], "little") == crc16_ccitt_false(rec[:46])
        lo, hi = r * EVERY, (r + 1) * EVERY
        assert int.from_bytes(rec[12:16], "little") == s.uptime_s[hi - 1]
        assert int.from_bytes(rec[16:20], "little") == hi
        counts = np.frombuffer(rec[20:32], "<u2")
        expect = np.bincount(np.minimum(s.decisions[lo:hi][s.decisions[lo:hi] >= 0], 5),
                             minlength=6)
        np.testing.assert_array_equal(counts, expect)
        assert int.from_bytes(rec[32:34], "little") == s.uncertain[lo:hi].sum()
        assert rec[34] <= rec[35] <= rec[36]
        assert int.from_bytes(rec[44:46], "little") == np.bitwise_or.reduce(flags[lo:hi])


@pytest.mark.parametrize("kind", KINDS)
def test_records_decode_with_the_fleet_codec(params, kind: str) -> None:
    """The monitor's records (the twin's, equal to the C's) are what kiloml.telemetry reads:
    decoded and encoded again they are the same 48 bytes, flags by their names."""
    from kiloml.monitor.flags import flag_names
    from kiloml.telemetry.codec import decode, encode

    _, _, records = twin_run(params, stream(kind))
    assert records
    for rec in records:
        fields = decode(rec)
        assert encode(fields) == rec
        assert fields["model_id"] == MODEL_ID.hex()
        assert fields["flag_names"] == flag_names(fields["flags"])


def test_fit_watches_the_important_features_and_handles_flat_training() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 6)).astype(F32)
    y = (x[:, 4] + 0.3 * x[:, 1] > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    linear = LogisticRegression().fit(x, y)
    for model in (forest, linear):
        assert choose_features(6, 2, importances_of(model)).tolist() == [4, 1]
    assert importances_of(object()) is None
    assert choose_features(6, 3, None).tolist() == [0, 1, 2]  # networks: the first k
    assert choose_features(2, 4, None).tolist() == [0, 1]
    x[:, 0] = 3.0  # constant in training
    cv = np.zeros((300, 2), F32)  # exactly flat channels in training
    p = fit_monitor(x, cv, MonitorConfig(n_monitored=6), None, n_classes=2)
    assert (p.floor == F32_MIN).all()  # exact zero variance still counts as flat
    assert np.isfinite(p.inv_sd).all() and p.inv_sd[0] > 1e5
    assert p.thresholds.source.startswith("training-distribution defaults")
    assert p.describe()["thresholds"]["ood_limit"] > 1.0


def test_bad_configurations_and_training_data_say_what_is_wrong() -> None:
    for bad, match in (({"alpha": 0.0}, "alpha"), ({"n_monitored": 0}, "n_monitored"),
                       ({"ph_cap": 4}, "ph_cap"), ({"range_quantiles": (0.9, 0.1)}, "range")):
        with pytest.raises(ValueError, match=match):
            MonitorConfig(**bad)
    x = np.ones((10, 3), F32)
    x[:, 1] = np.nan
    with pytest.raises(ValueError, match="monitored feature 1 has no finite"):
        fit_monitor(x, np.ones((10, 2), F32), MonitorConfig(n_monitored=3), n_classes=2)
    for classes in (1, 256):  # the record's classes field is one byte
        with pytest.raises(ValueError, match=f"2 to 255 classes, not {classes}"):
            fit_monitor(np.ones((10, 3), F32), np.ones((10, 2), F32), MonitorConfig(),
                        n_classes=classes)
    with pytest.raises(ValueError, match="at least 1 raw channel"):
        fit_monitor(np.ones((10, 3), F32), np.ones((10, 0), F32), MonitorConfig(), n_classes=2)


def test_default_monitor_fits_the_m4_budget(tmp_path: Path) -> None:
    sizes = mh.measure_sizes(tmp_path, k=MonitorConfig().n_monitored, channels=6, classes=7)
    assert sizes.ram_bytes <= M4_RAM_MAX, sizes
    assert sizes.flash_bytes <= M4_FLASH_MAX, sizes
