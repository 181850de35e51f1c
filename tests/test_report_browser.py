"""report.html in a real headless browser (Debian's Chromium through its chromedriver):
every section of the table of contents is there, every image loads, the failed budget is
red in the summary, and the page raises no JavaScript error. A tree project and a network
project, each run here."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_toy_project
from tests.headless_chromium import CHROMEDRIVER, CHROMIUM, chromium_driver

if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("Chromium or its chromedriver is not installed (Debian packages chromium and "
                "chromium-driver; `make test` installs them)", allow_module_level=True)

NETWORK_MODEL = '[model]\nkind = "mlp"\nhidden = [16]\nepochs = 20\n'
TREE_MODEL = '[model]\nkind = "random_forest"\nn_estimators = 5\nmax_depth = 6\n'
# KILOML_REPORT_SCREENSHOT=build/report-summary.png: a PNG of the tree report's summary
SCREENSHOT = os.environ.get("KILOML_REPORT_SCREENSHOT")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    driver = chromium_driver(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def run_project(root: Path, model: str) -> Path:
    toml = write_toy_project(root)
    text = toml.read_text()
    assert TREE_MODEL in text
    if model != TREE_MODEL:
        text = text.replace(TREE_MODEL, model).replace("cv_folds = 3", "cv_folds = 0")
    toml.write_text(text)
    result = run_cli("run", str(toml))
    assert result.exit_code == 0, result.stderr  # the power budget fails: exit status 0
    return root / "out"


PAGE_FACTS = """
const toc = [...document.querySelectorAll("nav.toc a")].map(a => a.getAttribute("href"));
const sections = [...document.querySelectorAll("section[id]")].map(s => ({
  id: s.id, title: s.querySelector("h2") ? s.querySelector("h2").textContent : null,
  height: s.getBoundingClientRect().height}));
const images = [...document.images].map(i => ({alt: i.alt, complete: i.complete,
  natural: i.naturalWidth, shown: i.getBoundingClientRect().width}));
const color = e => e ? getComputedStyle(e).color : null;
const failed = [...document.querySelectorAll("#summary-table tr[data-check]")]
  .filter(r => r.querySelector("span.fail"))
  .map(r => ({check: r.dataset.check, name: color(r.cells[0]), status: color(r.cells[3]
    .querySelector("span"))}));
const verdict = document.getElementById("summary-verdict");
const misRecordings = [...document.querySelectorAll("#misclassified table")].flatMap(t =>
  [...t.rows].slice(1).map(r => r.cells[0].textContent));
return {toc, sections, misRecordings, images, failed, verdict: verdict ? verdict.textContent : null,
        verdictColor: color(verdict),
        summaryFirst: document.querySelector("section[id]").id,
        tocTargets: toc.map(h => !!document.getElementById(h.slice(1)))};
"""


def red(css: str) -> bool:
    r, g, b = (int(v) for v in re.findall(r"\d+", css)[:3])
    return r >= 150 and g <= 80 and b <= 80


@pytest.mark.parametrize("model", [TREE_MODEL, NETWORK_MODEL], ids=["tree", "network"])
def test_report_renders_in_chromium(browser, tmp_path: Path, model: str) -> None:
    out = run_project(tmp_path, model)
    metrics = json.loads((out / "metrics.json").read_text())
    browser.get_log("browser")  # drop what an earlier page left
    browser.get((out / "report.html").as_uri())
    facts = browser.execute_script(PAGE_FACTS)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []  # no JavaScript error, no resource that failed to load

    # every entry of the table of contents is a section on the page, in the same order
    ids = [s["id"] for s in facts["sections"]]
    assert facts["toc"] == [f"#{i}" for i in ids] and all(facts["tocTargets"])
    assert facts["summaryFirst"] == "summary"
    expected = {"summary", "held-out", "per-class", "misclassified", "decision", "parity",
                "resources", "power", "model", "data"}
    if model == NETWORK_MODEL:
        expected.add("neural")
    assert expected <= set(ids), expected - set(ids)
    assert all(s["title"] and s["height"] > 20 for s in facts["sections"]), facts["sections"]

    # every image decoded and shown
    assert len(facts["images"]) >= 6
    bad = [i["alt"] for i in facts["images"]
           if not (i["complete"] and i["natural"] > 0 and i["shown"] > 0)]
    assert bad == []

    # misclassified windows by recording (paths relative to the data folder)
    n_wrong = metrics["evaluation"]["misclassified"]["n"]
    assert bool(facts["misRecordings"]) == (n_wrong > 0)
    assert all(re.fullmatch(r"(\w+/)?s\d_rec\.csv", r) for r in facts["misRecordings"]), \
        facts["misRecordings"]

    # the power budget (100 uW against a sleep floor of ~924 uW) failed: red in the summary
    assert not metrics["power"]["cortex-m4f"]["within_power_budget"]
    failed = {f["check"]: f for f in facts["failed"]}
    assert set(failed) == {"power:cortex-m4f"}
    assert red(failed["power:cortex-m4f"]["name"]) and red(failed["power:cortex-m4f"]["status"])
    assert red(facts["verdictColor"])
    assert "power budget on cortex-m4f" in facts["verdict"]
    assert "kiloml run exits 0" in facts["verdict"]

    if model == TREE_MODEL and SCREENSHOT:
        path = Path(SCREENSHOT)
        path.parent.mkdir(parents=True, exist_ok=True)
        summary = browser.find_element("id", "summary")
        browser.set_window_size(1200, summary.rect["y"] + summary.rect["height"] + 200)
        summary.screenshot(str(path))
        assert path.stat().st_size > 10_000
