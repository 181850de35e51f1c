"""A fuzz worker: a child process that runs many mutants through kiloml's loaders.

Protocol: one JSON job per line on stdin ({"format", "key", "seed_index", "path",
"project"}: the worker makes the mutant from its key and writes it to "path"), one JSON
result per line on the file descriptor given as argv[1] (stdout and stderr go to
/dev/null and a log: kiloml prints progress bars). Per job the worker runs what
the commands run:

- models (tflite, onnx): ``load_model`` (parse + validation), ``describe_graph``
  (`model info`), then ``load_inputs`` + ``model_outputs`` (`model run`) on one
  input of the model's own shape and dtype;
- recordings and project files: ``prepare_data(load_project(kiloml.toml))``.

Outcomes: "loaded", "error" (a KilomlError, one line), "other" (anything else,
with the traceback and the fault site: exception type and the innermost kiloml
frame). RuntimeWarnings are errors here, so numpy overflow / invalid casts count.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def fault_site(exc: BaseException) -> str:
    """'<type> at <file>:<line> (<function>)' of the innermost frame in kiloml (else the
    innermost frame): the place to fix."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/kiloml/" in f.filename and "/tests/" not in f.filename]
    frame = (ours or frames or [None])[-1]
    kind = type(exc).__name__
    if frame is None:
        return kind
    name = frame.filename
    name = os.path.relpath(name, REPO) if str(REPO) in name else "/".join(Path(name).parts[-3:])
    return f"{kind} at {name}:{frame.lineno} ({frame.name})"


def example_input(graph) -> np.ndarray:
    """One input of the model input's shape and dtype (fixed seed)."""
    t = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(0)
    shape = (1, *t.shape[1:])
    if np.dtype(t.dtype).kind == "f":
        return rng.standard_normal(shape).astype(t.dtype)
    info = np.iinfo(t.dtype) if np.dtype(t.dtype).kind in "iu" else None
    if info is None:
        return np.zeros(shape, t.dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(t.dtype)


def run_model_job(path: Path, codegen: bool = False) -> None:
    from kiloml.nn.load import load_inputs, load_model
    from kiloml.nn.model_cli import describe_graph, input_layout, model_outputs

    graph = load_model(path)
    describe_graph(graph, path)
    if codegen:  # `model compile` up to the C sources (no compiler run)
        from kiloml.codegen.nn_calls import CodegenError
        from kiloml.codegen.nn_library import write_nn_library
        from kiloml.errors import KilomlError
        from kiloml.nn.compile import check_int8

        try:
            check_int8(graph, path)
            write_nn_library(graph, path.parent / "lib")
        except CodegenError as exc:
            raise KilomlError(str(exc), file=path) from None
        except KilomlError:
            pass  # a float model: `model compile` refuses it, `model run` still runs it
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        return  # `model run` refuses these with a KilomlError before running
    x_path = path.with_name("inputs.npy")
    np.save(x_path, example_input(graph))
    x = load_inputs(x_path, graph, input_layout(graph, path))
    y = model_outputs(graph, path, x)
    if os.environ.get("KILOML_FUZZ_TFLM") and path.suffix == ".tflite":
        compare_with_tflm(path, x, y)
    if os.environ.get("KILOML_FUZZ_ORT") and path.suffix == ".onnx":
        compare_with_onnxruntime(path, graph)


def compare_with_onnxruntime(path: Path, graph) -> None:
    """Diagnostic mode (KILOML_FUZZ_ORT=1): an .onnx kiloml imports must run in onnxruntime
    with the same outputs (float tolerance)."""
    import onnxruntime as ort

    from kiloml.nn.model_cli import model_outputs
    from kiloml.nn.onnx_import import onnx_input_layout

    layout = onnx_input_layout(graph)[0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, *layout.onnx_shape[1:])).astype(np.float32)
    y = model_outputs(graph, path, layout.to_ir(x))
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        out = sess.run(None, {name: x})
    except Exception as exc:
        raise AssertionError(f"onnxruntime refuses a model kiloml accepts: "
                             f"{str(exc).splitlines()[0][:200]}") from None
    want = next((np.asarray(o) for o in out if np.asarray(o).shape == y.shape), None)
    if want is None:
        raise AssertionError(f"no onnxruntime output has kiloml's shape {y.shape}: "
                             f"{[np.asarray(o).shape for o in out]}")
    if not np.allclose(want, y, rtol=1e-3, atol=1e-4, equal_nan=True):
        raise AssertionError(f"onnxruntime and kiloml differ (max abs diff "
                             f"{np.nanmax(np.abs(want - y)):g})")


