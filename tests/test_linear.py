"""kml_linear: linear classifiers in C whose labels are the exact arg-max, equal to
scikit-learn's predict wherever its float64 rounding cannot decide otherwise.

The kernel is compiled on its own with a driver (host gcc, strict flags, and once under
ASan/UBSan) and checked against the Python reference (linear_tables.py) on random and
adversarial inputs: labels, which path decided, score bits, and the exact path's sign
for every pair of scores against exact integer arithmetic; the reference against
scikit-learn's predict."""

from __future__ import annotations

import shutil
import subprocess
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import LinearSVC

import kiloml
from kiloml.codegen.library import STRICT_CFLAGS
from kiloml.models.linear_tables import (
    PATH_EXACT,
    PATH_FAST,
    PATH_INVALID,
    LinearTables,
    c_config,
    c_constants,
)

RUNTIME = Path(kiloml.__file__).resolve().parent / "runtime"
F32 = np.float32
DRIVER = r"""
#include <stdio.h>
#include <stdint.h>
#include "kml_linear.h"
%CONSTANTS%
/* in: int32 n, n rows of F floats; out per row: int32 label, int32 path,
 * float scores[K], int32 signs[S][S + 1] (b = -1 first) */
int main(int argc, char **argv)
{
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    int32_t n, r, a, b, path, label;
    static float x[%F%], scores[%K%];
    (void)argc;
    if (!in || !out || fread(&n, 4, 1, in) != 1) {
        return 2;
    }
    for (r = 0; r < n; ++r) {
        if (fread(x, 4, %F%, in) != %F%) {
            return 3;
        }
        label = kml_linear_predict(&%MODEL%, x, scores, &path);
        fwrite(&label, 4, 1, out);
        fwrite(&path, 4, 1, out);
        fwrite(scores, 4, %K%, out);
        for (a = 0; a < %S%; ++a) {
            for (b = -1; b < %S%; ++b) {
                int32_t sign = path == 2 ? 0 : kml_linear_exact_sign(&%MODEL%, x, a, b);
                fwrite(&sign, 4, 1, out);
            }
        }
    }
    return fclose(out) != 0;
}
"""

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@dataclass
class DriverOutput:
    labels: np.ndarray
    paths: np.ndarray
    scores: np.ndarray
    signs: np.ndarray  # [N, S, S + 1]


def build_driver(tables: LinearTables, work: Path, sanitize: bool = False) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    constants, name = c_constants(tables, "kml_t_")
    source = (DRIVER.replace("%CONSTANTS%", constants).replace("%MODEL%", name)
              .replace("%F%", str(tables.n_features)).replace("%K%", str(tables.n_classes))
              .replace("%S%", str(tables.n_scores)))
    (work / "driver.c").write_text(source)
    (work / "kml_config.h").write_text("#ifndef KML_CONFIG_H\n#define KML_CONFIG_H\n"
                                       + "\n".join(c_config(tables)) + "\n#endif\n")
    exe = work / ("driver_san" if sanitize else "driver")
    flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"] \
        if sanitize else []
    subprocess.run(["gcc", *STRICT_CFLAGS, "-O2", *flags, f"-I{work}", f"-I{RUNTIME}",
                    str(work / "driver.c"), str(RUNTIME / "kml_linear.c"),
                    str(RUNTIME / "kml_math.c"), "-lm", "-o", str(exe)], check=True)
    return exe


def run_driver(exe: Path, tables: LinearTables, x: np.ndarray, work: Path) -> DriverOutput:
    x = np.ascontiguousarray(x, dtype="<f4")
    (work / "in.bin").write_bytes(np.int32(len(x)).tobytes() + x.tobytes())
    subprocess.run([str(exe), str(work / "in.bin"), str(work / "out.bin")], check=True)
    s, k = tables.n_scores, tables.n_classes
    record = np.dtype([("label", "<i4"), ("path", "<i4"), ("scores", "<f4", (k,)),
                       ("signs", "<i4", (s, s + 1))])
    out = np.frombuffer((work / "out.bin").read_bytes(), dtype=record)
    assert len(out) == len(x)
    return DriverOutput(out["label"].astype(np.int64), out["path"], out["scores"].copy(),
                        out["signs"].copy())


