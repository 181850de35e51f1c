"""Parameter blobs on the host: the Python format (round trip, hashes, signatures, key
files), the [library] settings, write_blob on libraries that take no blob, `kiloml blob`,
and kml_blob.c on hostile blobs under AddressSanitizer and UndefinedBehaviorSanitizer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from blob_helpers import blob_of, make_run, reference_windows, repack, section_data
from conftest import CsvProject, assert_user_error, run_cli
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiloml.blob import format as fmt
from kiloml.blob import harness as bh
from kiloml.blob.build import write_blob
from kiloml.blob.keys import load_private_key, public_key_bytes
from kiloml.codegen.identity import created_in
from kiloml.codegen.library import write_library
from kiloml.errors import KilomlError
from kiloml.persist.pipeline_state import load_pipeline, save_pipeline

SANITIZE = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer"]


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("blob_host"), "v1")


def pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


# --- the format ------------------------------------------------------------------------

def test_round_trip_signed_and_unsigned() -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    payload = fmt.section(fmt.FOREST, b"x" * 13) + fmt.section(99, b"abc", optional=True)
    header = fmt.Header(model_id=bytes(range(8)), interface_hash=0xDEADBEEF,
                        layout_hash=0x01020304, counter=fmt.counter_of("1.2.3"))
    for signing in (None, key):
        blob = fmt.pack(header, payload, signing)
        assert len(blob) == fmt.HEADER_BYTES + len(payload) and len(payload) % 8 == 0
        h, body = fmt.unpack(blob)
        assert (h.model_id, h.interface_hash, h.layout_hash, h.counter) == (
            bytes(range(8)), 0xDEADBEEF, 0x01020304, (1 << 20) | (2 << 10) | 3)
        assert h.signed == (signing is not None) and body == payload
        assert fmt.sections(body) == [(fmt.FOREST, 0, b"x" * 13), (99, 1, b"abc")]
        assert fmt.verify_signature(blob, public) == (signing is not None)
    other = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert not fmt.verify_signature(fmt.pack(header, payload, key), other)


def test_unpack_refuses_what_the_device_refuses() -> None:
    blob = fmt.pack(fmt.Header(model_id=b"\0" * 8, interface_hash=1, layout_hash=2,
                               counter=3), fmt.section(fmt.FOREST, b"y" * 40))
    flipped = bytearray(blob)
    flipped[-3] ^= 1
    cases = {b"KMLX" + blob[4:]: "no KMLB magic", blob[:-8]: "truncated",
             blob[:100]: "truncated", bytes(flipped): "SHA-256",
             blob[:4] + b"\x07\x00" + blob[6:]: "format version 7"}
    for bad, fragment in cases.items():
        with pytest.raises(KilomlError, match=fragment):
            fmt.unpack(bad)


def test_counter_of_versions() -> None:
    assert fmt.counter_of("0.0.1") < fmt.counter_of("0.1.0") < fmt.counter_of("1.0.0")
    for bad in ("1.2", "1.02.3", "1.2.x", "4096.0.0", "1.1024.0"):
        with pytest.raises(KilomlError):
            fmt.counter_of(bad)


def test_key_files_each_one_line(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "rsa.pem").write_bytes(pem(rsa_key))
    (tmp_path / "junk.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n")
    locked = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    (tmp_path / "locked.pem").write_bytes(locked)
    (tmp_path / "dir.pem").mkdir()
    cases = {"missing.pem": "cannot be read", "dir.pem": "cannot be read",
             "rsa.pem": "not an Ed25519 private key", "junk.pem": "not an unencrypted "
             "Ed25519 private key", "locked.pem": "not an unencrypted Ed25519"}
    for name, fragment in cases.items():
        with pytest.raises(KilomlError, match=fragment) as info:
            load_private_key(tmp_path / name)
        assert "\n" not in info.value.message
    good = Ed25519PrivateKey.generate()
    (tmp_path / "good.pem").write_bytes(pem(good))
    (tmp_path / "good.pub").write_bytes(good.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert public_key_bytes(tmp_path / "good.pub") == public_key_bytes(tmp_path / "good.pem")
    with pytest.raises(KilomlError, match="not an Ed25519 public key"):
        public_key_bytes(tmp_path / "rsa.pem")


# --- [library] settings -----------------------------------------------------------------

@pytest.mark.parametrize(("setting", "fragments"), [
    ('updatable = "yes"', ["updatable"]),
    ("updateable = true", ["updateable"]),
    ('update_key = "k.pem"', ["update_key needs updatable = true"]),
    ('updatable = true\nupdate_key = "missing.pem"', ["[library] update_key", "missing.pem",
                                                        "cannot be read"]),
    ('updatable = true\nupdate_key = "kiloml.toml"', ["[library] update_key",
                                                        "not an Ed25519"]),
])
def test_library_settings_refused_in_one_line(csv_project: CsvProject, setting: str,
                                              fragments: list[str]) -> None:
    csv_project.toml.write_text(csv_project.toml.read_text() + f"\n[library]\n{setting}\n")
    assert_user_error(run_cli("run", str(csv_project.toml), "--no-emulator"), *fragments)
    assert not csv_project.out.exists()  # nothing half-written


@pytest.mark.parametrize(("model", "fragment"), [
    ('c_style = "inline"', 'c_style = "table"'),
    ('thresholds = "int16"', "float32 thresholds"),
])
def test_updatable_refuses_forests_that_are_not_tables(csv_project: CsvProject, model: str,
                                                       fragment: str) -> None:
    csv_project.set_toml("max_depth = 6\n", f"max_depth = 6\n{model}\n")
    csv_project.toml.write_text(csv_project.toml.read_text() + "\n[library]\nupdatable = true\n")
    assert_user_error(run_cli("run", str(csv_project.toml), "--no-emulator"),
                      "[library] updatable", fragment)
    assert not csv_project.out.exists()


def test_write_blob_false_when_the_library_takes_none(v1: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(v1, plain)
    pipeline = load_pipeline(plain / "pipeline.json")
    pipeline.library_updatable = False
    save_pipeline(pipeline, plain / "pipeline.json")
    assert write_blob(plain, tmp_path / "a.kmlb", signing_key=None, counter=1) is False
    assert not (tmp_path / "a.kmlb").exists()
    assert write_blob(v1, tmp_path / "b.kmlb", signing_key=None, counter=1) is True
    h, _ = fmt.unpack((tmp_path / "b.kmlb").read_bytes())
    assert h.counter == 1 and not h.signed
    with pytest.raises(KilomlError, match="cannot be read"):
        write_blob(v1, tmp_path / "c.kmlb", signing_key=tmp_path / "none.pem", counter=1)
    assert not (tmp_path / "c.kmlb").exists()


def test_blob_cli(v1: Path, tmp_path: Path) -> None:
    blob = tmp_path / "v1.kmlb"
    blob.write_bytes(blob_of(v1, counter=7))
    out = run_cli("blob", "inspect", str(blob))
    assert out.exit_code == 0 and "counter        7" in out.stdout, out.stderr
    ok = run_cli("blob", "check", str(blob), "--firmware", str(v1))
    assert ok.exit_code == 0 and "counter 7" in ok.stdout, ok.stderr
    assert_user_error(run_cli("blob", "check", str(blob), "--firmware", str(v1),
                              "--min-counter", "8"), "downgrade", "counter 7")
    assert run_cli("blob", "check", str(blob), "--firmware", str(v1), "--min-counter", "8",
                   "--allow-downgrade").exit_code == 0
    other = tmp_path / "other.kmlb"
    other.write_bytes(repack(blob.read_bytes(), interface_hash=5))
    assert_user_error(run_cli("blob", "check", str(other), "--firmware", str(v1)),
                      "bad_interface", "0x00000005")
    assert_user_error(run_cli("blob", "inspect", str(tmp_path / "none.kmlb")),
                      "cannot be read")


# --- kml_blob.c on hostile blobs, under sanitizers --------------------------------------

def hostile(blob: bytes, rng: np.random.Generator, n: int) -> list[bytes]:
    """Intact (hash-valid) blobs with random values in the tables and section headers,
    and broken ones (flipped bytes, truncations)."""
    tags = [t for t, _, _ in fmt.sections(fmt.unpack(blob)[1])]
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:  # random words in one table
            tag = int(rng.choice(tags))
            data = bytearray(section_data(blob, tag))
            for _ in range(int(rng.integers(1, 4))):
                at = int(rng.integers(0, max(len(data) - 1, 1)))
                data[at:at + 2] = rng.integers(0, 256, 2, dtype=np.uint8).tobytes()
            out.append(repack(blob, sections={tag: bytes(data)}))
        elif kind == 1:  # a section resized (lengths that no longer match)
            tag = int(rng.choice(tags))
            data = section_data(blob, tag)
            cut = int(rng.integers(0, len(data) + 1))
            grown = data[:cut] + bytes(int(rng.integers(0, 24)))
            out.append(repack(blob, sections={tag: grown}))
        elif kind == 2:  # raw bytes of the payload replaced, hash recomputed
            h, payload = fmt.unpack(blob)
            p = bytearray(payload)
            at = int(rng.integers(0, len(p)))
            p[at] = int(rng.integers(0, 256))
            out.append(fmt.pack(fmt.Header(model_id=h.model_id,
                                           interface_hash=h.interface_hash,
                                           layout_hash=h.layout_hash, counter=h.counter),
                                bytes(p)))
        else:  # not intact: a flipped byte anywhere or a truncation
            b = bytearray(blob)
            if rng.random() < 0.5:
                b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
            else:
                b = b[:int(rng.integers(0, len(b)))]
            out.append(bytes(b))
    return out


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_c_check_on_hostile_blobs_under_sanitizers(v1: Path, tmp_path: Path) -> None:
    exe = bh.build_host(v1 / "firmware", tmp_path / "asan", SANITIZE)
    valid = blob_of(v1, counter=1)
    windows = reference_windows(v1)[:8]
    # 400 in make test; make fuzz sets KILOML_BLOB_FUZZ_BLOBS for the long sweep
    blobs = hostile(valid, np.random.default_rng(17),
                    int(os.environ.get("KILOML_BLOB_FUZZ_BLOBS", "400")))
    ops = bh.Ops(windows)
    for blob in blobs:
        ops.blob(blob).classify()
    ops.blob(valid).classify()
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    results = bh.run_host(exe, ops, 3, tmp_path / "asan", env)
    codes = [bh.reason_name(r.activate) for r in results[0::2]]
    assert "unknown" not in " ".join(codes)
    assert codes[-1] == "ok"
    seen = set(codes)
    assert {"bad_payload", "bad_hash", "bad_length", "selftest_failed"} <= seen, seen


def test_telemetry_records_carry_the_active_model_id(tmp_path: Path) -> None:
    """With a monitor, kml_monitor_snapshot names the compiled-in model until a blob is
    active, then the blob's."""
    run = make_run(tmp_path, "monitored")
    v2 = make_run(tmp_path, "v2")
    exe = bh.build_host(run / "firmware", tmp_path / "host")
    blob = blob_of(v2, counter=1)
    ops = bh.Ops(reference_windows(run)[:4]).snapshot().blob(blob).snapshot()
    before, result, after = bh.run_host(exe, ops, 3, tmp_path / "host")
    header = (run / "firmware" / "kiloml_model.h").read_text()
    own = header.split('#define KML_MODEL_ID "')[1][:16]
    assert before[4:12].hex() == own
    # v2 has no monitor but the same interface and layout: its blob is taken
    assert result.activate == 0, bh.reason_name(result.activate)
    assert after[4:12] == fmt.unpack(blob)[0].model_id != before[4:12]


