"""Cross-compile the library for a target and link it: a budget probe at the target's
real memory sizes, and the verification harness at the emulated machine's memory map."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kiloml.codegen.library import STRICT_CFLAGS, FirmwareLibrary
from kiloml.errors import KilomlError, ToolchainError
from kiloml.targets.profiles import TargetProfile
from kiloml.verify.mcu.link_map import kept_by_objects
from kiloml.verify.mcu.toolchain import ArmToolchain

MCU_DIR = Path(__file__).resolve().parent

# Memory of each emulated board: (flash origin, flash bytes, RAM origin, RAM bytes).
MACHINE_MEMORY = {
    "mps2-an385": (0x00000000, 4 << 20, 0x20000000, 4 << 20),  # ZBT SSRAM1, SSRAM2/3
    "mps2-an386": (0x00000000, 4 << 20, 0x20000000, 4 << 20),
    "mps2-an500": (0x00000000, 4 << 20, 0x20000000, 4 << 20),
    "microbit": (0x00000000, 256 << 10, 0x20000000, 16 << 10),  # nRF51822
}
HARNESS_STACK_BYTES = {"microbit": 4096}
# The most of a board's RAM the harness's buffer for kml_classify_recording's input takes
# (longer held-out recordings are checked on the host only, and counted).
RECORDING_BUFFER_RAM_FRACTION = 0.25
DEFAULT_HARNESS_STACK_BYTES = 32768
SECTION_FLAGS = ["-ffunction-sections", "-fdata-sections"]
LINK_LIBS = ["--specs=nano.specs", "-Wl,--start-group", "-lm", "-lc", "-lgcc", "-Wl,--end-group"]


@dataclass(frozen=True)
class ProbeSizes:
    """What the library adds to a minimal firmware for the target (gc-sections)."""

    flash_bytes: int
    ram_bytes: int
    library_objects_flash_bytes: int  # what the link kept of the library's own objects
    library_objects_ram_bytes: int


def cpu_flags(profile: TargetProfile) -> list[str]:
    return list(profile.cflags)


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
        first = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "")
        raise ToolchainError(f"{what} failed: {first.strip()}")
    return result


# Code kiloml does not own (peers in benchmarks) gets the same code-generation flags
# without the warnings-as-errors.
PLAIN_CFLAGS = ["-std=c99", "-ffp-contract=off"]


def compile_objects(toolchain: ArmToolchain, sources: list[Path], include_dirs: list[Path],
                    profile: TargetProfile, optimize: str, out_dir: Path,
                    extra: list[str] | None = None, *, strict: bool = True,
                    base: list[str] | None = None) -> list[Path]:
    """``base`` replaces kiloml's own flags (strict or plain), e.g. with none for a build
    under the user's flags (given in ``extra``, after ``optimize``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    objects = []
    for src in sources:
        obj = out_dir / (src.stem + ".o")
        flags = base if base is not None else STRICT_CFLAGS if strict else PLAIN_CFLAGS
        cmd = [toolchain.gcc, *cpu_flags(profile), *flags, optimize, *SECTION_FLAGS,
               *[f"-I{d}" for d in include_dirs], *(extra or []), "-c", str(src),
               "-o", str(obj)]
        _run(cmd, f"arm-none-eabi-gcc on {src.name}")
        objects.append(obj)
    return objects


def write_linker_script(path: Path, what: str, memory: tuple[int, int, int, int],
                        stack_bytes: int) -> Path:
    flash_origin, flash_bytes, ram_origin, ram_bytes = memory
    text = (MCU_DIR / "link.ld.in").read_text().format(
        what=what, flash_origin=flash_origin, flash_bytes=flash_bytes, ram_origin=ram_origin,
        ram_bytes=ram_bytes, stack_bytes=stack_bytes)
    path.write_text(text)
    return path


_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")


