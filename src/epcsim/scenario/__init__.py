"""TOML scenarios: schema, loading, running and the paging-cliff sweep.

from epcsim.scenario import load_scenario, run_scenario
result = run_scenario(load_scenario("examples/zipf_fits.toml"))
result.derived["fault_rate"], result.stats["eldu"]
"""

from importlib import import_module

_EXPORTS = {
    "Scenario": "epcsim.scenario.model",
    "ScenarioError": "epcsim.scenario.semantics",
    "load_scenario": "epcsim.scenario.load",
    "validate": "epcsim.scenario.load",
    "run_scenario": "epcsim.scenario.runner",
    "RunResult": "epcsim.scenario.runner",
    "run_cliff": "epcsim.scenario.cliff",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'epcsim.scenario' has no attribute {name!r}")
