"""The monitor's fitted parameters (kiloml.monitor.MonitorParams) in pipeline.json: the
float32 arrays in the array book, the scalars as JSON numbers, every field checked."""

from __future__ import annotations

from dataclasses import asdict, fields

from kiloml.monitor.config import INPUTS, OOD_SCORES, MonitorParams, MonitorThresholds
from kiloml.persist.archive import ArrayBook, describe
from kiloml.persist.codec import decode, encode
from kiloml.persist.fields import Fields, check_float, encode_float

ARRAYS = ("mean", "inv_sd", "lo", "hi")
SCALARS = ("alpha", "z_clip", "init_top", "init_margin", "init_entropy")
MAX_FEATURES = 1 << 20


def save_monitor(m: MonitorParams, snapshot_every: int, book: ArrayBook) -> dict:
    t = asdict(m.thresholds)
    return {"index": book.put("monitor.index", m.index),
            **{a: book.put(f"monitor.{a}", getattr(m, a)) for a in ARRAYS},
            "floor": book.put("monitor.floor", m.floor),
            "n_classes": int(m.n_classes), "stuck_windows": int(m.stuck_windows),
            **{s: encode_float(getattr(m, s)) for s in SCALARS},
            "ph_cap": int(m.ph_cap), "ph_min_windows": int(m.ph_min_windows),
            "snapshot_every": int(snapshot_every),
            "thresholds": {k: (v if k == "source" else
                               [encode_float(x) for x in v] if isinstance(v, (tuple, list))
                               else encode_float(v)) for k, v in t.items()},
            "fit": encode(m.fit, book, "monitor.fit"),
            # a network's monitor (the tree / linear form is written as it always was)
            **({} if m.inputs == "features" and not m.energy else {
                "inputs": m.inputs, "ood": m.ood,
                "energy_offset": encode_float(m.energy_offset),
                "init_ood": encode_float(m.init_ood), "names": list(m.names)})}


def load_monitor(f: Fields, n_classes: int, n_channels: int, n_features: int
                 ) -> tuple[MonitorParams, int]:
    extra: dict = {}
    if f.has("inputs"):
        extra = {"inputs": f.str("inputs", INPUTS), "ood": f.str("ood", OOD_SCORES),
                 "energy_offset": f.float("energy_offset"), "init_ood": f.float("init_ood"),
                 "names": f.strings("names", max_items=MAX_FEATURES)}
    # what index points into: the feature vector, or the window's channel means and variances
    n_inputs = 2 * n_channels if extra.get("inputs") == "channels" else n_features
    index = f.array("index", "int32", (None,))
    k = len(index)
    if k < 1 or (index < 0).any() or (index >= n_inputs).any():
        raise f.error("index", f"monitored inputs must be 1 or more of 0 .. {n_inputs - 1}")
    arrays = {a: f.array(a, "float32", (k,)).copy() for a in ARRAYS}
    floor = f.array("floor", "float32", (n_channels,)).copy()
    t = f.object("thresholds")
    names = [x.name for x in fields(MonitorThresholds)]
    values: dict = {}
    for name in names:
        if name == "source":
            values[name] = t.str(name, max_length=500)
        elif name in ("ph_delta", "ph_lambda"):
            raw = t.raw(name)
            if not isinstance(raw, list) or len(raw) != 2:
                raise t.error(name, f"expected 2 numbers, got {describe(raw)}")
            values[name] = tuple(check_float(raw[i], t.path(name) + f"[{i}]", t.doc)
                                 for i in range(2))
        else:
            values[name] = t.float(name)
    t.done()
    fit = decode(f.raw("fit"), f.doc, f.path("fit"))
    if not isinstance(fit, dict):
        raise f.error("fit", f"expected an object, got {describe(fit)}")
    try:
        m = MonitorParams(
            index=index.copy(), **arrays, floor=floor,
            n_classes=f.int("n_classes", n_classes, n_classes),
            stuck_windows=f.int("stuck_windows", 1, 65535),
            alpha=f.float("alpha", 0.0, 1.0), z_clip=f.float("z_clip", above=0.0),
            init_top=f.float("init_top"), init_margin=f.float("init_margin"),
            init_entropy=f.float("init_entropy"),
            thresholds=MonitorThresholds(**values),
            ph_cap=f.int("ph_cap", 1, 1 << 30), ph_min_windows=f.int("ph_min_windows", 1, 1 << 30),
            fit=fit, **extra)
    except ValueError as exc:
        raise f.error("n_classes", str(exc)) from None
    every = f.int("snapshot_every", 1, 1_000_000)
    f.done()
    return m, every
