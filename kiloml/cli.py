"""The `kiloml` command. Subcommands are thin wrappers over the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from kiloml.atomic import write_text_atomically
from kiloml.cli_errors import GuardedGroup, user_errors
from kiloml.display import shown_path
from kiloml.errors import KilomlError

__all__ = ["app", "main", "user_errors"]

app = typer.Typer(
    cls=GuardedGroup,
    help="kiloml: from sensor recordings to a verified C library for microcontrollers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

TEMPLATE = Path(__file__).parent / "templates" / "kiloml.toml"


def _print_version(value: bool) -> None:
    if value:
        from kiloml.version import __version__

        print(f"kiloml {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print kiloml's version and exit.")] = False) -> None:
    """The options before a command (the app's help text is Typer(help=...)'s)."""


def _add_info_command() -> None:
    from kiloml.info_cli import info_command

    app.command("info")(user_errors(info_command))


def _add_model_commands() -> None:
    from kiloml.nn.model_cli import model_app

    app.add_typer(model_app, name="model")


def _add_fleet_commands() -> None:
    from kiloml.telemetry.fleet_cli import fleet_app

    app.add_typer(fleet_app, name="fleet")


def _add_blob_commands() -> None:
    from kiloml.blob.cli import blob_app

    app.add_typer(blob_app, name="blob")


def _add_registry_commands() -> None:
    from kiloml.registry.cli import (
        promote_command,
        registry_app,
        release_command,
        rollback_command,
    )

    app.command("release")(user_errors(release_command))
    app.command("promote")(user_errors(promote_command))
    app.command("rollback")(user_errors(rollback_command))
    app.add_typer(registry_app, name="registry")


def _add_release_checks() -> None:
    from kiloml.registry.diff_cli import diff_command
    from kiloml.registry.gate_cli import gate_command

    app.command("gate")(user_errors(gate_command))
    app.command("diff")(user_errors(diff_command))


def _add_capture_command() -> None:
    from kiloml.capture.command import capture

    app.command()(user_errors(capture))


def _add_firmware_commands() -> None:
    from kiloml.export.cli import export_command
    from kiloml.replay.cli import replay_command
    from kiloml.shadow.command import shadow_command

    app.command("export")(user_errors(export_command))
    app.command("replay")(user_errors(replay_command))
    app.command("shadow")(user_errors(shadow_command))


@app.command()
@user_errors
def init(directory: Annotated[Path, typer.Argument(help="Folder for the new project")]) -> None:
    """Write a commented example kiloml.toml into DIRECTORY."""
    target = directory / "kiloml.toml"
    if target.exists():
        raise KilomlError("already exists; not overwriting", file=target)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        text = TEMPLATE.read_text().replace("{name}", _project_name(directory))
        write_text_atomically(target, text)
    except OSError as exc:
        raise KilomlError(f"cannot write: {exc.strerror or exc}", file=target) from None
    print(f"wrote {target}: edit [data] to point at your recordings, then run "
          f"`kiloml run {target}`")


def _project_name(directory: Path) -> str:
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]", "-", directory.resolve().name).strip("-.")
    return name or "project"


@app.command()
@user_errors
def run(project: Annotated[Path, typer.Argument(help="kiloml.toml or its folder")] = Path("."),
        no_emulator: Annotated[bool, typer.Option(
            "--no-emulator", help="Skip the emulated-MCU step (host parity and sizes only)")
        ] = False) -> None:
    """Load, window, train, evaluate, emit the C library and verify it (host and MCU)."""
    from kiloml.run import run_project

    result = run_project(project, emulate=not no_emulator)
    m = result.metrics
    ev = m["evaluation"]
    out = result.output_dir
    print(f"library        {shown_path(out / 'firmware')}/ (kiloml_model.h, kiloml_model.c "
          f"and runtime)")
    if "neural" in m:
        _print_neural(m, out)
    print(f"report         {shown_path(out / 'report.html')}")
    groups = ev["test_groups"]  # (test_pattern: often one group per test file)
    shown = ", ".join(groups[:5]) + (f" ... ({len(groups)} groups)" if len(groups) > 5 else "")
    print(f"test accuracy  {ev['accuracy']:.4f} on {ev['n_test_windows']} windows of "
          f"held-out groups {shown} (balanced "
          f"{ev['balanced_accuracy']:.4f}, macro F1 {ev['macro_f1']:.4f})")
    if "per_recording" in ev:
        v = ev["per_recording"]
        print(f"per recording  {v['accuracy']:.4f} on {v['n_recordings']} held-out recordings "
              f"(majority vote of their windows, {v['ties']} ties; balanced "
              f"{v['balanced_accuracy']:.4f})")
    d = m.get("decision", {})
    if "raw" in d:
        r, e = d["raw"], d["decision"]
        print(f"events         held-out stream ({d['stream']['hours'] * 60:.1f} min): false "
              f"alarms/h {r['false_alarms_per_hour']:.1f} -> {e['false_alarms_per_hour']:.1f} "
              f"with the decision layer, missed {r['missed_events']} -> {e['missed_events']} "
              f"of {e['events']} events")
    for w in d.get("warnings", []):  # a calibrated threshold that hides a class
        print(f"warning        {w['message']}")
    if "rule_baseline" in m:
        print(f"rule baseline  {m['rule_baseline']['verdict']}")
    for target, pw in m.get("power", {}).items():
        print(f"power          {target}: {pw['energy_per_inference_uj']:.1f} uJ per inference, "
              f"{pw['average_power_uw']:,.0f} uW average at {pw['inference_rate_hz']:g} "
              f"inferences/s (sleep {pw['sleep_power_uw']:,.0f} uW), "
              f"{pw['battery_life_days']:,.1f} days on {pw['battery_mah']:g} mAh; "
              f"{pw['power_budget_uw']:g} uW budget "
              + ("met" if pw["within_power_budget"] else "NOT met")
              + f" (max {pw['max_inference_rate_hz_within_budget']:g} inferences/s)")
    _print_parity(m)
    _print_resources(m)
    for target, r in m.get("monitor", {}).get("resources", {}).items():
        if "flash_bytes" in r:
            ins = r.get("instructions_per_update_mean")
            print(f"monitor        {target}: +{r['flash_bytes']:,} B flash, +{r['ram_bytes']:,} B "
                  "RAM" + (f", {ins:,.0f} instructions per update" if ins is not None else ""))
    if not result.ok:
        sys.stderr.write("kiloml: the library failed verification or its budget "
                         f"(see {shown_path(out / 'report.html')})\n")
        raise typer.Exit(1)


@app.command()
@user_errors
def verify(project: Annotated[Path, typer.Argument(help="kiloml.toml or its folder")] = Path("."),
           target: Annotated[str | None, typer.Option(
               "--target", help="Target profile (default: the project's; see `kiloml targets`)")
           ] = None,
           cflags: Annotated[str | None, typer.Option(
               "--cflags", help="Your firmware's compiler flags (e.g. \"-std=gnu11 -O2\"): "
               "parity again, on the host and the target, with the library built under them")
           ] = None) -> None:
    """Cross-compile the run's library for a target, run every held-out window on the
    emulated MCU (QEMU), check parity and measure flash, RAM, stack and instructions."""
    from kiloml.verify.command import verify_project

    outcome = verify_project(project, target, cflags)
    if outcome.host_cflags is not None:
        from kiloml.verify.user_cflags import summary

        print(f"--cflags       host: {outcome.host_cflags['compiler']}; {outcome.target}: "
              f"{outcome.result.resources['compiler']}")
        print(f"parity (host, --cflags)  {summary(outcome.host_cflags)}")
    m = __import__("kiloml.results", fromlist=["read_metrics"]).read_metrics(outcome.output_dir)
    _print_parity(m, only=outcome.target)
    _print_resources(m, only=outcome.target)
    print(f"report         {shown_path(outcome.output_dir / 'report.html')}")
    if not outcome.ok:
        sys.stderr.write("kiloml: the library failed verification or its budget on "
                         f"{outcome.target}\n")
        raise typer.Exit(1)


def _print_neural(m: dict, out: Path) -> None:
    n, model = m["neural"], m["model"]
    print(f"model          {shown_path(out / n['model_file'])} (int8, "
          f"{model['operators']} operators, {model['macs']:,} MACs, "
          f"{model['weight_bytes']:,} B of weights)")
    if n["float_accuracy"] is not None:
        print(f"float / int8   {n['float_accuracy']:.4f} / {n['int8_accuracy']:.4f} test "
              f"accuracy ({n['int8_minus_float_points']:+.2f} points from quantization)")
    t = n["tflm_parity"]
    if t.get("checked"):
        print(f"parity (TFLM)  {t['bit_exact']}/{t['n']} held-out windows bit-exact with the "
              f"TFLM interpreter")
    if "arena_bytes" in n:
        print(f"arena          {n['arena_bytes']:,} B (lower bound "
              f"{n['arena_lower_bound_bytes']:,} B)")


def _print_parity(m: dict, only: str | None = None) -> None:
    for where, p in m["parity"].items():
        if only is not None and where != only:
            continue
        if where != "host" and not p.get("emulated", False):
            print(f"parity ({where})  {p.get('note', 'not checked')}")
            continue
        st = p["streaming"]
        label = "host" if where == "host" else f"{where}, QEMU {p['machine']}"
        print(f"parity ({label})  {p['decisions_equal']}/{p['n']} decisions equal, max score "
              f"diff {p['max_abs_score_diff']:.1e}, features "
              f"{'bit-exact' if p['features_bit_exact'] else 'differ'}; streaming "
              f"{st['decisions_equal']}/{st['n_windows']} equal"
              + (f"; decision layer {st['decision_layer']['decisions_equal']}/"
                 f"{st['decision_layer']['n']} equal" if "decision_layer" in st else "")
              + (_monitor_parity(st["monitor"]) if "monitor" in st else "")
              + (f"; kml_classify_recording {p['recordings']['decisions_equal']}/"
                 f"{p['recordings']['n']} equal" if "recordings" in p else ""))


def _monitor_parity(mon: dict) -> str:
    """The monitor's part of a parity line: flags and telemetry records, equal or not."""
    if mon["flags_equal"] and mon["snapshots_equal"]:
        return (f"; monitor flags {mon['n']}/{mon['n']} equal, "
                f"{mon.get('n_snapshots', 0)} records equal")
    return (f"; monitor MISMATCH (flags {'equal' if mon['flags_equal'] else 'differ'}, "
            f"records {'equal' if mon['snapshots_equal'] else 'differ'}, first at window "
            f"{(mon.get('first_mismatches') or ['?'])[0]})")


