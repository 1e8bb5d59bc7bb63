"""Any value in any key of a scenario ends in a checked scenario or a ``ScenarioError``
naming a key, never in another exception (issue 10, item 3: no traceback for a user's
mistake). Values are drawn to be hostile: NaN, infinities, huge and negative integers,
long strings, wrong types."""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epcsim.scenario.load import validate
from epcsim.scenario.plan import compile_scenario
from epcsim.scenario.semantics import ScenarioError

EXAMPLES = Path(__file__).parents[2] / "examples"
BASES = [
    tomllib.loads((EXAMPLES / f"{n}.toml").read_text())
    for n in ("edmm_grow_trim", "zipf_fits", "two_enclaves")
]

hostile = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**63, 2**53 + 1, 4096, 8192]),
    st.text(max_size=30),
    st.sampled_from(["4K", "1P", "2P", "9" * 40 + "T", "nan", "inf", "1e9M", "-4K", "93.5M"]),
    st.sampled_from(["10ms", "9" * 40 + "s", "1.5us", "-1s"]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))
    else:
        yield prefix


CHANGES = st.sampled_from(range(len(BASES))).flatmap(
    lambda i: st.tuples(
        st.just(i),
        st.lists(
            st.tuples(st.sampled_from([p for p in _paths(BASES[i]) if p]), hostile),
            min_size=1,
            max_size=3,
        ),
    )
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CHANGES)
def test_any_value_anywhere_is_accepted_or_named(base_and_changes):
    i, changes = base_and_changes
    doc = copy.deepcopy(BASES[i])
    for path, value in changes:
        node = doc
        for part in path[:-1]:
            node = node[part]
        if value is None:
            if isinstance(node, dict):
                node.pop(path[-1], None)
            continue
        node[path[-1]] = value
    try:
        sc = validate(doc, "fuzz.toml")
        # what is accepted is finite and fits the model's int64 arrays
        for path in _paths(sc.model_dump()):
            v = sc.model_dump()
            for part in path:
                v = v[part]
            if isinstance(v, float):
                assert math.isfinite(v), path
            elif isinstance(v, int):
                assert -(2**63) <= v < 2**63, path
        compile_scenario(sc)
    except ScenarioError as e:
        text = str(e)
        assert text.startswith("fuzz.toml") or e.key, text
        assert len(text) < 600 and "\n" not in text
