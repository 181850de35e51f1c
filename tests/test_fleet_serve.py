"""`kiloml fleet serve`: the real server (uvicorn in a subprocess, `--port 0` on
127.0.0.1, SQLite in a temporary folder), driven over HTTP with the standard library:
binary and JSON records stored once, a bad token refused (401), malformed bodies refused
(400) and counted; the dashboard in Debian's Chromium (Selenium), with a screenshot; and
the one-line errors of a server that cannot start."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_user_error, run_cli
from headless_chromium import CHROMEDRIVER, CHROMIUM, chromium_driver
from pg_server import postgres_server, postgres_url  # noqa: F401  (fixtures)

from kiloml.telemetry.codec import encode
from kiloml.telemetry.jsonl import to_json

TOKEN = "test-token-0123456789"
MODEL = "00112233445566aa"
START_TIMEOUT_S = 30
SCREENSHOT = os.environ.get("KILOML_FLEET_SCREENSHOT")  # also save the PNG there


def records(n: int, onset: int | None = None, seed: int = 0, start: int = 0) -> list[dict]:
    """n records 600 s apart; from ``onset`` on the input drifts (INPUT_DRIFT, then OOD)."""
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        drifting = onset is not None and i >= onset
        z = rng.uniform(0, 1.5) + (3 + 0.2 * (i - onset) if drifting else 0)
        flags = (1 | (32 if i >= onset + 3 else 0)) if drifting else 0
        out.append(dict(n_classes=4, model_id=MODEL, uptime_s=(i + 1) * 600,
                        windows=(i + 1) * 1200, decisions=[900, 200, 80, 20], uncertain=25,
                        top_score_p10=0.5, top_score_p50=0.85 - (0.2 if drifting else 0),
                        top_score_p90=0.97, out_of_range_rate=0.2 if drifting else 0.01,
                        drift_z=z, ood_score=1.0 + z, entropy=0.3, flags=flags))
    return out


def binary(recs: list[dict]) -> bytes:
    return b"".join(encode(r) for r in recs)


class Server:
    def __init__(self, url: str) -> None:
        self.url = url

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                status, text, kind = resp.status, resp.read(), resp.headers.get_content_type()
        except urllib.error.HTTPError as err:
            status, text, kind = err.code, err.read(), err.headers.get_content_type()
        return status, json.loads(text) if kind == "application/json" else text.decode()

    def post(self, body: bytes, content_type: str = "application/octet-stream",
             device: str | None = None, token: str | None = TOKEN,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        h = {"Content-Type": content_type, **(headers or {})}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        path = "/telemetry" + (f"?device={device}" if device else "")
        return self.request("POST", path, body, h)

    def post_json(self, obj: Any, **kw: Any) -> tuple[int, Any]:
        return self.post(json.dumps(obj).encode(), "application/json", **kw)

    def stats(self) -> dict[str, Any]:
        status, stats = self.request("GET", "/api/stats")
        assert status == 200
        return stats

    def devices(self) -> dict[str, dict[str, Any]]:
        status, fleet = self.request("GET", "/api/devices")
        assert status == 200
        return {d["device"]: d for d in fleet["devices"]}


@contextmanager
def running_server(folder: Path, db: str | None = None) -> Iterator[Server]:
    """`kiloml fleet serve` on a free port (the first line of its output names it);
    SQLite in ``folder`` unless ``db`` names a database."""
    env = {**os.environ, "KILOML_FLEET_TOKEN": TOKEN}
    db = db or f"sqlite:///{folder / 'fleet.db'}"
    proc = subprocess.Popen([sys.executable, "-m", "kiloml", "fleet", "serve", "--db", db,
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=folder)
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_S)
    try:
        match = re.search(r"http://127\.0\.0\.1:\d+", first[0] if first else "")
        assert match, (first, proc.poll(), proc.stderr.read() if proc.poll() is not None
                       else "still running")
        yield Server(match.group(0))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # uvicorn shuts down cleanly on SIGTERM, then re-raises it (the shell sees the signal)
    assert proc.returncode in (0, -signal.SIGTERM), proc.stderr.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("serve")) as s:
        yield s


# ---- POST /telemetry --------------------------------------------------------------------

def test_binary_records_are_stored_once(server: Server) -> None:
    data = binary(records(12, seed=1))
    assert server.post(data, device="bin-a") == (200, {
        "records": 12, "stored": 12, "duplicates": 0, "bad": 0, "bad_by_kind": {},
        "errors": []})
    status, again = server.post(data, device="bin-a")  # a repost: stored once
    assert status == 200 and (again["stored"], again["duplicates"]) == (0, 12)
    # the X-Device header names the device too; half new, half already there
    more = binary(records(12, seed=1)[6:] + records(6, seed=2, start=12))
    status, answer = server.post(more, headers={"X-Device": "bin-a"})
    assert status == 200 and (answer["stored"], answer["duplicates"]) == (6, 6)
    # the same bytes from another device are that device's record
    status, other = server.post(data[:48], device="bin-b")
    assert status == 200 and other["stored"] == 1
    devices = server.devices()
    assert devices["bin-a"]["records"] == 18 and devices["bin-b"]["records"] == 1
    assert not devices["bin-a"]["alarm"]


def test_json_records_are_stored_once_and_flag_alarms(server: Server) -> None:
    recs = records(10, onset=4, seed=3)
    objs = [to_json(r, device="json-drift") for r in recs]
    status, answer = server.post_json(objs)  # a list, each object naming its device
    assert status == 200 and (answer["stored"], answer["bad"]) == (10, 0), answer
    status, answer = server.post_json(objs[3])  # one object, already stored
    assert status == 200 and (answer["stored"], answer["duplicates"]) == (0, 1)
    # one object without a device field: the query parameter names it
    single = to_json(records(1, seed=4)[0])
    status, answer = server.post_json(single, device="json-one")
    assert status == 200 and answer["stored"] == 1
    # JSON lines, the form of a .jsonl telemetry file; the binary form of the same record
    # is a duplicate (the database keys on the record's bytes)
    lines = "".join(json.dumps(o) + "\n" for o in objs[:2]) + "\n"
    status, answer = server.post(lines.encode(), "application/x-ndjson")
    assert status == 200 and (answer["stored"], answer["duplicates"]) == (0, 2)
    status, answer = server.post(binary(recs[:1]), device="json-drift")
    assert status == 200 and answer["duplicates"] == 1
    drift = server.devices()["json-drift"]
    assert drift["alarm"] and drift["first_alarm_s"] == 6 * 600 and drift["records"] == 10
    assert drift["flags"] == ["INPUT_DRIFT", "OOD"]


def test_bad_token_is_401_and_counted(server: Server) -> None:
    before = server.stats()
    data = binary(records(2, seed=5))
    for kwargs in ({"token": None}, {"token": "wrong-token-0123456789"},
                   {"token": TOKEN[:-1]}, {"token": None,
                                           "headers": {"Authorization": f"Basic {TOKEN}"}}):
        status, answer = server.post(data, device="intruder", **kwargs)
        assert (status, answer) == (401, {"error": "bad or missing bearer token"}), kwargs
    after = server.stats()
    assert after["unauthorized"] - before["unauthorized"] == 4
    assert after["requests"] == before["requests"] and "intruder" not in server.devices()


def test_malformed_bodies_are_400_and_counted(server: Server) -> None:
    before = server.stats()
    good = binary(records(3, seed=6))
    crc = bytearray(good)
    crc[48 + 30] ^= 0xFF  # record 1's bytes, not its CRC
    version = bytearray(good[:48])
    version[2] = 7
    cases: list[tuple[tuple, dict, str]] = [
        ((bytes(crc),), {"device": "bad-bin"}, "crc"),
        ((good[:40],), {"device": "bad-bin"}, "truncated"),
        ((bytes(version),), {"device": "bad-bin"}, "version"),
        ((good,), {}, "device"),  # binary without a device
        ((b"",), {"device": "bad-bin"}, "empty"),
        ((b'{"device": "x", "n_cl', "application/json"), {}, "json"),
        ((b'[{"device": "x"}, 3]', "application/json"), {}, "field"),
        ((b'{"device": "x", "format_version": 2}', "application/json"), {}, "version"),
    ]
    for args, kwargs, kind in cases:
        status, answer = server.post(*args, **kwargs)
        assert status == 400, (kind, status, answer)
        assert kind in answer["bad_by_kind"] and answer["error"].startswith(
            f"{answer['bad']} bad record"), (kind, answer)
    # the good records of a body with a bad one are stored all the same (idempotent)
    status, answer = server.post(bytes(crc), device="bad-bin")
    assert status == 400 and (answer["stored"], answer["duplicates"]) == (0, 2), answer
    status, answer = server.post(good, content_type="text/plain", device="bad-bin")
    assert status == 415 and "application/octet-stream" in answer["error"]
    after = server.stats()
    assert after["rejected"] - before["rejected"] == len(cases) + 2
    delta = {k: after["bad_by_kind"].get(k, 0) - before["bad_by_kind"].get(k, 0)
             for k in after["bad_by_kind"]}
    # the second list item of the "field" case is not an object: counted as json
    assert {k: v for k, v in delta.items() if v} == {
        "crc": 2, "truncated": 1, "version": 2, "device": 1, "empty": 1, "json": 2,
        "field": 1, "content_type": 1}, delta
    assert server.devices()["bad-bin"]["records"] == 2


def test_concurrent_posts_are_each_stored_once(server: Server) -> None:
    """Eight senders at once, two per device, the same records: each stored once and the
    answers add up (the store's lock keeps insert_new's count exact)."""
    bodies = {f"conc-{k}": binary(records(20, seed=20 + k)) for k in range(4)}
    answers: list[dict] = []

    def send(device: str) -> None:
        status, answer = server.post(bodies[device], device=device)
        assert status == 200
        answers.append(answer)

    threads = [threading.Thread(target=send, args=(d,)) for d in bodies for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert len(answers) == 8
    assert sum(a["stored"] for a in answers) == 80
    assert sum(a["duplicates"] for a in answers) == 80
    devices = server.devices()
    assert all(devices[d]["records"] == 20 for d in bodies)


def test_serve_into_a_real_postgresql(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    with running_server(tmp_path, postgres_url) as server:
        data = binary(records(10, onset=5, seed=30))
        status, answer = server.post(data, device="pg-dev")
        assert status == 200 and answer["stored"] == 10
        status, answer = server.post(data, device="pg-dev")
        assert status == 200 and (answer["stored"], answer["duplicates"]) == (0, 10)
        assert server.post(data[:47], device="pg-dev")[0] == 400
        drift = server.devices()["pg-dev"]
        assert drift["alarm"] and drift["records"] == 10
        assert server.stats()["bad_by_kind"] == {"truncated": 1}
        status, page = server.request("GET", "/")
        assert status == 200 and "pg-dev" in page and "postgresql://kiloml@" in page


# ---- the dashboard in a real browser ------------------------------------------------------

PAGE_FACTS = """
const color = e => getComputedStyle(e).color;
const rows = [...document.querySelectorAll("#devices-table tr[data-device]")].map(r => ({
  device: r.dataset.device, alarm: r.dataset.alarm, cls: r.className,
  status: r.cells[2].textContent, statusColor: color(r.cells[2]),
  background: getComputedStyle(r.cells[1]).backgroundColor,
  flagsNow: r.cells[3].textContent, firstAlarm: r.cells[5].textContent,
  records: r.cells[6].textContent}));
