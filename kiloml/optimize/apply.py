"""The [optimize] steps around ``NeuralModel.fit``, and their record.

Order: the teacher is fitted first and its soft targets train the student
(distillation); the trained student is pruned (structured or magnitude) and
fine-tuned; then quantization-aware training runs when asked ("on") or when
post-training quantization loses more than ``qat_threshold_points`` on the
validation groups ("auto"). Every step's decision is taken on the validation
groups (the training windows when there are none), never on the test groups; its
held-out accuracies are computed afterwards, for the record, by ``report``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from kiloml.nn.analysis import op_macs
from kiloml.nn.graph import Graph
from kiloml.nn.quantize import quantize_input
from kiloml.nn.reference import Interpreter
from kiloml.nn.train import TrainLoss, class_weights, fit_module
from kiloml.optional import needs
from kiloml.project import OptimizeConfig

with needs("torch", "optimizing a network"):
    import torch

_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def graph_stats(float_graph: Graph, int8_graph: Graph) -> dict:
    """Parameters (weight and bias elements), MACs, int8 weight bytes and zero weights."""
    weights = [int8_graph.tensors[op.inputs[1]] for op in int8_graph.ops
               if op.kind in _WEIGHTED]
    params = sum(float_graph.tensors[i].size for op in float_graph.ops if op.kind in _WEIGHTED
                 for i in op.inputs[1:] if i >= 0)
    n_w = sum(t.size for t in weights)
    zeros = sum(int(np.count_nonzero(t.data == 0)) for t in weights)
    return {"parameters": int(params),
            "macs": int(sum(op_macs(int8_graph, op) for op in int8_graph.ops)),
            "weight_bytes": int(int8_graph.weight_bytes()),
            "int8_zero_weights_fraction": round(zeros / max(1, n_w), 4)}


def graph_labels(graph: Graph, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """Arg-max of a float or int8 graph on standardized inputs (first maximum wins)."""
    t = graph.input_tensors[0]
    x = np.asarray(x, np.float32).reshape(len(x), *t.shape[1:])
    if t.dtype == "int8":
        x = quantize_input(x, t)
    interp = Interpreter(graph)
    out = [interp.run([x[s:s + batch]])[0].reshape(len(x[s:s + batch]), -1)
           for s in range(0, len(x), batch)]
    return np.argmax(np.concatenate(out), axis=1)


def should_run_qat(mode: str, float_accuracy: float, int8_accuracy: float,
                   threshold_points: float) -> bool:
    """"on": always; "auto": when int8 loses more than the threshold (points) to float."""
    if mode == "on":
        return True
    if mode == "auto":
        return 100.0 * (float_accuracy - int8_accuracy) > threshold_points
    return False


@dataclass
class Checkpoint:
    name: str
    float_graph: Graph
    int8_graph: Graph
    val_float: float
    val_int8: float
    stats: dict


class Optimizer:
    """Runs the [optimize] steps for one ``NeuralModel.fit`` and keeps what it did."""

    def __init__(self, model, cfg: OptimizeConfig, x: np.ndarray, y: np.ndarray,
                 groups: np.ndarray, fit_idx: np.ndarray, val_idx: np.ndarray, params: dict,
                 progress: bool) -> None:
        self.model, self.cfg = model, cfg
        self.x, self.y, self.groups = x, y, groups
        self.fit_idx, self.val_idx = fit_idx, val_idx
        self.params = dict(params)
        self.progress = progress
        self.loss: TrainLoss | None = None
        self.teacher = None
        self.checkpoints: list[Checkpoint] = []
        self.steps: list[dict] = []
        # decisions are taken on the validation groups, else on the training windows
        self.decide_idx = val_idx if len(val_idx) else fit_idx
        self.decided_on = "validation groups" if len(val_idx) else "training windows"

    # ---- distillation (before the student trains) --------------------------------------

    def training_loss(self) -> TrainLoss | None:
        cfg, c = self.cfg, self.model.config
        if cfg.distill_from is None:
            return None
        from kiloml.optimize.distill import distillation_loss, fit_teacher

        started = time.perf_counter()
        fit, val = self.fit_idx, self.val_idx
        self.teacher = fit_teacher(
            cfg.distill_from, c, self.params, self.x[fit], self.y[fit], self.groups[fit],
            self.x[val] if len(val) else None, self.y[val] if len(val) else None,
            self.model.n_classes, c.seed)
        weight = (class_weights(self.y[fit], self.model.n_classes)
                  if c.class_weight == "balanced" else None)
        self.loss = distillation_loss(self.teacher.soft_logits, cfg.temperature,
                                      cfg.distill_alpha, weight)
        self.steps.append({"technique": "distillation",
                           "parameters": {"teacher": cfg.distill_from.model_dump(
                               exclude_unset=True), "temperature": cfg.temperature,
                               "alpha": cfg.distill_alpha},
                           "teacher": self.teacher.description,
                           "teacher_seconds": round(time.perf_counter() - started, 1)})
        return self.loss

    # ---- after the student trained ----------------------------------------------------

    def _checkpoint(self, name: str) -> Checkpoint:
        m = self.model
        xs = m.standardize(self.x[self.decide_idx])
        yd = self.y[self.decide_idx]
        cp = Checkpoint(name, m.float_graph, m.graph,
                        float(np.mean(graph_labels(m.float_graph, xs) == yd)),
                        float(np.mean(graph_labels(m.graph, xs) == yd)),
                        graph_stats(m.float_graph, m.graph))
        self.checkpoints.append(cp)
        return cp

    def _fine_tune(self, module, description: str, *, lr: float, weight_decay: float,
                   x_fit: np.ndarray | None = None, x_val: np.ndarray | None = None,
                   after_step=None, before_epoch=None, first_selectable_epoch: int = 1):
        from kiloml.progress import epoch_progress

        c, cfg = self.model.config, self.cfg
        fit, val = self.fit_idx, self.val_idx
        x_fit = self.x[fit] if x_fit is None else x_fit
        if x_val is None and len(val):
            x_val = self.x[val]
        callback, close = (epoch_progress(cfg.fine_tune_epochs, description)
                           if self.progress else (None, lambda: None))
        try:
            module, history = fit_module(
                module, x_fit, self.y[fit], x_val, self.y[val] if len(val) else None,
                self.model.n_classes, seed=c.seed, max_epochs=cfg.fine_tune_epochs,
                patience=c.patience, batch_size=c.batch_size, lr=lr,
                weight_decay=weight_decay, class_weight=c.class_weight, threads=1,
                progress=callback, train_loss=self.loss, after_step=after_step,
                before_epoch=before_epoch, first_selectable_epoch=first_selectable_epoch)
        finally:
            close()
        return module, {"epochs_run": history.epochs_run, "best_epoch": history.best_epoch,
                        "seconds": round(history.seconds, 1)}

    def _export(self, module) -> None:
        from kiloml.nn.torch_export import to_graph

        m = self.model
        m.float_graph = to_graph(module, m.sample_shape)
        m.float_graph.name = m.config.kind
        m._quantize(self.x)

    def run(self, module) -> None:
        cfg, c = self.cfg, self.model.config
        first = self._checkpoint("distilled" if self.teacher is not None else "trained")
        if self.steps:  # distillation: the student as trained from the teacher
            self.steps[-1]["checkpoint"] = first.name
        lr = cfg.fine_tune_learning_rate or c.learning_rate
        if cfg.prune == "structured":
            from kiloml.optimize.prune import prune_structured

            module, params, info = prune_structured(module, self.params, self.model.n_classes,
                                                    cfg.sparsity)
            module, tuning = self._fine_tune(module, "fine-tuning (pruned)", lr=lr,
                                             weight_decay=c.weight_decay)
            self.params = params
            self.model.params = {k: v for k, v in params.items() if k != "standardize"}
            self._export(module)
            self._checkpoint("pruned")
            self.steps.append({"technique": "structured_pruning",
                               "parameters": {"sparsity": cfg.sparsity,
                                              "fine_tune_epochs": cfg.fine_tune_epochs,
                                              "learning_rate": lr},
                               **info, "fine_tuning": tuning,
                               "before_checkpoint": first.name, "checkpoint": "pruned"})
        elif cfg.prune == "magnitude":
            from kiloml.optimize.prune import MagnitudePruner, prunable_weights

            pruner = MagnitudePruner(prunable_weights(module), cfg.sparsity, cfg.prune_schedule,
                                     cfg.fine_tune_epochs)
            module, tuning = self._fine_tune(
                module, "fine-tuning (pruning)", lr=lr, weight_decay=c.weight_decay,
                after_step=pruner.apply, before_epoch=pruner.schedule,
                first_selectable_epoch=pruner.ramp_epochs)
            pruner.set_sparsity(cfg.sparsity)  # in case fine-tuning stopped before the ramp
            self._export(module)
            self._checkpoint("pruned")
            self.steps.append({
                "technique": "magnitude_pruning",
                "parameters": {"sparsity": cfg.sparsity, "schedule": cfg.prune_schedule,
                               "fine_tune_epochs": cfg.fine_tune_epochs, "learning_rate": lr},
                "float_weight_sparsity": round(pruner.achieved(), 4),
                "ramp_epochs": pruner.ramp_epochs, "fine_tuning": tuning,
                "note": "kiloml's int8 kernels are dense: zero weights are stored and "
                        "multiplied like the others, so flash, RAM and instructions do not "
                        "change; the zeros only make the weights more compressible",
                "before_checkpoint": first.name, "checkpoint": "pruned"})
        if cfg.qat != "off":
            self._qat(module)

    def _qat(self, module) -> None:
        from kiloml.optimize.qat import GraphModule

        cfg, c, m = self.cfg, self.model.config, self.model
        ptq = self.checkpoints[-1]
        lost = round(100.0 * (ptq.val_float - ptq.val_int8), 2)
        step: dict = {"technique": "qat", "parameters": {
            "mode": cfg.qat, "threshold_points": cfg.qat_threshold_points,
            "fine_tune_epochs": cfg.fine_tune_epochs},
            "decided_on": self.decided_on,
            "ptq_float_accuracy": round(ptq.val_float, 4),
            "ptq_int8_accuracy": round(ptq.val_int8, 4), "ptq_lost_points": lost,
            "before_checkpoint": ptq.name}
        triggered = should_run_qat(cfg.qat, ptq.val_float, ptq.val_int8,
                                   cfg.qat_threshold_points)
        step["triggered"] = triggered
        if not triggered:
            step["reason"] = (f"post-training quantization lost {lost} points on the "
                              f"{self.decided_on} (threshold {cfg.qat_threshold_points})")
            step["kept"] = "post-training quantization"
            self.steps.append(step)
            return
        assert m.float_graph is not None
        net = GraphModule(m.float_graph)
        if cfg.prune == "magnitude":
            net.keep_zeros()
        calib = torch.as_tensor(m.calibration_inputs(self.x))
        lr = cfg.fine_tune_learning_rate or c.learning_rate * 0.1
        x_fit = m.standardize(self.x[self.fit_idx])
        x_val = m.standardize(self.x[self.val_idx]) if len(self.val_idx) else None
        net, tuning = self._fine_tune(
            net, "quantization-aware training", lr=lr, weight_decay=0.0, x_fit=x_fit,
            x_val=x_val, after_step=net.apply_masks if net.masks else None,
            before_epoch=lambda _epoch: net.calibrate(calib, c.calibration, c.percentile))
        m.float_graph = net.to_graph()
        m.float_graph.name = c.kind
        m._quantize(self.x)
        after = self._checkpoint("qat")
        step.update({"fine_tuning": tuning, "learning_rate": lr, "checkpoint": "qat",
                     "qat_float_accuracy": round(after.val_float, 4),
                     "qat_int8_accuracy": round(after.val_int8, 4)})
        if cfg.qat == "auto" and after.val_int8 < ptq.val_int8:
            m.float_graph, m.graph = ptq.float_graph, ptq.int8_graph
            m._interpreters.clear()
            self.checkpoints.pop()
            step["checkpoint"] = ptq.name
            step["kept"] = (f"post-training quantization (QAT scored {after.val_int8:.4f} < "
                            f"{ptq.val_int8:.4f} in int8 on the {self.decided_on})")
        else:
            step["kept"] = "quantization-aware training"
        self.steps.append(step)

    # ---- the record --------------------------------------------------------------------

    def report(self, x_test: np.ndarray, y_test: np.ndarray) -> dict:
        """neural.optimization: each step with held-out accuracies and sizes before/after."""
        m = self.model
        xs = m.standardize(x_test)
        held: dict[str, dict] = {}
        for cp in self.checkpoints:
            held[cp.name] = {
                "float_accuracy": round(float(np.mean(graph_labels(cp.float_graph, xs)
                                                      == y_test)), 4),
                "int8_accuracy": round(float(np.mean(graph_labels(cp.int8_graph, xs)
                                                     == y_test)), 4),
                "validation_float_accuracy": round(cp.val_float, 4),
                "validation_int8_accuracy": round(cp.val_int8, 4),
                **cp.stats}
        steps = []
        for step in self.steps:
            s = {k: v for k, v in step.items() if k not in ("before_checkpoint", "checkpoint")}
            if "before_checkpoint" in step:
                s["before"] = held[step["before_checkpoint"]]
            if "checkpoint" in step:
                s["after"] = held[step["checkpoint"]]
            if step["technique"] == "distillation" and self.teacher is not None:
                p = self.teacher.predict_proba(x_test)
                s["teacher"] = {**s["teacher"], "test_accuracy":
                                round(float(np.mean(np.argmax(p, 1) == y_test)), 4)}
                s["note"] = ("the same student trained without a teacher is the run without "
                             "distill_from (bench/optimize.py compares the two)")
            steps.append(s)
        first, last = self.checkpoints[0], self.checkpoints[-1]
        return {"techniques": [s["technique"] for s in self.steps],
                "config": {**self.cfg.model_dump(exclude_none=True), **(
                    {"distill_from": self.cfg.distill_from.model_dump(exclude_unset=True)}
                    if self.cfg.distill_from is not None else {})},
                "decisions_on": self.decided_on,
                "steps": steps,
                "before": held[first.name], "after": held[last.name],
                "final_checkpoint": last.name}
