"""The library prefix (``[library] prefix``): names of a generated model's symbols.

The rule. A library with prefix P (default ``kml``) names every symbol, type and macro of
its model API ``P_...`` / ``P.upper()_...`` (``gesture_classify``, ``gesture_result_t``,
``GESTURE_CLASSES``), and every file-scope name of its generated code too (``gesture_ring``,
``gesture_s0_...``, ``gesture_m_...``): two libraries with different prefixes link together.
Its own files are ``P_model.h``, ``P_model.c`` and ``P_config.h`` (``kiloml_model.h``,
``kiloml_model.c`` and ``kml_config.h`` for the default prefix, as before).

The runtime kernels (``kiloml/runtime``) keep their ``kml_`` / ``KML_`` names and are
shared: one copy of ``kml_statistics.c``, ``kml_nn.c`` ... is linked however many models use
it, so they depend on no model's configuration. Two kernels are built for one model's
tables (``kml_config.h`` chooses their node, leaf and accumulator types): ``kml_trees`` and
``kml_linear``. A library with a prefix other than ``kml`` holds them as ``P_trees.c`` /
``P_linear.c`` (the kernel's source after ``#include "P_config.h"``), and ``P_config.h``
renames their functions to ``P_forest_predict`` ...: per model, never shared.

The generator writes ``kml_`` names; :func:`rename` turns them into the prefix's, keeping
every name the runtime headers use (their code, not their comments) and the harness
hooks. The verification harnesses are written against the ``kml_`` API: :func:`api_shim`
writes a ``kiloml_model.h`` for them that maps it onto a prefixed library's names.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from kiloml.errors import KilomlError

DEFAULT_PREFIX = "kml"
RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime"
# Runtime modules compiled per model (their code depends on kml_config.h).
CONFIGURED_MODULES = ("kml_trees", "kml_linear")
# Names the verification builds define or call (-DKML_STAGE_MARKS, kml_mark_stage): one
# harness measures whichever model it links, so they keep their names.
HOOKS = frozenset({"kml_mark_stage", "KML_STAGE_MARKS", "KML_NN_LAYER_MARKS",
                   "KML_NO_LIBRARY", "KML_HARNESS_RECORDING_FLOATS"})
MAX_PREFIX = 32
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
C_KEYWORDS = frozenset([
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
    "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
    "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef",
    "union", "unsigned", "void", "volatile", "while", "_Alignas", "_Alignof", "_Atomic",
    "_Bool", "_Complex", "_Generic", "_Imaginary", "_Noreturn", "_Static_assert",
    "_Thread_local", "bool", "true", "false", "asm", "class", "delete", "explicit", "friend",
    "mutable", "namespace", "new", "operator", "private", "protected", "public", "template",
    "this", "throw", "try", "typename", "using", "virtual"])
# A string literal, a comment, or an identifier starting kml_ / KML_ (in that order, so
# the first two are skipped whole).
_TOKENS = re.compile(r'"(?:\\.|[^"\\\n])*"|/\*.*?\*/|//[^\n]*|\b(?:kml|KML)_\w+', re.S)
_CODE_NAMES = re.compile(r"\b(?:kml|KML)_\w+")
_COMMENT_NAMES = re.compile(r"(?<![.\w])(?:kml|KML)_\w+")  # not a section (.kml_model_info)


def check_prefix(prefix: object, *, where: str = "[library] prefix") -> str:
    """``prefix`` if it can name a library's symbols; otherwise a one-line KilomlError."""
    if not isinstance(prefix, str):
        raise KilomlError(f"{where} must be a string (a C identifier such as \"gesture\")")
    problem = None
    if not _IDENTIFIER.match(prefix):
        problem = "is not a C identifier (a letter, then letters, digits or _)"
    elif len(prefix) > MAX_PREFIX:
        problem = f"is longer than {MAX_PREFIX} characters"
    elif prefix in C_KEYWORDS or prefix.lower() in C_KEYWORDS:
        problem = "is a C or C++ keyword"
    elif prefix.endswith("_") or "__" in prefix:
        problem = "ends in _ or holds __ (the names would hold __, reserved in C)"
    elif prefix != DEFAULT_PREFIX and (prefix.lower() == DEFAULT_PREFIX
                                       or prefix.lower().startswith("kml_")):
        problem = "collides with the shared runtime's kml_ / KML_ names"
    elif prefix.lower() == "kiloml":
        problem = "collides with the default library's kiloml_model.h"
    if problem:
        raise KilomlError(f"{where} {prefix[:40]!r} {problem}")
    return prefix


def model_header_name(prefix: str) -> str:
    return "kiloml_model.h" if prefix == DEFAULT_PREFIX else f"{prefix}_model.h"


def model_source_name(prefix: str) -> str:
    return "kiloml_model.c" if prefix == DEFAULT_PREFIX else f"{prefix}_model.c"


def config_header_name(prefix: str) -> str:
    return f"{prefix}_config.h"


def module_source_name(module: str, prefix: str) -> str:
    """The .c file a runtime module is compiled from in a library with ``prefix``."""
    if prefix != DEFAULT_PREFIX and module in CONFIGURED_MODULES:
        return f"{prefix}_{module[len('kml_'):]}.c"
    return f"{module}.c"


