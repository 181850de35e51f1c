"""The Pareto front of a search and the pick by the project's policy."""

from __future__ import annotations

# objective -> (row value, larger is better)
OBJECTIVES = {
    "score": (lambda r: r["score"], True),
    "flash": (lambda r: r["estimate"]["flash_bytes"], False),
    "ram": (lambda r: r["estimate"]["ram_bytes"] + r["estimate"]["stack_bytes"], False),
    "latency": (lambda r: r["estimate"]["latency_us"], False),
    "energy": (lambda r: r["estimate"]["energy_uj"], False),
}


def _better_or_equal(a: dict, b: dict) -> bool:
    for get, larger in OBJECTIVES.values():
        va, vb = get(a), get(b)
        if (va < vb) if larger else (va > vb):
            return False
    return True


def dominates(a: dict, b: dict) -> bool:
    """a is at least as good as b on every objective and better on one."""
    return _better_or_equal(a, b) and not _better_or_equal(b, a)


def pareto_front(rows: list[dict]) -> list[dict]:
    """The rows no other row dominates (score against flash, RAM, latency and energy),
    sorted by score, best first. Identical points are all kept."""
    front = [r for r in rows if not any(dominates(o, r) for o in rows if o is not r)]
    return sorted(front, key=lambda r: (-r["score"], OBJECTIVES["flash"][0](r)))


def pick(front: list[dict], policy: str, cost: str, tolerance_points: float) -> dict:
    """most_accurate: the best score (ties: less flash); cheapest_within: the lowest
    ``cost`` among rows within ``tolerance_points`` of the best score."""
    if not front:
        raise ValueError("an empty front")
    best = max(r["score"] for r in front)
    if policy == "most_accurate":
        return min(front, key=lambda r: (-r["score"], OBJECTIVES["flash"][0](r)))
    close = [r for r in front if 100 * (best - r["score"]) <= tolerance_points + 1e-9]
    get = OBJECTIVES[cost][0]
    return min(close, key=lambda r: (get(r), -r["score"]))
