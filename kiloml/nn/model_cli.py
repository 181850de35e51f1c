"""`kiloml model ...`: bring-your-own-model commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from kiloml.atomic import write_atomically
from kiloml.errors import KilomlError
from kiloml.nn.graph import Graph
from kiloml.nn.npy_output import check_output_npy, write_npy
from kiloml.outputs import Protected, check_output_file

if TYPE_CHECKING:
    from kiloml.nn.onnx_import import OnnxLayout

model_app = typer.Typer(help="Bring your own model: inspect and run .tflite / .onnx models.",
                        no_args_is_help=True)


def run_model(model: Path, inputs: Path, output: Path) -> np.ndarray:
    from kiloml.nn.load import load_inputs, load_model

    check_output_npy(output, model, inputs)
    graph = load_model(model)
    x = load_inputs(inputs, graph, input_layout(graph, model))
    y = model_outputs(graph, model, x)
    write_npy(output, y)
    return y


def input_layout(graph: Graph, model: Path) -> OnnxLayout | None:
    if Path(model).suffix.lower() != ".onnx":
        return None
    from kiloml.nn.onnx_import import onnx_input_layout

    return onnx_input_layout(graph)[0]


def model_outputs(graph: Graph, model: Path, x: np.ndarray) -> np.ndarray:
    """The reference interpreter on inputs ``x`` [N, ...] (N >= 1, checked by load_inputs);
    outputs in the model's own layout (an ONNX model's, for .onnx)."""
    from kiloml.nn.reference import Interpreter
    from kiloml.progress import track

    if len(graph.outputs) != 1:
        raise KilomlError(f"the model has {len(graph.outputs)} outputs; one is supported here",
                          file=model)
    layout_out = None
    if Path(model).suffix.lower() == ".onnx":
        from kiloml.nn.onnx_import import onnx_output_layout

        layout_out = onnx_output_layout(graph)[0]
    interpreter = Interpreter(graph)
    chunk = 256
    # A float32 graph computes IEEE arithmetic: overflow to inf and NaN are its results
    # (TFLite's float kernels give the same), not errors; int8 graphs stay strict.
    ieee = {} if graph.is_quantized else {"over": "ignore", "invalid": "ignore",
                                          "divide": "ignore", "under": "ignore"}
    with np.errstate(**ieee):
        parts = [interpreter.run([x[start:start + chunk]])[0]
                 for start in track(range(0, len(x), chunk), "reference interpreter")]
    y = np.concatenate(parts)
    if layout_out is not None:
        y = layout_out.from_ir(y)  # back to the ONNX model's own layout
    return y


def describe_model(model: Path) -> dict:
    from kiloml.nn.load import load_model

    return describe_graph(load_model(model), model)


def describe_graph(graph: Graph, model: Path) -> dict:
    """`model info`'s summary of a loaded graph."""
    from kiloml.nn.analysis import summarize

    def tensor_info(i: int) -> dict:
        t = graph.tensors[i]
        info: dict = {"name": t.name, "shape": list(t.shape), "dtype": t.dtype}
        if t.quant is not None:
            if t.quant.per_channel:
                info["quantization"] = {"per_channel_axis": t.quant.axis,
                                        "channels": int(t.quant.scale.size)}
            else:
                info["quantization"] = {"scale": t.quant.s, "zero_point": t.quant.zp}
        return info

    rows = summarize(graph)
    return {
        "model": str(model),
        "inputs": [tensor_info(i) for i in graph.inputs],
        "outputs": [tensor_info(i) for i in graph.outputs],
        "quantized": graph.is_quantized,
        "operators": [
            {"index": r.index, "op": r.kind, "output": r.output,
             "output_shape": list(r.output_shape),
             "dtype": graph.tensors[graph.ops[r.index].outputs[0]].dtype,
             "options": {k: v for k, v in graph.ops[r.index].options.items()
                         if isinstance(v, (int, float, str, bool))},
             "macs": r.macs, "weight_bytes": r.weight_bytes,
             "output_quantization": tensor_info(graph.ops[r.index].outputs[0]).get("quantization")}
            for r in rows],
        "total_macs": sum(r.macs for r in rows),
        "weight_bytes": graph.weight_bytes(),
    }


@model_app.command("run")
def run_command(
    model: Annotated[Path, typer.Argument(help=".tflite or .onnx model")],
    inputs: Annotated[Path, typer.Option("--inputs", help="X.npy: [N, ...input shape]")],
    output: Annotated[Path, typer.Option("--output", help="Y.npy to write")],
) -> None:
    """Run kiloml's reference interpreter (bit-exact with TFLM for int8) on X.npy."""
    from kiloml.cli_errors import user_errors

    y = user_errors(run_model)(model, inputs, output)
    print(f"wrote {output}: {list(y.shape)} {y.dtype}")