const counts = Object.fromEntries([...document.querySelectorAll("[data-count]")].map(
  e => [e.dataset.count, e.querySelector("b").textContent]));
const alarms = [...document.querySelectorAll("#alarms-table tr")].slice(1).map(
  r => [...r.cells].map(c => c.textContent));
return {title: document.title, rows, counts, alarms,
        sections: [...document.querySelectorAll("section h2")].map(h => h.textContent),
        scripts: document.scripts.length, height: document.body.scrollHeight};
"""


def red(css: str) -> bool:
    r, g, b = (int(v) for v in re.findall(r"\d+", css)[:3])
    return r >= 150 and g <= 80 and b <= 80


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="Chromium or its chromedriver is not installed (Debian packages "
                    "chromium and chromium-driver; `make test` installs them)")
def test_dashboard_in_chromium(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        for k in range(4):
            assert server.post(binary(records(24, seed=k)), device=f"dev-{k}")[0] == 200
        assert server.post(binary(records(24, onset=8, seed=10)), device="dev-drift1")[0] \
            == 200
        assert server.post_json([to_json(r, device="dev-drift2")
                                 for r in records(24, onset=18, seed=11)])[0] == 200
        assert server.post(binary(records(24, seed=0)), device="dev-0")[1]["duplicates"] \
            == 24
        assert server.post(b"\x00" * 50, device="dev-0")[0] == 400
        assert server.post(b"", token="not-the-token")[0] == 401

        driver = chromium_driver(tmp_path / "chromium-profile", window=(1400, 900))
        try:
            driver.get(server.url + "/")
            facts = driver.execute_script(PAGE_FACTS)
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            shot = tmp_path / "dashboard.png"  # the whole page, not only the window
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": 1400, "height": facts["height"] + 40, "deviceScaleFactor": 1,
                "mobile": False})
            png = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
            shot.write_bytes(base64.b64decode(png["data"]))
        finally:
            driver.quit()
    assert errors == []  # no JavaScript error, nothing that failed to load
    assert facts["title"] == "kiloml fleet" and facts["scripts"] == 0
    assert facts["sections"] == ["Counts", "Devices, ranked by alarm", "Alarms"]
    rows = facts["rows"]
    # ranked by alarm: the larger share of flagged records first (16/24, then 6/24)
    assert [r["device"] for r in rows] == ["dev-drift1", "dev-drift2", "dev-0", "dev-1",
                                           "dev-2", "dev-3"]
    for r in rows:
        alarm = r["device"].startswith("dev-drift")
        assert (r["alarm"], r["cls"], r["status"]) == (("1", "alarm", "ALARM") if alarm
                                                       else ("0", "", "ok")), r
        assert red(r["statusColor"]) == alarm and r["records"] == "24"
        assert (r["background"] != "rgba(0, 0, 0, 0)") == alarm, r
    # (onset at record 8, 10 min apart: confirmed by the second flagged record, 1:40:00)
    assert rows[0]["flagsNow"] == "INPUT_DRIFT, OOD" and rows[0]["firstAlarm"] == "1:40:00"
    assert rows[1]["firstAlarm"] == "3:20:00" and rows[2]["flagsNow"] == "-"
    assert facts["counts"] == {"devices": "6", "in-alarm": "2", "records": "144",
                               "alarms": "2", "posts": "8", "stored": "144",
                               "duplicates": "24", "bad": "1", "rejected": "1",
                               "unauthorized": "1"}, facts["counts"]
    assert [a[0] for a in facts["alarms"]] == ["dev-drift1", "dev-drift2"]
    assert all(a[-1] == "ongoing" for a in facts["alarms"])
    assert shot.stat().st_size > 20_000
    if SCREENSHOT:
        Path(SCREENSHOT).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


# ---- a server that cannot start: one line, exit 2 ---------------------------------------

def test_serve_without_a_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KILOML_FLEET_TOKEN", raising=False)
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    assert_user_error(run_cli("fleet", "serve", "--db", db, "--port", "0"),
                      "KILOML_FLEET_TOKEN", "no bearer token")
    monkeypatch.setenv("KILOML_FLEET_TOKEN", "short")
    assert_user_error(run_cli("fleet", "serve", "--db", db, "--port", "0"),
                      "KILOML_FLEET_TOKEN", "at least 8")
    assert not (tmp_path / "fleet.db").exists()  # refused before the database is touched


def test_serve_with_an_unreachable_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KILOML_FLEET_TOKEN", TOKEN)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert_user_error(run_cli("fleet", "serve", "--db",
                              f"postgresql://kiloml@127.0.0.1:{port}/fleet", "--port", "0"),
                      "--db", "cannot reach the database postgresql")
    assert_user_error(run_cli("fleet", "serve", "--db", "mysql://x@localhost/db"), "--db")


def test_serve_on_a_port_in_use(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KILOML_FLEET_TOKEN", TOKEN)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert_user_error(run_cli("fleet", "serve", "--db",
                                  f"sqlite:///{tmp_path / 'fleet.db'}", "--port", str(port)),
                          "--port", f"cannot listen on 127.0.0.1:{port}")