def link(toolchain: ArmToolchain, objects: list[Path], script: Path, elf: Path,
         profile: TargetProfile, memory: tuple[int, int, int, int], *,
         target_label: str) -> Path:
    cmd = [toolchain.gcc, *cpu_flags(profile), "-nostartfiles", "-T", str(script),
           "-Wl,--gc-sections", f"-Wl,-Map={elf.with_suffix('.map')}",
           *[str(o) for o in objects], *LINK_LIBS, "-o", str(elf)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        overflow = _OVERFLOW.findall(result.stderr)
        if overflow:
            region, by = overflow[0]
            size = memory[1] if region == "FLASH" else memory[3]
            kind = "flash" if region == "FLASH" else "RAM"
            raise KilomlError(f"the library does not fit {target_label}: a firmware with it "
                              f"needs {size + int(by)} bytes of {kind}, the target has {size}")
        lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
        raise ToolchainError(f"linking for {target_label} failed: "
                             f"{lines[-1] if lines else 'no output'}")
    return elf


def elf_sections(toolchain: ArmToolchain, elf: Path) -> dict[str, int]:
    out = subprocess.run([toolchain.size, "-A", "-d", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    sizes: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def flash_and_ram(sections: dict[str, int]) -> tuple[int, int]:
    flash = sections.get(".text", 0) + sections.get(".ARM.exidx", 0) + sections.get(".data", 0) \
        + sections.get(".kml_model_info", 0)
    ram = sections.get(".data", 0) + sections.get(".bss", 0)
    return flash, ram


def budget_probe(toolchain: ArmToolchain, library: FirmwareLibrary, library_objects: list[Path],
                 profile: TargetProfile, optimize: str, work: Path, *,
                 probe_source: Path | None = None) -> ProbeSizes:
    """Link a minimal firmware with and without the library at the target's real flash and
    RAM sizes (from the profile, linker regions at 0x0 / 0x20000000; the stack is budgeted
    separately from its measured depth). ``probe_source`` is the minimal firmware's main
    (default: one that calls the whole kiloml API; it must honour KML_NO_LIBRARY)."""
    memory = (0x00000000, profile.flash_bytes, 0x20000000, profile.ram_bytes)
    label = f"target '{profile.name}'"
    probe = probe_source or MCU_DIR / "budget_main.c"
    startup = compile_objects(toolchain, [MCU_DIR / "startup.c", MCU_DIR / "semihost.c"],
                              [MCU_DIR], profile, optimize, work / "startup")
    includes = library.harness_includes(work)
    with_lib = compile_objects(toolchain, [probe], includes, profile, optimize,
                               work / "with")
    without = compile_objects(toolchain, [probe], includes, profile, optimize,
                              work / "without", extra=["-DKML_NO_LIBRARY"])
    script = write_linker_script(work / "budget.ld", f"budget probe for {profile.name}",
                                 memory, 0)
    elf_with = link(toolchain, [*startup, *with_lib, *library_objects], script,
                    work / "probe.elf", profile, memory, target_label=label)
    elf_without = link(toolchain, [*startup, *without], script, work / "probe_empty.elf",
                       profile, memory, target_label=label)
    f1, r1 = flash_and_ram(elf_sections(toolchain, elf_with))
    f0, r0 = flash_and_ram(elf_sections(toolchain, elf_without))
    # the library's own share of the link (gc-sections drops what nothing calls); the rest
    # of f1 - f0 is what it pulls from libgcc / newlib and the probe's calls into it
    kept = kept_by_objects(elf_with.with_suffix(".map"), library_objects)
    return ProbeSizes(flash_bytes=f1 - f0, ram_bytes=r1 - r0,
                      library_objects_flash_bytes=kept.flash_bytes,
                      library_objects_ram_bytes=kept.ram_bytes)


def build_harness(toolchain: ArmToolchain, library: FirmwareLibrary, library_objects: list[Path],
                  profile: TargetProfile, machine: str, optimize: str, work: Path, *,
                  harness_source: Path | None = None, recording_floats: int = 0) -> Path:
    """Link the verification harness (default qemu_main.c) with the library for ``machine``;
    ``recording_floats``: the size of its buffer for kml_classify_recording's input."""
    memory = MACHINE_MEMORY[machine]
    stack = HARNESS_STACK_BYTES.get(machine, DEFAULT_HARNESS_STACK_BYTES)
    main = harness_source or MCU_DIR / "qemu_main.c"
    extra = [f"-DKML_HARNESS_RECORDING_FLOATS={recording_floats}"] if recording_floats else []
    harness = compile_objects(
        toolchain, [MCU_DIR / "startup.c", MCU_DIR / "semihost.c", MCU_DIR / "measure.c", main],
        [MCU_DIR, *library.harness_includes(work)], profile, optimize, work / "harness",
        extra=extra)
    script = write_linker_script(work / "harness.ld", f"verification harness on {machine}",
                                 memory, stack)
    return link(toolchain, [*harness, *library_objects], script, work / "harness.elf", profile,
                memory, target_label=f"the emulated board '{machine}'")


@dataclass(frozen=True)
class Symbol:
    address: int
    size: int
    name: str


def build_standalone_harness(harness: Path, sources: list[Path], include_dirs: list[Path],
                             work: Path, *, name: str, machine: str, profile: TargetProfile,
                             optimize: str = "-O2", extra: list[str] | None = None,
                             stack_bytes: int = 16384) -> Path:
    """A QEMU firmware around one semihosting harness (``harness``, its main) and the C it
    tests: start-up, semihosting, the instruction-count marks, ``sources``; the ELF."""
    from kiloml.verify.mcu.toolchain import find_toolchain

    tc = find_toolchain()
    objects = compile_objects(
        tc, [MCU_DIR / "startup.c", MCU_DIR / "semihost.c", MCU_DIR / "measure.c", harness,
             *sources], [MCU_DIR, *include_dirs], profile, optimize, work / "obj",
        extra=extra)
    memory = MACHINE_MEMORY[machine]
    script = write_linker_script(work / f"{name}.ld", f"{name} harness on {machine}", memory,
                                 stack_bytes)
    return link(tc, objects, script, work / f"{name}.elf", profile, memory,
                target_label=f"the emulated board '{machine}'")


def symbols(toolchain: ArmToolchain, elf: Path) -> list[Symbol]:
    out = subprocess.run([toolchain.nm, "-n", "-S", "--defined-only", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    table = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            table.append(Symbol(int(parts[0], 16) & ~1, int(parts[1], 16), parts[3]))
    return table


def function_at(table: list[Symbol], address: int) -> str:
    address &= ~1
    for sym in table:
        if sym.address <= address < sym.address + max(sym.size, 1):
            name = sym.name.split(".")[0]  # drop GCC's clone suffixes (.constprop.0 ...)
            return f"{name}+0x{address - sym.address:x}"
    return f"0x{address:08x}"