@model_app.command("info")
def info_command(
    model: Annotated[Path, typer.Argument(help=".tflite or .onnx model")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Operators, shapes, quantization, MACs and weight bytes."""
    from kiloml.cli_errors import user_errors

    d = user_errors(describe_model)(model)
    if as_json:
        print(json.dumps(d, indent=2))
        return
    for kind in ("inputs", "outputs"):
        for t in d[kind]:
            q = t.get("quantization")
            qs = (f"  scale {q['scale']:.6g} zero point {q['zero_point']}" if q and "scale" in q
                  else "")
            print(f"{kind[:-1]:<7} {t['name']}: {t['dtype']} {t['shape']}{qs}")
    print(f"{'#':>3}  {'operator':<18} {'output shape':<18} {'dtype':<8} {'MACs':>10} "
          f"{'weights B':>10}  output quantization")
    for op in d["operators"]:
        q = op["output_quantization"]
        qs = f"{q['scale']:.6g} @ {q['zero_point']}" if q and "scale" in q else ""
        print(f"{op['index']:>3}  {op['op']:<18} {op['output_shape']!s:<18} "
              f"{op['dtype']:<8} {op['macs']:>10,} {op['weight_bytes']:>10,}  {qs}")
    print(f"total: {len(d['operators'])} operators, {d['total_macs']:,} MACs, "
          f"{d['weight_bytes']:,} bytes of weights and constants, "
          f"{'int8' if d['quantized'] else 'float32'}")


def quantize_command_job(model: Path, calibration: Path, out: Path, labels: Path | None,
                         method: str, percentile: float) -> dict:
    """`model quantize`: check the output first, quantize, write the .tflite atomically."""
    from kiloml.nn.quantize_model import quantize_file
    from kiloml.nn.tflite_io import write_tflite

    protected = [Protected("the model file", Path(model), folder=False),
                 Protected("the calibration file", Path(calibration), folder=False)]
    if labels is not None:
        protected.append(Protected("the labels file", Path(labels), folder=False))
    check_output_file(out, protected, name="--out")
    if Path(out).suffix.lower() != ".tflite":
        raise KilomlError(f"'{out}' does not end in .tflite; the int8 model is written as "
                          "a .tflite file", where="--out")
    if not Path(out).absolute().parent.is_dir():
        raise KilomlError("output folder does not exist", file=Path(out).absolute().parent)
    result = quantize_file(model, calibration, labels=labels, method=method,  # type: ignore[arg-type]
                           percentile=percentile)
    data = write_tflite(result.graph)
    write_atomically(Path(out), lambda f: f.write(data))
    t_in = result.graph.input_tensors[0]
    return {**result.report, "out": str(out), "bytes": len(data),
            "operators": len(result.graph.ops), "input_shape": list(t_in.shape),
            "input_quantization": {"scale": t_in.quant.s, "zero_point": t_in.quant.zp}}


@model_app.command("quantize")
def quantize_command(
    model: Annotated[Path, typer.Argument(help="float .onnx or .tflite model")],
    calibration: Annotated[Path, typer.Option(
        "--calibration", help="X.npy: float32 [N, ...input shape], representative inputs")],
    out: Annotated[Path, typer.Option("--out", help="the int8 .tflite to write")],
    labels: Annotated[Path | None, typer.Option(
        "--labels", help="y.npy: class indices of the calibration inputs (prints float and "
                         "int8 accuracy)")] = None,
    method: Annotated[str, typer.Option(
        "--method", help="activation ranges: minmax, percentile or mse")] = "minmax",
    percentile: Annotated[float, typer.Option(
        "--percentile", help="for --method percentile")] = 99.99,
) -> None:
    """Quantize a float model to TFLite-spec int8 (per-channel convolution weights, int8
    activations calibrated on X.npy, int32 biases) and write the .tflite."""
    from kiloml.cli_errors import user_errors

    def job() -> dict:
        if method not in ("minmax", "percentile", "mse"):
            raise KilomlError(f"--method {method!r} is not one of minmax, percentile, mse",
                              where="--method")
        if not 50 < percentile <= 100:
            raise KilomlError(f"--percentile {percentile:g} must be above 50 and at most 100",
                              where="--percentile")
        return quantize_command_job(model, calibration, out, labels, method, percentile)

    r = user_errors(job)()
    q = r["input_quantization"]
    print(f"wrote {out}: int8, {r['operators']} operators, {r['bytes']:,} B; input "
          f"{r['input_shape']} scale {q['scale']:.6g} zero point {q['zero_point']}")
    line = f"calibrated     {r['calibration_samples']} samples ({r['calibration_method']})"
    if "int8_float_agreement" in r:
        line += (f"; int8 arg-max equals float on {100 * r['int8_float_agreement']:.2f}% of "
                 "them")
    print(f"{line}; max output difference {r['max_abs_output_diff']:.4g} (outputs up to "
          f"{r['output_range']:.4g})")
    if "float_accuracy" in r:
        print(f"float / int8   {r['float_accuracy']:.4f} / {r['int8_accuracy']:.4f} accuracy "
              f"on the labelled calibration samples ({r['int8_minus_float_points']:+.2f} "
              "points from quantization)")
    for warning in r.get("warnings", []):
        print(f"warning        {warning}")


@model_app.command("compile")
def compile_command(
    model: Annotated[Path, typer.Argument(help="int8 .tflite, or a float .onnx / .tflite "
                                                "with --calibration")],
    target: Annotated[str, typer.Option("--target", help="Target profile or 'host'")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the C library")],
    portable: Annotated[bool, typer.Option("--portable",
                                           help="Build the portable kernels only")] = False,
    calibration: Annotated[Path | None, typer.Option(
        "--calibration", help="X.npy: float32 [N, ...input shape]; quantizes a float model "
                              "to int8 first (written as model_int8.tflite)")] = None,
) -> None:
    """Generate the network's C library (no interpreter, static arena), build and run it,
    and write resources.json (flash, RAM, arena, stack, instructions, per layer)."""
    from kiloml.cli_errors import user_errors
    from kiloml.nn.compile import compile_model

    r = user_errors(compile_model)(model, target, out, portable=portable,
                                   calibration=calibration)
    if "quantized" in r:
        qr = r["quantized"]
        agree = (f"; int8 arg-max equals float on {100 * qr['int8_float_agreement']:.2f}%"
                 if "int8_float_agreement" in qr else "")
        print(f"quantized      {out}/model_int8.tflite from {model} on "
              f"{qr['calibration_samples']} calibration samples{agree}")
        for warning in qr.get("warnings", []):
            print(f"warning        {warning}")
    print(f"library        {out}/ (kiloml_nn.h, kiloml_nn.c, kml_nn.c/.h, kml_nn_dsp.c)")
    print(f"arena          {r['arena_bytes']:,} B (lower bound {r['arena_lower_bound_bytes']:,} "
          f"B, {r['planner']['strategy']})")
    for where, p in r["parity"].items():
        print(f"parity ({where}){' ' * max(1, 8 - len(where))}{p['bit_exact']}/{p['n']} random "
              f"inputs bit-exact with the reference interpreter")
    if "flash_bytes" in r:
        print(f"resources      {r['target']}: flash {r['flash_bytes']:,} B (code "
              f"{r['code_flash_bytes']:,} B), RAM {r['ram_bytes']:,} B + stack "
              f"{r['stack_bytes']:,} B, {r['instructions_per_inference']:,} instructions per "
              f"inference ({r['latency_us']:,.0f} us)")
    for note in r["notes"]:
        print(f"note           {note}")
    print(f"resources      {out / 'resources.json'}")


@model_app.command("verify")
def verify_command(
    model: Annotated[Path, typer.Argument(help="int8 .tflite (or .onnx after quantization)")],
    inputs: Annotated[Path, typer.Option("--inputs", help="X.npy: [N, ...input shape]")],
    target: Annotated[str, typer.Option("--target", help="Target profile or 'host'")],
    output: Annotated[Path, typer.Option("--output", help="Y.npy to write")],
    portable: Annotated[bool, typer.Option("--portable",
                                           help="Build the portable kernels only")] = False,
) -> None:
    """Run the generated C on the emulated target (or the host) and compare every output
    with kiloml's reference interpreter."""
    from kiloml.cli_errors import user_errors
    from kiloml.nn.compile import verify_model

    r = user_errors(verify_model)(model, inputs, target, output, portable=portable)
    extra = (f", {r['instructions_mean']:,.0f} instructions per inference"
             if "instructions_mean" in r else "")
    print(f"wrote {output}: parity ({r['target']}) {r['bit_exact']}/{r['n']} outputs bit-exact "
          f"with the reference interpreter (max abs diff {r['max_abs_diff']}){extra}")
    if r["bit_exact"] != r["n"]:
        raise typer.Exit(1)
