"""The model registry (docs/registry.md): `kiloml release`, `kiloml registry list | show |
verify`, `kiloml promote`, `kiloml rollback`, and the Python API of kiloml.registry.store.

Runs are real toy-project runs: ``toy_run`` (conftest, no emulator) and two runs of this
module's own with the emulated MCU (the second with another forest), so releases hold QEMU
parity as the gate wants."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_user_error, run_cli, write_toy_project

from kiloml.errors import KilomlError
from kiloml.registry.card import card_markdown, model_card
from kiloml.registry.semver import sorted_versions
from kiloml.registry.store import Registry

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FILES = {"metrics.json", "reference.npz", "pipeline.json", "pipeline.npz",
                 "project.toml", "model_card.md", "model_card.json"}


def emulated_run(root: Path, n_estimators: int = 5) -> Path:
    """A toy project run with the emulator; returns its output folder (root/out)."""
    toml = write_toy_project(root)
    if n_estimators != 5:
        toml.write_text(toml.read_text().replace("n_estimators = 5",
                                                 f"n_estimators = {n_estimators}"))
    result = run_cli("run", str(toml))
    assert result.exit_code == 0, result.stderr
    return root / "out"


@pytest.fixture(scope="module")
def device_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return emulated_run(tmp_path_factory.mktemp("device_run"))


@pytest.fixture(scope="module")
def second_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another model: 7 trees instead of 5."""
    return emulated_run(tmp_path_factory.mktemp("second_run"), n_estimators=7)


def release(run: Path, reg: Path, version: str, *extra: str):
    return run_cli("release", str(run), "--registry", str(reg), "--version", version, *extra)


def released(run: Path, reg: Path, version: str, *extra: str) -> None:
    result = release(run, reg, version, *extra)
    assert result.exit_code == 0, result.stderr
    assert f"released       {version} -> " in result.stdout


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(path: Path) -> dict:
    text = path.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n", path  # sorted, indented
    return data


def write_gate(reg: Path, version: str, passed: bool, failed: tuple[str, ...] = ()) -> None:
    """A gate result as `kiloml gate` writes it (docs/registry.md, Gates), by hand."""
    names = ["parity_host", "parity_qemu", "budgets", "accuracy_drop",
             "balanced_accuracy_drop", "false_alarms_per_hour", "changed_fraction",
             "interface"]
    checks = [{"name": n, "passed": n not in failed, "value": None, "limit": None,
               "detail": ""} for n in names]
    (reg / "gates").mkdir(exist_ok=True)
    (reg / "gates" / f"{version}.json").write_text(json.dumps({
        "version": version, "against": None, "passed": passed,
        "gated_utc": "2026-12-04T21:00:00Z", "checks": checks}, indent=2, sort_keys=True))


def copy_project(run: Path, dest: Path) -> Path:
    """The run's project folder (project file, data, run) copied; returns the copy's run."""
    shutil.copytree(run.parent, dest)
    return dest / run.name


def edit_metrics(run: Path, edit) -> None:
    path = run / "metrics.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m, indent=2))


# --- release, list, show, verify ---------------------------------------------------------