def _code(text: str) -> str:
    """C text without comments and string literals."""
    return re.sub(r'"(?:\\.|[^"\\\n])*"|/\*.*?\*/|//[^\n]*', " ", text, flags=re.S)


@functools.cache
def shared_names() -> frozenset[str]:
    """Every kml_ / KML_ name the runtime's code uses: the shared namespace."""
    names: set[str] = set(HOOKS)
    for path in RUNTIME_DIR.iterdir():  # the file names: kml_statistics ...
        names.add(path.name.split(".")[0])
    for path in sorted(RUNTIME_DIR.glob("*.[ch]")):  # .c too: kml_config.h's macros
        names.update(_CODE_NAMES.findall(_code(path.read_text())))
    return frozenset(names)


def module_functions(module: str) -> list[str]:
    """The functions a configured runtime module declares (renamed per model)."""
    code = _code((RUNTIME_DIR / f"{module}.h").read_text())
    return sorted(set(re.findall(r"\b(kml_[a-z0-9_]+)\s*\(", code)))


def rename(text: str, prefix: str, *, header_names: bool = True) -> str:
    """Generated C (or its README) with its kml_ / KML_ names in ``prefix``'s; the runtime's
    shared names, string literals and (in C) nothing else is touched."""
    if prefix == DEFAULT_PREFIX:
        return text
    shared = shared_names()
    upper = prefix.upper()
    text = text.replace("KILOML_MODEL_H", f"{upper}_MODEL_H")  # the header's guard

    def one(m: re.Match[str]) -> str:
        token = m.group(0)
        if token[0] in "\"/":
            if header_names and token.startswith('"'):
                return _rename_files(token, prefix)
            return _rename_words(token, prefix, shared) if token[0] == "/" else token
        if token in shared:
            return token
        return (prefix if token[0] == "k" else upper) + token[3:]

    return _TOKENS.sub(one, text)


def _rename_files(literal: str, prefix: str) -> str:
    """An #include's file name: the model's own headers take the prefix."""
    return {'"kiloml_model.h"': f'"{model_header_name(prefix)}"',
            '"kml_config.h"': f'"{config_header_name(prefix)}"'}.get(literal, literal)


def _rename_words(comment: str, prefix: str, shared: frozenset[str]) -> str:
    """Names inside a comment: the API a comment cites is the prefixed one."""
    upper = prefix.upper()

    def one(m: re.Match[str]) -> str:
        token = m.group(0)
        if token in shared:
            return token
        return (prefix if token[0] == "k" else upper) + token[3:]

    comment = comment.replace("kiloml_model.h", model_header_name(prefix))
    comment = comment.replace("kml_config.h", config_header_name(prefix))
    return _COMMENT_NAMES.sub(one, comment)


def rename_markdown(text: str, prefix: str) -> str:
    """The README: every kml_ / KML_ name outside the shared runtime, and the file names."""
    if prefix == DEFAULT_PREFIX:
        return text
    return _rename_words(text, prefix, shared_names())


def configured_renames(modules: list[str], prefix: str) -> list[str]:
    """``P_config.h`` lines: the model's build of each configured kernel under P's names."""
    if prefix == DEFAULT_PREFIX:
        return []
    lines = ["", "/* This model's builds of the kernels its tables configure, under its own",
             " * names (never shared with another model; see the README). */",
             "#define KML_MODEL_CONFIG 1"]
    for module in modules:
        if module in CONFIGURED_MODULES:
            for name in module_functions(module):
                lines.append(f"#define {name} {prefix}_{name[len('kml_'):]}")
    return lines


def configured_source(module: str, prefix: str, spdx: str, fp_include: str) -> str:
    """``P_trees.c``: the runtime module's source compiled for this model's config."""
    body = (RUNTIME_DIR / f"{module}.c").read_text()
    if body.startswith(spdx):
        body = body[len(spdx):].lstrip("\n")
    return (f"{spdx}\n/* {module}.c built for this model's tables ({config_header_name(prefix)}"
            f" chooses its types and renames its functions {prefix}_...). */\n"
            f'{fp_include}#include "{config_header_name(prefix)}"\n\n{body}')


def api_shim(header: Path, prefix: str, directory: Path) -> Path | None:
    """For a prefixed library: ``directory/kiloml_model.h``, which includes ``header`` and
    maps the kml_ API the harnesses call onto its names. None for the default prefix."""
    if prefix == DEFAULT_PREFIX:
        return None
    code = _code(header.read_text())
    upper = prefix.upper()
    names = sorted(set(re.findall(rf"\b(?:{prefix}|{upper})_\w+", code)))
    lines = [f"/* The kml_ API of {header.name} (verification harnesses only). */",
             "#ifndef KILOML_MODEL_API_SHIM_H", "#define KILOML_MODEL_API_SHIM_H",
             f'#include "{header.name}"']
    for name in names:
        base = ("kml" if name.startswith(prefix + "_") else "KML") + name[len(prefix):]
        if base not in shared_names() and not name.endswith("_H"):
            lines.append(f"#define {base} {name}")
    lines.append("#endif")
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "kiloml_model.h"
    shim.write_text("\n".join(lines) + "\n")
    return directory
