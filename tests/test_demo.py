"""The seed scenario (shared/seed/): the race and its fix come out of the model."""

import json

import pytest

import epcsim
from epcsim.arch import PAGE_SIZE, SGX_NR_LOW_PAGES
from epcsim.demo import (
    IMAGE_PAGES,
    SeedConfig,
    demo_configs,
    eagain_cause,
    run_seed,
)
from epcsim.seed_run import BEING_RECLAIMED, NO_FREE_PAGE
from epcsim.workloads.edmm import Ctx, drive_range

#: Default costs throughout: the -EAGAIN retry pays the return to user space and a new
#: syscall (Costs.user_return + Costs.syscall), longer than a spinning ksgxd's pick-up of
#: encl->lock, so the retry loop makes progress (tests/engine/test_livelock.py shows it
#: livelock when the round trip is made shorter than the pick-up).


@pytest.fixture(scope="module")
def both():
    return {dr: run_seed(SeedConfig(epc="4M", cpus=4, direct_reclaim=dr)) for dr in (False, True)}


def test_the_selftest_steps_run_before_the_trim(both):
    for run in both.values():
        assert run.probe_errno == "EINVAL"  # zeroed struct: SGX2 is there, length 0 is invalid
        assert run.buffer_calls_ok  # PUT_TO_BUFFER / GET_FROM_BUFFER through TCS #0
        order = ["build", "probe", "buffer_calls", "modify_types", "eaccept", "remove_pages"]
        times = [run.phases[p] for p in order]
        assert times == sorted(times) and times[-1] < run.phases["end"]
        # the buffer calls fault the evicted TCS and buffer pages back: time passes
        assert run.phases["modify_types"] > run.phases["buffer_calls"]
        s = run.summary()
        assert s["free_pages_at_first_call"] == run.at_first_call.free_pages >= 0


def test_first_call_accounting_adds_up(both):
    # Every page of the first call needed an ELDU (the heap's head was evicted by the build),
    # and each ELDU took one free page: what the call used is what was free at its start plus
    # what the reclaimers freed while it ran, minus what was left when it stopped.
    for run in both.values():
        s = run.summary()
        assert 0 < s["first_call_eldu"] <= s["first_call_count_pages"]
        used = (
            s["free_pages_at_first_call"]
            + s["first_call_ksgxd_reclaimed"]
            + s["first_call_direct_reclaimed"]
            - s["free_pages_at_first_stop"]
        )
        assert used == s["first_call_eldu"]


def test_without_direct_reclaim_the_first_call_stops_part_way(both):
    run = both[False]
    s = run.summary()
    assert run.modify.first_call_errno == "EAGAIN"
    assert 0 < run.modify.first_call_pages < run.length_pages
    # it stopped because the free pool was empty when the next page needed its ELDU
    assert s["first_call_stop"] == NO_FREE_PAGE and s["free_pages_at_first_stop"] == 0
    assert s["first_call_eldu"] == s["first_call_count_pages"]  # each page was in backing
    assert s["eagain_no_free_page"] == s["eagain_returns"] > 0
    assert s["first_call_direct_reclaimed"] == 0
    # the runtime's retry loop still finishes the job
    assert run.modify.pages_done == run.length_pages == run.remove.pages_done
    assert s["completed"] and run.stats["direct_reclaim_calls"] == 0


def test_with_direct_reclaim_one_call_covers_the_whole_range(both):
    run = both[True]
    assert run.modify.first_call_errno is None
    assert run.modify.first_call_pages == run.length_pages
    assert run.modify.calls == 1 and run.remove.calls == 1
    assert run.stats["direct_reclaim_calls"] > 0
    s = run.summary()
    assert s["completed"] and s["eagain_returns"] == 0 and s["calls_to_complete"] == 2
    assert s["first_call_direct_reclaimed"] > 0 and s["first_call_stop"] is None


def test_the_heap_really_oversubscribes(both):
    for run in both.values():
        s = run.summary()
        # 2x the EPC: at least every page beyond the EPC had to be written out and loaded
        assert s["ewb"] >= run.length_pages // 2
        assert s["eldu"] >= run.length_pages // 2
        assert s["ewb_attempts"] >= s["ewb"]  # leaf executions include NOT_TRACKED retries
        assert run.accept_failures == 0


def _build(system, heap):
    size = PAGE_SIZE
    while size < (IMAGE_PAGES + heap) * PAGE_SIZE:
        size <<= 1
    e = system.create_enclave(size)
    assert e.add_pages(0, 2 * PAGE_SIZE, page_type="tcs", measure=True).ok
    assert e.add_pages(2 * PAGE_SIZE, 4 * PAGE_SIZE, "rw", measure=True).ok
    assert e.add_pages(IMAGE_PAGES * PAGE_SIZE, heap * PAGE_SIZE, "rw").ok
    assert e.init().ok
    return e


