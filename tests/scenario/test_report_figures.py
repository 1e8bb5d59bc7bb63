"""The run report's plots: page counts never drawn below zero; one name per counter."""

from pathlib import Path

from epcsim.report.run import _derived_rows, _epc_figure, _rates_figure
from epcsim.scenario.load import load_scenario
from epcsim.scenario.runner import ewb_attempts, pages_written_back, run_scenario

EXAMPLE = Path(__file__).parents[2] / "examples" / "sequential_2x_epc.toml"


def test_axes_start_at_zero_and_counters_have_one_name():
    res = run_scenario(load_scenario(EXAMPLE), baseline=False)
    fig = _epc_figure(res)
    assert fig.axes[0].get_ylim()[0] == 0
    fig = _rates_figure(res.samples)
    assert fig.axes[0].get_ylim()[0] == 0
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert "pages written back (ewb)" in labels and "pages loaded back (eldu)" in labels
    rows = dict(_derived_rows(res.derived))
    assert rows["pages written back (ewb)"] == res.derived["ewb_in_run"]
    s = res.stats
    # pages written back <= EWB executions (retries after SGX_NOT_TRACKED count only there)
    assert 0 < pages_written_back(s) <= ewb_attempts(s)
    assert res.derived["ewb_in_run"] == pages_written_back(res.run_stats)
