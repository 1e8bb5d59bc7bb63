"""Reading a scenario file: TOML (``tomllib``) -> schema -> whole-scenario checks.

Every failure becomes one ``ScenarioError`` whose text is ``FILE: key.path: reason``, the
form the command line prints before exiting with status 2.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from epcsim.scenario.model import STEP_TAGS, Scenario
from epcsim.scenario.semantics import ScenarioError, check
from epcsim.units import show

#: the lists whose items are tagged unions (``model.StepSpec``, ``model.PhaseSpec``)
_TAGGED_LISTS = ("step", "phases")


def key_path(loc: tuple[Any, ...]) -> str:
    """``('enclave', 0, 'thread', 1, 'access:zipf', 'alpha')`` -> ``enclave[0].thread[1].alpha``
    (the union tags pydantic inserts are not keys of the file and are dropped). A tag comes
    only right after an item of the tagged lists, ``step`` and ``phases``: elsewhere a key
    spelled like one (``enclave[0].sleep``) is the file's own, and kept."""
    out = ""
    prev_int = False
    name = ""  # the last key before the item index
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            prev_int = True
            continue
        if prev_int and name in _TAGGED_LISTS and part in STEP_TAGS:
            prev_int = False
            continue
        out += f".{part}" if out else str(part)
        prev_int = False
        name = str(part)
    return out


def _message(err: Mapping[str, Any]) -> tuple[str, str]:
    key = key_path(err["loc"])
    kind = err["type"]
    msg = err["msg"]
    if kind == "extra_forbidden":
        return key, "unknown key (not part of the scenario schema; check the spelling)"
    if kind == "missing":
        return key, "required key is missing"
    if kind in ("bad_step", "bad_pattern"):
        field, _, reason = msg.partition(": ")
        inp = err.get("input")
        if kind == "bad_step" and isinstance(inp, dict) and inp.get("op") == "access":
            field, reason = "pattern", "expected " + msg.split("pattern = ", 1)[1].rstrip(")")
        got = inp.get(field) if isinstance(inp, dict) else inp
        return f"{key}.{field}", f"{reason}, got {show(got)}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    elif "input" in err and not isinstance(err["input"], dict | list):
        msg = f"{msg}, got {show(err['input'])}"
    return key, msg


def validate(data: dict[str, Any], path: str | None = None) -> Scenario:
    """A parsed TOML document -> a checked ``Scenario``."""
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        key, reason = _message(errors[0])
        more = len(errors) - 1
        if more:
            reason += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise ScenarioError(key, reason, path) from None
    try:
        check(sc)
    except ScenarioError as e:
        e.path = path
        e.args = (e.format(),)
        raise
    return sc


#: largest scenario or sweep file read (a scenario is a few KiB; a huge file is a mistake)
MAX_FILE_BYTES = 16 << 20


def read_toml_text(p: Path, key: str = "", what: str = "the file") -> str:
    """The file's text; ``ScenarioError`` when it cannot be read, is not UTF-8 or is huge."""
    try:
        if p.is_dir():
            raise ScenarioError(key, f"{what} is a directory, expected a TOML file", str(p))
        if p.stat().st_size > MAX_FILE_BYTES:
            raise ScenarioError(key, f"{what} is larger than 16 MiB: not a scenario", str(p))
        raw = p.read_bytes()
    except OSError as e:
        raise ScenarioError(key, f"cannot read {what}: {e.strerror or e}", str(p)) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError(
            key,
            f"{what} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})",
            str(p),
        ) from None


def parse_toml(text: str, p: Path, key: str = "") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(key, f"not valid TOML: {clip(str(e), 200)}", str(p)) from None


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file; raises ``ScenarioError`` (``FILE: key: reason``)."""
    p = Path(path)
    text = read_toml_text(p)
    data = parse_toml(text, p)
    sc = validate(data, str(p))
    sc._source = text  # kept for the report's "config used"
    return sc
