"""The seed scenario (shared/seed/): the race and its fix come out of the model."""

import pytest

from epcsim.demo import SeedConfig, run_seed


@pytest.fixture(scope="module")
def both():
    return {dr: run_seed(SeedConfig(epc="4M", cpus=4, direct_reclaim=dr)) for dr in (False, True)}


def test_without_direct_reclaim_the_first_call_stops_part_way(both):
    run = both[False]
    assert run.modify.first_call_errno == "EAGAIN"
    assert 0 < run.modify.first_call_pages < run.length_pages
    assert run.modify.eagain > 0
    # the runtime's retry loop still finishes the job
    assert run.modify.pages_done == run.length_pages == run.remove.pages_done
    assert run.summary()["completed"] and run.stats["direct_reclaim_calls"] == 0


def test_with_direct_reclaim_one_call_covers_the_whole_range(both):
    run = both[True]
    assert run.modify.first_call_errno is None
    assert run.modify.first_call_pages == run.length_pages
    assert run.modify.calls == 1 and run.remove.calls == 1
    assert run.stats["direct_reclaim_calls"] > 0
    s = run.summary()
    assert s["completed"] and s["eagain_returns"] == 0 and s["calls_to_complete"] == 2


def test_the_heap_really_oversubscribes(both):
    for run in both.values():
        # 2x the EPC: at least every page beyond the EPC had to be written out and loaded
        assert run.stats["ewb_pages"] >= run.length_pages // 2
        assert run.stats["eldu"] >= run.length_pages // 2
        assert run.accept_failures == 0


def _first_call(**kw):
    cfg = SeedConfig(epc="2M", direct_reclaim=False, stop_after_first_call=True, **kw)
    return run_seed(cfg).modify


def test_outcome_depends_on_costs_not_a_special_case():
    # Victims in an idle neighbour enclave (no shared encl->lock): a reclaimer whose EWB is
    # cheaper than ELDU keeps up and the first call completes; a slower one loses the race.
    layout = {"heap_factor": 0.9, "neighbour_factor": 1.0, "cpus": 4}
    assert _first_call(costs={"ewb": 5_000}, **layout).first_call_errno is None
    assert _first_call(costs={"ewb": 15_000}, **layout).first_call_errno == "EAGAIN"
    # On one CPU ksgxd only runs when the ioctl's slice ends: lost at any cost
    assert _first_call(costs={"ewb": 5_000}, **{**layout, "cpus": 1}).first_call_errno == "EAGAIN"


def test_same_enclave_victims_lose_on_any_cost_ratio():
    # ksgxd needs encl->lock three times per page of the ioctl's own enclave: lock-bound
    for ewb in (1_000, 5_000, 15_000):
        m = _first_call(costs={"ewb": ewb}, cpus=4)
        assert m.first_call_errno == "EAGAIN" and m.first_call_pages < 100


def test_bad_config_is_a_value_error():
    with pytest.raises(ValueError, match="heap_factor"):
        SeedConfig(heap_factor=0)


def test_same_seed_same_result_byte_for_byte():
    import json

    def once():
        r = run_seed(SeedConfig(epc="2M", cpus=2, direct_reclaim=False, seed=5))
        return json.dumps([r.summary(), r.free_timeline, r.modify.eagain_at], sort_keys=True)

    assert once() == once()
