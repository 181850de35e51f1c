"""The data step every job shares: recordings -> preprocessing -> windows -> split, the
pipeline's geometry and (unfitted) feature stages, and the window stages' outputs.

`kiloml run`, `kiloml search`, `kiloml stress`, `kiloml check-data` and the Python API
all start here, then hand the windows to the project's model family (kiloml.families).
"""

from __future__ import annotations

import numpy as np

from kiloml.data.augment import augment
from kiloml.data.recording import Recording
from kiloml.data.sources import load_data
from kiloml.data.splits import Split, make_split
from kiloml.data.windows import WindowSet, data_notes, make_project_windows
from kiloml.errors import KilomlError
from kiloml.feasibility import check_data_settings
from kiloml.pipeline import Pipeline, make_feature_stages, make_preprocess_stages
from kiloml.progress import track
from kiloml.project import LoadedProject, line_of_setting


def prepare_data(project: LoadedProject, *, announce: bool = True
                 ) -> tuple[list[Recording], list[Recording], Pipeline, WindowSet, Split]:
    """Recordings (raw and preprocessed, augmented copies included), the pipeline with its
    window geometry and feature stages (not fitted, no model yet), windows and split."""
    cfg = project.config
    from kiloml.codegen.updatable import check_settings as check_updatable_settings
    check_updatable_settings(cfg)  # [library] updatable: before the data is read
    loaded = load_data(project)
    raw_recordings = loaded.recordings
    pipeline = Pipeline(
        name=cfg.name, channels=list(raw_recordings[0].channels),
        sample_rate_hz=raw_recordings[0].sample_rate_hz, window_samples=0, stride_samples=0,
        class_names=[], features=[], model=None,  # type: ignore[arg-type]  # set by the caller
        preprocess=make_preprocess_stages(project, raw_recordings[0].sample_rate_hz),
        input_sample_rate_hz=raw_recordings[0].sample_rate_hz)
    recordings = pipeline.preprocess_recordings(raw_recordings)
    try:
        windows = windows_of(cfg, recordings)
        split = make_split(windows, cfg.evaluation, test_groups=loaded.test_groups)
        if cfg.augment.copies:
            # Copies of the training groups' recordings only; then cut windows again.
            train_recs = [r for r in raw_recordings if r.group not in set(split.test_groups)]
            copies = pipeline.preprocess_recordings(augment(train_recs, cfg.augment))
            recordings = recordings + copies
            windows = windows_of(cfg, recordings)
            split = make_split(windows, cfg.evaluation, test_groups=split.test_groups)
    except KilomlError as exc:
        if exc.file is None:
            exc.file, exc.line = str(project.path), line_of_setting(project, exc.where)
        raise
    n_aug = int(windows.augmented.sum()) if windows.augmented is not None else 0
    if announce:
        print(f"{cfg.name}: {len(raw_recordings)} recordings, {len(windows) - n_aug} windows "
              f"of {windows.window_samples} samples x {len(windows.channels)} channels"
              f"{f' (+{n_aug} augmented)' if n_aug else ''}, {len(windows.class_names)} "
              f"classes; test groups: {', '.join(split.test_groups)}")
        for note in [*data_notes(windows), *([split.cv_note] if split.cv_note else [])]:
            print(f"note           {note}")
    pipeline.sample_rate_hz = windows.sample_rate_hz
    pipeline.window_samples = windows.window_samples
    pipeline.stride_samples = windows.stride_samples
    pipeline.recording = cfg.window.recording_rule  # mode = "recording": kml_classify_recording
    pipeline.class_names = windows.class_names
    pipeline.library_prefix = cfg.library.prefix
    pipeline.library_updatable = cfg.library.updatable
    if cfg.library.update_key is not None:
        from kiloml.blob.keys import public_key_bytes
        pipeline.library_update_key = public_key_bytes(project.resolve(cfg.library.update_key))
    pipeline.features = make_feature_stages(project, windows.sample_rate_hz,
                                            windows.window_samples, windows.channels)
    check_data_settings(project, recordings, windows, split, pipeline)
    return raw_recordings, recordings, pipeline, windows, split


def windows_of(cfg, recordings: list[Recording]) -> WindowSet:
    return make_project_windows(cfg, recordings)  # cut into windows, or one per recording


def window_features_in_batches(pipeline: Pipeline, windows: WindowSet,
                                batch: int = 2048) -> list[np.ndarray]:
    chunks: list[list[np.ndarray]] = []
    starts = range(0, len(windows), batch)
    for s in track(starts, "computing features", total=len(starts)):
        chunks.append(pipeline.window_features(windows.x[s:s + batch]))
    return [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]


def check_finite(features: np.ndarray, names: list[str], windows: WindowSet,
                  recordings: list[Recording]) -> None:
    bad = np.argwhere(~np.isfinite(features))
    if len(bad):
        w, f = bad[0]
        rec = recordings[int(windows.recording[w])]
        raise KilomlError(f"feature '{names[f]}' overflows float32 in the window starting at "
                          f"sample {int(windows.start[w])}; scale the samples down",
                          file=rec.source)


