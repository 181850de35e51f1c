"""Run many generated networks on one platform and kernel path, fast, for parity checks.

The runtime kernels (kml_nn.c, kml_nn_dsp.c) are compiled once per platform and path;
each network then costs one compile of its generated kiloml_nn.c and the harness, a
link, and one run (natively on the host, or under QEMU for an emulated target). Used by
the parity tests and by `bench/nn_parity.py` (every conformance case, host and
Cortex-M4, both kernel paths).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from kiloml.codegen.library import RUNTIME_DIR
from kiloml.codegen.nn_library import write_nn_library
from kiloml.nn.compile import HOST, NN_DIR, STRICT_CFLAGS, input_payload, parse_outputs
from kiloml.nn.graph import Graph
from kiloml.targets.profiles import load_profile

RUNTIME_SOURCES = ("kml_nn.c", "kml_nn_dsp.c")


class ParityRunner:
    """Outputs of the generated C for graphs on ``target`` ("host" or an emulated profile),
    with the DSP fast paths (where the core has them) or with ``portable`` kernels."""

    def __init__(self, work: Path, target: str, *, portable: bool = False,
                 optimize: str = "-O2") -> None:
        self.work = work
        self.target = target
        self.portable = portable
        self.optimize = optimize
        self.extra = ["-DKML_NN_DSP=0"] if portable else []
        self.count = 0
        work.mkdir(parents=True, exist_ok=True)
        runtime = [RUNTIME_DIR / n for n in RUNTIME_SOURCES]
        if target == HOST:
            self.profile = None
            self.runtime_objects = []
            for src in runtime:
                obj = work / f"{src.stem}.o"
                self._host_cc([str(src), "-c", "-o", str(obj)])
                self.runtime_objects.append(obj)
            return
        from kiloml.verify.mcu import build, qemu
        from kiloml.verify.mcu.toolchain import find_toolchain

        self.profile = load_profile(target)
        if self.profile.qemu_machine is None:
            raise ValueError(f"target {target} has no emulator")
        self.toolchain = find_toolchain()
        self.runtime_objects = build.compile_objects(
            self.toolchain, runtime, [RUNTIME_DIR], self.profile, optimize, work / "runtime",
            extra=self.extra)
        self.plugin = qemu.build_plugin(self.toolchain, work / "plugin")

    def _host_cc(self, args: list[str]) -> None:
        cmd = ["gcc", *STRICT_CFLAGS, self.optimize, "-DKML_HOST", *self.extra,
               f"-I{RUNTIME_DIR}", *args]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"host build failed: {result.stderr[:2000]}")

    def run(self, graph: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Every output [N, ...] of the generated C on inputs (one [N, ...] per input)."""
        self.count += 1
        case = self.work / f"case{self.count}"
        library, _ = write_nn_library(graph, case / "lib")
        n = len(inputs[0])
        if self.profile is None:
            exe = case / "nn_host"
            self._host_cc([f"-I{library.directory}", str(library.directory / "kiloml_nn.c"),
                           str(NN_DIR / "nn_main.c"), *map(str, self.runtime_objects), "-lm",
                           "-o", str(exe)])
            (case / "kml_in.bin").write_bytes(input_payload(inputs))
            result = subprocess.run([str(exe.absolute())], cwd=case, capture_output=True,
                                    timeout=600)
            if result.returncode != 0:
                raise RuntimeError(f"host harness failed with status {result.returncode}")
            return parse_outputs((case / "kml_out.bin").read_bytes(), n, graph)[0]
        from kiloml.verify.mcu import build, qemu

        objects = build.compile_objects(self.toolchain, [library.directory / "kiloml_nn.c"],
                                        [library.directory], self.profile, self.optimize,
                                        case / "obj", extra=self.extra)
        elf = build.build_harness(self.toolchain, library, [*objects, *self.runtime_objects],
                                  self.profile, self.profile.qemu_machine, self.optimize, case,
                                  harness_source=NN_DIR / "nn_main.c")
        run = qemu.run_harness(self.toolchain, elf, self.profile.qemu_machine,
                               input_payload(inputs), self.plugin, case / "run",
                               timeout_s=120 + 0.5 * n)
        return parse_outputs(run.output, n, graph)[0]
