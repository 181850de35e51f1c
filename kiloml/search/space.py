"""The search space of `kiloml search`: ``[search.space]`` in the project file, checked
and expanded into candidate projects.

    [search.space]
    "window.window_ms" = [2000, 4000]          # any [section] key: a list of values
    features = [["statistics"], ["statistics", {stage = "spectral", fft_length = 64}]]
    model = [
      {kind = "random_forest", n_estimators = [5, 10, 20], max_depth = [4, 8]},
      {kind = "cnn1d", filters = [[8, 16, 16]],
       optimize = [{}, {prune = "structured", sparsity = 0.5}]},
    ]

In a ``model`` table every list is a list of alternatives (a list-valued setting such
as ``hidden`` is written as a list of lists); ``optimize`` gives the ``[optimize]``
section for that model family only: a list of whole tables to try, or one table whose
lists are alternatives. A candidate is the project file
with one choice per dimension; each is validated like a project file, so a typo'd
section, key, stage or value is a one-line error naming the line of the space.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from kiloml.errors import KilomlError
from kiloml.project import (
    FEATURE_STAGES,
    LINEAR_CONFIGS,
    NEURAL_KINDS,
    TREE_KINDS,
    LoadedProject,
    NeuralModelConfig,
    Project,
    TreeModelConfig,
    find_key_line,
    section_model,
    validation_error,
)

SPACE = ("search", "space")
# Sections a search may vary with dotted keys; [search] and [output] are the search's own.
VARIABLE_SECTIONS = tuple(k for k in Project.model_fields if k not in ("search", "output",
                                                                       "name", "data"))


@dataclass
class Candidate:
    """One point of the space: the choices made and the project they give."""

    index: int
    choices: dict[str, Any]  # dimension -> the chosen value (for tables and reports)
    raw: dict = field(repr=False)  # the project file's dict with the choices applied

    @property
    def key(self) -> str:
        """Stable identity across runs (resume): a hash of the candidate's project."""
        text = json.dumps(self.raw, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        parts = []
        for dim, value in self.choices.items():
            if dim == "features":
                parts.append("+".join(s["stage"] if len(s) == 1 else
                                      f"{s['stage']}({_params(s, 'stage')})" for s in value))
            elif dim == "model":
                parts.append(f"{value['kind']}({_params(value, 'kind')})")
            else:
                parts.append(f"{dim.split('.')[-1]}={_short(value)}")
        return " ".join(parts)

    def project(self, base: LoadedProject) -> LoadedProject:
        config = Project.model_validate(self.raw)
        return LoadedProject(config=config, path=base.path, root=base.root)


def _params(table: dict, skip: str) -> str:
    return ",".join(f"{k}={_short(v)}" for k, v in table.items() if k != skip)


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + _params(value, "") + "}"
    if isinstance(value, list):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


class SearchSpace:
    def __init__(self, base: LoadedProject, raw_project: dict) -> None:
        self.base = base
        self.text = base.path.read_text(encoding="utf-8")
        self.raw_project = raw_project
        search = raw_project.get("search")
        if not isinstance(search, dict) or not search.get("space"):
            raise KilomlError("the project has no [search.space]: list the values to explore, "
                              "e.g. \"window.window_ms\" = [2000, 4000]", file=base.path)
        self.dimensions = self._dimensions(search["space"])

    # --- checking ------------------------------------------------------------------

    def _error(self, message: str, key: str | None) -> KilomlError:
        return KilomlError(f"[search.space] {message}", file=self.base.path,
                           line=self._line(key))

    def _line(self, key: str | None) -> int | None:
        """The line of a dimension: a quoted dotted key, a bare dotted key or a sub-table."""
        start = find_key_line(self.text, SPACE, None)
        if key is None or start is None:
            return start
        lines = self.text.splitlines()
        for k in (key, key.split(".")[0]):
            pattern = re.compile(rf"^\s*[\"']?{re.escape(k)}[\"']?\s*[=.]")
            for i in range(start, len(lines)):
                if pattern.match(lines[i]):
                    return i + 1
        return start

    def _dimensions(self, space: dict) -> dict[str, list]:
        dims: dict[str, list] = {}
        for key, value in _flatten(space).items():
            if key == "features":
                dims[key] = self._feature_alternatives(value)
            elif key == "model":
                dims[key] = self._model_alternatives(value)
            else:
                self._check_path(key)
                if not isinstance(value, list) or not value:
                    raise self._error(f"'{key}' must be a non-empty list of values to try",
                                      key)
                dims[key] = value
        return dims

    def _check_path(self, key: str) -> None:
        parts = key.split(".")
        known = [*VARIABLE_SECTIONS, "features", "model"]
        if parts[0] not in VARIABLE_SECTIONS:
            raise self._error(f"unknown dimension '{key}'{_hint(parts[0], known)}; dimensions "
                              f"are 'features', 'model' or '<section>.<key>'", key)
        if len(parts) != 2:
            raise self._error(f"'{key}': write a dimension as '<section>.<key>', e.g. "
                              f"'window.window_ms'", key)
        section = section_model(Project.model_fields[parts[0]].annotation, None)
        if section is None:
            raise self._error(f"'{parts[0]}' cannot be varied key by key", key)
        if parts[1] not in section.model_fields:
            raise self._error(f"unknown key '{parts[1]}' in [{parts[0]}]"
                              f"{_hint(parts[1], list(section.model_fields))}", key)

    def _feature_alternatives(self, value: Any) -> list[list[dict]]:
        if not isinstance(value, list) or not value:
            raise self._error("'features' must be a list of feature-stage lists, e.g. "
                              "[[\"statistics\"], [\"statistics\", \"spectral\"]]", "features")
        out = []
        for alt in value:
            alt = [alt] if isinstance(alt, str | dict) else alt
            if not isinstance(alt, list) or not alt:
                raise self._error("each 'features' alternative is a list of stages",
                                  "features")
            stages = []
            for stage in alt:
                table = {"stage": stage} if isinstance(stage, str) else stage
                name = table.get("stage") if isinstance(table, dict) else None
                if name not in FEATURE_STAGES:
                    raise self._error(f"unknown feature stage {name!r}"
                                      f"{_hint(str(name), list(FEATURE_STAGES))}", "features")
                _check_keys(table, FEATURE_STAGES[name], f"feature stage '{name}'",
                            lambda m: self._error(m, "features"))
                stages.append(table)
            out.append(stages)
        return out

    def _model_alternatives(self, value: Any) -> list[dict]:
        tables = [value] if isinstance(value, dict) else value
        if not isinstance(tables, list) or not tables or \
                not all(isinstance(t, dict) for t in tables):
            raise self._error("'model' must be a list of model tables, e.g. "
                              "[{kind = \"random_forest\", max_depth = [4, 8]}]", "model")
        out = []
        for table in tables:
            kinds = table.get("kind")
            for kind in kinds if isinstance(kinds, list) else [kinds]:
                if kind in TREE_KINDS:
                    schema: type[BaseModel] = TreeModelConfig
                elif kind in NEURAL_KINDS:
                    schema = NeuralModelConfig
                elif kind in LINEAR_CONFIGS:
                    schema = LINEAR_CONFIGS[kind]
                else:
                    known = [*TREE_KINDS, *NEURAL_KINDS, *LINEAR_CONFIGS]
                    raise self._error(f"unknown model kind {kind!r}{_hint(str(kind), known)}",
                                      "model")
                params = {k: v for k, v in table.items() if k != "optimize"}
                _check_keys(params, schema, f"model '{kind}'",
                            lambda m: self._error(m, "model"))
                optimize = table.get("optimize")
                if optimize is not None:
                    section = section_model(Project.model_fields["optimize"].annotation, None) \
                        if "optimize" in Project.model_fields else None
                    variants = optimize if isinstance(optimize, list) else [optimize]
                    if section is None or not all(isinstance(v, dict) for v in variants):
                        raise self._error("'optimize' in a model table is an [optimize] table "
                                          "or a list of them", "model")
                    for variant in variants:
                        _check_keys(variant, section, f"[optimize] of model '{kind}'",
                                    lambda m: self._error(m, "model"))
            out.append(table)
        return out

    # --- expansion -----------------------------------------------------------------

    def candidates(self, limit: int, seed: int) -> tuple[list[Candidate], int]:
        """The candidates (at most ``limit``, a seeded sample when there are more) and
        how many the space holds."""
        axes: list[list[tuple[str, Any]]] = []
        for dim, values in self.dimensions.items():
            if dim == "model":
                axes.append([("model", m) for table in values for m in _expand_model(table)])
            else:
                axes.append([(dim, v) for v in values])
        combos = list(itertools.product(*axes))
        total = len(combos)
        if total > limit:
            combos = random.Random(seed).sample(combos, limit)
        out: list[Candidate] = []
        seen: set[str] = set()
        for combo in combos:
            i = len(out)
            raw = copy.deepcopy(self.raw_project)
            raw.pop("search", None)
            choices: dict[str, Any] = {}
            for dim, value in combo:
                if dim == "features":
                    raw["features"] = copy.deepcopy(value)
                elif dim == "model":
                    model = {k: v for k, v in value.items() if k != "optimize"}
                    raw["model"] = model
                    if "optimize" in value:
                        raw.setdefault("optimize", {}).update(value["optimize"])
                else:
                    section, key = dim.split(".")
                    raw.setdefault(section, {})[key] = value
                choices[dim] = value
            model = raw.get("model", {})
            reads_window = model.get("input") == "window" or (
                model.get("kind") == "cnn1d" and model.get("input") is None)
            if reads_window:  # the network reads the window: feature stages do not apply
                raw.pop("features", None)
                choices.pop("features", None)
            candidate = Candidate(i, choices, raw)
            if candidate.key in seen:
                continue
            seen.add(candidate.key)
            try:
                Project.model_validate(raw)
            except ValidationError as exc:
                err = validation_error(exc, self.text, self.base.path)
                raise self._error(f"candidate '{candidate.label}' is not a valid project: "
                                  f"{err.message}", next(iter(choices), None)) from None
            out.append(candidate)
        return out, total


def _expand_model(table: dict) -> list[dict]:
    """A model table with lists of alternatives -> one table per combination."""
    fixed = {k: v for k, v in table.items() if k != "optimize"}
    keys = list(fixed)
    values = [v if isinstance(v, list) else [v] for v in fixed.values()]
    optimize = table.get("optimize")
    if optimize is None:
        variants: list[dict | None] = [None]
    elif isinstance(optimize, list):  # whole [optimize] tables, one per alternative
        variants = list(optimize)
    else:
        okeys = list(optimize)
        ovalues = [v if isinstance(v, list) else [v] for v in optimize.values()]
        variants = [dict(zip(okeys, c, strict=True)) for c in itertools.product(*ovalues)]
    out = []
    for combo in itertools.product(*values):
        for variant in variants:
            m = dict(zip(keys, combo, strict=True))
            if variant is not None:
                m["optimize"] = variant
            out.append(m)
    return out


def _flatten(space: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in space.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in ("model",):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _check_keys(table: dict, schema: type[BaseModel], what: str, error) -> None:
    for key in table:
        if key not in schema.model_fields:
            raise error(f"unknown parameter '{key}' for {what}"
                        f"{_hint(key, list(schema.model_fields))}")


def _hint(word: str, known: list[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(known)})"


def read_raw_project(path: Path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text(encoding="utf-8"))