def _print_resources(m: dict, only: str | None = None) -> None:
    for target, r in m["resources"].items():
        if only is not None and target != only:
            continue
        line = (f"resources      {target}: flash {r['flash_bytes']:,} B "
                f"({r['flash_fraction']:.1%} of {r['flash_budget_bytes']:,}), RAM "
                f"{r['ram_bytes']:,} B")
        if "stack_bytes" in r:
            est = " (est.)" if "stack_bytes" in r.get("estimated", []) else ""
            line += f" + stack {r['stack_bytes']:,} B{est}"
        line += f" ({r['ram_fraction']:.1%} of {r['ram_budget_bytes']:,})"
        print(line)
        if "instructions_per_inference" in r:
            est = " (estimates)" if r.get("estimated") else ""
            spread = (f" (max; mean {r['instructions_mean']:,.0f})" if "instructions_mean" in r
                      else "")
            print(f"               {r['instructions_per_inference']:,} instructions per "
                  f"inference{spread}, "
                  f"{r['latency_us']:,.1f} us at {r['clock_hz'] / 1e6:g} MHz "
                  f"(CPI {r['cycles_per_instruction']:g}), {r['energy_uj']:.3f} uJ{est}")
        print(f"               [{r['status']}] measured on {r['measured_on']}")
        for note in r["notes"]:
            print(f"               {note}")


