"""Write BasicMotions (UEA archive, as aeon ships it: 80 recordings of 10 s at 10 Hz, a
3-axis accelerometer and gyroscope, 4 activities) as CSV files laid out as its published
split: <out>/train/<activity>_<n>.csv (40) and <out>/test/<activity>_<n>.csv (40).

    python examples/basic-motions/export_csv.py [build/basic-motions-csv]
    kiloml run examples/basic-motions/published-split.toml
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from aeon.datasets import load_basic_motions

CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]


def main(out: Path) -> None:
    for split in ("train", "test"):
        x, y = load_basic_motions(split=split)
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        for i, (samples, label) in enumerate(zip(x, y, strict=True)):
            rows = np.asarray(samples, dtype=np.float32).T  # [T, C], exact float32 text
            lines = [",".join(np.format_float_positional(v) for v in row) for row in rows]
            text = "\n".join([",".join(CHANNELS), *lines]) + "\n"
            (folder / f"{str(label).lower()}_{i:02d}.csv").write_text(text)
    print(f"{out}: {len(list(out.rglob('*.csv')))} files")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/basic-motions-csv"))