def test_eagain_with_direct_reclaim_when_the_ioctl_reaches_a_page_ksgxd_holds():
    """Issue 8 item 4: with sgx_reclaim_direct() real v6.0 hardware still saw -EAGAIN.

    Direct reclaim only guarantees a free page for ELDU. It cannot help when the page itself
    is isolated by ksgxd: from the moment ksgxd marks it BEING_RECLAIMED (phase B, under
    encl->lock) until its EWB is done (phase D), __sgx_encl_load_page() answers -EBUSY and the
    ioctl returns -EAGAIN with ``count`` = the pages before it. That needs ksgxd to be
    reclaiming (free < SGX_NR_HIGH_PAGES) while the LRU head - the oldest pages, which ksgxd
    takes 16 at a time - lies just ahead of the ioctl in its range, and ksgxd's batch to last
    until the ioctl gets there: ksgxd takes encl->lock three times per page (backing, EBLOCK,
    EWB) against the ioctl's once per page.

    Constructed here: a heap that fits in the EPC (so its pages are the LRU's oldest, in
    range order), then something outside any enclave - as a KVM guest's virtual EPC, never on
    the LRU (spec §13) - takes the free pool below SGX_NR_LOW_PAGES and ksgxd is woken, as
    sgx_alloc_epc_page() does. The trim of the heap then meets ksgxd's batches.
    """
    system = epcsim.System(epc="1M", cpus=2, direct_reclaim=True, seed=1)
    heap = 64
    encl = _build(system, heap)
    sgx = system.sgx
    while sgx.epc.nr_free_pages >= SGX_NR_LOW_PAGES:
        assert sgx.epc.alloc(0) >= 0  # the guest's pages
    sgx.wake_ksgxd()
    system.run(until="20us")  # ksgxd is inside its first batch
    assert encl.encl.reclaiming[IMAGE_PAGES]  # the heap's first page is BEING_RECLAIMED

    # The runtime retries from offset + count while -EAGAIN, as the Sep 2022 selftest patch
    # does; each -EAGAIN is classified at the instant the ioctl returns it.
    causes, free_at_eagain = [], []

    def on_call(r, done_before):
        if r.errno == "EAGAIN":
            assert r.result == 0
            stop = IMAGE_PAGES + (done_before + r.count) // PAGE_SIZE
            causes.append(eagain_cause(system, encl.encl, stop, r))
            free_at_eagain.append(sgx.epc.nr_free_pages)

    t = encl.new_thread("runtime")
    gen = drive_range(Ctx(encl, t, []), "modify_types", IMAGE_PAGES, heap, on_call=on_call)
    rec = system._call(t, gen)
    assert rec.ok and rec.pages_done == heap and rec.errno is None
    assert rec.first_call_errno == "EAGAIN" and rec.calls == rec.eagain + 1 > 1
    assert system.stats()["direct_reclaim_calls"] > 0
    # every -EAGAIN was a page ksgxd held, with free EPC pages to spare: not the free pool
    assert set(causes) == {BEING_RECLAIMED} and len(causes) == rec.eagain
    assert min(free_at_eagain) > 0


def test_outcome_depends_on_costs_not_a_special_case():
    # Victims in an idle neighbour enclave (no shared encl->lock): a reclaimer whose EWB is
    # cheaper than ELDU keeps up and the first call completes; a slower one loses the race.
    layout = {"heap_factor": 0.9, "neighbour_factor": 1.0, "cpus": 4}
    assert _first_call(costs={"ewb": 5_000}, **layout).first_call_errno is None
    assert _first_call(costs={"ewb": 15_000}, **layout).first_call_errno == "EAGAIN"


def _first_call(**kw):
    cfg = SeedConfig(epc="2M", direct_reclaim=False, stop_after_first_call=True, **kw)
    return run_seed(cfg).modify


def test_demo_runs_the_faithful_default_and_the_fifo_comparison():
    cfgs = demo_configs(epc="2M", cpus=2)
    assert [(c.mutex, c.sched, c.direct_reclaim) for c in cfgs] == [
        ("linux", "cfs", False),
        ("linux", "cfs", True),
        ("fifo", "fifo", False),
        ("fifo", "fifo", True),
    ]


def test_bad_config_is_a_value_error():
    with pytest.raises(ValueError, match="heap_factor"):
        SeedConfig(heap_factor=0)
    with pytest.raises(ValueError, match="mutex"):
        SeedConfig(mutex="ticket")
    with pytest.raises(ValueError, match="sched"):
        SeedConfig(sched="rr")


def test_same_seed_same_result_byte_for_byte():
    def once():
        r = run_seed(SeedConfig(epc="2M", cpus=2, direct_reclaim=False, seed=5))
        return json.dumps([r.summary(), r.free_timeline, r.modify.eagain_at], sort_keys=True)

    assert once() == once()


def test_the_report_opens_with_findings_computed_from_the_runs(both, tmp_path):
    from epcsim.report.demo import findings, write_demo_report

    runs = [both[False], both[True]]
    text = " ".join(findings(runs))
    no, dr = (r.summary() for r in runs)
    # the numbers in the text are the runs' numbers
    assert f"after {no['first_call_count_pages']:,} of {no['length_pages']:,} pages" in text
    assert f"started with {no['free_pages_at_first_call']:,} free EPC pages" in text
    assert f"{no['eagain_returns'] - dr['eagain_returns']:,} fewer -EAGAIN returns" in text
    assert f"It ran {dr['direct_reclaim_calls']:,} batches" in text
    html = write_demo_report(runs, None, tmp_path).read_text()
    heads = [html.index(f"<h2>{h}</h2>") for h in ("The answer", "Outcome", "Configuration")]
    assert heads == sorted(heads)
    for cost in ("ewb", "eldu"):  # every cost with its unit
        ns = runs[0].system_config["costs"][cost]
        assert f"<td>{cost}</td><td>{ns:,} ns</td>" in html
    # one meaning per counter name: pages written back vs EWB leaf executions
    assert "ewb (pages written back)" in html and "ewb_attempts (EWB leaves" in html


def test_a_dense_trace_keeps_its_extremes_when_thinned():
    from epcsim.report.demo import _envelope

    t = list(range(100_000))
    v = [0 if i % 997 == 0 else 50 + i % 7 for i in t]
    tt, vv = _envelope(t, v, buckets=500)
    assert tt.size <= 1000 and vv.min() == 0 and vv.max() == 56
    assert (tt[1:] >= tt[:-1]).all()  # still a time series
