"""Parameter sweeps: a scenario run over a grid of settings, on Dask, results in SQLite.

A sweep file names a base scenario and the keys to vary (dotted paths into the scenario's
TOML, e.g. ``"machine.epc"`` or ``"costs.ewb"``)::

    scenario = "zipf_cliff.toml"      # relative to the sweep file
    seeds = [0, 1]                     # optional: each point runs once per seed

    [grid]
    "machine.epc" = ["16M", "32M", "64M"]
    "machine.cpus" = [1, 2, 4]

Every grid point x seed is one run. Each run is keyed by a SHA-256 of its resolved scenario
and seed, and its counters go into a SQLite table as soon as it finishes. A sweep started
again with the same database skips the runs already there, so an interrupted sweep resumes
without redoing or losing finished work. Every point is validated before anything runs; a
bad point is a bad sweep file (exit 2, naming the file, the key and the reason).

Runs are independent processes' worth of work, so they go to Dask: a local cluster by
default, an existing one with ``--scheduler ADDRESS``, or ``--scheduler inline`` to run in
this process (small sweeps, tests). Only the driver writes to SQLite.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import sqlite3
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epcsim.scenario.semantics import ScenarioError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    sweep TEXT NOT NULL,
    params TEXT NOT NULL,
    seed INTEGER,
    stats TEXT NOT NULL,
    derived TEXT NOT NULL,
    wall_s REAL NOT NULL,
    finished_at TEXT NOT NULL
)
"""


@dataclass
class SweepPoint:
    key: str
    params: dict[str, Any]
    seed: int | None
    scenario: dict[str, Any]


@dataclass
class Sweep:
    path: Path
    scenario_path: Path
    points: list[SweepPoint] = field(default_factory=list)


def _set_dotted(doc: dict[str, Any], dotted: str, value: Any, path: Path) -> None:
    parts = dotted.split(".")
    node: Any = doc
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ScenarioError(
                    f"grid.{dotted}", f"no list element {part!r} in the scenario", str(path)
                )
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, dict | list):
            raise ScenarioError(
                f"grid.{dotted}",
                f"{'.'.join(parts[: i + 1])} is not a table in the scenario",
                str(path),
            )
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ScenarioError(
                f"grid.{dotted}", f"no list element {last!r} in the scenario", str(path)
            )
        node[int(last)] = value
    else:
        node[last] = value


def run_key(scenario: dict[str, Any], seed: int | None) -> str:
    blob = json.dumps({"scenario": scenario, "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep file and expand and validate every point (``ScenarioError`` on error)."""
    from epcsim.scenario.load import validate

    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ScenarioError("", f"cannot read the file: {e.strerror or e}", str(p)) from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError("", f"not valid TOML: {e}", str(p)) from None
    unknown = set(doc) - {"scenario", "seeds", "grid"}
    if unknown:
        raise ScenarioError(
            sorted(unknown)[0], "unknown key (a sweep has scenario, seeds, grid)", str(p)
        )
    if not isinstance(doc.get("scenario"), str):
        raise ScenarioError("scenario", "required: the path of the base scenario file", str(p))
    grid = doc.get("grid", {})
    if not isinstance(grid, dict) or not grid:
        raise ScenarioError("grid", "required: a table of dotted keys to lists of values", str(p))
    for k, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ScenarioError(f"grid.{k}", f"must be a non-empty list, got {values!r}", str(p))
    seeds = doc.get("seeds", [None])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(s is None or (isinstance(s, int) and not isinstance(s, bool)) for s in seeds)
    ):
        raise ScenarioError("seeds", f"must be a non-empty list of integers, got {seeds!r}", str(p))
    scenario_path = (p.parent / doc["scenario"]).resolve()
    try:
        base = tomllib.loads(scenario_path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ScenarioError(
            "scenario", f"cannot read {scenario_path}: {e.strerror or e}", str(p)
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError("scenario", f"{scenario_path} is not valid TOML: {e}", str(p)) from None
    sweep = Sweep(p, scenario_path)
    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, combo, strict=True))
        doc_i = copy.deepcopy(base)
        for k, v in params.items():
            _set_dotted(doc_i, k, v, p)
        try:
            validate(doc_i, str(scenario_path))
        except ScenarioError as e:
            where = ", ".join(f"{k}={v!r}" for k, v in params.items())
            raise ScenarioError(f"grid ({where}) -> {e.key}", e.reason, str(p)) from None
        for seed in seeds:
            sweep.points.append(SweepPoint(run_key(doc_i, seed), params, seed, doc_i))
    return sweep


def run_point(scenario: dict[str, Any], seed: int | None, base_dir: str) -> dict[str, Any]:
    """One run (in a Dask worker or inline): the scenario's counters and derived figures."""
    from epcsim.scenario.load import validate
    from epcsim.scenario.runner import run_scenario

    t0 = time.perf_counter()
    sc = validate(scenario, str(Path(base_dir) / "sweep-point.toml"))
    res = run_scenario(sc, seed=seed)
    stats = {k: v for k, v in res.stats.items() if isinstance(v, int | float | bool | str)}
    return {"stats": stats, "derived": _jsonable(res.derived), "wall_s": time.perf_counter() - t0}


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: getattr(o, "tolist", lambda: str(o))()))


