"""A registry package's contents read back for the gate and the diff: its pipeline
(pipeline.json + .npz, never unpickled), metrics.json, reference.npz and project.toml
(docs/registry.md, Layout). A package folder is any folder laid out so; the registry's
``Registry.package_dir`` names one."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from kiloml.codegen.identity import interface
from kiloml.data.files import decode_utf8, read_regular
from kiloml.errors import KilomlError
from kiloml.persist.pipeline_state import load_pipeline
from kiloml.pipeline import Pipeline
from kiloml.project import MAX_PROJECT_BYTES, LoadedProject, Project, validation_error
from kiloml.results import METRICS_FILE, read_metrics
from kiloml.verify.reference import REFERENCE_FILE, Reference

PIPELINE_FILE = "pipeline.json"
PROJECT_FILE = "project.toml"
FIRMWARE_DIR = "firmware"
NEEDED = (FIRMWARE_DIR, METRICS_FILE, REFERENCE_FILE, PIPELINE_FILE, PROJECT_FILE)


@dataclass
class Package:
    """One released model: what the gate reads and the diff compiles."""

    label: str  # how the user named it: "1.2.0" (a version) or a folder
    folder: Path
    pipeline: Pipeline
    metrics: dict
    reference: Reference

    @property
    def firmware(self) -> Path:
        return self.folder / FIRMWARE_DIR

    @property
    def project_file(self) -> Path:
        return self.folder / PROJECT_FILE

    @property
    def interface(self) -> dict:
        """What firmware is written against (kiloml.codegen.identity.interface)."""
        return interface(self.pipeline)

    @property
    def interface_hash(self) -> str:
        return str(self.metrics.get("library", {}).get("interface_hash", ""))

    @property
    def model_id(self) -> str:
        return str(self.metrics.get("library", {}).get("model_id", ""))

    def project(self) -> LoadedProject:
        """The project file the run was made from (its [data] and [gate]), validated as
        `kiloml run` did. Its paths are not the package's: a target profile file it names
        is not looked for (the run's figures are in metrics.json), and [data] path is only
        read when replaced (kiloml.registry.recordings)."""
        path = self.project_file
        text = decode_utf8(read_regular(path, path, MAX_PROJECT_BYTES, "project file"), path,
                           "project file")
        try:
            config = Project.model_validate(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise KilomlError(f"invalid TOML: {exc}", file=path) from None
        except ValidationError as exc:
            raise validation_error(exc, text, path) from None
        return LoadedProject(config=config, path=path.resolve(), root=path.resolve().parent)


def read_package(folder: Path, label: str) -> Package:
    """The package in ``folder``, every file it needs present and read with its checks."""
    folder = Path(folder)
    for name in NEEDED:
        if not (folder / name).exists():
            raise KilomlError(f"package {label} has no {name}: not a kiloml registry "
                              f"package (kiloml registry verify checks one)", file=folder)
    pipeline = load_pipeline(folder / PIPELINE_FILE)
    reference = Reference.load(folder / REFERENCE_FILE, pipeline)
    return Package(label, folder, pipeline, read_metrics(folder), reference)
