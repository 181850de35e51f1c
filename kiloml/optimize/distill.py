"""Knowledge distillation: a larger teacher's soft targets train a small student.

The student's training loss (Hinton et al. 2015) is

    alpha * T^2 * KL(teacher_T || softmax(student_logits / T)) + (1 - alpha) * CE(student, y)

where ``teacher_T`` is the teacher's distribution softened by the temperature T:
``softmax(teacher_logits / T)`` for a network teacher, ``softmax(log(p + 1e-4) / T)``
for a forest's class fractions ``p``. Early stopping still watches the plain
cross-entropy on the validation groups.

Teachers:

- ``random_forest`` / ``extra_trees`` read the 10 per-channel statistics of the
  window (``kiloml.dsp.statistics``) when the student reads raw windows, else the
  student's input flattened. A forest scores its own training windows nearly
  one-hot, which teaches nothing, so its soft targets for the student's training
  windows are out-of-fold: grouped K-fold over the training groups (at most 5 folds),
  each window scored by a forest that never saw its group. The forest fitted on all
  training windows is the one whose held-out accuracy is reported.
- ``mlp`` / ``cnn1d`` / ``dscnn``: a (bigger) template trained on the student's
  training windows like the student; its logits on those windows are the targets.

The teacher exists at training time only; the firmware holds the student.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from kiloml.optional import needs
from kiloml.project import NeuralModelConfig, TeacherConfig

with needs("torch", "distilling a network"):
    import torch
    import torch.nn.functional as F

TREE_TEACHERS = ("random_forest", "extra_trees")


def teacher_inputs(x: np.ndarray) -> np.ndarray:
    """What a forest teacher reads: statistics of windows [N, T, C], else x flattened."""
    x = np.asarray(x, np.float32)
    if x.ndim == 3 and x.shape[1] > 1:
        from kiloml.dsp.statistics import window_statistics

        return window_statistics(x).reshape(len(x), -1)
    return x.reshape(len(x), -1)


@dataclass
class Teacher:
    kind: str
    soft_logits: np.ndarray  # [N_train, K]: log-probabilities or logits on the student's windows
    predict_proba: Callable[[np.ndarray], np.ndarray]  # raw student inputs -> [N, K]
    description: dict = field(default_factory=dict)


def _forest(cfg: TeacherConfig, seed: int):
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    cls = RandomForestClassifier if cfg.kind == "random_forest" else ExtraTreesClassifier
    return cls(n_estimators=cfg.n_estimators, max_depth=cfg.max_depth,
               min_samples_leaf=cfg.min_samples_leaf, random_state=seed, n_jobs=1)


def _full_proba(model, f: np.ndarray, n_classes: int) -> np.ndarray:
    """predict_proba with a column for every class (a fold may miss some)."""
    p = np.zeros((len(f), n_classes))
    p[:, model.classes_] = model.predict_proba(f)
    return p


def fit_teacher(cfg: TeacherConfig, student: NeuralModelConfig, student_params: dict,
                x: np.ndarray, y: np.ndarray, groups: np.ndarray,
                x_val: np.ndarray | None, y_val: np.ndarray | None, n_classes: int,
                seed: int) -> Teacher:
    """Fit the teacher on the student's training windows; soft targets for them."""
    if cfg.kind in TREE_TEACHERS:
        from sklearn.model_selection import GroupKFold

        feats = teacher_inputs(x)
        names = np.unique(groups)
        oof = np.zeros((len(x), n_classes))
        n_folds = min(5, len(names))
        if n_folds >= 2:
            for fit_idx, out_idx in GroupKFold(n_splits=n_folds).split(feats, y, groups):
                fold = _forest(cfg, seed).fit(feats[fit_idx], y[fit_idx])
                oof[out_idx] = _full_proba(fold, feats[out_idx], n_classes)
            how = f"out-of-fold (grouped {n_folds}-fold over the training groups)"
        full = _forest(cfg, seed).fit(feats, y)
        if n_folds < 2:
            oof = _full_proba(full, feats, n_classes)
            how = "in-sample (fewer than two training groups)"
        oof_acc = float(np.mean(oof.argmax(1) == y))
        return Teacher(
            cfg.kind, np.log(oof + 1e-4).astype(np.float32),
            lambda xs: _full_proba(full, teacher_inputs(xs), n_classes),
            {"kind": cfg.kind, "n_estimators": cfg.n_estimators, "max_depth": cfg.max_depth,
             "reads": "window statistics" if np.ndim(x) == 3 and np.shape(x)[1] > 1
             else "the student's input", "soft_targets": how,
             "soft_target_accuracy": round(oof_acc, 4)})
    from kiloml.nn.template_params import template_params
    from kiloml.nn.train import predict_proba, train_classifier

    tcfg = student.model_copy(update={"kind": cfg.kind})
    params = {**template_params(tcfg), "standardize": "external"}
    for key in ("hidden", "filters", "kernel_size", "stride"):
        value = getattr(cfg, key)
        if value is not None and key in params:
            params[key] = list(value) if isinstance(value, list) else value
    if cfg.kind == "dscnn":
        params["kernel_size"] = min(int(params["kernel_size"]), 3)  # type: ignore[call-overload]
    module, history = train_classifier(
        cfg.kind, params, x, y, x_val, y_val, n_classes, seed=seed,
        max_epochs=cfg.epochs or student.epochs, patience=student.patience,
        batch_size=student.batch_size, lr=student.learning_rate,
        weight_decay=student.weight_decay, class_weight=student.class_weight, threads=1)
    with torch.no_grad():
        logits = torch.cat([module(torch.as_tensor(np.asarray(x[i:i + 512], np.float32)))
                            for i in range(0, len(x), 512)]).numpy()
    sizes = {k: params[k] for k in ("hidden", "filters", "kernel_size") if k in params}
    n_params = sum(p.numel() for p in module.parameters())
    return Teacher(cfg.kind, logits.astype(np.float32),
                   lambda xs: predict_proba(module, xs),
                   {"kind": cfg.kind, **sizes, "parameters": int(n_params),
                    "epochs_run": history.epochs_run, "soft_targets": "in-sample logits",
                    "soft_target_accuracy": round(float(np.mean(logits.argmax(1) == y)), 4)})


def distillation_loss(teacher_logits: np.ndarray, temperature: float, alpha: float,
                      class_weight: np.ndarray | None = None
                      ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss ``(student logits, labels, batch indices) -> loss`` (see above)."""
    soft = torch.softmax(torch.as_tensor(teacher_logits, dtype=torch.float32) / temperature,
                         dim=1)
    weight = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)
    t = float(temperature)

    def loss(logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        kd = F.kl_div(F.log_softmax(logits / t, dim=1), soft[idx], reduction="batchmean")
        total = alpha * t * t * kd
        if alpha < 1.0:
            total = total + (1.0 - alpha) * F.cross_entropy(logits, y, weight=weight)
        return total

    return loss
