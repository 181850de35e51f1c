"""[optimize]: structured / magnitude pruning, distillation and QAT (kiloml.optimize)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kiloml.models.neural import NeuralModel
from kiloml.nn.quantize import quantize_graph
from kiloml.optimize.apply import should_run_qat
from kiloml.optimize.distill import distillation_loss
from kiloml.optimize.prune import structured_plan
from kiloml.project import NeuralModelConfig, OptimizeConfig
from tests.conftest import CsvProject, assert_user_error, run_cli

TREE_MODEL = '[model]\nkind = "random_forest"\nn_estimators = 5\nmax_depth = 6\n'
CNN = ('[model]\nkind = "cnn1d"\nfilters = [8, 16]\nepochs = 30\nlearning_rate = 0.01\n'
       'validation_groups = 1\n')


def as_cnn(project: CsvProject, optimize: str) -> None:
    text = project.toml.read_text().replace(TREE_MODEL, CNN)
    text = text.replace('[[features]]\nstage = "statistics"\n', "").replace("cv_folds = 3",
                                                                            "cv_folds = 0")
    project.toml.write_text(text + "\n[optimize]\n" + optimize)


def features(n: int = 480, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three Gaussian classes in 8 features, four groups."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = rng.normal(size=(3, 8)) * 1.5
    x = (centers[y] + rng.normal(size=(n, 8))).astype(np.float32)
    return x, y, np.array([f"g{i % 4}" for i in range(n)])


def mlp(optimize: OptimizeConfig | None, **model: object) -> NeuralModel:
    cfg = NeuralModelConfig(kind="mlp", hidden=[16, 16], epochs=15, validation_groups=1,
                            learning_rate=0.01, **model)  # type: ignore[arg-type]
    return NeuralModel(cfg, 3, (8,), optimize=optimize)


def weights(model: NeuralModel) -> list[np.ndarray]:
    assert model.float_graph is not None
    return [model.float_graph.tensors[op.inputs[1]].data for op in model.float_graph.ops
            if op.kind in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")]


def test_structured_pruning_shrinks_the_int8_graph_and_keeps_c_parity(
        csv_project: CsvProject) -> None:
    as_cnn(csv_project, 'prune = "structured"\nsparsity = 0.5\nfine_tune_epochs = 10\n')
    result = run_cli("run", str(csv_project.toml))
    assert result.exit_code == 0, result.stderr
    assert "optimize       structured_pruning" in result.stdout
    m = json.loads((csv_project.out / "metrics.json").read_text())
    opt = m["neural"]["optimization"]
    step = opt["steps"][0]
    assert opt["techniques"] == ["structured_pruning"]
    assert step["filters_before"] == [8, 16] and m["model"]["filters"] == step["filters_after"]
    before, after = step["before"], step["after"]
    # about the asked fraction of the weights goes, and with them the compute
    assert abs(after["parameters"] / before["parameters"] - 0.5) < 0.08
    assert 0.35 < after["weight_bytes"] / before["weight_bytes"] < 0.6
    assert 0.3 < after["macs"] / before["macs"] < 0.6
    assert m["model"]["macs"] == after["macs"] and m["model"]["weight_bytes"] == \
        after["weight_bytes"]
    assert after["int8_accuracy"] == m["neural"]["int8_accuracy"] > 0.6
    # the pruned graph is what ships: TFLM, host C and the emulated M4 agree bit for bit
    assert m["neural"]["tflm_parity"]["all_bit_exact"]
    for where in ("host", "cortex-m4f"):
        p = m["parity"][where]
        assert p["all_decisions_equal"] and p["max_abs_score_diff"] == 0.0, where
    assert structured_plan("cnn1d", {"filters": [8, 16], "kernel_size": 5}, (50, 3), 3,
                           0.5) == step["filters_after"]


def test_magnitude_pruning_reaches_the_sparsity_in_the_float_weights() -> None:
    x, y, g = features()
    opt = OptimizeConfig(prune="magnitude", sparsity=0.7, fine_tune_epochs=6)
    model = mlp(opt).fit(x, y, g, progress=False)
    w = np.concatenate([a.ravel() for a in weights(model)])
    assert abs(np.mean(w == 0) - 0.7) < 0.01
    for a in weights(model):  # per layer, not only overall
        assert abs(np.mean(a == 0) - 0.7) < 0.05
    record = model.optimization.report(x, y)
    step = record["steps"][0]
    assert step["technique"] == "magnitude_pruning" and step["float_weight_sparsity"] >= 0.69
    # dense int8 kernels: the sizes do not move, the zeros are there
    assert step["after"]["weight_bytes"] == step["before"]["weight_bytes"]
    assert step["after"]["macs"] == step["before"]["macs"]
    assert step["after"]["int8_zero_weights_fraction"] >= 0.69
    assert "dense" in step["note"]


def test_distillation_uses_the_teachers_soft_targets() -> None:
    t = 3.0
    teacher = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
    logits = torch.tensor([[0.5, 0.1, 0.0], [0.0, 0.2, 0.4]])
    y = torch.tensor([0, 2])
    idx = torch.tensor([0, 1])
    kd = torch.nn.functional.kl_div(torch.log_softmax(logits / t, 1),
                                    torch.softmax(teacher / t, 1), reduction="batchmean")
    assert torch.isclose(distillation_loss(teacher.numpy(), t, 1.0)(logits, y, idx), t * t * kd)
    ce = torch.nn.functional.cross_entropy(logits, y)
    assert torch.isclose(distillation_loss(teacher.numpy(), t, 0.0)(logits, y, idx), ce)
    # a student trained on the forest's soft targets only differs from one trained on labels
    x, y_np, g = features()
    rf = {"kind": "random_forest", "n_estimators": 20}
    alpha1 = mlp(OptimizeConfig(distill_from=rf, distill_alpha=1.0)).fit(x, y_np, g, False)
    alpha0 = mlp(OptimizeConfig(distill_from=rf, distill_alpha=0.0)).fit(x, y_np, g, False)
    plain = mlp(None).fit(x, y_np, g, progress=False)
    assert not all(np.array_equal(a, b) for a, b in zip(weights(alpha1), weights(alpha0),
                                                        strict=True))
    # alpha = 0 is the plain cross-entropy: the same student, bit for bit
    assert all(np.array_equal(a, b) for a, b in zip(weights(alpha0), weights(plain),
                                                    strict=True))
    step = alpha1.optimization.report(x, y_np)["steps"][0]
    assert step["technique"] == "distillation"
    assert step["teacher"]["soft_targets"].startswith("out-of-fold")
    assert step["teacher"]["test_accuracy"] > 0.8 and step["after"]["int8_accuracy"] > 0.8


def test_qat_auto_runs_only_when_ptq_loses_more_than_a_point() -> None:
    assert not should_run_qat("auto", 0.90, 0.895, 1.0)
    assert should_run_qat("auto", 0.90, 0.885, 1.0)
    assert should_run_qat("on", 0.90, 0.90, 1.0) and not should_run_qat("off", 0.9, 0.1, 1.0)
    x, y, g = features()
    opt = OptimizeConfig(qat="auto", fine_tune_epochs=4)
    fine = mlp(opt).fit(x, y, g, progress=False)
    step = fine.optimization.report(x, y)["steps"][0]
    assert step["technique"] == "qat" and not step["triggered"]
    assert step["ptq_lost_points"] <= 1.0 and step["kept"] == "post-training quantization"
    # a constructed loss: calibrating on the middle of each range clips nearly everything
    broken = mlp(opt, calibration="percentile", percentile=51.0).fit(x, y, g, progress=False)
    step = broken.optimization.report(x, y)["steps"][0]
    assert step["triggered"] and step["ptq_lost_points"] > 1.0
    assert "fine_tuning" in step and step["qat_int8_accuracy"] >= 0.0
    # whatever QAT kept, the int8 graph is the usual quantizer's output of the float graph
    for model in (fine, broken):
        assert model.graph is not None and model.graph.is_quantized
        again = quantize_graph(model.float_graph, [model.calibration_inputs(x)],
                               method=model.config.calibration,
                               percentile=model.config.percentile)
        for a, b in zip(model.graph.tensors, again.tensors, strict=True):
            assert (a.data is None) == (b.data is None)
            if a.data is not None:
                assert np.array_equal(a.data, b.data)


@pytest.mark.parametrize(("text", "fragments"), [
    ('sparsity = 1.5\nprune = "structured"\n', ("[optimize] sparsity", "0.95")),
    ('prune = "channels"\n', ("[optimize] prune", "'structured'")),
    ('sparsty = 0.5\n', ("unknown key 'sparsty'", "did you mean 'sparsity'")),
    ('prune = "magnitude"\n', ("needs sparsity",)),
    ('qat = "always"\n', ("[optimize] qat",)),
    ('distill_from = {kind = "cnn1d", filtrs = [8]}\n', ("unknown key 'filtrs'",)),
    ('distill_alpha = 2\n', ("[optimize] distill_alpha",)),
])
def test_bad_optimize_values(csv_project: CsvProject, text: str,
                             fragments: tuple[str, ...]) -> None:
    as_cnn(csv_project, text)
    assert_user_error(run_cli("run", str(csv_project.toml)), "kiloml.toml", *fragments)
    assert not csv_project.out.exists()


def test_optimize_on_a_tree_or_a_mismatched_teacher_is_refused(
        csv_project: CsvProject) -> None:
    text = csv_project.toml.read_text()
    csv_project.toml.write_text(text + '\n[optimize]\nqat = "on"\n')
    line = assert_user_error(run_cli("run", str(csv_project.toml)), "[optimize] qat",
                             "random_forest", "tree model")
    assert f"kiloml.toml:{len(text.splitlines()) + 3}:" in line
    csv_project.toml.write_text(text.replace(TREE_MODEL, '[model]\nkind = "mlp"\n') +
                                '\n[optimize]\ndistill_from = {kind = "cnn1d"}\n')
    assert_user_error(run_cli("run", str(csv_project.toml)), "distill_from",
                      "cannot read what the mlp student reads")
