"""`kiloml promote` and `kiloml rollback`: the production, canary and previous aliases
(aliases.json), each change appended to history.jsonl, under the registry's lock.

Promoting to production moves the old production to previous. Rolling back puts previous
back in production; previous becomes the version production had before that one (the
``from`` of the promote that last made it production), or null."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from kiloml.atomic import write_text_atomically
from kiloml.errors import KilomlError
from kiloml.registry.integrity import verify_version
from kiloml.registry.store import Registry, write_json

PROMOTABLE = ("production", "canary")


@dataclass(frozen=True)
class Change:
    """One alias moved (one line of history.jsonl)."""

    utc: str
    action: str  # "promote" or "rollback"
    alias: str
    old: str | None
    new: str | None

    def as_json(self) -> dict:
        return {"utc": self.utc, "action": self.action, "alias": self.alias,
                "from": self.old, "to": self.new}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def promote(reg: Registry, name: str, to: str) -> list[Change]:
    """Point ``to`` (production or canary) at ``name`` (a version or an alias), whose latest
    gate result must have passed."""
    if to not in PROMOTABLE:
        raise KilomlError(f"{to!r} cannot be promoted to: the aliases one promotes to are "
                          f"{' and '.join(PROMOTABLE)} (previous follows production)",
                          where="--to")
    with reg.locked():
        version = reg.resolve(name)
        verify_version(reg, version)  # a package changed since its release is refused
        require_passed_gate(reg, version)
        aliases = reg.aliases()
        if aliases[to] == version:
            raise KilomlError(f"version {version} is already {to}", file=reg.path)
        utc = _now()
        changes = [Change(utc, "promote", to, aliases[to], version)]
        if to == "production" and aliases["production"] is not None:
            changes.append(Change(utc, "promote", "previous", aliases["previous"],
                                  aliases["production"]))
        apply(reg, aliases, changes)
    return changes


def rollback(reg: Registry) -> list[Change]:
    """Production back to previous."""
    with reg.locked():
        aliases = reg.aliases()
        back = aliases["previous"]
        if back is None:
            raise KilomlError("no previous version to roll back to (previous is null: "
                              "production was never replaced, or was rolled back as far "
                              "as the history goes)", file=reg.path)
        reg.require_version(back)
        verify_version(reg, back)  # never back to a package changed since its release
        before = production_before(reg, back)
        utc = _now()
        changes = [Change(utc, "rollback", "production", aliases["production"], back),
                   Change(utc, "rollback", "previous", back, before)]
        apply(reg, aliases, changes)
    return changes


def production_before(reg: Registry, version: str) -> str | None:
    """The version production had before ``version`` last became production by a promote
    (history.jsonl), or None."""
    for entry in reversed(reg.history()):
        if entry.get("alias") == "production" and entry.get("action") == "promote" \
                and entry.get("to") == version:
            old = entry.get("from")
            return old if isinstance(old, str) and old != version and \
                reg.has_version(old) else None
    return None


def require_passed_gate(reg: Registry, version: str) -> None:
    result = reg.gate_result(version)
    if result is None:
        raise KilomlError(f"version {version} has no gate result: run `kiloml gate "
                          f"{reg.path} {version}` first; only a version whose latest gate "
                          "passed is promoted", file=reg.gate_file(version))
    if not result["passed"]:
        failed = [c.get("name", "?") for c in result.get("checks", [])
                  if isinstance(c, dict) and not c.get("passed", False)]
        which = f" (failed: {', '.join(map(str, failed))})" if failed else ""
        raise KilomlError(f"the latest gate of version {version} did not pass{which}; only "
                          "a version whose latest gate passed is promoted",
                          file=reg.gate_file(version))


def apply(reg: Registry, aliases: dict[str, str | None], changes: list[Change]) -> None:
    """history.jsonl first (a change is never made without its line), then aliases.json;
    both written whole (temporary file and rename). The caller holds the lock."""
    path = reg.history_file
    reg.history()  # every line checked: a damaged history is not appended to
    try:
        old = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise KilomlError(f"cannot read: {exc}", file=path) from None
    if old and not old.endswith("\n"):
        old += "\n"
    lines = "".join(json.dumps(c.as_json(), sort_keys=True) + "\n" for c in changes)
    write_text_atomically(path, old + lines)
    new = dict(aliases)
    for c in changes:
        new[c.alias] = c.new
    write_json(reg.aliases_file, new)