def compare_with_tflm(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Diagnostic mode (KILOML_FUZZ_TFLM=1): a model kiloml accepts must run in TFLM with
    the same outputs (int8 bit-exact); a refusal or a difference is a finding."""
    import tempfile

    from tflite_micro.python.tflite_micro import runtime

    with tempfile.TemporaryFile() as err:
        saved = os.dup(2)
        os.dup2(err.fileno(), 2)
        try:
            it = runtime.Interpreter.from_bytes(path.read_bytes(), arena_size=8 << 20)
            it.set_input(x, 0)
            it.invoke()
            got = it.get_output(0)
        except Exception as exc:
            err.seek(0)
            lines = [ln for ln in err.read().decode(errors="replace").splitlines() if ln]
            raise AssertionError(f"TFLM refuses a model kiloml accepts: "
                                 f"{lines[0] if lines else exc}") from None
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    if got.shape != y.shape:
        raise AssertionError(f"TFLM output shape {got.shape}, kiloml {y.shape}")
    same = np.array_equal(got, y) if y.dtype != np.float32 else np.allclose(
        got, y, rtol=1e-4, atol=1e-5, equal_nan=True)
    if not same:
        raise AssertionError(f"TFLM and kiloml differ (max abs diff "
                             f"{np.abs(got.astype(float) - y.astype(float)).max():g})")


def run_project_job(toml: Path) -> None:
    from kiloml.prepare import prepare_data
    from kiloml.project import load_project

    prepare_data(load_project(toml), announce=False)


def run_selftest(payload: str) -> None:
    """What the pool must catch, on demand (tests/fuzz/test_pool.py)."""
    from kiloml.errors import KilomlError

    if payload == "error":
        raise KilomlError("a clean error", file="x")
    if payload == "raise":
        raise ValueError("a finding")
    if payload == "warn":
        np.array([1e308]) * 10  # RuntimeWarning: overflow -> an exception here
    if payload == "crash":
        os.abort()
    if payload == "hang":
        import time

        time.sleep(3600)


def main() -> None:
    result_fd = int(sys.argv[1])
    results = os.fdopen(result_fd, "w", buffering=1)
    log = open(sys.argv[2], "a", buffering=1) if len(sys.argv) > 2 else open(os.devnull, "w")  # noqa: SIM115
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    warnings.simplefilter("error", RuntimeWarning)
    from source import MutantSource

    from kiloml.errors import KilomlError
    from kiloml.nn import load, model_cli, onnx_import, reference  # noqa: F401  (import once)
    from kiloml.prepare import prepare_data  # noqa: F401
    from kiloml.project import load_project  # noqa: F401

    results.write(json.dumps({"ready": True}) + "\n")
    sources: dict[str, MutantSource] = {}
    for line in sys.stdin:
        job = json.loads(line)
        reply: dict[str, object] = {"id": job["id"]}
        if job["format"] != "selftest":
            if job["format"] not in sources:
                sources[job["format"]] = MutantSource(job["format"])
            source = sources[job["format"]]
            data, reply["description"] = source.make(job["seed_index"], job["key"])
            Path(job["path"]).write_bytes(data)
        try:
            if job["format"] == "selftest":
                run_selftest(job["payload"])
            elif job["format"] in ("tflite", "onnx"):
                run_model_job(Path(job["path"]), bool(job.get("codegen")))
            else:
                run_project_job(Path(job["project"]))
            reply["outcome"] = "loaded"
        except KilomlError as exc:
            message = str(exc)
            reply["message"] = message[:400]
            reply["outcome"] = "error"
            if not message.isprintable():  # a line break, a CR or a terminal escape
                reply["outcome"] = "other"
                bad = next(ch for ch in message if not ch.isprintable())
                reply["site"] = (f"KilomlError with control character {bad!r} at "
                                 f"{fault_site(exc).split(' at ', 1)[-1]}")
                reply["traceback"] = repr(message)
        except Exception as exc:  # everything else is a finding
            reply.update(outcome="other", site=fault_site(exc), message=str(exc)[:400],
                         traceback="".join(traceback.format_exception(exc))[-20000:])
        results.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    sys.path[:0] = [str(HERE), str(REPO / "tests")]
    main()