def exact_signs(tables: LinearTables, x: np.ndarray) -> np.ndarray:
    """sign(S_a - S_b) (b = -1: sign(S_a)) from exact integers, [N, S, S + 1]."""
    s = tables.n_scores
    out = np.zeros((len(x), s, s + 1), dtype=np.int32)
    for r, row in enumerate(x):
        if not np.all(np.isfinite(row)):
            continue
        exact = tables.exact_scores(row)
        for a in range(s):
            out[r, a, 0] = np.sign(exact[a])
            for b in range(s):
                out[r, a, b + 1] = (exact[a] > exact[b]) - (exact[a] < exact[b])
    return out


# --- models and inputs --------------------------------------------------------------------


def random_model(rng: np.random.Generator, n_features: int, n_classes: int, binary: bool,
                 scale: str, tie: str = "first", proba: str = "softmax") -> LinearTables:
    s = 1 if binary else n_classes
    coef = rng.normal(size=(s, n_features))
    intercept = rng.normal(size=s)
    if scale == "tiny":  # float32 subnormals and below, float64 subnormals
        coef *= 10.0 ** rng.integers(-320, -30, size=coef.shape)
    elif scale == "huge":  # beyond float32: no fast path
        coef *= 10.0 ** rng.integers(30, 200, size=coef.shape)
    elif scale == "mixed":
        coef *= 10.0 ** rng.integers(-60, 30, size=coef.shape)
        intercept *= 10.0 ** rng.integers(-40, 40, size=s)
    elif scale == "integer":  # exact ties happen in real arithmetic
        coef = rng.integers(-3, 4, size=coef.shape).astype(float)
        intercept = rng.integers(-2, 3, size=s).astype(float)
    if not binary and scale == "integer" and n_classes >= 3:
        coef[-1], intercept[-1] = coef[0], intercept[0]  # two classes always tie
    return LinearTables(coef, intercept, 2 if binary else n_classes, tie, proba)


def f32_neighbours(v: np.ndarray, steps: int, rng: np.random.Generator) -> np.ndarray:
    """v moved by a few float32 ulps per element."""
    out = v.astype(F32).copy()
    for _ in range(steps):
        d = rng.integers(-1, 2, size=out.shape)
        out = np.where(d > 0, np.nextafter(out, F32(np.inf)),
                       np.where(d < 0, np.nextafter(out, F32(-np.inf)), out)).astype(F32)
    return out


def near_ties(tables: LinearTables, rng: np.random.Generator, n: int) -> np.ndarray:
    """Inputs whose two top exact scores (one score: the score and 0) nearly tie: the
    point of a random segment where they cross, found by bisection in float64, then
    moved by float32 ulps."""
    f, s = tables.n_features, tables.n_scores
    rows = []
    for _ in range(n):
        a, b = rng.normal(size=f), rng.normal(size=f) * 3
        i, j = (0, None) if s == 1 else tuple(rng.choice(s, size=2, replace=False))

        def diff(t: float, a=a, b=b, i=i, j=j) -> float:
            x = a + t * b
            z = tables.coef @ x + tables.intercept
            return z[i] - (0.0 if j is None else z[j])

        lo, hi = -10.0, 10.0
        if np.sign(diff(lo)) == np.sign(diff(hi)):
            continue
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if np.sign(diff(mid)) == np.sign(diff(lo)) else (lo, mid)
        base = (a + lo * b).astype(F32)
        rows.append(base)
        rows.append(f32_neighbours(base, int(rng.integers(1, 4)), rng))
    return np.array(rows, dtype=F32).reshape(-1, f)