class ResultsDb:
    """The sweep's SQLite file: one row per finished run, written by the driver only."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.conn = sqlite3.connect(self.path)
        self.conn.execute(SCHEMA)
        self.conn.commit()

    def done_keys(self) -> set[str]:
        return {row[0] for row in self.conn.execute("SELECT key FROM runs")}

    def add(self, sweep: str, point: SweepPoint, out: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, datetime('now'))",
            (
                point.key,
                sweep,
                json.dumps(point.params, sort_keys=True),
                point.seed,
                json.dumps(out["stats"], sort_keys=True),
                json.dumps(out["derived"], sort_keys=True),
                out["wall_s"],
            ),
        )
        self.conn.commit()  # each finished run is durable at once

    def rows(self, keys: list[str] | None = None) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT key, params, seed, stats, derived, wall_s FROM runs")
        out = []
        for key, params, seed, stats, derived, wall in cur:
            if keys is None or key in keys:
                out.append(
                    {
                        "key": key,
                        "params": json.loads(params),
                        "seed": seed,
                        "stats": json.loads(stats),
                        "derived": json.loads(derived),
                        "wall_s": wall,
                    }
                )
        return out

    def close(self) -> None:
        self.conn.close()


def _inline(points: list[SweepPoint], base_dir: str) -> Iterator[tuple[SweepPoint, dict]]:
    for pt in points:
        yield pt, run_point(pt.scenario, pt.seed, base_dir)


def _dask(
    points: list[SweepPoint], base_dir: str, scheduler: str | None, workers: int | None
) -> Iterator[tuple[SweepPoint, dict]]:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler in (None, "local"):
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = {
            client.submit(
                run_point, pt.scenario, pt.seed, base_dir, key=f"run-{pt.key}", pure=False
            ): pt
            for pt in points
        }
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_sweep(
    sweep: Sweep,
    db: ResultsDb,
    scheduler: str | None = None,
    workers: int | None = None,
    on_done: Callable[[SweepPoint, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run every point not already in ``db``; returns how many ran and were skipped."""
    done = db.done_keys()
    todo = [pt for pt in sweep.points if pt.key not in done]
    skipped = len(sweep.points) - len(todo)
    base_dir = str(sweep.scenario_path.parent)
    runner = (
        _inline(todo, base_dir)
        if scheduler == "inline"
        else _dask(todo, base_dir, scheduler, workers)
    )
    n = 0
    for pt, out in runner:
        db.add(str(sweep.path), pt, out)
        n += 1
        if on_done is not None:
            on_done(pt, n, len(todo))
    return {"ran": n, "skipped": skipped, "total": len(sweep.points)}
