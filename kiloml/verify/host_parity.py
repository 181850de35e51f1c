"""Host parity, the job: build the library with the host compiler, run every held-out
window (kml_classify), stream every held-out recording (kml_push_sample) and, in recording
mode, classify every held-out recording whole (kml_classify_recording), then compare each
with the Python reference (kiloml.verify.parity)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiloml.codegen.library import FirmwareLibrary
from kiloml.progress import track
from kiloml.verify.host import (
    WindowOutputs,
    build_host,
    run_recordings,
    run_stream,
    run_windows,
)
from kiloml.verify.parity import (
    add_decision_parity,
    add_recording_parity,
    recording_parity,
    stream_parity,
    window_parity,
)


def verify_host(pipeline, library: FirmwareLibrary, reference, work: Path) -> dict:
    """Every held-out window through kml_classify and every held-out recording through
    kml_push_sample, on the host, against the Python reference."""
    return executable_parity(pipeline, library, reference, build_host(library, work), work)


def executable_parity(pipeline, library: FirmwareLibrary, reference, exe: Path,
                      work: Path) -> dict:
    """The parity of one built host harness (kiloml's strict build, or the user's flags in
    `kiloml verify --cflags`) on every held-out window, stream and recording."""
    batch = 4096
    parts = []
    n = len(reference.windows)
    for s in track(range(0, n, batch), "host parity (windows)", total=(n + batch - 1) // batch):
        parts.append(run_windows(exe, reference.windows[s:s + batch], pipeline.n_classes,
                                 library.n_features, work))
    outputs = WindowOutputs(np.concatenate([p.labels for p in parts]),
                            np.concatenate([p.scores for p in parts]),
                            np.concatenate([p.features for p in parts]))
    result = window_parity(reference.labels, reference.scores, reference.features, outputs,
                           pipeline.feature_slices())
    events = run_stream(exe, reference.stream_recordings, pipeline.n_classes, work,
                        monitor=pipeline.monitor is not None)
    result["streaming"] = stream_parity(reference.stream_recording, reference.stream_last_sample,
                                        reference.stream_labels, reference.stream_scores, events)
    result["streaming"]["n_recordings"] = len(reference.stream_lengths)
    add_decision_parity(result["streaming"], reference, events)
    if reference.recording_lengths is not None:
        outputs_r = run_recordings(exe, reference.whole_recordings, pipeline.n_classes, work)
        add_recording_parity(result, recording_parity(reference, outputs_r, pipeline))
    return result
