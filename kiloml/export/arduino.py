"""The Arduino library (library specification 1.5): library.properties, src/ with the
library and an umbrella header, examples/stream/stream.ino streaming held-out recordings
over Serial. Plain C99 and C++-safe headers: any architecture."""

from __future__ import annotations

from pathlib import Path

from kiloml.export import examples
from kiloml.export.common import (
    HeldOut,
    PackageMeta,
    RunSource,
    library_files,
    umbrella_header,
)
from kiloml.export.readme import readme

# the specification's categories; a model library processes sensor data
CATEGORY = "Data Processing"
EXAMPLE = "stream"


def properties(run: RunSource, meta: PackageMeta, include: str) -> str:
    p = run.pipeline
    sentence = (f"kiloml model: {p.n_classes} classes ({', '.join(p.class_names)}) from "
                f"{', '.join(p.channels)} at {p.input_rate_hz:g} Hz.")
    paragraph = (f"The verified C99 library of kiloml project {p.name}: no malloc, static "
                 f"state, parity with its Python reference checked on the held-out data. "
                 f"Stream samples with {run.api.fn('push_sample')} and read decisions with "
                 f"{run.api.fn('classify_latest')}.")
    fields = {"name": meta.name, "version": meta.version, "author": meta.author,
              "maintainer": meta.author, "sentence": sentence, "paragraph": paragraph,
              "category": CATEGORY, "url": meta.url, "architectures": "*",
              "includes": include, "license": "Apache-2.0"}
    return "".join(f"{k}={v}\n" for k, v in fields.items())


def sketch(run: RunSource, include: str) -> str:
    a = run.api
    return f"""// SPDX-License-Identifier: Apache-2.0
// {EXAMPLE}.ino: the {run.pipeline.name} model on held-out recordings (heldout_data.c),
// pushed sample by sample; one line per decision on Serial, then the parity count:
//   decision <recording> <sample> <label> <class name>
//   parity <equal>/<windows> decisions equal to Python
#include <{include}>

#include "heldout_data.h"

void setup() {{
  Serial.begin(115200);
  {a.result_t} result;
  const float *sample = heldout_samples;
  long windows = 0, equal = 0;
  for (int32_t r = 0; r < HELDOUT_RECORDINGS; ++r) {{
    {a.fn("reset")}();  // a new recording
    for (int32_t i = 0; i < heldout_lengths[r]; ++i, sample += {a.const("CHANNELS")}) {{
      if (!{a.fn("push_sample")}(sample)) {{
        continue;
      }}
      int32_t label = {a.fn("classify_latest")}(&result);
      Serial.print("decision ");
      Serial.print((long)r);
      Serial.print(" ");
      Serial.print((long)i);
      Serial.print(" ");
      Serial.print((long)label);
      Serial.print(" ");
      Serial.println(label >= 0 ? {a.fn("class_names")}[label] : "-");
      if (windows < HELDOUT_WINDOWS && label == heldout_expected[windows]) {{
        ++equal;
      }}
      ++windows;
    }}
  }}
  Serial.print("parity ");
  Serial.print(equal);
  Serial.print("/");
  Serial.print((long)HELDOUT_WINDOWS);
  Serial.println(" decisions equal to Python");
}}

void loop() {{
}}
"""


def _body(meta: PackageMeta, include: str) -> str:
    return f"""## Install

Copy this folder into your sketchbook's `libraries/` (or zip it and use *Sketch > Include
Library > Add .ZIP Library*), then `#include <{include}>`. The library is plain C99 with
C++-safe headers (`architectures=*`).

`examples/{EXAMPLE}/{EXAMPLE}.ino` streams the held-out recordings in its
`heldout_data.c` through the library and prints one line per decision on `Serial`
(115200 baud), then how many equal Python's.

Checked here without an Arduino core (`arduino-cli` cannot fetch one offline): the
library and the sketch (as C++, with a stub `Arduino.h` whose `Serial` writes to the
UART) are compiled with arm-none-eabi-gcc/g++ under an Arduino Cortex-M4F core's flags
(`-std=gnu11` / `-std=gnu++17 -fno-exceptions -fno-rtti`, `-Os`, `-mcpu=cortex-m4
-mfpu=fpv4-sp-d16 -mfloat-abi=hard`, `-ffunction-sections -fdata-sections`) and run on
QEMU's mps2-an386, where the decisions equal Python's.
"""


def files(run: RunSource, meta: PackageMeta, data: HeldOut) -> dict[str, str | Path]:
    umbrella = f"{meta.name}.h"
    out: dict[str, str | Path] = {}
    out.update(library_files(run, "src"))
    include = run.api.header
    if f"src/{umbrella}" not in out:
        out[f"src/{umbrella}"] = umbrella_header(run, meta.name)
        include = umbrella
    ex = f"examples/{EXAMPLE}"
    out.update({
        "library.properties": properties(run, meta, include),
        f"{ex}/{EXAMPLE}.ino": sketch(run, include),
        f"{ex}/heldout_data.h": examples.heldout_header(data, run.pipeline.n_channels),
        f"{ex}/heldout_data.c": examples.heldout_source(data),
        "README.md": readme(run, meta.name, "Arduino library", _body(meta, include), data),
    })
    return out
