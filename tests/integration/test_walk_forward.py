"""Issue 10 §3: walk-forward with retraining (`stairway validate --folds N`).

- the fold plan: test windows follow each other, training ends where testing starts;
- no fold's test data reaches its training: a fold trained on a file whose bars from the test
  window on are replaced (mirrored) learns bit-identical weights, while its test result changes;
- stitching: the stitched totals are the folds' sums, the curves are continuous, the report and
  the JSON hold what was printed; Ray (local, 2 workers) gives the same folds as in-process.
"""

import datetime as dt
import json

import numpy as np
import pytest

from stairway.cli import main
from stairway.core.bar_files import load_period_bars
from stairway.core.config import DateRange, load_config
from stairway.core.errors import ConfigError
from stairway.trainer.config import TrainerConfig
from stairway.trainer.walk_forward import plan_folds, run_fold, run_walk_forward
from stairway.trainer.wf_report import write_wf_report
from tests.helpers import html_outline, without_stops, write_bars_csv

# Tiny training leaves the policy near uniform (confidence ~0.25): with the default
# min_confidence (0.35) it would hold every action, and these tests need one that trades.
TINY = {
    "STAIRWAY_CYCLES__COUNT": "2",
    "STAIRWAY_CYCLES__STEPS": "512",
    "STAIRWAY_PPO__NUM_ENVS": "8",
    "STAIRWAY_PPO__NUM_STEPS": "32",
    "STAIRWAY_TRAIN__SESSION_MINUTES": "6000",
    "STAIRWAY_TRAIN__MIN_CONFIDENCE": "0",
}
YEAR = DateRange(start=dt.date(2017, 1, 1), end=dt.date(2017, 12, 30))


def tiny_cfg(**extra) -> TrainerConfig:
    return load_config(TrainerConfig, "config/trainer.toml", environ=TINY | extra)


def test_fold_plans():
    roll = plan_folds(YEAR, 6, "rolling", 3.0)
    anch = plan_folds(YEAR, 6, "anchored", 3.0)
    assert len(roll) == len(anch) == 6
    for plan in (roll, anch):
        assert plan[-1].test_end == YEAR.end
        for a, b in zip(plan, plan[1:]):
            assert a.test_end == b.test_start  # test windows tile the range's tail
        for f in plan:
            assert f.train_start < f.test_start < f.test_end
    assert all(f.train_start == YEAR.start for f in anch)
    lengths = {(f.test_start - f.train_start).days for f in roll}
    assert max(lengths) - min(lengths) <= 1  # the rolling window keeps its length
    assert roll[0].test_start == anch[0].test_start == dt.date(2017, 5, 2)
    with pytest.raises(ConfigError, match="test windows of 5.6 days; need at least 7"):
        plan_folds(DateRange(start=dt.date(2017, 1, 1), end=dt.date(2017, 3, 1)), 8, "rolling", 2.5)
    with pytest.raises(ConfigError, match="scheme 'sliding'"):
        plan_folds(YEAR, 6, "sliding")


def mirrored_after(raw: np.ndarray, start_ns: int) -> np.ndarray:
    """The same file with every bar from ``start_ns`` on mirrored around the price there."""
    out = raw.copy()
    m = out["ts_ns"] >= start_ns
    p0 = float(out["open"][m][0])
    out["open"][m], out["close"][m] = 2 * p0 - raw["open"][m], 2 * p0 - raw["close"][m]
    out["high"][m], out["low"][m] = 2 * p0 - raw["low"][m], 2 * p0 - raw["high"][m]
    return out


def test_a_folds_test_data_never_reaches_its_training(tmp_path):
    cfg = without_stops(tiny_cfg())
    # no holding costs (or stops) here: buy-and-hold pays them on the series and on its mirror alike,
    # which would break the mirror symmetry this test reads the test window's influence from
    no_fin = {"financing_long_pct_per_year": 0.0, "financing_short_pct_per_year": 0.0}
    cfg = cfg.model_copy(update={"execution": cfg.execution.model_copy(update=no_fin)})
    fold = plan_folds(YEAR, 6, "rolling", 3.0)[2]
    start_ns = int(dt.datetime.combine(fold.test_start, dt.time(), dt.UTC).timestamp()) * 10**9
    raw, _ = load_period_bars(cfg.data.bars_csv, 60, 0.10, "EUR_USD")
    poisoned = write_bars_csv(tmp_path / "FOREX_EURUSD_1H_ASK.csv", mirrored_after(raw, start_ns))
    clean_cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"bars_csv": cfg.data.bars_csv.resolve()})})
    bad_cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"bars_csv": poisoned})})
    clean = run_fold(clean_cfg.model_dump(mode="json"), fold.to_json(), draws=5)
    bad = run_fold(bad_cfg.model_dump(mode="json"), fold.to_json(), draws=5)
    assert clean["train_last_bar_ns"] < start_ns <= clean["test_first_decision_ns"]
    assert clean["weights"] == bad["weights"]  # bit-identical: the test window did not reach training
    assert clean["in_sample"] == bad["in_sample"]
    # ...while the test window itself did change what the fold was tested on
    assert clean["summaries"]["buy_and_hold"]["pnl_pct"] == pytest.approx(
        -bad["summaries"]["buy_and_hold"]["pnl_pct"], abs=0.5
    )
    assert clean["summaries"]["buy_and_hold"]["pnl_pct"] != pytest.approx(bad["summaries"]["buy_and_hold"]["pnl_pct"])