def special_rows(f: int, rng: np.random.Generator) -> np.ndarray:
    """Zeros, signed zeros, huge values (float32 overflow), subnormals, NaN and inf."""
    tiny = np.float32(1e-45) * rng.integers(1, 1000, size=(6, f))
    huge = F32(3e38) * rng.choice([-1, 1], size=(6, f))
    big_one = np.zeros((f, f), F32) + np.eye(f, dtype=F32) * F32(3.4e38)
    rows = [np.zeros((1, f), F32), -np.zeros((1, f), F32), tiny.astype(F32), huge,
            big_one[: min(f, 8)], rng.normal(size=(4, f)).astype(F32) * F32(1e30)]
    bad = rng.normal(size=(3, f)).astype(F32)
    bad[0, 0], bad[1, -1], bad[2, f // 2] = np.nan, np.inf, -np.inf
    rows.append(bad)
    return np.concatenate(rows).astype(F32)


def inputs(tables: LinearTables, rng: np.random.Generator, n: int) -> np.ndarray:
    f = tables.n_features
    normal = rng.normal(size=(n, f)).astype(F32)
    scaled = (rng.normal(size=(n // 4, f)) * 10.0 ** rng.integers(-30, 30, size=(n // 4, 1)))
    integers = rng.integers(-4, 5, size=(n // 4, f)).astype(F32)
    return np.concatenate([normal, scaled.astype(F32), integers, near_ties(tables, rng, 60),
                           special_rows(f, rng)]).astype(F32)


CASES = [  # (features, classes, binary, coefficient scale, tie, proba)
    (1, 2, True, "normal", "first", "softmax"),
    (5, 2, True, "integer", "first", "softmax"),
    (17, 2, True, "mixed", "first", "softmax"),
    (4, 3, False, "normal", "first", "softmax"),
    (9, 5, False, "integer", "first", "softmax"),
    (9, 5, False, "integer", "last", "ovr"),
    (33, 4, False, "mixed", "first", "softmax"),
    (12, 3, False, "tiny", "last", "ovr"),
    (6, 3, False, "huge", "first", "softmax"),
    (64, 6, False, "normal", "last", "ovr"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"F{c[0]}K{c[1]}{'b' if c[2] else ''}"
                         f"-{c[3]}-{c[4]}-{c[5]}")
def test_c_kernel_matches_the_exact_reference(case, tmp_path: Path) -> None:
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    tables = random_model(rng, *case[:4], tie=case[4], proba=case[5])
    x = inputs(tables, rng, 400)
    exe = build_driver(tables, tmp_path)
    got = run_driver(exe, tables, x, tmp_path)
    want = tables.labels(x)
    assert np.array_equal(got.labels, want), np.flatnonzero(got.labels != want)[:5]
    assert np.array_equal(got.paths, tables.paths(x))
    assert np.array_equal(got.scores.view(np.int32),
                          tables.device_scores(x, want).view(np.int32))
    assert np.array_equal(got.signs, exact_signs(tables, x))
    finite = np.all(np.isfinite(x), axis=1)
    assert np.all(got.labels[~finite] == -1) and np.all(got.scores[~finite] == 0)
    assert np.all(got.paths[~finite] == PATH_INVALID)
    # the fast path decides most rows; the near ties and overflows take the exact one
    exact = got.paths == PATH_EXACT
    assert exact.sum() > 0
    if case[3] == "huge":
        assert not tables.fast and np.all(got.paths[finite] == PATH_EXACT)
    elif case[3] != "integer":  # integer models tie classes 0 and K-1 always
        assert (got.paths == PATH_FAST).sum() > 0.5 * finite.sum()
    # scores agree with labels: the first arg-max is the label
    assert np.array_equal(np.argmax(got.scores[finite], axis=1), got.labels[finite])


# --- against scikit-learn -------------------------------------------------------------


def training_data(rng: np.random.Generator, n_classes: int, n_features: int, dtype):
    centers = rng.normal(size=(n_classes, n_features)) * 1.5
    y = rng.integers(0, n_classes, size=300)
    x = centers[y] + rng.normal(size=(300, n_features))
    return x.astype(dtype), y


ESTIMATORS = {
    "logistic-binary": (lambda: LogisticRegression(max_iter=500), 2),
    "logistic-multinomial": (lambda: LogisticRegression(max_iter=500), 4),
    "logistic-ovr": (lambda: OneVsRestClassifier(LogisticRegression(max_iter=500)), 4),
    "logistic-ovr-binary": (lambda: OneVsRestClassifier(LogisticRegression()), 2),
    "linear-svc-binary": (lambda: LinearSVC(), 2),
    "linear-svc": (lambda: LinearSVC(), 3),
    "linear-svc-crammer-singer": (lambda: LinearSVC(multi_class="crammer_singer"), 3),
    "ridge-binary": (lambda: RidgeClassifier(), 2),
    "ridge": (lambda: RidgeClassifier(alpha=0.5), 5),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_reference_equals_sklearn_predict(name: str, dtype: str, tmp_path: Path) -> None:
    """scikit-learn's predict on float32 input equals the reference (and the C) on every
    row but those where its own rounding decides (counted: none on random input)."""
    from kiloml.models.linear import tables_from_estimator

    make, k = ESTIMATORS[name]
    rng = np.random.default_rng(len(name) + 7 * (dtype == "float32"))
    x_train, y = training_data(rng, k, 8, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = make().fit(x_train, y)
    tables, classes = tables_from_estimator(est)
    assert classes == list(range(k))
    assert tables.sklearn_bits == (24 if np.asarray(
        getattr(est, "coef_", None) if hasattr(est, "coef_") else
        est.estimators_[0].coef_).dtype == F32 else 53)
    x = inputs(tables, rng, 2000)
    finite = x[np.all(np.isfinite(x), axis=1)]
    random_rows = finite[:2000]
    want = tables.labels(finite)
    got = est.predict(finite)
    ambiguous = tables.sklearn_ambiguous(finite)
    assert np.array_equal(got[~ambiguous], want[~ambiguous])
    assert not ambiguous[:len(random_rows)].any()  # random input never lands in the band
    exe = build_driver(tables, tmp_path)
    assert np.array_equal(run_driver(exe, tables, x, tmp_path).labels, tables.labels(x))


# --- in projects ---------------------------------------------------------------------------

TREE_MODEL = '[model]\nkind = "random_forest"\nn_estimators = 5\nmax_depth = 6'


def linear_project(root: Path, model: str) -> Path:
    from conftest import write_toy_project

    toml = write_toy_project(root)
    text = toml.read_text()
    assert TREE_MODEL in text
    toml.write_text(text.replace(TREE_MODEL, f'[[features]]\nstage = "scale"\n\n{model}'))
    return toml


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import run_cli

    toml = linear_project(tmp_path_factory.mktemp("linear_run"),
                          '[model]\nkind = "logistic_regression"\nC = 2.0\nmulti_class = "ovr"')
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    return toml


def test_a_linear_project_runs_and_reloads(linear_run: Path) -> None:
    """Trained by kiloml (a OneVsRest logistic regression on scaled statistics), decided
    exactly in C, saved without pickle and read back to the same decisions."""
    import json

    from kiloml.persist.pipeline_state import load_pipeline
    from kiloml.verify.reference import Reference

    out = linear_run.parent / "out"
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"]["kind"] == "logistic_regression" and m["model"]["family"] == "linear"
    assert m["model"]["tie"].startswith("last")  # one-vs-rest
    assert m["parity"]["host"]["all_decisions_equal"]
    assert m["parity"]["host"]["streaming"]["all_decisions_equal"]
    assert m["evaluation"]["accuracy"] > 0.8
    pipeline = load_pipeline(out / "pipeline.json")
    ref = Reference.load(out / "verify" / "reference.npz", pipeline)
    assert np.array_equal(pipeline.model.predict(ref.features), ref.labels)
    assert np.array_equal(pipeline.device_scores(ref.features).astype(np.float64), ref.scores)
    assert "kml_linear_predict" in (out / "firmware" / "kiloml_model.c").read_text()


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="needs qemu-system-arm")
def test_a_linear_run_verifies_on_another_core(linear_run: Path) -> None:
    """`kiloml verify` regenerates the C from the saved model and runs it on a Cortex-M0+
    (soft float): same decisions on every held-out window and streamed recording."""
    import json

    from conftest import run_cli

    result = run_cli("verify", str(linear_run), "--target", "cortex-m0plus")
    assert result.exit_code == 0, result.stderr
    m = json.loads((linear_run.parent / "out" / "metrics.json").read_text())
    p = m["parity"]["cortex-m0plus"]
    assert p["emulated"] and p["all_decisions_equal"] and p["streaming"]["all_decisions_equal"]


@pytest.mark.parametrize("model", [
    '[model]\nkind = "linear_svc"\nC = 0.5',
    '[model]\nkind = "ridge"\nalpha = 2.0\nclass_weight = "balanced"',
    '[model]\nkind = "logistic_regression"\npenalty = "l1"',
])
def test_other_linear_kinds_in_a_project(model: str, tmp_path: Path) -> None:
    from kiloml.api import Project

    run = Project.load(linear_project(tmp_path, model)).run(emulate=False)
    assert run.ok and run.metrics["parity"]["host"]["all_decisions_equal"]
    assert run.metrics["model"]["family"] == "linear"
    assert run.library.family == "project" and run.report.is_file()


@pytest.mark.parametrize(("model", "fragments"), [
    ('[model]\nkind = "logistic_regression"\npenalty = "l1"\nsolver = "lbfgs"',
     ("penalty = 'l1' needs solver", "[model]")),
    ('[model]\nkind = "logistic_regression"\nl1_ratio = 0.3', ("l1_ratio is only for",)),
    ('[model]\nkind = "linear_svc"\nlos = "hinge"', ("unknown key 'los'", "did you mean 'loss'")),
    ('[model]\nkind = "ridge"\nalpha = -1.0', ("alpha",)),
    ('[model]\nkind = "logistic_regresion"', ("logistic_regression",)),
    ('[model]\nkind = "ridge"\n\n[optimize]\nqat = "on"', ("a linear model",)),
])
def test_bad_linear_settings_are_one_line(model: str, fragments: tuple, tmp_path: Path) -> None:
    from conftest import assert_user_error, run_cli

    toml = linear_project(tmp_path, model)
    line = assert_user_error(run_cli("run", str(toml), "--no-emulator"), *fragments)
    assert "kiloml.toml:" in line


def test_a_damaged_saved_linear_model_is_one_line(linear_run: Path, tmp_path: Path) -> None:
    """Coefficients that are NaN, of the wrong shape or beyond what kml_linear holds are
    refused on load with the field's path."""
    import io
    import zipfile

    from kiloml.errors import KilomlError
    from kiloml.persist.pipeline_state import load_pipeline

    out = linear_run.parent / "out"
    arrays = dict(np.load(out / "pipeline.npz"))
    for change, fragment in [(lambda a: a * np.nan, "NaN"), (lambda a: a[:, :-1], "shape"),
                             (lambda a: a * 1e300, "beyond 2^800")]:
        copy = dict(arrays)
        copy["model.coef"] = change(arrays["model.coef"])
        work = tmp_path / f"case{len(fragment)}"
        work.mkdir()
        shutil.copy(out / "pipeline.json", work / "pipeline.json")
        buffer = io.BytesIO()
        np.savez(buffer, **copy)
        (work / "pipeline.npz").write_bytes(buffer.getvalue())
        assert zipfile.is_zipfile(work / "pipeline.npz")
        with pytest.raises(KilomlError) as err:
            load_pipeline(work / "pipeline.json")
        assert "model.coef" in str(err.value) and fragment in str(err.value), str(err.value)


def test_linear_candidates_in_a_search(tmp_path: Path) -> None:
    """`kiloml search` estimates linear candidates before training (exact table sizes),
    trains them and keeps them on the front like any other."""
    import json

    from conftest import run_cli

    toml = linear_project(tmp_path, '[model]\nkind = "ridge"')
    toml.write_text(toml.read_text() + '\n[search]\nfolds = 2\n\n[search.space]\nmodel = [\n'
                    '  {kind = "logistic_regression", C = [0.1, 10.0]},\n'
                    '  {kind = "linear_svc"},\n]\n')
    result = run_cli("search", str(toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    search = json.loads((tmp_path / "out-search" / "search.json").read_text())
    rows = [json.loads(line) for line in
            (tmp_path / "out-search" / "candidates.jsonl").read_text().splitlines()]
    assert len(rows) == 3, search


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="needs qemu-system-arm")
@pytest.mark.parametrize("target", ["cortex-m4f", "cortex-m0plus"])
def test_estimate_matches_qemu(target: str, tmp_path: Path) -> None:
    """The analytic cost of the linear stage (kiloml/targets/linear_cost.py) against QEMU
    on a model that is in none of its fits: instructions within 10%, flash within 15%."""
    import kiloml

    rng = np.random.default_rng(5)
    x, y = training_data(rng, 5, 24, "float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lib = kiloml.convert(LogisticRegression(max_iter=300).fit(x, y), target=target)
    figures = lib.verify(x[:30])
    measured, estimate = figures["resources"][target], figures["estimates"][target]
    assert figures["ok"]
    assert abs(estimate["instructions_per_inference"] / measured["instructions_mean"] - 1) < 0.1
    assert abs(estimate["flash_bytes"] / measured["flash_bytes"] - 1) < 0.15
    assert lib.resources is measured


def test_kernel_is_clean_under_sanitizers(tmp_path: Path) -> None:
    """ASan + UBSan (no recovery) on every path: fast, exact (near ties, huge values,
    float32 overflow, subnormals), NaN / inf, and a model beyond float32 (exact only)."""
    rng = np.random.default_rng(11)
    for i, (scale, binary) in enumerate([("mixed", False), ("huge", False),
                                         ("tiny", True)]):
        tables = random_model(rng, 9, 4, binary, scale)
        x = inputs(tables, rng, 200)
        work = tmp_path / str(i)
        exe = build_driver(tables, work, sanitize=True)
        got = run_driver(exe, tables, x, work)
        assert np.array_equal(got.labels, tables.labels(x))
        assert set(np.unique(got.paths)) >= {PATH_EXACT, PATH_INVALID}
