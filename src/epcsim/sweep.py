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
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epcsim.scenario.semantics import ScenarioError
from epcsim.units import show

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    sweep TEXT NOT NULL,
    params TEXT NOT NULL,
    seed INTEGER,
    stats TEXT NOT NULL,
    derived TEXT NOT NULL,
    wall_s REAL NOT NULL,
    finished_at TEXT NOT NULL,
    scenario TEXT,
    scenario_sha TEXT
)
"""
META = "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)"


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
    scenario_sha: str = ""  # SHA-256 of the base scenario file's text


def _set_dotted(doc: dict[str, Any], dotted: str, value: Any, path: Path) -> None:
    parts = dotted.split(".")
    node: Any = doc
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ScenarioError(
                    f"grid.{dotted}", f"no list element {show(part)} in the scenario", str(path)
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
                f"grid.{dotted}", f"no list element {show(last)} in the scenario", str(path)
            )
        node[int(last)] = value
    else:
        node[last] = value


def run_key(scenario: dict[str, Any], seed: int | None, scenario_sha: str = "") -> str:
    """The point's identity: its checked scenario (as the schema normalised it, so ``"4M"``
    and ``4194304`` are one point), its seed, and the SHA-256 of the base scenario file's
    text, so rows of an earlier version of that file are never taken for this one's."""
    blob = json.dumps(
        {"scenario": scenario, "seed": seed, "file": scenario_sha}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _check_seeds(seeds: Any, p: Path) -> list[int | None]:
    from epcsim.scenario.model import MAX_SEED

    ok = (
        isinstance(seeds, list)
        and seeds
        and all(
            s is None or (isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED)
            for s in seeds
        )
    )
    if not ok:
        raise ScenarioError(
            "seeds",
            f"must be a non-empty list of integers from 0 to 2**63-1, got {show(seeds)}",
            str(p),
        )
    return list(dict.fromkeys(seeds))  # a seed listed twice runs once


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep file and expand and validate every point (``ScenarioError`` on error).

    Points that are the same run (equal values in the grid, a seed listed twice, or two
    spellings of one size) are kept once, in first-seen order. Every point is compiled and
    its memory need checked here, before any runs."""
    from epcsim.scenario.hostmem import HostMemoryError, check_plan
    from epcsim.scenario.load import parse_toml, read_toml_text, validate
    from epcsim.scenario.plan import compile_scenario

    p = Path(path)
    doc = parse_toml(read_toml_text(p), p)
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
            raise ScenarioError(
                f"grid.{k}", f"must be a non-empty list, got {show(values)}", str(p)
            )
    seeds = _check_seeds(doc.get("seeds", [None]), p)
    scenario_path = (p.parent / doc["scenario"]).resolve()
    text = read_toml_text(scenario_path, "scenario", f"the scenario {scenario_path}")
    base = parse_toml(text, p, "scenario")
    sha = hashlib.sha256(text.encode()).hexdigest()
    sweep = Sweep(p, scenario_path, scenario_sha=sha)
    keys = list(grid)
    seen: set[str] = set()
    for combo in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, combo, strict=True))
        doc_i = copy.deepcopy(base)
        for k, v in params.items():
            _set_dotted(doc_i, k, v, p)
        where = ", ".join(f"{k}={show(v)}" for k, v in params.items())
        try:
            sc = validate(doc_i, str(scenario_path))
            check_plan(compile_scenario(sc))
        except ScenarioError as e:
            raise ScenarioError(f"grid ({where}) -> {e.key}", e.reason, str(p)) from None
        except HostMemoryError as e:
            raise ScenarioError(f"grid ({where}) -> {e.key}", e.reason, str(p)) from None
        normal = sc.model_dump(mode="json")
        for seed in seeds:
            key = run_key(normal, seed, sha)
            if key in seen:
                continue
            seen.add(key)
            sweep.points.append(SweepPoint(key, params, seed, doc_i))
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


class ResultsDbError(ValueError):
    """The ``--db`` path cannot hold the results (not writable, not a SQLite file ...)."""


class ResultsDb:
    """The sweep's SQLite file: one row per finished run, written by the driver only.

    Each row is inserted and committed in one transaction as its run finishes, so a sweep
    killed at any moment (even by SIGKILL) leaves only whole rows; the primary key keeps a
    point from being stored twice. Rows carry the SHA-256 of the base scenario file they
    ran, so a rerun after that file changed finds them stale instead of mixing them in.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise ResultsDbError(f"{self.path} is a directory, expected a SQLite file")
        try:
            self.conn = sqlite3.connect(self.path)
            self.conn.execute(SCHEMA)
            cols = {row[1] for row in self.conn.execute("PRAGMA table_info(runs)")}
            for col in ("scenario", "scenario_sha"):
                if col not in cols:  # a database written before these columns existed
                    self.conn.execute(f"ALTER TABLE runs ADD COLUMN {col} TEXT")
            self.conn.execute(META)
            # a real write now: a read-only file fails here, not after the first run
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('opened_at', datetime('now'))")
            self.conn.commit()
        except sqlite3.Error as e:
            raise ResultsDbError(f"cannot use {self.path} as the results database: {e}") from None

    def done_keys(self) -> set[str]:
        return {row[0] for row in self.conn.execute("SELECT key FROM runs")}

    def stale(self, sweep: Sweep) -> int:
        """Rows of this sweep's scenario file written when its text was different."""
        row = self.conn.execute(
            "SELECT count(*) FROM runs WHERE scenario = ? AND scenario_sha != ?",
            (str(sweep.scenario_path), sweep.scenario_sha),
        ).fetchone()
        return int(row[0])

    def add(self, sweep: Sweep, point: SweepPoint, out: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO runs (key, sweep, params, seed, stats, derived, wall_s,"
            " finished_at, scenario, scenario_sha)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, datetime('now'), ?, ?)",
            (
                point.key,
                str(sweep.path),
                json.dumps(point.params, sort_keys=True),
                point.seed,
                json.dumps(out["stats"], sort_keys=True),
                json.dumps(out["derived"], sort_keys=True),
                out["wall_s"],
                str(sweep.scenario_path),
                sweep.scenario_sha,
            ),
        )
        self.conn.commit()  # each finished run is durable at once

    def rows(self, keys: list[str] | None = None) -> list[dict[str, Any]]:
        """Rows as dicts; with ``keys``, those rows in the order of ``keys``."""
        cur = self.conn.execute("SELECT key, params, seed, stats, derived, wall_s FROM runs")
        found = {}
        for key, params, seed, stats, derived, wall in cur:
            found[key] = {
                "key": key,
                "params": json.loads(params),
                "seed": seed,
                "stats": json.loads(stats),
                "derived": json.loads(derived),
                "wall_s": wall,
            }
        if keys is None:
            return list(found.values())
        return [found[k] for k in keys if k in found]

    def close(self) -> None:
        self.conn.close()


def sort_key(params: dict[str, Any], seed: int | None) -> tuple[Any, ...]:
    """Order of a sweep's table: each parameter in grid order, sizes and durations by their
    value (``"4M"`` before ``"16M"``), numbers numerically, other values as text."""
    from epcsim.units import parse_duration, parse_size

    out: list[Any] = []
    for v in params.values():
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            out.append((2, 0, json.dumps(v, sort_keys=True)))
            continue
        if isinstance(v, int | float):
            out.append((0, v, ""))
            continue
        for parse in (parse_size, parse_duration):
            try:
                out.append((0, parse(v), v))
                break
            except ValueError:
                continue
        else:
            out.append((1, 0, v))
    out.append((0, -1 if seed is None else seed, ""))
    return tuple(out)


def _inline(points: list[SweepPoint], base_dir: str) -> Iterator[tuple[SweepPoint, dict]]:
    for pt in points:
        yield pt, run_point(pt.scenario, pt.seed, base_dir)


def quiet_dask_logs() -> None:
    """Dask's own warnings (a task cancelled by Ctrl-C, a worker shutting down) are not the
    user's business: errors only, here and in worker processes (they read the environment
    when they start). A ``DASK_LOGGING__DISTRIBUTED`` the user set wins."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    if os.environ["DASK_LOGGING__DISTRIBUTED"] == "error":
        logging.getLogger("distributed").setLevel(logging.ERROR)


def _dask(
    points: list[SweepPoint], base_dir: str, scheduler: Any, workers: int | None
) -> Iterator[tuple[SweepPoint, dict]]:
    """Runs on Dask: a local cluster (``None``/``"local"``), the scheduler at an address, or
    an already connected ``Client`` (left open for its owner)."""
    quiet_dask_logs()
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    own = True
    if scheduler in (None, "local"):
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    elif isinstance(scheduler, str):
        client = Client(scheduler)
    else:
        client, own = scheduler, False
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
        if own:
            client.close()
        if cluster is not None:
            cluster.close()


def run_sweep(
    sweep: Sweep,
    db: ResultsDb,
    scheduler: Any = None,
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
        db.add(sweep, pt, out)
        n += 1
        if on_done is not None:
            on_done(pt, n, len(todo))
    return {"ran": n, "skipped": skipped, "total": len(sweep.points)}