@pytest.fixture(scope="module")
def walk():
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        wf = run_walk_forward(
            tiny_cfg(), DateRange(start=dt.date(2017, 3, 1), end=dt.date(2017, 9, 1)), 3, "anchored", 2.0, draws=10
        )
    wf.logs = logs  # type: ignore[attr-defined]
    return wf


def test_each_fold_says_when_it_ends_with_the_time_left(walk):
    """Issue 22 §1: one line per fold as it finishes (not all at the end), with elapsed time
    and the time left at this pace."""
    ends = [e for e in walk.logs if e["event"] == "fold_finished"]
    assert [e["done"] for e in ends] == ["1/3", "2/3", "3/3"]
    assert ends[0]["eta_s"] > 0 and ends[-1]["eta_s"] == 0
    assert ends[0]["elapsed_s"] <= ends[1]["elapsed_s"] <= ends[2]["elapsed_s"]
    assert ends[1]["eta_s"] == pytest.approx(ends[1]["elapsed_s"] / 2, abs=0.11)


def test_stitched_result_adds_the_folds_up(walk):
    assert len(walk.folds) == 3
    for name, s in walk.stitched.items():
        assert s["total_return_pct"] == pytest.approx(sum(f["summaries"][name]["pnl_pct"] for f in walk.folds))
        ts, eq = walk.curves[name]
        assert np.all(np.diff(ts) > 0)  # folds follow each other
        assert eq[-1] - 100_000.0 == pytest.approx(s["total_return_pct"] * 1000.0, abs=1e-6)
        lo, hi = s["intervals"]["total_return_pct"]
        assert lo <= hi
    assert walk.stitched["flat"]["total_return_pct"] == 0.0
    pol = [f["summaries"]["policy"]["pnl_pct"] for f in walk.folds]
    bh = [f["summaries"]["buy_and_hold"]["pnl_pct"] for f in walk.folds]
    assert walk.beat_buy_and_hold == pytest.approx(np.mean([p > b for p, b in zip(pol, bh)]))
    assert walk.trades == sum(len(f["trade_returns"]) for f in walk.folds)
    assert 0.0 <= walk.beat_random_share <= 1.0 and len(walk.random_pnl_pct) == 10


def test_report_holds_what_was_measured(walk, tmp_path):
    page = write_wf_report(walk, tiny_cfg(), tmp_path)
    out = page.parent
    md = (out / "report.md").read_text()
    doc = json.loads((out / "walk_forward.json").read_text())
    assert doc["stitched"]["policy"]["total_return_pct"] == pytest.approx(walk.stitched["policy"]["total_return_pct"])
    assert f"{walk.stitched['buy_and_hold']['total_return_pct']:+.2f}" in md
    assert "walk-forward efficiency" in md and "| fold | train | test |" in md
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 2
    outline = html_outline(html)  # issue 22 §2: tables as tables, links to the folds' files
    assert outline["tags"].get("pre", 0) == 0 and outline["tags"]["table"] >= 2
    assert "fold" in outline["th"] and "walk_forward.json" in outline["links"]
    assert {f"fold-{k}.safetensors" for k in range(3)} <= set(outline["links"])
    assert all((out / f"fold-{k}.safetensors").stat().st_size > 1000 for k in range(3))


def test_ray_runs_the_same_folds(walk):
    pytest.importorskip("ray")
    on_ray = run_walk_forward(
        tiny_cfg(),
        DateRange(start=dt.date(2017, 3, 1), end=dt.date(2017, 9, 1)),
        3,
        "anchored",
        2.0,
        draws=10,
        ray_address="local",
        workers=2,
    )
    assert on_ray.workers.startswith("ray (local, 2 workers)")
    for a, b in zip(walk.folds, on_ray.folds):
        assert a["weights"] == b["weights"]
        assert a["summaries"]["policy"] == b["summaries"]["policy"]


def test_cli_walk_forward_and_argument_errors(tmp_path, monkeypatch, capsys):
    for k, v in TINY.items():
        monkeypatch.setenv(k, v)
    assert (
        main(
            [
                "validate",
                "--range",
                "2017-03-01..2017-08-01",
                "--folds",
                "2",
                "--train-windows",
                "2",
                "--draws",
                "5",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for frag in (
        "2 rolling folds",
        "| policy |",
        "| buy_and_hold |",
        "| sma_cross |",
        "walk-forward efficiency",
        "the policy beat buy-and-hold in",
        "report: ",
    ):
        assert frag in out, frag
    assert main(["validate", "--range", "2017-03-01..2017-08-01"]) == 2
    assert "give --checkpoint SHA or --folds N" in capsys.readouterr().err
    assert main(["validate", "--range", "2017-03-01..2017-08-01", "--folds", "2", "--checkpoint", "abcdef"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["validate", "--range", "2017-03-01..2017-08-01", "--folds", "0"]) == 2
    assert "--folds 0: at least 1" in capsys.readouterr().err
    # windows too short for the training session: the error names the fold and its window
    assert (
        main(["validate", "--range", "2017-01-01..2017-12-30", "--folds", "40", "--train-windows", "1", "--draws", "2"])
        == 2
    )
    err = capsys.readouterr().err
    assert "fold 0 (2017-01-01 .. 2017-01-10): train.session_minutes" in err and len(err.strip().splitlines()) == 1
    # a range outside the file: one line naming the fold, its window and the file
    assert main(["validate", "--range", "2015-01-01..2015-12-30", "--folds", "3", "--draws", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "fold 0: 2015-01-01 .. 2015-07-02 holds 0 bars of" in err and "FOREX_EURUSD_1H_ASK.csv (it spans 2017" in err
