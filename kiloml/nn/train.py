"""Training a template classifier, and float vs int8 evaluation of its export.

``train_classifier`` fits a ``kiloml.nn.torch_models`` template with Adam and
cross-entropy, early-stops on the validation loss (restoring the best
weights) and is deterministic for a given seed on a given machine. The input
standardization is learned on the training set and lives in the module (the
exporter folds it into the first layer, so exported graphs take raw inputs).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from kiloml.nn.graph import Graph
from kiloml.nn.quantize import quantize_graph, quantize_input
from kiloml.nn.reference import Interpreter
from kiloml.nn.torch_models import TemplateModel, build_model, fit_standardization
from kiloml.optional import needs

with needs("torch", "training a network"):
    import torch
    from torch import nn

ProgressCallback = Callable[[int, int, float, float], None]
# (logits, labels, indices of the batch in the training set) -> loss
TrainLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainHistory:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = 0  # 1-based; the returned module has this epoch's weights
    epochs_run: int = 0
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def best_val_loss(self) -> float:
        return self.val_loss[self.best_epoch - 1] if self.val_loss else float("nan")

    @property
    def best_val_accuracy(self) -> float:
        return self.val_accuracy[self.best_epoch - 1] if self.val_accuracy else float("nan")


@contextmanager
def _reproducible(seed: int, threads: int) -> Iterator[None]:
    """Seeds torch and numpy; deterministic kernels and a fixed thread count, restored after.

    The thread count matters: CPU reductions split work per thread, so a different
    count can change the last bits of a sum.
    """
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    # warn_only: an op without a deterministic CPU kernel should not abort training.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """'balanced' weights n / (k * count); classes absent from y get weight 0."""
    counts = np.bincount(np.asarray(y, np.int64), minlength=n_classes).astype(np.float64)
    return np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)


def _batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    chunks = list(order.split(batch_size))
    # BatchNorm cannot train on one sample; fold a lone tail sample into the previous batch.
    if len(chunks) > 1 and chunks[-1].numel() == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def evaluate_module(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor,
              batch_size: int) -> tuple[float, float]:
    """(mean loss, accuracy) in eval mode."""
    model.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for idx in _batches(len(x), max(batch_size, 256), None):
            logits = model(x[idx])
            total += float(loss_fn(logits, y[idx])) * len(idx)
            correct += int((logits.argmax(dim=1) == y[idx]).sum())
    return total / len(x), correct / len(x)


def train_classifier(
    template: str,
    params: dict[str, object],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    n_classes: int,
    **options: Any,
) -> tuple[TemplateModel, TrainHistory]:
    """Train ``template`` (``"mlp"``, ``"cnn1d"``, ``"dscnn"``) with ``params`` as its sizes.

    Inputs are raw float arrays [N, *sample_shape]; labels int class indices.
    ``options`` are fit_module's (seed, max_epochs, patience, batch_size, lr,
    weight_decay, class_weight, threads, progress, train_loss): early stopping watches
    the validation loss (training loss when no validation set is given) and the best
    epoch's weights are restored. Returns the module in eval mode and its history.
    """

    def build() -> TemplateModel:
        model = build_model(template, np.shape(x_train)[1:], n_classes, **params)
        fit_standardization(model, np.asarray(x_train))
        return model

    return fit_module(build, x_train, y_train, x_val, y_val, n_classes,
                      **options)  # type: ignore[return-value]


def fit_module(
    model: nn.Module | Callable[[], nn.Module],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    n_classes: int,
    *,
    seed: int = 0,
    max_epochs: int = 100,
    patience: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    class_weight: Literal["balanced"] | None = None,
    threads: int = 1,
    progress: ProgressCallback | None = None,
    train_loss: TrainLoss | None = None,
    after_step: Callable[[], None] | None = None,
    before_epoch: Callable[[int], None] | None = None,
    first_selectable_epoch: int = 1,
) -> tuple[nn.Module, TrainHistory]:
    """The training loop of ``train_classifier`` on a module that already exists (a
    trained model to fine-tune, a pruned one, a fake-quantized graph).

    ``train_loss(logits, y, idx)`` replaces the cross-entropy on training batches (``idx``
    indexes ``x_train``: distillation reads the teacher's targets with it); validation
    and early stopping stay on the cross-entropy. ``after_step()`` runs after every
    optimizer step (pruning masks), ``before_epoch(epoch)`` before each epoch (pruning
    schedules, QAT ranges). Epochs before ``first_selectable_epoch`` are never kept as
    the best one nor count towards patience (a schedule that has not reached its target).
    ``model`` may be a function that builds it (called after seeding).
    """
    started = time.perf_counter()
    x_tr = torch.as_tensor(np.asarray(x_train, np.float32))
    y_tr = torch.as_tensor(np.asarray(y_train, np.int64))
    if len(x_tr) < 2:
        raise ValueError("need at least two training samples")
    has_val = x_val is not None and y_val is not None and len(x_val) > 0
    if has_val:
        x_va = torch.as_tensor(np.asarray(x_val, np.float32))
        y_va = torch.as_tensor(np.asarray(y_val, np.int64))
    history = TrainHistory()
    with _reproducible(seed, threads):
        if not isinstance(model, nn.Module):
            model = model()
        weight = None
        if class_weight == "balanced":
            weight = torch.as_tensor(class_weights(y_train, n_classes), dtype=torch.float32)
        elif class_weight is not None:
            raise ValueError(f"class_weight must be 'balanced' or None, got {class_weight!r}")
        loss_fn = nn.CrossEntropyLoss(weight=weight)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        generator = torch.Generator().manual_seed(seed)
        best_state = copy.deepcopy(model.state_dict())
        best_loss, waited = float("inf"), 0
        for epoch in range(1, max_epochs + 1):
            if before_epoch is not None:
                before_epoch(epoch)
            model.train()
            total = 0.0
            for idx in _batches(len(x_tr), batch_size, generator):
                optimizer.zero_grad()
                logits = model(x_tr[idx])
                loss = (loss_fn(logits, y_tr[idx]) if train_loss is None
                        else train_loss(logits, y_tr[idx], idx))
                loss.backward()
                optimizer.step()
                if after_step is not None:
                    after_step()
                total += loss.item() * len(idx)
            epoch_loss = total / len(x_tr)
            if has_val:
                val_loss, val_acc = evaluate_module(model, loss_fn, x_va, y_va, batch_size)
            else:
                val_loss, val_acc = epoch_loss, float("nan")
            history.train_loss.append(epoch_loss)
            history.val_loss.append(val_loss)
            history.val_accuracy.append(val_acc)
            history.epochs_run = epoch
            if progress is not None:
                progress(epoch, max_epochs, epoch_loss, val_loss)
            if epoch < first_selectable_epoch:
                continue
            if val_loss < best_loss:
                best_loss, waited, history.best_epoch = val_loss, 0, epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
                if waited >= patience:
                    history.stopped_early = epoch < max_epochs
                    break
        model.load_state_dict(best_state)
    model.eval()
    history.seconds = time.perf_counter() - started
    return model, history


def predict_proba(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """softmax(model(x)) in eval mode, float32 [N, classes]."""
    model.eval()
    xs = torch.as_tensor(np.asarray(x, np.float32))
    with torch.no_grad():
        out = [torch.softmax(model(xs[i:i + batch_size]), dim=1)
               for i in range(0, len(xs), batch_size)]
    return torch.cat(out).numpy()


def accuracy(proba: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(proba, axis=1) == np.asarray(y)))


def graph_predict(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Run a float or int8 graph on float inputs; returns the output (int8 stays int8)."""
    inp = graph.input_tensors[0]
    x = np.asarray(x, np.float32)
    if inp.dtype == "int8":
        x = quantize_input(x, inp)
    return Interpreter(graph).run([x])[0]


def evaluate_int8(float_graph: Graph, x_calib: np.ndarray, x_test: np.ndarray,
                  y_test: np.ndarray, *, max_calibration: int | None = 2000,
                  seed: int = 0) -> tuple[float, float]:
    """(float accuracy, int8 accuracy) of a float graph and its int8 quantization.

    Inputs are what the graph takes: raw, or ``graph_inputs(model, x)`` for a
    template trained with ``standardize="external"``.

    Calibration uses ``x_calib`` (a seeded random subset of at most
    ``max_calibration`` samples: the ranges settle long before, and the
    calibration pass keeps every activation in memory).
    """
    x_calib = np.asarray(x_calib, np.float32)
    if max_calibration is not None and len(x_calib) > max_calibration:
        pick = np.random.default_rng(seed).choice(len(x_calib), max_calibration, replace=False)
        x_calib = x_calib[np.sort(pick)]
    int8_graph = quantize_graph(float_graph, [x_calib])
    y_test = np.asarray(y_test)
    float_acc = accuracy(graph_predict(float_graph, x_test), y_test)
    # argmax of int8 probabilities equals argmax of their dequantized values.
    int8_acc = accuracy(graph_predict(int8_graph, x_test), y_test)
    return float_acc, int8_acc