@app.command()
@user_errors
def stress(project: Annotated[Path, typer.Argument(help="kiloml.toml or its folder")] = Path("."),
           perturbations: Annotated[str | None, typer.Option(
               "--perturbations", help="Comma-separated names (default: all): noise, gain, "
               "offset, ramp, dropout, stuck, clipping, rate_mismatch, axis_swap, sign_flip, "
               "jitter")] = None,
           severities: Annotated[str | None, typer.Option(
               "--severities", help="Comma-separated severities, for one perturbation")] = None,
           no_augment: Annotated[bool, typer.Option(
               "--no-augment", help="Skip retraining with augmentation")] = False,
           copies: Annotated[int, typer.Option(
               "--copies", help="Perturbed copies per training recording when augmenting")
           ] = 3,
           seed: Annotated[int, typer.Option("--seed", help="Seed of every random draw")] = 0,
           drop_points: Annotated[float, typer.Option(
               "--drop-points", help="Accuracy drop (points) that defines the breaking point")
           ] = 5.0) -> None:
    """Accuracy of a finished run's model on held-out recordings under sensor perturbations
    of increasing severity, breaking points, and how far augmentation moves them."""
    from kiloml.evaluate.stress import (
        StressOptions,
        parse_names,
        parse_severities,
        stress_project,
    )

    options = StressOptions(perturbations=parse_names(perturbations),
                            severities=parse_severities(severities), augment=not no_augment,
                            copies=copies, seed=seed, drop_points=drop_points)
    outcome = stress_project(project, options)
    aug = outcome.augmented or {}
    print(f"{'perturbation':<14} {'unit':<18} {'breaking point':>15} {'with augmentation':>18}")
    for name, e in outcome.stress.items():
        def bp(entry: dict | None) -> str:
            if entry is None:
                return "-"
            return "none" if entry["breaking_point"] is None else f"{entry['breaking_point']:.3g}"
        print(f"{name:<14} {e['unit']:<18} {bp(e):>15} {bp(aug.get(name)):>18}")
    info = outcome.info
    line = f"unperturbed    accuracy {info['baseline_accuracy']:.4f}"
    if "augmentation" in info and aug:
        line += f" (with augmentation {info['augmentation']['baseline_accuracy']:.4f})"
    print(line + f"; breaking point = {info['drop_points']:g} points below it")
    print(f"report         {shown_path(outcome.output_dir / 'report.html')}")