def test_release_writes_a_content_addressed_package(device_run: Path, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    released(device_run, reg, "1.0.0", "--notes", "first release")
    assert load(reg / "kiloml-registry.json") == {"kind": "kiloml-registry", "format": 1}
    info = load(reg / "versions" / "1.0.0.json")
    assert set(info) == {"version", "package", "released_utc", "notes", "model_id",
                         "interface_hash"}
    metrics = json.loads((device_run / "metrics.json").read_text())
    assert info["version"] == "1.0.0" and info["notes"] == "first release"
    assert info["model_id"] == metrics["library"]["model_id"]
    assert info["interface_hash"] == metrics["library"]["interface_hash"]
    folder = reg / "packages" / info["package"]
    assert sha256(folder / "manifest.json") == info["package"]
    assert [p.name for p in (reg / "packages").iterdir()] == [info["package"]]  # no staging

    manifest = load(folder / "manifest.json")
    assert set(manifest) == {"format", "version", "files", "model_id", "interface_hash",
                             "kiloml_version"}
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json"}
    assert on_disk >= PACKAGE_FILES
    firmware = {p.name for p in (device_run / "firmware").iterdir()}
    assert {f"firmware/{n}" for n in firmware} <= on_disk
    for rel, digest in manifest["files"].items():
        assert sha256(folder / rel) == digest, rel
    assert not any(p.suffix == ".pkl" for p in folder.rglob("*"))
    assert (folder / "reference.npz").read_bytes() == \
        (device_run / "verify" / "reference.npz").read_bytes()
    assert (folder / "project.toml").read_bytes() == \
        (device_run.parent / "kiloml.toml").read_bytes()
    assert (folder / "firmware" / "kml_trees.c").read_bytes() == \
        (device_run / "firmware" / "kml_trees.c").read_bytes()
    assert load(reg / "aliases.json") == {"production": None, "canary": None, "previous": None}

    card = load(folder / "model_card.json")
    assert card["version"] == "1.0.0" and card["notes"] == "first release"
    assert card["model"]["id"] == info["model_id"]
    assert card["data"]["recordings"] == 12 and card["data"]["classes"] == [
        "idle", "shake", "walk"]
    assert card["data"]["channels"] == ["ax", "ay", "az"]
    assert card["data"]["sample_rate_hz"] == 50.0
    assert card["split"]["held_out_groups"] == ["s4"]
    ev = metrics["evaluation"]
    assert card["evaluation"]["accuracy"] == ev["accuracy"]
    assert card["evaluation"]["balanced_accuracy"] == ev["balanced_accuracy"]
    assert card["evaluation"]["macro_f1"] == ev["macro_f1"]
    assert card["events"]["false_alarms_per_hour"] == \
        metrics["decision"]["decision"]["false_alarms_per_hour"]
    assert card["events"]["missed_events"] == metrics["decision"]["decision"]["missed_events"]
    target = card["targets"]["cortex-m4f"]
    assert target["budgets"]["flash_budget_bytes"] == 262144
    assert target["resources"]["flash_bytes"] == \
        metrics["resources"]["cortex-m4f"]["flash_bytes"]
    assert target["power"]["power_budget_uw"] == 100.0
    assert card["parity"]["host"]["all_equal"] is True
    assert card["parity"]["qemu"]["cortex-m4f"]["checked"] is True
    assert card["parity"]["qemu"]["cortex-m4f"]["machine"] == "mps2-an386"
    assert card["parity"]["device_checked"] is True
    assert card["monitor"] is None
    md = (folder / "model_card.md").read_text()
    assert "# Model card: toy 1.0.0" in md and "first release" in md
    assert "cortex-m4f (QEMU mps2-an386): 45/45 decisions equal" in md


def test_list_show_and_verify(device_run: Path, second_run: Path, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    released(device_run, reg, "1.9.0")
    released(second_run, reg, "1.10.0", "--notes", "seven trees")
    assert Registry.open(reg).versions() == ["1.9.0", "1.10.0"]  # numeric order
    write_gate(reg, "1.9.0", True)
    write_gate(reg, "1.10.0", False, failed=("accuracy_drop",))

    listed = run_cli("registry", "list", str(reg))
    assert listed.exit_code == 0, listed.stderr
    lines = listed.stdout.splitlines()
    row9 = next(line for line in lines if "1.9.0" in line)
    row10 = next(line for line in lines if "1.10.0" in line)
    assert lines.index(row9) < lines.index(row10)
    assert Registry.open(reg).version_info("1.9.0")["model_id"] in row9
    assert "passed" in row9 and "FAILED: accuracy_drop" in row10
    second_id = Registry.open(reg).version_info("1.10.0")["model_id"]
    assert second_id in row10 and second_id not in row9  # another model

    shown = run_cli("registry", "show", str(reg), "1.10.0")
    assert shown.exit_code == 0, shown.stderr
    assert "# Model card: toy 1.10.0" in shown.stdout and "seven trees" in shown.stdout
    package = Registry.open(reg).version_info("1.10.0")["package"]
    n_files = len(Registry.open(reg).manifest("1.10.0")["files"])
    assert f"package {package}: {n_files} files" in shown.stdout
    assert "gate: FAILED: accuracy_drop" in shown.stdout
    assert_user_error(run_cli("registry", "show", str(reg)), "production points at no version")

    checked = run_cli("registry", "verify", str(reg))
    assert checked.exit_code == 0, checked.stderr
    assert "ok             1.9.0: " in checked.stdout and "verified       2 versions" in \
        checked.stdout
    one = run_cli("registry", "verify", str(reg), "1.10.0")
    assert one.exit_code == 0 and "verified       1 version" in one.stdout
    assert_user_error(run_cli("registry", "verify", str(reg), "3.0.0"), "no version 3.0.0")


@pytest.fixture
def one_release(device_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    reg = tmp_path_factory.mktemp("one") / "reg"
    released(device_run, reg, "1.0.0")
    return reg


def package(reg: Path, version: str = "1.0.0") -> Path:
    return reg / "packages" / json.loads((reg / "versions" / f"{version}.json").read_text())[
        "package"]


def test_verify_names_a_tampered_file(one_release: Path) -> None:
    target = package(one_release) / "firmware" / "kml_trees.c"
    target.chmod(0o644)  # a package's files are read-only
    target.write_text(target.read_text().replace("0", "1", 1))
    line = assert_user_error(run_cli("registry", "verify", str(one_release)),
                             "SHA-256 does not match the manifest of version 1.0.0")
    assert line == (f"kiloml: error: {target}: SHA-256 does not match the manifest of "
                    "version 1.0.0")


def test_verify_names_a_missing_file(one_release: Path) -> None:
    target = package(one_release) / "metrics.json"
    target.unlink()
    assert_user_error(run_cli("registry", "verify", str(one_release), "1.0.0"),
                      f"{target}: is listed in the manifest of version 1.0.0 but missing")


def test_verify_names_an_extra_file(one_release: Path) -> None:
    target = package(one_release) / "firmware" / "backdoor.c"
    target.write_text("int x;\n")
    assert_user_error(run_cli("registry", "verify", str(one_release)),
                      f"{target}: is not listed in the manifest of version 1.0.0 (an extra "
                      "file)")


def test_verify_refuses_an_edited_manifest_and_a_dangling_alias(one_release: Path) -> None:
    manifest = package(one_release) / "manifest.json"
    manifest.chmod(0o644)
    manifest.write_text(manifest.read_text().replace('"format": 1', '"format": 1 '))
    assert_user_error(run_cli("registry", "verify", str(one_release)), str(manifest),
                      "is not the name of its package folder")
    manifest.write_text(manifest.read_text().replace('"format": 1 ', '"format": 1'))
    assert run_cli("registry", "verify", str(one_release)).exit_code == 0
    (one_release / "aliases.json").write_text(json.dumps(
        {"production": "4.0.0", "canary": None, "previous": None}))
    assert_user_error(run_cli("registry", "verify", str(one_release)), "aliases.json",
                      "production: points at version 4.0.0, which is not released")


def test_verify_refuses_a_version_file_naming_no_package(one_release: Path) -> None:
    info_path = one_release / "versions" / "1.0.0.json"
    info = json.loads(info_path.read_text())
    info["package"] = "cd" * 32
    info_path.write_text(json.dumps(info))
    assert_user_error(run_cli("registry", "verify", str(one_release)), str(info_path),
                      "the package version 1.0.0 names is missing")
    assert_user_error(run_cli("registry", "show", str(one_release), "1.0.0"),
                      "the package of version 1.0.0 is missing")
    info["package"] = "not a hash"
    info_path.write_text(json.dumps(info))
    assert_user_error(run_cli("registry", "list", str(one_release)), "package: expected a "
                      "SHA-256")


def test_show_names_a_missing_card(one_release: Path) -> None:
    card = package(one_release) / "model_card.md"
    card.unlink()
    assert_user_error(run_cli("registry", "show", str(one_release), "1.0.0"), str(card),
                      "missing from the package")


def test_a_crashed_release_is_cleaned_by_the_next(device_run: Path, one_release: Path
                                                  ) -> None:
    staging = one_release / "packages" / ".staging-crashed"
    staging.mkdir()
    (staging / "metrics.json").write_text("{}")
    orphan = one_release / "packages" / ("ab" * 32)  # renamed, but no version file
    orphan.mkdir()
    released(device_run, one_release, "1.0.1")
    assert not staging.exists() and not orphan.exists()
    assert package(one_release).exists()
    assert run_cli("registry", "verify", str(one_release)).exit_code == 0


# --- what release refuses ------------------------------------------------------------------


def test_a_run_without_qemu_parity_needs_a_flag(toy_run: Path, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    run = toy_run.parent / "out"
    assert set(json.loads((run / "metrics.json").read_text())["parity"]) == {"host"}
    assert_user_error(release(run, reg, "0.1.0"), "not checked on the emulated MCU (QEMU) "
                      "for cortex-m4f (run with --no-emulator)", "--allow-no-device-parity")
    assert not reg.exists()
    result = release(run, reg, "0.1.0", "--allow-no-device-parity")
    assert result.exit_code == 0, result.stderr
    assert "parity checked on the host only" in result.stdout
    card = json.loads((package(reg, "0.1.0") / "model_card.json").read_text())
    assert card["parity"]["device_checked"] is False
    assert card["parity"]["qemu"]["cortex-m4f"] == {"checked": False,
                                                    "note": "run with --no-emulator"}
    assert "cortex-m4f: NOT checked on the emulated MCU" in (
        package(reg, "0.1.0") / "model_card.md").read_text()


def test_a_run_verified_on_qemu_afterwards_needs_no_flag(toy_run: Path, tmp_path: Path
                                                         ) -> None:
    run = copy_project(toy_run.parent / "out", tmp_path / "project")
    assert run_cli("verify", str(run.parent / "kiloml.toml")).exit_code == 0
    released(run, tmp_path / "reg", "1.0.0")
    card = json.loads((package(tmp_path / "reg") / "model_card.json").read_text())
    assert card["parity"]["qemu"]["cortex-m4f"]["checked"] is True


@pytest.mark.parametrize("where, fragment", [
    ("host", "the run failed parity on the host: 2 of 45 held-out window decisions differ"),
    ("cortex-m4f", "the run failed parity on cortex-m4f (QEMU mps2-an386): 2 of 45 held-out "
                   "window decisions differ"),
    ("stream", "the run failed streaming parity on cortex-m4f (QEMU mps2-an386): 1 of 45"),
])
def test_failed_parity_is_refused(device_run: Path, tmp_path: Path, where: str,
                                  fragment: str) -> None:
    run = copy_project(device_run, tmp_path / "project")

    def fail(m: dict) -> None:
        if where == "stream":
            st = m["parity"]["cortex-m4f"]["streaming"]
            st["decisions_equal"] -= 1
            st["all_decisions_equal"] = False
        else:
            m["parity"][where]["decisions_equal"] -= 2
            m["parity"][where]["all_decisions_equal"] = False
    edit_metrics(run, fail)
    reg = tmp_path / "reg"
    assert_user_error(release(run, reg, "1.0.0"), fragment)
    assert not reg.exists()


def test_a_run_over_its_budget_is_refused(tmp_path: Path) -> None:
    toml = write_toy_project(tmp_path / "project")
    toml.write_text(toml.read_text().replace('name = "cortex-m4f"',
                                             'name = "cortex-m4f"\nflash_budget_bytes = 2000'))
    assert run_cli("run", str(toml), "--no-emulator").exit_code == 1  # written, not ok
    run = toml.parent / "out"
    flash = json.loads((run / "metrics.json").read_text())["resources"]["cortex-m4f"][
        "flash_bytes"]
    reg = tmp_path / "reg"
    assert_user_error(release(run, reg, "1.0.0", "--allow-no-device-parity"),
                      f"the run is over its budget on cortex-m4f: flash {flash:,} B is over "
                      f"the 2,000 B budget by {flash - 2000:,} B")
    assert not reg.exists()


def test_a_latency_overrun_says_by_how_much(device_run: Path, tmp_path: Path) -> None:
    run = copy_project(device_run, tmp_path / "project")

    def slow(m: dict) -> None:
        r = m["resources"]["cortex-m4f"]
        r["latency_budget_us"] = r["latency_us"] - 10.0
        r["within_budget"], r["status"] = False, "fail"
    edit_metrics(run, slow)
    assert_user_error(release(run, tmp_path / "reg", "1.0.0"),
                      "over its budget on cortex-m4f: latency", "budget by 10.0 us")


def test_not_a_finished_run(device_run: Path, toy_run: Path, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(release(empty, reg, "1.0.0"), "not a finished `kiloml run` folder "
                      "(no .kiloml-output of a run")
    assert_user_error(release(tmp_path / "nowhere", reg, "1.0.0"), "no such folder")
    assert_user_error(release(toy_run.parent, reg, "1.0.0"), "not a finished `kiloml run`")
    run = copy_project(device_run, tmp_path / "project")
    (run / "verify" / "reference.npz").unlink()
    assert_user_error(release(run, reg, "1.0.0"), "verify/reference.npz is missing")
    (run / "metrics.json").unlink()
    assert_user_error(release(run, reg, "1.0.0"), "metrics.json is missing")
    assert not reg.exists()


def test_an_edited_library_is_refused(device_run: Path, tmp_path: Path) -> None:
    run = copy_project(device_run, tmp_path / "project")
    trees = run / "firmware" / "kml_trees.c"
    trees.write_text(trees.read_text() + "\n/* patched */\n")
    assert_user_error(release(run, tmp_path / "reg", "1.0.0"), "kml_trees.c",
                      "differs from the library pipeline.json generates")
    trees.write_text(trees.read_text().replace("\n/* patched */\n", ""))
    (run / "firmware" / "extra.c").write_text("int extra;\n")
    assert_user_error(release(run, tmp_path / "reg", "1.0.0"), "extra.c",
                      "is not part of the library pipeline.json generates")
    assert not (tmp_path / "reg").exists()


def test_more_runs_that_are_refused(device_run: Path, tmp_path: Path) -> None:
    run = copy_project(device_run, tmp_path / "project")
    reg = tmp_path / "reg"
    assert_user_error(release(run, reg, "1.0.0", "--notes", "x" * 4001), "--notes",
                      "4,001 characters; at most 4,000")
    assert_user_error(release(run, run / "registry", "1.0.0"), "lies inside a run folder",
                      "the registry would be deleted with it")
    assert not (run / "registry").exists()

    edit_metrics(run, lambda m: m["library"].update(model_id="0123456789abcdef"))
    assert_user_error(release(run, reg, "1.0.0"), "metrics.json: library.model_id",
                      "is not the library's", "(metrics.json is of another run)")
    shutil.copyfile(device_run / "metrics.json", run / "metrics.json")

    edit_metrics(run, lambda m: m["resources"]["cortex-m4f"].update(
        fused_multiply_add={"found": True}))
    assert_user_error(release(run, reg, "1.0.0"), "build for cortex-m4f contains fused "
                      "multiply-adds")
    shutil.copyfile(device_run / "metrics.json", run / "metrics.json")

    readme = run / "firmware" / "README.md"
    readme.unlink()
    readme.symlink_to(device_run / "firmware" / "README.md")
    assert_user_error(release(run, reg, "1.0.0"), "README.md: is not a regular file")
    assert not reg.exists()


def test_the_project_file_is_found_or_given(device_run: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(device_run, moved)
    reg = tmp_path / "reg"
    # the run records the file it was made from (metrics.json project_file): found from
    # wherever the run folder is
    released(moved, reg, "1.0.0")
    stored = reg / "packages" / Registry.open(reg).version_info("1.0.0")["package"]
    assert (stored / "project.toml").read_bytes() == \
        (device_run.parent / "kiloml.toml").read_bytes()
    # a run that records none (an older kiloml) away from its project: --project
    metrics = json.loads((moved / "metrics.json").read_text())
    del metrics["project_file"]
    (moved / "metrics.json").write_text(json.dumps(metrics))
    assert_user_error(release(moved, reg, "1.0.1"), "cannot tell which project file made "
                      "this run", "pass --project")
    other = write_toy_project(tmp_path / "other")
    other.write_text(other.read_text().replace('name = "toy"', 'name = "other"'))
    assert_user_error(release(moved, reg, "1.0.1", "--project", str(other)),
                      "is the project 'other', but the run was made from 'toy'")
    assert Registry.open(reg).versions() == ["1.0.0"]
    released(moved, reg, "1.0.1", "--project", str(device_run.parent / "kiloml.toml"))


def test_a_project_file_edited_since_the_run_is_refused(tmp_path: Path) -> None:
    toml = write_toy_project(tmp_path / "p")
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    toml.write_text(toml.read_text().replace("n_estimators = 5", "n_estimators = 9"))
    reg = tmp_path / "reg"
    for extra in ((), ("--project", str(toml))):
        assert_user_error(release(tmp_path / "p" / "out", reg, "1.0.0",
                                  "--allow-no-device-parity", *extra),
                          "changed since the run was made", "run the project again")
    assert not reg.exists()


def test_an_existing_version_is_never_replaced(one_release: Path, device_run: Path) -> None:
    before = sorted(p.name for p in (one_release / "packages").iterdir())
    info = (one_release / "versions" / "1.0.0.json").read_text()
    assert_user_error(release(device_run, one_release, "1.0.0"),
                      "version 1.0.0 already exists")
    assert sorted(p.name for p in (one_release / "packages").iterdir()) == before
    assert (one_release / "versions" / "1.0.0.json").read_text() == info


@pytest.mark.parametrize("version", ["1.0", "01.0.0", "v1.0.0", "1.0.0-rc1", "1.0.0.0",
                                     "1..0", "", "١.0.0"])
def test_a_malformed_version_is_refused(device_run: Path, tmp_path: Path, version: str
                                        ) -> None:
    assert_user_error(release(device_run, tmp_path / "reg", version), "--version",
                      "is not a version: the form is MAJOR.MINOR.PATCH")
    assert not (tmp_path / "reg").exists()


def test_a_folder_that_is_not_a_registry_is_refused(device_run: Path, tmp_path: Path
                                                    ) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    assert_user_error(release(device_run, mine, "1.0.0"), str(mine),
                      "is not empty and is not a kiloml registry")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_user_error(release(device_run, a_file, "1.0.0"), "is not a folder")
    for command in (["registry", "list"], ["registry", "show"], ["registry", "verify"],
                    ["rollback"]):
        assert_user_error(run_cli(*command, str(mine)), "not a kiloml registry (no "
                          "kiloml-registry.json)")
    (mine / "kiloml-registry.json").write_text('{"kind": "something-else", "format": 1}')
    assert_user_error(run_cli("registry", "list", str(mine)), "kind: not a kiloml registry")
    empty = tmp_path / "empty"
    empty.mkdir()
    released(device_run, empty, "1.0.0")  # an empty folder becomes one


# --- promote, rollback, history -------------------------------------------------------------


def history(reg: Path) -> list[tuple]:
    lines = (reg / "history.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert all(set(e) == {"utc", "action", "alias", "from", "to"} for e in entries)
    return [(e["action"], e["alias"], e["from"], e["to"]) for e in entries]


def aliases(reg: Path) -> dict:
    return load(reg / "aliases.json")


def test_promote_and_rollback(device_run: Path, second_run: Path, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    released(device_run, reg, "1.0.0")
    released(second_run, reg, "1.1.0")
    released(device_run, reg, "1.2.0")

    assert_user_error(run_cli("promote", str(reg), "1.0.0", "--to", "production"),
                      "version 1.0.0 has no gate result", "kiloml gate")
    write_gate(reg, "1.0.0", False, failed=("parity_qemu", "changed_fraction"))
    assert_user_error(run_cli("promote", str(reg), "1.0.0", "--to", "production"),
                      "the latest gate of version 1.0.0 did not pass (failed: parity_qemu, "
                      "changed_fraction)")
    assert (reg / "history.jsonl").read_text() == ""
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        write_gate(reg, v, True)
    assert_user_error(run_cli("promote", str(reg), "9.9.9", "--to", "production"),
                      "no version 9.9.9 in this registry (its versions: 1.0.0, 1.1.0, 1.2.0)")
    assert_user_error(run_cli("promote", str(reg), "1.0.0", "--to", "previous"), "--to",
                      "'previous' cannot be promoted to")
    assert_user_error(run_cli("promote", str(reg), "latest", "--to", "canary"),
                      "'latest' is neither a version")
    assert aliases(reg) == {"production": None, "canary": None, "previous": None}

    done = run_cli("promote", str(reg), "1.0.0", "--to", "production")
    assert done.exit_code == 0, done.stderr
    assert "production     - -> 1.0.0" in done.stdout
    assert aliases(reg) == {"production": "1.0.0", "canary": None, "previous": None}
    assert_user_error(run_cli("promote", str(reg), "1.0.0", "--to", "production"),
                      "version 1.0.0 is already production")
    assert run_cli("promote", str(reg), "1.1.0", "--to", "canary").exit_code == 0
    assert run_cli("promote", str(reg), "canary", "--to", "production").exit_code == 0
    assert aliases(reg) == {"production": "1.1.0", "canary": "1.1.0", "previous": "1.0.0"}
    assert run_cli("promote", str(reg), "1.2.0", "--to", "production").exit_code == 0
    assert aliases(reg) == {"production": "1.2.0", "canary": "1.1.0", "previous": "1.1.0"}

    listed = run_cli("registry", "list", str(reg)).stdout
    assert "production, canary" not in listed  # 1.1.0 is canary and previous
    row = next(line for line in listed.splitlines() if "1.1.0" in line)
    assert "canary" in row and "previous" in row
    shown = run_cli("registry", "show", str(reg))  # production by default
    assert shown.exit_code == 0 and "# Model card: toy 1.2.0" in shown.stdout
    assert "version 1.2.0 (production)" in shown.stdout

    back = run_cli("rollback", str(reg))
    assert back.exit_code == 0, back.stderr
    assert "production     1.2.0 -> 1.1.0" in back.stdout
    assert aliases(reg) == {"production": "1.1.0", "canary": "1.1.0", "previous": "1.0.0"}
    assert run_cli("rollback", str(reg)).exit_code == 0
    assert aliases(reg) == {"production": "1.0.0", "canary": "1.1.0", "previous": None}
    assert_user_error(run_cli("rollback", str(reg)), "no previous version to roll back to")
    assert aliases(reg)["production"] == "1.0.0"
    assert history(reg) == [
        ("promote", "production", None, "1.0.0"),
        ("promote", "canary", None, "1.1.0"),
        ("promote", "production", "1.0.0", "1.1.0"),
        ("promote", "previous", None, "1.0.0"),
        ("promote", "production", "1.1.0", "1.2.0"),
        ("promote", "previous", "1.0.0", "1.1.0"),
        ("rollback", "production", "1.2.0", "1.1.0"),
        ("rollback", "previous", "1.1.0", "1.0.0"),
        ("rollback", "production", "1.1.0", "1.0.0"),
        ("rollback", "previous", "1.0.0", None),
    ]
    assert run_cli("registry", "verify", str(reg)).exit_code == 0


def test_a_damaged_alias_or_gate_file_is_one_line(one_release: Path) -> None:
    (one_release / "gates").mkdir(exist_ok=True)
    (one_release / "gates" / "1.0.0.json").write_text('{"passed": "yes"}')
    assert_user_error(run_cli("promote", str(one_release), "1.0.0", "--to", "canary"),
                      "gates/1.0.0.json: passed: expected true or false")
    write_gate(one_release, "1.0.0", True)
    (one_release / "history.jsonl").write_text("not json\n")
    assert_user_error(run_cli("promote", str(one_release), "1.0.0", "--to", "canary"),
                      "history.jsonl:1: not valid JSON")
    (one_release / "history.jsonl").write_text("")
    (one_release / "aliases.json").write_text('{"production": "one"}')
    assert_user_error(run_cli("promote", str(one_release), "1.0.0", "--to", "canary"),
                      "aliases.json: production: expected a version or null")


# --- the Python API ---------------------------------------------------------------------------


def test_the_store_api(one_release: Path, tmp_path: Path) -> None:
    with pytest.raises(KilomlError, match="not a kiloml registry"):
        Registry.open(tmp_path)
    new = Registry.create(tmp_path / "new")
    assert new.versions() == [] and new.aliases() == {"production": None, "canary": None,
                                                       "previous": None}
    assert "(no versions yet)" in run_cli("registry", "list", str(new.path)).stdout
    assert "verified       0 versions" in run_cli("registry", "verify", str(new.path)).stdout
    with pytest.raises(KilomlError, match="already a kiloml registry"):
        Registry.create(tmp_path / "new")
    with pytest.raises(KilomlError, match="is not empty and is not a kiloml registry"):
        Registry.create(tmp_path)

    reg = Registry.open(one_release)
    assert reg.versions() == ["1.0.0"]
    assert reg.package_dir("1.0.0") == package(one_release)
    assert reg.version_info("1.0.0")["package"] == package(one_release).name
    assert reg.resolve("1.0.0") == "1.0.0"
    with pytest.raises(KilomlError, match="production points at no version"):
        reg.resolve("production")
    with pytest.raises(KilomlError, match=r"no version 2\.0\.0"):
        reg.package_dir("2.0.0")
    assert reg.gate_result("1.0.0") is None
    result = {"version": "1.0.0", "against": None, "passed": True,
              "gated_utc": "2026-12-04T21:00:00Z", "checks": []}
    with reg.locked(), reg.locked():  # re-entrant: a writer may call writers
        reg.write_gate_result("1.0.0", result)
    assert reg.gate_result("1.0.0") == result
    assert load(one_release / "gates" / "1.0.0.json") == result
    with pytest.raises(KilomlError, match=r"no version 1\.0\.1"):
        reg.write_gate_result("1.0.1", {**result, "version": "1.0.1"})
    assert sorted_versions(["1.10.0", "1.9.0", "0.0.10", "0.0.9"]) == [
        "0.0.9", "0.0.10", "1.9.0", "1.10.0"]


def test_the_card_keeps_the_monitor_calibration(device_run: Path) -> None:
    metrics = json.loads((device_run / "metrics.json").read_text())
    metrics["monitor"] = {"calibration": {"false_alarm_every": "30d",
                                          "false_alarm_every_s": 2592000.0,
                                          "arl_interval_s": [1.0, 2.0], "limits": {"ood": 3.0},
                                          "devices": ["s4"], "gumbel": {}}}
    card = model_card(metrics, version="1.0.0", notes=None, released_utc="x",
                      model_id="m", interface_hash="h")
    assert card["monitor"]["calibration"]["false_alarm_every"] == "30d"
    assert "gumbel" not in card["monitor"]["calibration"]
    assert "calibrated for one false alarm every 30d on s4" in card_markdown(card)


# --- concurrent releases ------------------------------------------------------------------


def spawn_release(run: Path, reg: Path, version: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kiloml", "release", str(run),
                             "--registry", str(reg), "--version", version],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_concurrent_releases_of_different_versions_both_land(
        device_run: Path, second_run: Path, tmp_path: Path) -> None:
    reg = tmp_path / "reg"  # missing: both processes also race to make it
    procs = [spawn_release(device_run, reg, "2.0.0"), spawn_release(second_run, reg, "2.1.0")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert Registry.open(reg).versions() == ["2.0.0", "2.1.0"]
    assert len(list((reg / "packages").iterdir())) == 2
    checked = run_cli("registry", "verify", str(reg))
    assert checked.exit_code == 0 and "verified       2 versions" in checked.stdout


def test_concurrent_releases_of_one_version_one_lands(device_run: Path, second_run: Path,
                                                      tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    Registry.create(reg)
    with Registry.open(reg).locked():  # both wait at the lock, then race for it
        procs = [spawn_release(device_run, reg, "3.0.0"),
                 spawn_release(second_run, reg, "3.0.0")]
        time.sleep(4.0)
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = next(err for p, (_, err) in zip(procs, outs, strict=True) if p.returncode == 2)
    assert loser.strip().splitlines() == [
        loser.strip()] and "version 3.0.0 already exists" in loser
    assert Registry.open(reg).versions() == ["3.0.0"]
    assert len(list((reg / "packages").iterdir())) == 1
    assert run_cli("registry", "verify", str(reg)).exit_code == 0


def updatable_run(root: Path, extra: str = "") -> Path:
    toml = write_toy_project(root)
    toml.write_text(toml.read_text() + "\n[library]\nupdatable = true\n" + extra)
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    return root / "out"


def ed25519_key(path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return path


def test_an_updatable_run_is_released_with_its_parameter_blob(tmp_path: Path) -> None:
    from kiloml.blob.format import counter_of, unpack, verify_signature
    from kiloml.blob.keys import public_key_bytes

    run = updatable_run(tmp_path / "u")
    key = ed25519_key(tmp_path / "key.pem")
    reg = tmp_path / "reg"
    result = release(run, reg, "1.2.3", "--allow-no-device-parity", "--signing-key", str(key))
    assert result.exit_code == 0, result.stderr
    assert "model.kmlb (signed)" in result.stdout
    package = reg / "packages" / Registry.open(reg).version_info("1.2.3")["package"]
    blob = (package / "model.kmlb").read_bytes()
    header, _ = unpack(blob)
    assert header.counter == counter_of("1.2.3") == (1 << 20) | (2 << 10) | 3
    assert verify_signature(blob, public_key_bytes(key, "key"))
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["files"]["model.kmlb"] == hashlib.sha256(blob).hexdigest()
    assert run_cli("registry", "verify", str(reg)).exit_code == 0
    # unsigned without a key; a key for a library that takes no blob, or that cannot be
    # read, is one line and nothing is written
    result = release(run, reg, "1.2.4", "--allow-no-device-parity")
    assert result.exit_code == 0 and "model.kmlb (unsigned)" in result.stdout
    plain = tmp_path / "plain"
    toml = write_toy_project(plain)
    assert run_cli("run", str(toml), "--no-emulator").exit_code == 0
    assert_user_error(release(plain / "out", reg, "1.3.0", "--allow-no-device-parity",
                              "--signing-key", str(key)), "--signing-key", "nothing to sign")
    (tmp_path / "junk.pem").write_text("not a key\n")
    for bad, why in ((tmp_path / "missing.pem", "cannot be read"),
                     (tmp_path / "junk.pem", "not an unencrypted Ed25519 private key")):
        assert_user_error(release(run, reg, "1.3.0", "--allow-no-device-parity",
                                  "--signing-key", str(bad)), why)
    assert_user_error(release(run, reg, "1.1024.0", "--allow-no-device-parity"),
                      "anti-rollback counter")
    assert Registry.open(reg).versions() == ["1.2.3", "1.2.4"]


def test_a_library_that_requires_signatures_needs_the_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = ed25519_key(tmp_path / "key.pem")
    public = load_pem_private_key(key.read_bytes(), None).public_key()
    (tmp_path / "pub.pem").write_bytes(public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    run = updatable_run(tmp_path / "s", f'update_key = "{tmp_path / "pub.pem"}"\n')
    reg = tmp_path / "reg"
    assert_user_error(release(run, reg, "1.0.0", "--allow-no-device-parity"),
                      "requires signed blobs")
    other = ed25519_key(tmp_path / "other.pem")
    assert_user_error(release(run, reg, "1.0.0", "--allow-no-device-parity",
                              "--signing-key", str(other)), "not the key the library trusts")
    assert not reg.exists()
    released(run, reg, "1.0.0", "--allow-no-device-parity", "--signing-key", str(key))


def test_a_tampered_package_is_refused_by_gate_diff_promote_and_rollback(
        one_release: Path, device_run: Path, tmp_path: Path) -> None:
    reg = one_release
    assert run_cli("gate", str(reg), "1.0.0").exit_code == 0
    assert run_cli("promote", str(reg), "1.0.0", "--to", "production").exit_code == 0
    released(device_run, reg, "1.0.1")
    assert run_cli("gate", str(reg), "1.0.1").exit_code == 0
    assert run_cli("promote", str(reg), "1.0.1", "--to", "production").exit_code == 0
    target = package(reg, "1.0.0") / "model_card.md"
    target.chmod(0o644)
    target.write_text(target.read_text() + "edited\n")
    why = "SHA-256 does not match the manifest of version 1.0.0"
    assert_user_error(run_cli("gate", str(reg), "1.0.0"), str(target), why)
    assert_user_error(run_cli("diff", str(reg), "1.0.0", "1.0.1", "--out",
                              str(tmp_path / "d")), why)
    assert_user_error(run_cli("promote", str(reg), "1.0.0", "--to", "canary"), why)
    assert_user_error(run_cli("rollback", str(reg)), why)
    assert Registry.open(reg).aliases()["production"] == "1.0.1"  # nothing moved
    assert not (tmp_path / "d").exists()
