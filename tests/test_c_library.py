"""The generated C library: C conventions, strict builds, sanitizers, no malloc."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_toy_project

from kiloml.codegen.library import STRICT_CFLAGS, FirmwareLibrary
from kiloml.persist.pipeline_state import load_pipeline
from kiloml.pipeline import Pipeline
from kiloml.verify import host
from kiloml.verify.sizes import parse_size_a


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Pipeline]:
    root = tmp_path_factory.mktemp("lib")
    assert run_cli("run", str(write_toy_project(root))).exit_code == 0
    return root / "out", load_pipeline(root / "out" / "pipeline.json")


def library(out: Path) -> FirmwareLibrary:
    fw = out / "firmware"
    sources = sorted(fw.glob("*.c"))
    return FirmwareLibrary(fw, sources, sorted(fw.glob("*.h")), n_features=30)


def test_api_header(built) -> None:
    out, pipeline = built
    header = (out / "firmware" / "kiloml_model.h").read_text()
    for decl in ("int32_t kml_classify(const float *window, kml_result_t *out);",
                 "int32_t kml_push_sample(const float *sample);",
                 "int32_t kml_classify_latest(kml_result_t *out);", "void kml_reset(void);",
                 "#define KML_WINDOW_SAMPLES 50", "#define KML_STRIDE_SAMPLES 25",
                 "#define KML_CHANNELS 3", "#define KML_CLASSES 3"):
        assert decl in header, decl
    source = (out / "firmware" / "kiloml_model.c").read_text()
    assert '{"idle", "shake", "walk"}' in source
    assert pipeline.class_names == ["idle", "shake", "walk"]


@pytest.mark.parametrize("cc", ["gcc", "arm-none-eabi-gcc"])
def test_strict_build_without_malloc(built, cc: str, tmp_path: Path) -> None:
    out, _ = built
    if shutil.which(cc) is None:
        pytest.fail(f"{cc} is missing: `make test` installs it (gcc-arm-none-eabi)")
    flags = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"] \
        if cc.startswith("arm") else []
    objects = []
    for src in library(out).sources:
        obj = tmp_path / (src.stem + ".o")
        subprocess.run([cc, *STRICT_CFLAGS, "-O2", *flags, f"-I{out / 'firmware'}", "-c",
                        str(src), "-o", str(obj)], check=True, capture_output=True, text=True)
        objects.append(obj)
    nm = "arm-none-eabi-nm" if cc.startswith("arm") else "nm"
    undefined = subprocess.run([nm, "-u", *map(str, objects)], capture_output=True, text=True,
                               check=True).stdout.split()
    for forbidden in ("malloc", "calloc", "realloc", "free", "printf"):
        assert forbidden not in undefined, forbidden


def test_header_compiles_as_cplusplus(built, tmp_path: Path) -> None:
    out, _ = built
    src = tmp_path / "use.cpp"
    src.write_text('#include "kiloml_model.h"\nint main() { kml_result_t r; '
                   "float w[KML_WINDOW_SAMPLES * KML_CHANNELS] = {0};\n"
                   "return kml_classify(w, &r) < 0; }\n")
    subprocess.run(["g++", "-std=c++11", "-Wall", "-Werror", f"-I{out / 'firmware'}",
                    "-fsyntax-only", str(src)], check=True)


def adversarial_windows(rng: np.random.Generator, n_rows: int, n_channels: int) -> np.ndarray:
    cases = [
        np.zeros((n_rows, n_channels)),
        np.full((n_rows, n_channels), -0.0),
        np.full((n_rows, n_channels), 3.5),
        np.tile([1.0, -1.0], n_rows)[:n_rows, None].repeat(n_channels, 1),
        np.full((n_rows, n_channels), 1e-40),
        rng.standard_normal((n_rows, n_channels)) * 1e15,
        rng.standard_normal((n_rows, n_channels)) * 1e-30,
    ]
    spike = np.zeros((n_rows, n_channels))
    spike[n_rows // 2] = 1e6
    cases.append(spike)
    for channel in range(n_channels):  # a NaN sample makes that channel's features NaN
        gap = rng.standard_normal((n_rows, n_channels))
        gap[3, channel] = np.nan
        cases.append(gap)
    cases += [rng.standard_normal((n_rows, n_channels)) * s for s in (0.1, 1, 10)] * 30
    return np.stack(cases).astype(np.float32)


def test_sanitized_library_agrees_with_python(built, tmp_path: Path) -> None:
    """ASan + UBSan build of library and harness on adversarial and random windows, in
    window and in streaming mode; the decisions still match the Python reference."""
    out, pipeline = built
    lib = library(out)
    lib = FirmwareLibrary(lib.directory, lib.sources, lib.headers,
                          len(pipeline.feature_names()))
    exe = host.build_host(lib, tmp_path, sanitize=True, optimize="-O1")
    rng = np.random.default_rng(7)
    x = adversarial_windows(rng, pipeline.window_samples, pipeline.n_channels)
    c = host.run_windows(exe, x, pipeline.n_classes, lib.n_features, tmp_path)
    with np.errstate(all="ignore"):
        features = pipeline.compute_features(x)
    assert np.isnan(features).any()  # NaN features follow sklearn's missing-value routing
    np.testing.assert_array_equal(c.features.view(np.int32), features.view(np.int32))
    np.testing.assert_array_equal(c.labels, pipeline.model.predict(features))
    events = host.run_stream(exe, [x.reshape(-1, pipeline.n_channels)[:777]],
                             pipeline.n_classes, tmp_path)
    assert len(events.labels) == (777 - 50) // 25 + 1


def test_size_parser() -> None:
    text = """x.o  :
section              size   addr
.text                 120      0
.text.kml_classify     64      0
.data                   8      0
.bss                 2400      0
.rodata.kml_m_roots    80      0
.comment               40      0
Total                2712
"""
    s = parse_size_a(text)
    assert (s.text, s.rodata, s.data, s.bss) == (184, 80, 8, 2400)
    assert s.flash_bytes == 272 and s.ram_bytes == 2408
