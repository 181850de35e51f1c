"""Parity under the user's compiler flags (`kiloml verify --cflags "..."`).

The library is compiled the way a firmware build would: the compiler's defaults (no
-std, no -ffp-contract, no warnings as errors), -O2, then the user's flags, which win
where they disagree. kiloml's own harness keeps its strict flags. The flags come from a
command line but are passed to a compiler that runs here, so they are split like a shell
would (shlex, never through a shell) and only compiler flags that change how code is
generated are taken: no input or output files, plugins, spec files, program paths or
response files.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from kiloml.codegen.library import STRICT_CFLAGS, FirmwareLibrary
from kiloml.errors import KilomlError, ToolchainError

# What the library gets before the user's flags (a later -O wins).
BASE_CFLAGS = ["-O2"]
WHERE = "--cflags"
MAX_LENGTH = 2000

# A flag must start with one of these ...
_ALLOWED = ("-O", "-f", "-m", "-std=", "-W", "-w", "-g", "-D", "-U", "-I", "-pedantic",
            "-ansi", "-pipe", "-pthread", "-no-pie")
# ... and none of these: they read or write files besides the build's (profiles, dumps,
# reports), load code into the compiler, or pass options to the assembler, linker or
# preprocessor. Everything else (-o, -x, -c, -B, -specs, -l, -include, @file ...) is not
# on the list above.
_REFUSED = ("-fplugin", "-fdump", "-fprofile", "-fauto-profile", "-fcallgraph-info",
            "-fstack-usage", "-fopt-info", "-fsave-optimization-record", "-fdiagnostics-log",
            "-fcoverage", "-ftest-coverage", "-Wl,", "-Wa,", "-Wp,")
# Single characters a shell would give a meaning; here they would only confuse a reader.
_SHELL = set("<>|;&`$\n\r")


def parse_cflags(text: str) -> list[str]:
    """The user's flags, split and checked; one KilomlError naming the first refused."""
    if len(text) > MAX_LENGTH:
        raise KilomlError(f"longer than {MAX_LENGTH} characters", where=WHERE)
    shell = sorted(_SHELL & set(text))
    if shell:
        raise KilomlError(f"{shell[0]!r} is shell syntax: give compiler flags only "
                          "(nothing is run through a shell)", where=WHERE)
    try:
        flags = shlex.split(text)
    except ValueError as exc:
        raise KilomlError(f"cannot split {text!r}: {exc}", where=WHERE) from None
    if not flags:
        raise KilomlError("no flags given (e.g. --cflags \"-std=gnu11 -O2\")", where=WHERE)
    for flag in flags:
        if not flag.startswith("-"):
            raise KilomlError(f"{flag!r} is not a flag (input files are not taken)",
                              where=WHERE)
        if not flag.startswith(_ALLOWED) or flag.startswith(_REFUSED):
            raise KilomlError(f"{flag!r} is not taken: only code-generation, language, "
                              f"warning and preprocessor flags (-O, -f, -m, -std=, -W, -g, "
                              f"-D, -U, -I); no output files, plugins, specs or linker "
                              f"options", where=WHERE)
    return flags


def describe(flags: list[str]) -> str:
    return shlex.join(flags)


def build_failure(what: str, detail: str, flags: list[str], directory: Path) -> KilomlError:
    """One line: the library does not build ``what`` (e.g. "for cortex-m4f") with the
    flags, and the compiler's first error (the library's temporary folder left out)."""
    detail = detail.replace(f"{directory}/", "")
    return KilomlError(f"the library does not build{what} with {describe(flags)}: {detail}",
                       where=WHERE)


def _first_error(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()] or ["(no output)"]
    return next((ln for ln in lines if "error" in ln.lower()), lines[0]).strip()


def build_host(library: FirmwareLibrary, work: Path, flags: list[str], *,
               compiler: str = "gcc") -> Path:
    """The library's .c files compiled by ``compiler`` (gcc, g++: as C++, clang) with
    BASE_CFLAGS and ``flags``, the host harness by gcc with kiloml's strict flags, linked
    by ``compiler``; returns the executable."""
    from kiloml.verify.host import HARNESS_DIR, require_tool

    cc = require_tool(compiler, {"g++": "g++", "clang": "clang"}.get(compiler, "gcc"))
    gcc = require_tool("gcc", "gcc")
    objects = work / "objects"
    objects.mkdir(parents=True, exist_ok=True)
    built = []
    for src in library.sources:
        obj = objects / (src.stem + ".o")
        cmd = [cc, *BASE_CFLAGS, *flags, f"-I{library.directory}", "-c", str(src),
               "-o", str(obj)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise build_failure("", f"{compiler} on {src.name}: "
                                f"{_first_error(result.stderr)}", flags, library.directory)
        built.append(obj)
    harness = objects / "host_main.o"
    # the harness is written against the kml_ names: a prefixed library's shim maps them
    subprocess.run([gcc, *STRICT_CFLAGS, "-O2",
                    *[f"-I{d}" for d in library.harness_includes(work)], "-c",
                    str(HARNESS_DIR / "host_main.c"), "-o", str(harness)], check=True,
                   capture_output=True)
    exe = work / "host_main"
    result = subprocess.run([cc, *BASE_CFLAGS, *flags, *map(str, built), str(harness), "-lm",
                             "-o", str(exe)], capture_output=True, text=True)
    if result.returncode != 0:
        raise build_failure("", f"linking with {compiler}: {_first_error(result.stderr)}", flags,
                            library.directory)
    return exe


def host_parity(pipeline, library: FirmwareLibrary, reference, work: Path, flags: list[str],
                *, compiler: str = "gcc") -> dict:
    """Every held-out window, the held-out stream and (recording mode) every held-out
    recording through the library built with ``flags``, against the Python reference."""
    from kiloml.verify.host_parity import executable_parity

    exe = build_host(library, work, flags, compiler=compiler)
    result = executable_parity(pipeline, library, reference, exe, work)
    result["cflags"] = flags
    result["compiler"] = f"{compiler} {_version(compiler)} {describe([*BASE_CFLAGS, *flags])}"
    return result


def parity_holds(parity: dict, *, features_bit_exact: bool) -> bool:
    """Every decision equal (windows, stream, recordings) and, when kiloml's own build had
    bit-exact features (``features_bit_exact``), so does this one: a flag that changes how
    float arithmetic rounds shows there first, before it flips a decision."""
    return bool(parity["all_decisions_equal"] and parity["streaming"]["all_decisions_equal"]
                and parity.get("recordings", {}).get("all_decisions_equal", True)
                and (parity["features_bit_exact"] or not features_bit_exact))


def summary(parity: dict) -> str:
    """One line for the terminal: decisions, features, streaming."""
    st = parity["streaming"]
    return (f"{parity['decisions_equal']}/{parity['n']} decisions equal, features "
            f"{'bit-exact' if parity['features_bit_exact'] else 'DIFFER'}, max score diff "
            f"{parity['max_abs_score_diff']:.1e}; streaming {st['decisions_equal']}/"
            f"{st['n_windows']} equal")


def _version(compiler: str) -> str:
    try:
        out = subprocess.run([compiler, "-dumpversion"], capture_output=True, text=True)
    except OSError as exc:
        raise ToolchainError(f"cannot run {compiler}: {exc}") from None
    return out.stdout.strip()
