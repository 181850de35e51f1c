"""What ``kiloml release`` takes from a run folder, and the runs it refuses: a folder that
is not a finished run, failed parity (host or QEMU), a target over its budget, a run never
checked on the emulated MCU (unless allowed), a library that is not the one its
pipeline.json generates. The folder may come from someone else: the pipeline and the
reference are read through kiloml.persist (never unpickled) with their checks."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kiloml.codegen.identity import library_info
from kiloml.display import shown_path
from kiloml.errors import KilomlError
from kiloml.outputs import marker_kind
from kiloml.persist.archive import describe
from kiloml.persist.pipeline_state import PIPELINE_FILE, load_pipeline
from kiloml.project import LoadedProject, load_project
from kiloml.results import METRICS_FILE, read_metrics
from kiloml.verify.command import generated_library
from kiloml.verify.reference import REFERENCE_FILE, Reference

PIPELINE_ARRAYS = "pipeline.npz"
FIRMWARE_DIR = "firmware"
PROJECT_NAME = "kiloml.toml"
SEARCH_LEVELS = 3  # folders above the run searched for its project file


@dataclass(frozen=True)
class FinishedRun:
    """A run folder that may be released."""

    folder: Path
    metrics: dict
    project: LoadedProject
    model_id: str
    interface_hash: str
    firmware_files: list[str]  # names in firmware/ (the library pipeline.json generates)
    device_parity: bool  # parity checked on an emulated MCU (QEMU) for every target

    @property
    def firmware(self) -> Path:
        return self.folder / FIRMWARE_DIR

    @property
    def reference(self) -> Path:
        return self.folder / "verify" / REFERENCE_FILE


def read_run(run_dir: Path, project_file: Path | None = None, *,
             allow_no_device_parity: bool = False) -> FinishedRun:
    """The finished run in ``run_dir`` with every check that a release needs."""
    run_dir = Path(run_dir)
    require_finished(run_dir)
    metrics = read_metrics(run_dir)
    parity, resources = _sections(metrics, run_dir / METRICS_FILE)
    check_parity(parity)
    check_budgets(resources)
    device = device_parity(parity, resources)
    if not device and not allow_no_device_parity:
        raise KilomlError(
            f"the run's library was not checked on the emulated MCU (QEMU) for "
            f"{', '.join(resources)} ({_why_no_device(parity, resources)}): run `kiloml "
            "verify` on its project first, or pass --allow-no-device-parity to release it "
            "with host parity only (the gate's parity_qemu check refuses such a version)",
            file=run_dir)
    project = find_project(run_dir, metrics, project_file)
    pipeline = load_pipeline(run_dir / PIPELINE_FILE)
    Reference.load(run_dir / "verify" / REFERENCE_FILE, pipeline)
    firmware = run_dir / FIRMWARE_DIR
    names = _library_files(pipeline, firmware)
    info = library_info(firmware)  # the header pipeline.json generates: its own id
    recorded = metrics.get("library", {})
    for key in ("model_id", "interface_hash"):
        if recorded.get(key) != info[key]:
            raise KilomlError(f"{describe(recorded.get(key))} is not the library's "
                              f"{info[key]} (metrics.json is of another run)",
                              file=run_dir / METRICS_FILE, where=f"library.{key}")
    return FinishedRun(run_dir, metrics, project, info["model_id"], info["interface_hash"],
                       names, device)


def require_finished(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise KilomlError("not a finished `kiloml run` folder (no such folder)", file=run_dir)
    if marker_kind(run_dir) != "run":
        raise KilomlError("not a finished `kiloml run` folder (no .kiloml-output of a run "
                          "in it)", file=run_dir)
    needed = [METRICS_FILE, PIPELINE_FILE, PIPELINE_ARRAYS, f"verify/{REFERENCE_FILE}"]
    missing = [n for n in needed if not (run_dir / n).is_file()]
    if not missing and not any((run_dir / FIRMWARE_DIR).glob("*_model.c")):
        missing = [f"{FIRMWARE_DIR}/kiloml_model.c"]
    if missing:
        raise KilomlError(f"not a finished `kiloml run` folder ({missing[0]} is missing); run "
                          "`kiloml run` on its project first", file=run_dir)


def _sections(metrics: dict, path: Path) -> tuple[dict, dict]:
    parity, resources = metrics.get("parity"), metrics.get("resources")
    if not isinstance(parity, dict) or not isinstance(parity.get("host"), dict):
        raise KilomlError("has no host parity (not a finished run's metrics)", file=path,
                          where="parity.host")
    if not isinstance(resources, dict) or not resources or not all(
            isinstance(r, dict) for r in resources.values()):
        raise KilomlError("has no target resources (not a finished run's metrics)",
                          file=path, where="resources")
    return parity, resources


def check_parity(parity: dict) -> None:
    """Every parity check that ran holds (kiloml.results.run_ok's rule), or a KilomlError
    saying where and how many decisions differ."""
    for where, p in parity.items():
        if where != "host" and not p.get("emulated", False):
            continue
        shown = "the host" if where == "host" else f"{where} (QEMU {p.get('machine', '?')})"
        windows = p.get("n", 0) - p.get("decisions_equal", 0)
        stream = p.get("streaming", {})
        streamed = stream.get("n_windows", 0) - stream.get("decisions_equal", 0)
        if not p.get("all_decisions_equal", False):
            raise KilomlError(f"the run failed parity on {shown}: {windows} of {p.get('n', 0)} "
                              "held-out window decisions differ from Python's; a failed "
                              "run is not released")
        if not stream.get("all_decisions_equal", False):
            raise KilomlError(f"the run failed streaming parity on {shown}: {streamed} of "
                              f"{stream.get('n_windows', 0)} streamed window decisions "
                              "differ from Python's; a failed run is not released")


def device_parity(parity: dict, resources: dict) -> bool:
    """Every target of the run had its parity checked on the emulated MCU."""
    return all(parity.get(t, {}).get("emulated", False) for t in resources)


def _why_no_device(parity: dict, resources: dict) -> str:
    for target in resources:
        p = parity.get(target)
        if p is None:
            return "run with --no-emulator"
        if not p.get("emulated", False):
            return str(p.get("note", "not emulated"))
    return "checked"


def check_budgets(resources: dict) -> None:
    """Every target within its flash, RAM and latency budget (and no fused multiply-add in
    its build); a KilomlError naming the budget and by how much otherwise."""
    for target, r in resources.items():
        if r.get("fused_multiply_add", {}).get("found"):
            raise KilomlError(f"the library's build for {target} contains fused "
                              "multiply-adds (results differ from Python's); a failed run "
                              "is not released")
        if r.get("within_budget", False):
            continue
        over = budget_overruns(r)
        detail = "; ".join(over) if over else "; ".join(r.get("notes", [])) or "over budget"
        raise KilomlError(f"the run is over its budget on {target}: {detail}; a failed run "
                          "is not released")


def budget_overruns(r: dict) -> list[str]:
    """What is over its budget, and by how much, in a target's resources entry."""
    out = []
    ram = r.get("ram_with_stack_bytes", r.get("ram_bytes"))
    for what, used, limit in (("flash", r.get("flash_bytes"), r.get("flash_budget_bytes")),
                              ("RAM", ram, r.get("ram_budget_bytes"))):
        if isinstance(used, int) and isinstance(limit, int) and used > limit:
            out.append(f"{what} {used:,} B is over the {limit:,} B budget by "
                       f"{used - limit:,} B")
    latency, limit = r.get("latency_us"), r.get("latency_budget_us")
    if isinstance(latency, int | float) and isinstance(limit, int | float) and latency > limit:
        out.append(f"latency {latency:,.1f} us is over the {limit:,.1f} us budget by "
                   f"{latency - limit:,.1f} us")
    return out


def find_project(run_dir: Path, metrics: dict, given: Path | None) -> LoadedProject:
    """The project file the run was made from: ``given`` (--project), or the kiloml.toml
    above the run whose output folder the run is (a run records only its project's name;
    `kiloml verify` goes the other way, from the project to its output folder)."""
    name = metrics.get("project")
    recorded = metrics.get("project_file")  # runs since this kiloml record the file
    if given is not None:
        project = load_project(given)
        if project.config.name != name:
            made = repr(name) if isinstance(name, str) else "a project it does not name"
            raise KilomlError(f"is the project {project.config.name!r}, but the run was made "
                              f"from {made}", file=project.path, where="--project")
        check_unchanged(project.path, recorded)
        return project
    if isinstance(recorded, dict) and isinstance(recorded.get("path"), str) \
            and Path(recorded["path"]).is_file():
        path = Path(recorded["path"])
        check_unchanged(path, recorded)
        return load_project(path)
    here = run_dir.resolve()
    for folder in list(here.parents)[:SEARCH_LEVELS]:
        candidate = folder / PROJECT_NAME
        if not candidate.is_file():
            continue
        try:
            project = load_project(candidate)
        except KilomlError:
            continue
        if project.config.name == name and _is_output_of(project, here):
            return project
    raise KilomlError(f"cannot tell which project file made this run (no {PROJECT_NAME} "
                      f"within {SEARCH_LEVELS} folders above it names it as its output "
                      "folder); pass --project", file=shown_path(run_dir))


def check_unchanged(path: Path, recorded: object) -> None:
    """The project file's bytes are the ones the run hashed (when it recorded them)."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("sha256"), str):
        return
    if hashlib.sha256(path.read_bytes()).hexdigest() != recorded["sha256"]:
        raise KilomlError("changed since the run was made (its SHA-256 is not the one "
                          "metrics.json project_file records): run the project again, then "
                          "release", file=shown_path(path))


def _is_output_of(project: LoadedProject, run_dir: Path) -> bool:
    if project.config.output.dir:
        return project.output_dir.resolve() == run_dir
    # the default, build/<name> in the folder the run was started in
    return run_dir.name == project.config.name and run_dir.parent.name == "build"


def _library_files(pipeline, firmware: Path) -> list[str]:
    """The files of firmware/: exactly the library pipeline.json generates."""
    for path in firmware.iterdir():
        if path.is_symlink() or not path.is_file():
            raise KilomlError("is not a regular file; a run's library holds regular files "
                              "only", file=path)
    with tempfile.TemporaryDirectory(prefix="kiloml-release-") as tmp:
        made = Path(tmp) / FIRMWARE_DIR
        generated_library(pipeline, firmware, made)
        names = sorted(p.name for p in made.iterdir() if p.is_file())
    extra = sorted({p.name for p in firmware.iterdir()} - set(names))
    if extra:
        raise KilomlError(f"is not part of the library {PIPELINE_FILE} generates; a release "
                          "holds that library only", file=firmware / extra[0])
    return names
