"""``epcsim run``'s sampled run with the compiled core (issue 9, session ``sampler``): host CPU
of ``runner.execute`` alone (no all-resident baseline run), with the sampler (what
``epcsim run`` and the reports do) and without it (what ``epcsim cliff``/``mrc`` do), and
how many accesses ran on the core. Scenarios: the TOML files given, or ``large`` - one
thread, Zipf (alpha 1.1, scattered) over a 256 MiB heap on a 64 MiB EPC, 1M accesses
(``ACCESSES`` overrides). Before session ``sampler`` no sampled run reached the core.

    PYTHONPATH=src:benchmarks python benchmarks/sampled_run.py [large|FILE.toml ...] [--accesses N]
"""

from __future__ import annotations

import sys
import time
from typing import Any

from epcsim.scenario import runner
from epcsim.scenario.load import load_scenario, validate
from epcsim.scenario.plan import compile_scenario


def large(accesses: int) -> dict[str, Any]:
    """The large one-thread scenario (module docstring)."""
    step = {"op": "access", "pattern": "zipf", "alpha": 1.1, "scatter": True}
    step.update(count=accesses, writes=0.2)
    return {
        "name": "large",
        "seed": 1,
        "machine": {"epc": "64M", "cpus": 2},
        "enclave": [
            {
                "name": "big",
                "region": [{"name": "heap", "size": "256M"}],
                "thread": [{"name": "t", "step": [step]}],
            }
        ],
    }


def measure(name: str, plan_of: Any, sample: bool) -> None:
    made: list[Any] = []
    make = runner.make_system

    def mk(p: Any) -> Any:
        made.append(make(p))
        return made[-1]

    runner.make_system = mk
    try:
        c0 = time.process_time()
        res = runner.execute(plan_of(), sample=sample)
        cpu = time.process_time() - c0
    finally:
        runner.make_system = make
    sc = made[-1].sgx.stream_core
    on = 0 if sc is None else sc.accesses
    obs = 0 if sc is None else getattr(sc, "observed_events", 0)
    acc = res.derived["accesses"]
    print(
        f"{name} sample={sample}: {cpu:.2f} s CPU, {acc} accesses ({res.stats['page_faults']}"
        f" faults), {on} on the core, {obs} observer events on it, "
        f"{0 if res.samples is None else len(res.samples['t'])} samples",
        flush=True,
    )


def main(argv: list[str]) -> None:
    accesses = 1_000_000
    if "--accesses" in argv:
        i = argv.index("--accesses")
        accesses = int(argv[i + 1])
        del argv[i : i + 2]
    for arg in argv or ["large"]:
        if arg == "large":
            data = large(accesses)
            plan_of = lambda d=data: compile_scenario(validate(d), None)  # noqa: E731
        else:
            plan_of = lambda a=arg: compile_scenario(load_scenario(a), None)  # noqa: E731
        for sample in (False, True):
            measure(arg, plan_of, sample)


if __name__ == "__main__":
    main(sys.argv[1:])