@app.command()
@user_errors
def search(project: Annotated[Path, typer.Argument(help="kiloml.toml or its folder")] = Path("."),
           executor: Annotated[str, typer.Option(help="local (a process pool) or ray")] = "local",
           address: Annotated[str | None, typer.Option(
               help="the Ray cluster's HOST:PORT (with --executor ray)")] = None,
           workers: Annotated[int | None, typer.Option(
               help="local worker processes (default: one per core)")] = None,
           fresh: Annotated[bool, typer.Option(
               "--fresh", help="forget earlier results instead of resuming")] = False,
           no_run: Annotated[bool, typer.Option(
               "--no-run", help="pick only; do not run the chosen candidate")] = False,
           no_emulator: Annotated[bool, typer.Option(
               "--no-emulator", help="run the chosen candidate without the emulated MCU")
           ] = False,
           out: Annotated[Path | None, typer.Option(
               help="the search folder (default: the search section's dir, or <output "
                    "dir>-search)")
           ] = None) -> None:
    """Explore the project's search space under the target's budget: reject over-budget
    candidates before training, cross-validate the rest, keep the Pareto front, pick one
    and run it."""
    from kiloml.search.run import search_project

    result = search_project(project, executor=executor, address=address, workers=workers,
                            fresh=fresh, run_chosen=not no_run, emulate=not no_emulator,
                            out=out)
    run = result.summary.get("chosen_run")
    if run:
        m = run["measured"] or {}
        print(f"chosen run     {shown_path(Path(run['output_dir']))}/report.html: test accuracy "
              f"{run['test_accuracy']:.4f}; measured flash {m.get('flash_bytes', 0):,} B, RAM "
              f"{m.get('ram_bytes', 0):,} B + stack {m.get('stack_bytes', 0):,} B, "
              f"{m.get('instructions_per_inference', 0):,} instructions per inference")
    if result.run_ok is False:
        sys.stderr.write("kiloml: the chosen candidate failed verification or its budget\n")
        raise typer.Exit(1)


@app.command("check-data")
@user_errors
def check_data(project: Annotated[Path, typer.Argument(
                   help="kiloml.toml or its folder")] = Path("."),
               json_out: Annotated[Path | None, typer.Option(
                   "--json", help="Also write the checks to this JSON file")] = None,
               strict: Annotated[bool, typer.Option(
                   "--strict", help="Exit with code 1 when a check warns")] = False) -> None:
    """Check the project's data as the run windows and splits it: class balance, windows per
    group, duplicates across the split, group bias, feature shift, suspect labels, constant
    or clipped channels. Updates a finished run's metrics.json and report.html."""
    from kiloml.evaluate.data_checks import check_data_project, print_checks

    outcome = check_data_project(project, json_out)
    print_checks(outcome)
    if strict and any(c["status"] != "ok" for c in outcome.checks.values()):
        raise typer.Exit(1)


@app.command()
@user_errors
def targets() -> None:
    """List the target profiles."""
    from kiloml.targets.profiles import load_profile, profile_names

    print(f"{'target':<15} {'clock':>9}  {'RAM':>8}  {'flash':>8}  fpu  dsp  "
          f"{'emulator':<11} {'uA/MHz':>6} {'sleep uA':>8}  description")
    for name in profile_names():
        p = load_profile(name)
        print(f"{p.name:<15} {p.clock_hz / 1e6:>5.0f} MHz  {p.ram_bytes // 1024:>5} KB  "
              f"{p.flash_bytes // 1024:>5} KB  {'yes' if p.has_fpu else 'no ':<3}  "
              f"{'yes' if p.has_dsp_ext else 'no ':<3}  {p.qemu_machine or '(none)':<11} "
              f"{p.active_current_ua_per_mhz:>6g} {p.sleep_current_ua:>8g}  {p.description}")



_add_model_commands()
_add_fleet_commands()
_add_blob_commands()
_add_release_checks()
_add_registry_commands()
_add_info_command()
_add_capture_command()
_add_firmware_commands()


def main() -> None:
    app(prog_name="kiloml")


if __name__ == "__main__":
    main()