def test_without_the_setting_the_library_is_unchanged(v1: Path, tmp_path: Path) -> None:
    """The same project without [library] updatable: the same bytes as v1's pipeline
    generated with the setting off; with it on, the forest reads through kml_blob."""
    plain = make_run(tmp_path, "plain")
    pipeline = load_pipeline(v1 / "pipeline.json")
    pipeline.library_updatable = False
    created = created_in(plain / "firmware" / "kiloml_model.h", "kml")
    write_library(pipeline, tmp_path / "off", created_utc=created)
    names = sorted(p.name for p in (plain / "firmware").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "off").iterdir())
    for name in names:
        assert (tmp_path / "off" / name).read_bytes() == \
            (plain / "firmware" / name).read_bytes(), name
    assert "kml_blob" not in (plain / "firmware" / "kiloml_model.c").read_text()
    on = (v1 / "firmware" / "kiloml_model.c").read_text()
    assert "kml_forest_predict(kml_blob_forest()," in on
    assert "kml_decision_step(kml_blob_decision()," in on


def test_pipeline_keeps_the_setting_and_the_key(v1: Path, tmp_path: Path) -> None:
    pipeline = load_pipeline(v1 / "pipeline.json")
    assert pipeline.library_updatable and pipeline.library_update_key is None
    pipeline.library_update_key = bytes(range(32))
    save_pipeline(pipeline, tmp_path / "pipeline.json")
    again = load_pipeline(tmp_path / "pipeline.json")
    assert again.library_updatable and again.library_update_key == bytes(range(32))
    text = (tmp_path / "pipeline.json").read_text()
    (tmp_path / "pipeline.json").write_text(text.replace(bytes(range(32)).hex(), "zz" * 32))
    with pytest.raises(KilomlError, match=r"library_update\.public_key") as info:
        load_pipeline(tmp_path / "pipeline.json")
    assert "\n" not in str(info.value)


def test_update_key_in_a_run_compiles_in_the_key(csv_project: CsvProject) -> None:
    key = Ed25519PrivateKey.generate()
    (csv_project.root / "pub.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    csv_project.toml.write_text(csv_project.toml.read_text() + "\n[library]\nupdatable = true"
                                "\nupdate_key = \"pub.pem\"\n")
    result = run_cli("run", str(csv_project.toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    config = (csv_project.out / "firmware" / "kml_config.h").read_text()
    assert "#define KML_BLOB_REQUIRE_SIGNATURE 1" in config
    assert ", ".join(f"0x{b:02x}" for b in raw) in config
    assert (csv_project.out / "firmware" / "kml_ed25519.c").exists()
    assert load_pipeline(csv_project.out / "pipeline.json").library_update_key == raw
    with pytest.raises(KilomlError, match="requires signed blobs"):
        write_blob(csv_project.out, csv_project.root / "x.kmlb", signing_key=None, counter=1)
    other = csv_project.root / "other.pem"
    other.write_bytes(pem(Ed25519PrivateKey.generate()))
    with pytest.raises(KilomlError, match="not the key the library trusts"):
        write_blob(csv_project.out, csv_project.root / "x.kmlb", signing_key=other, counter=1)
    assert not (csv_project.root / "x.kmlb").exists()


def test_reason_names_match_kml_blob_h() -> None:
    import re

    from kiloml.codegen.library import RUNTIME_DIR
    header = (RUNTIME_DIR / "kml_blob.h").read_text()
    codes = {m[0].lower(): int(m[1]) for m in
             re.findall(r"KML_BLOB_([A-Z_]+) = (\d+)", header)}
    assert sorted(codes, key=codes.get) == fmt.REASONS
    source = (RUNTIME_DIR / "kml_blob.c").read_text()
    assert all(f'"{name}"' in source for name in fmt.REASONS)
