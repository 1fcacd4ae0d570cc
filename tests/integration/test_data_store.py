"""Issue 13 §2: the trainer's data store (imported, fetched and recorded bars; one loader, one
bar builder) and the nightly job's rolling window: a second night a "day" later trains on
the ticks recorded in between."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re

import numpy as np
import pytest

from stairway.cli import main as cli_main
from stairway.core.bar_builder import BarBuilder
from stairway.core.bar_files import load_bars, load_period_bars
from stairway.core.bar_ticks import bars_to_ticks
from stairway.core.config import DateRange, load_config
from stairway.core.errors import DataError
from stairway.core.tick_files import TickFileWriter
from stairway.emulators.oanda_v20 import OandaEmulator
from stairway.trainer.config import TrainerConfig
from stairway.trainer.cycles import run_cycles
from stairway.trainer.data_store import DataStore, resolve_training_data
from tests.helpers import EURUSD, ROOT, daemon_config, shipped_text, write_bars_csv
from tests.integration.test_gates import LENIENT, SMALL

H = 3600 * 10**9
DAY = 24 * H


def ns(d: dt.date) -> int:
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()) * 10**9


@pytest.fixture(scope="module")
def real():
    return load_bars(EURUSD)[0]


def record(ticks_dir, bars, days):
    """The daemon's recorder writing the bar-derived quotes of these real days."""
    w = TickFileWriter(ticks_dir, "EUR_USD", fsync=False)
    for d in days:
        day = bars[(bars["ts_ns"] >= ns(d)) & (bars["ts_ns"] < ns(d) + DAY)]
        assert len(day), d
        w.write(bars_to_ticks(day, H, "ask", 0.0001))
    w.flush()


def store(tmp_path):
    return DataStore(tmp_path / "store", tmp_path / "ticks", 60, "ask")


def test_sources_merge_with_recordings_first_and_only_complete_days(tmp_path, real):
    s = store(tmp_path)
    nov = write_bars_csv(tmp_path / "FOREX_EURUSD_1H_ASK.csv", real[(real["ts_ns"] < ns(dt.date(2017, 12, 2)))])
    path, n = s.import_file(nov, "EUR_USD")
    assert n > 5000 and path.parent.name == "imported"
    record(tmp_path / "ticks", real, [dt.date(2017, 12, 1), dt.date(2017, 12, 4), dt.date(2017, 12, 5)])
    m = s.merged("EUR_USD", as_of=dt.date(2017, 12, 5))  # the 5th is today: incomplete, left out
    assert m.last_recorded_day == dt.date(2017, 12, 4)
    # recorded days equal the bars the one builder makes of the same quotes...
    day = real["ts_ns"] // DAY
    dec = real[np.isin(day, [ns(dt.date(2017, 12, k)) // DAY for k in (1, 4)])]  # the recorded days' bars
    built = BarBuilder(H, "ask").push(bars_to_ticks(dec, H, "ask", 0.0001))
    tail = m.bars[m.bars["ts_ns"] >= ns(dt.date(2017, 12, 1))]
    assert len(tail) == len(dec) == len(built.bars) + 1  # the last bar closes with its (complete) day
    assert np.array_equal(tail["ts_ns"][:-1], built.bars["ts_ns"])
    assert np.array_equal(tail["close"], dec["close"])  # ask bars back from the ask quotes
    # ...and win over the imported file where both have Dec 1; Dec 4 came from recordings only
    on_dec1 = int((day == ns(dt.date(2017, 12, 1)) // DAY).sum())
    assert m.used == {"recorded": len(tail), "fetched": 0, "imported": n - on_dec1}  # Dec 1: the recording's
    assert m.spans["recorded"].files == 2 and m.spans["imported"].last.startswith("2017-12-01")
    # the tick count of a recorded bar is its volume; the imported volume is the file's
    assert set(tail["volume"].tolist()) == {5.0}
    # the merged file is what the trainer reads, with the one loader
    out, _ = s.materialize("EUR_USD", dt.date(2017, 12, 5))
    back, _ = load_period_bars(out, 60)
    assert np.array_equal(back["ts_ns"], m.bars["ts_ns"]) and np.array_equal(back["close"], m.bars["close"])


def test_data_commands_import_fetch_and_coverage(tmp_path, real, capsys, monkeypatch):
    cfg_path = tmp_path / "trainer.toml"
    cfg_path.write_text(
        shipped_text("trainer.toml").replace('gate_db = "state/gate.db"', f'gate_db = "{tmp_path}/gate.db"')
    )
    monkeypatch.setenv("STAIRWAY_GATES__TICKS_DIR", str(tmp_path / "ticks"))
    base = ["data", "--config", str(cfg_path), "--store", str(tmp_path / "store")]
    assert cli_main([*base, "import", str(EURUSD)]) == 0
    assert "imported 6225 bars of EUR_USD" in capsys.readouterr().out
    # bad input: one line naming the file, nothing stored
    bad = tmp_path / "bad.csv"
    bad.write_text("time,open,high,low,close\n2017-01-02 00:00,1.1,1.2,1.0,x\n")
    assert cli_main([*base, "import", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stairway: error:") and "bad.csv" in err and err.count("\n") == 0
    assert not (tmp_path / "store" / "EUR_USD" / "imported" / "bad.csv").exists()
    four_h = write_bars_csv(tmp_path / "h4.csv", real[::4])
    assert cli_main([*base, "import", str(four_h)]) == 2
    assert "240-minute but the config says bars.period_minutes = 60" in capsys.readouterr().err

    # fetch: OANDA candles from the local v20 emulator, through the daemon config's adapter
    async def with_emulator():
        emu = OandaEmulator()
        url = await emu.start()
        q = bars_to_ticks(real[(real["ts_ns"] >= ns(dt.date(2018, 1, 1)) - 20 * DAY)], H, "ask", 0.0001)
        emu.prices = list(zip(q["ts_ns"].tolist(), q["bid"].tolist(), q["ask"].tolist()))
        emu.now_ns = emu.prices[-1][0]
        dcfg, dpath = daemon_config(tmp_path, EURUSD, "2017-10-01", "2018-01-01")
        text = (
            dpath.read_text()
            + f'\n[broker]\nkind = "oanda"\n[broker.oanda]\nrest_url = "{url}"\nstream_url = "{url}"\n'
        )
        dpath.write_text(text.replace('[broker]\nkind = "paper"\n', "") if text.count("[broker]") > 1 else text)
        monkeypatch.setenv("OANDA_TOKEN", emu.token)
        monkeypatch.setenv("OANDA_ACCOUNT", emu.account)
        args = [*base, "fetch", "--from", "2017-12-20", "--to", "2017-12-27", "--daemon-config", str(dpath)]
        try:
            rc = await asyncio.to_thread(cli_main, args)
            weekend = [*base, "fetch", "--from", "2017-12-23", "--to", "2017-12-24", "--daemon-config", str(dpath)]
            assert await asyncio.to_thread(cli_main, weekend) == 0
            return rc, q
        finally:
            await emu.stop()

    rc, q = asyncio.run(with_emulator())
    out = capsys.readouterr()
    assert rc == 0, out.err
    # a Saturday has no candles: said, and no header-only file that every later run would refuse
    assert "fetched 0 bars of EUR_USD 2017-12-23 .. 2017-12-24 (market closed or no data: nothing written)" in out.out
    assert [p.name for p in (tmp_path / "store" / "EUR_USD" / "fetched").iterdir() if "12-23" in p.name] == []
    fetched = load_period_bars(tmp_path / "store" / "EUR_USD" / "fetched" / "2017-12-20_2017-12-27.csv", 60)[0]
    want = (
        BarBuilder(H, "ask")
        .push(q[(q["ts_ns"] >= ns(dt.date(2017, 12, 20))) & (q["ts_ns"] < ns(dt.date(2017, 12, 27)))])
        .bars
    )
    # every complete candle up to --to; the builder's last bar has no closing quote inside the span
    assert len(fetched) == len(want) + 1 >= 100 and np.array_equal(fetched["ts_ns"][:-1], want["ts_ns"])
    assert np.array_equal(fetched["high"][:-1], want["high"]) and np.array_equal(fetched["low"][:-1], want["low"])
    # coverage: each source's span, files and what it added; the Christmas hole named as a gap
    record(tmp_path / "ticks", real, [dt.date(2017, 12, 28)])
    assert cli_main([*base, "coverage", "--as-of", "2018-01-02", "--json"]) == 0
    cov = json.loads(capsys.readouterr().out)["EUR_USD"]
    assert cov["sources"]["imported"]["bars"] == 6225 and cov["sources"]["fetched"]["files"] == 1
    assert cov["sources"]["recorded"]["files"] == 1 and cov["sources"]["recorded"]["used"] == 24
    assert cov["merged"]["last_complete_recorded_day"] == "2017-12-28"
    assert any(g.startswith("2017-12-25") or g.startswith("2017-12-24") for g in cov["sources"]["imported"]["gaps"])
    assert cli_main([*base, "coverage", "--as-of", "2018-01-02"]) == 0
    assert "recorded" in capsys.readouterr().out


def test_two_nights_a_day_apart_the_second_trains_on_the_new_recordings(tmp_path, real, monkeypatch):
    text = shipped_text("trainer.toml")
    text = text.replace(
        "range = { start = 2017-01-01, end = 2017-10-01 }", f'rolling_days = 60\ndata_store = "{tmp_path / "store"}"'
    )
    cfg_path = tmp_path / "trainer.toml"
    cfg_path.write_text(text)
    env = {k: v for k, v in (SMALL | LENIENT).items() if k != "STAIRWAY_TRAIN__RANGE"} | {
        "STAIRWAY_TRAIN__MODELS_DIR": str(tmp_path / "models"),
        "STAIRWAY_TRAIN__GATE_DB": str(tmp_path / "gate.db"),
        "STAIRWAY_TRAIN__REPORTS_DIR": str(tmp_path / "runs"),
        "STAIRWAY_GATES__TICKS_DIR": str(tmp_path / "ticks"),
        "STAIRWAY_TRAIN__METRICS_FILE": str(tmp_path / "textfile" / "stairway_trainer.prom"),
    }
    cfg = load_config(TrainerConfig, cfg_path, environ=env)
    s = DataStore(tmp_path / "store", tmp_path / "ticks", 60, "ask")
    s.import_file(
        write_bars_csv(tmp_path / "EURUSD_to_nov.csv", real[real["ts_ns"] < ns(dt.date(2017, 12, 1))]), "EUR_USD"
    )
    d = dt.date
    record(tmp_path / "ticks", real, [d(2017, 12, 1), d(2017, 12, 4), d(2017, 12, 5), d(2017, 12, 6), d(2017, 12, 7)])

    def night(as_of):
        one = cfg.model_copy(update={"train": cfg.train.model_copy(update={"as_of": as_of})})
        resolved, _ = resolve_training_data(one)
        return resolved, run_cycles(one, progress=False)

    c1, r1 = night(d(2017, 12, 8))
    # night 1: the shadow gate replays the last 3 complete recorded days; training ends before them
    assert [x.date for x in r1.shadow.days] == ["2017-12-05", "2017-12-06", "2017-12-07"]
    assert r1.shadow.source == "recorded ticks"
    assert (c1.train.range.start, c1.train.range.end) == (d(2017, 10, 6), d(2017, 12, 5))
    assert (
        "selection" in r1.split_desc
        and "gate window" in r1.split_desc
        and ".. 2017-12-04 " in r1.split_desc
        and "source: recorded 46, fetched 0, imported " in r1.split_desc
    )

    # a day later (and a weekend): the daemon recorded the 8th and the 11th, and is recording the 12th
    record(tmp_path / "ticks", real, [d(2017, 12, 8), d(2017, 12, 11), d(2017, 12, 12)])
    c2, r2 = night(d(2017, 12, 12))
    assert [x.date for x in r2.shadow.days] == ["2017-12-07", "2017-12-08", "2017-12-11"]  # the 12th is today
    assert (c2.train.range.start, c2.train.range.end) == (d(2017, 10, 8), d(2017, 12, 7))
    # the validation window now ends on the 6th: days recorded after night 1 were trained/validated on
    assert ".. 2017-12-06 " in r2.split_desc and "source: recorded 94, fetched 0, imported " in r2.split_desc
    merged, _ = load_period_bars(c2.data.bars_csv, 60)
    new = merged[(merged["ts_ns"] >= ns(d(2017, 12, 5))) & (merged["ts_ns"] < ns(d(2017, 12, 7)))]
    assert (
        len(new) == 48
        and "shadow gate on the last 3 of 7 recorded day(s)" in r2.split_desc
        and set(new["volume"].tolist()) == {5.0}
    )  # built from recorded quotes (5 per bar)
    assert r2.candidate != r1.candidate
    # the run's figures for Prometheus (textfile collector), the hold-bonus controller's included
    from prometheus_client.parser import text_string_to_metric_families

    text = (tmp_path / "textfile" / "stairway_trainer.prom").read_text()
    got = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert got["stairway_trainer_published"] == float(r2.published)
    assert got["stairway_trainer_controller_bonus"] == pytest.approx(r2.cycles[-1].controller_bonus)
    assert got["stairway_trainer_controller_bonus"] > 0  # the shipped shaping pays a hold bonus
    assert got["stairway_trainer_validation_sharpe"] == pytest.approx(r2.validation["sharpe"])


def test_refusals_name_the_setting_or_file(tmp_path, real, capsys, monkeypatch):
    from stairway.core.errors import ConfigError

    text = shipped_text("trainer.toml")
    both = tmp_path / "both.toml"
    both.write_text(text.replace("[train]\n", "[train]\nrolling_days = 30\n"))
    with pytest.raises(ConfigError, match="exactly one of train.range"):
        load_config(TrainerConfig, both, environ={})
    no_store = tmp_path / "no_store.toml"
    no_store.write_text(text.replace("range = { start = 2017-01-01, end = 2017-10-01 }", "rolling_days = 30"))
    with pytest.raises(ConfigError, match="rolling_days needs train.data_store"):
        load_config(TrainerConfig, no_store, environ={})
    # an empty store: one line saying where data would come from
    cfg = load_config(TrainerConfig, ROOT / "config" / "trainer.toml", environ={})
    empty = cfg.model_copy(update={"train": cfg.train.model_copy(update={"data_store": tmp_path / "empty"})})
    with pytest.raises(Exception, match="no bars for EUR_USD .*stairway data import"):
        resolve_training_data(empty)
    base = ["data", "--config", str(ROOT / "config" / "trainer.toml")]
    assert cli_main([*base, "coverage"]) == 2  # the shipped config names no store
    assert "no train.data_store and no --store" in capsys.readouterr().err
    store_args = [*base, "--store", str(tmp_path / "s"), "fetch"]
    assert cli_main([*store_args, "--days", "3", "--from", "2017-01-01"]) == 2
    assert "not both" in capsys.readouterr().err
    assert cli_main([*store_args, "--from", "2017-01-05", "--to", "2017-01-01"]) == 2
    assert "must be after" in capsys.readouterr().err
    assert cli_main([*store_args, "--days", "3"]) == 2  # the shipped gates.daemon_config is a paper replay
    assert "fetching history needs a broker" in capsys.readouterr().err
    # the broker unreachable: one line naming the config and the cause, no traceback, nothing stored
    live = shipped_text("paper-live-oanda.toml")
    live = re.sub(
        r"oanda = \{ rest_url = .*",
        'oanda = { rest_url = "http://127.0.0.1:1", stream_url = "http://127.0.0.1:1" }',
        live,
    )
    (tmp_path / "live.toml").write_text(live)
    monkeypatch.setenv("OANDA_TOKEN", "t")
    monkeypatch.setenv("OANDA_ACCOUNT", "101-004-1-001")
    assert cli_main([*store_args, "--days", "3", "--daemon-config", str(tmp_path / "live.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "live.toml: oanda history of EUR_USD not fetched: Cannot connect to host 127.0.0.1:1" in err
    assert err.count("\n") == 0 and not (tmp_path / "s" / "EUR_USD" / "fetched").exists()


def test_a_recording_cut_by_kill_9_is_read_up_to_the_cut(tmp_path, real):
    s = store(tmp_path)
    record(tmp_path / "ticks", real, [dt.date(2017, 12, 4)])
    f = tmp_path / "ticks" / "EUR_USD" / "2017-12-04.csv.gz"
    whole = s.recorded_bars("EUR_USD", dt.date(2017, 12, 5))[0]
    with open(f, "ab") as fh:  # a gzip member whose writer died mid-write
        fh.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\x4b\x4c")
    cut = s.recorded_bars("EUR_USD", dt.date(2017, 12, 5))[0]
    assert np.array_equal(cut, whole) and len(cut) == 24


def scaled(bars, k):
    out = bars.copy()
    for f in ("open", "high", "low", "close"):
        out[f] *= k
    return out


def test_import_refuses_another_instrument_another_side_and_a_price_level_that_is_not_the_stores(tmp_path, real):
    """Issue 19.7: an hourly USD/CHF file went into the EUR_USD store, a bid file into an
    ask-side store, without a word. Each is now refused naming both sides of the mismatch."""
    s = store(tmp_path)
    year = real[real["ts_ns"] < ns(dt.date(2017, 7, 1))]
    # the defect's form: named USD/CHF, prices 1.3x (a different instrument)
    chf = write_bars_csv(tmp_path / "USDCHF_H1.csv", scaled(year, 1.3))
    with pytest.raises(DataError, match=r"USDCHF_H1.csv: the file is named for USD_CHF, not EUR_USD"):
        s.import_file(chf, "EUR_USD")
    s.import_file(write_bars_csv(tmp_path / "FOREX_EURUSD_1H_ASK.csv", year), "EUR_USD")
    # the same prices under a name that says nothing: refused by their level at common times
    anon = write_bars_csv(tmp_path / "hourly-export.csv", scaled(year, 1.3))
    with pytest.raises(DataError, match=r"hourly-export.csv: at \d+ bar times .* median 30.0 %"):
        s.import_file(anon, "EUR_USD")
    # adjacent, not overlapping: the nearest bars are compared
    later = real[(real["ts_ns"] >= ns(dt.date(2017, 7, 1))) & (real["ts_ns"] < ns(dt.date(2017, 8, 1)))]
    with pytest.raises(DataError, match=r"july.csv: its close .* from the store's"):
        s.import_file(write_bars_csv(tmp_path / "july.csv", scaled(later, 1.3)), "EUR_USD")
    assert s.import_file(write_bars_csv(tmp_path / "july.csv", later), "EUR_USD")[1] == len(later)
    # the side: from the name, or given
    bid = write_bars_csv(tmp_path / "FOREX_EURUSD_1H_BID.csv", later)
    with pytest.raises(DataError, match=r"BID.csv: bid prices \(named in the file name\), but this store holds ask"):
        s.import_file(bid, "EUR_USD")
    with pytest.raises(DataError, match=r"mid prices \(given\), but this store holds ask"):
        s.import_file(write_bars_csv(tmp_path / "x.csv", later), "EUR_USD", side="mid")
    stored = sorted((tmp_path / "store" / "EUR_USD" / "imported").glob("*.csv.side"))
    assert [p.read_text().split("\n")[0] for p in stored] == ["ask", "ask"]
    # a file stored under another side (by hand, or an older store's setting) is refused when read
    (tmp_path / "store" / "EUR_USD" / "imported" / "july.csv.side").write_text("bid\n")
    with pytest.raises(DataError, match=r"july.csv: stored as bid bars, but bars.price is ask"):
        s.merged("EUR_USD", dt.date(2018, 1, 1))


def test_coverage_reports_a_bad_file_and_carries_on_and_a_line_bomb_is_one_line(tmp_path, real, capsys):
    import gzip

    cfg = str(ROOT / "config" / "trainer.toml")
    st = tmp_path / "store"
    good = write_bars_csv(tmp_path / "FOREX_EURUSD_1H_ASK.csv", real[:500])
    assert cli_main(["data", "--config", cfg, "--store", str(st), "import", str(good)]) == 0
    (st / "EUR_USD" / "imported" / "broken.csv").write_text("Time,Open,High,Low,Close\n2017-01-02T00:00:00Z,1,2\n")
    (st / "GBP_USD" / "imported").mkdir(parents=True)
    write_bars_csv(st / "GBP_USD" / "imported" / "g.csv", real[:300])
    capsys.readouterr()
    assert cli_main(["data", "--config", cfg, "--store", str(st), "coverage", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["EUR_USD"]["merged"]["bars"] == 500
    assert (
        len(rep["EUR_USD"]["bad_files"]) == 1
        and "broken.csv: line 2: expected 5 fields" in rep["EUR_USD"]["bad_files"][0]
    )
    assert rep["GBP_USD"]["merged"]["bars"] == 300
    bomb = tmp_path / "bomb.csv.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        fh.write(b"Time,Open,High,Low,Close\n")
        for _ in range(40):
            fh.write(b"1" * 5_000_000)  # one 200 MB line from a small file
    assert bomb.stat().st_size < 1_000_000
    assert cli_main(["data", "--config", cfg, "--store", str(st), "import", str(bomb)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"stairway: error: {bomb}: line 2 is longer than 1048576 bytes: not a bar file"]


def test_the_shadow_gate_uses_only_complete_recorded_days_adjacent_to_the_training_range(tmp_path, real):
    """Issue 19.10: the first nightly run after recording began gated on one partial recorded
    day nine years after the training range. Recordings judge a candidate only when there are
    gates.shadow_days complete ones beginning at the range's end; else the range's own last
    days do, and the run says why."""
    from stairway.trainer.gates import shadow_days_for
    from stairway.trainer.prepared import prepare_data

    env = {
        "STAIRWAY_GATES__TICKS_DIR": str(tmp_path / "ticks"),
        "STAIRWAY_TRAIN__RANGE": '{"start": "2017-09-01", "end": "2017-12-01"}',
    }
    cfg = load_config(TrainerConfig, ROOT / "config" / "trainer.toml", environ=env)
    end = ns(dt.date(2017, 12, 1))
    d = dt.date
    record(tmp_path / "ticks", real, [d(2017, 12, 1)])  # one day only
    days, why = shadow_days_for("EUR_USD", cfg.gates, end)
    assert days == [] and "only 1 complete recorded day(s) (2017-12-01), gates.shadow_days = 3" in why
    data = prepare_data(cfg)
    assert "shadow gate 2017-11-28" in data.split_desc and "only 1 complete recorded day" in data.split_desc
    record(tmp_path / "ticks", real, [d(2017, 12, 4), d(2017, 12, 5)])
    days, why = shadow_days_for("EUR_USD", cfg.gates, end)
    assert days == [d(2017, 12, 1), d(2017, 12, 4), d(2017, 12, 5)] and why == ""
    # the same recordings against a range that ended months before: not adjacent
    early = ns(dt.date(2017, 6, 1))
    days, why = shadow_days_for("EUR_USD", cfg.gates, early)
    assert days == [] and "not adjacent to the training range ending 2017-06-01" in why
    far = cfg.model_copy(
        update={"train": cfg.train.model_copy(update={"range": DateRange(start=d(2017, 3, 1), end=d(2017, 6, 1))})}
    )
    assert "not adjacent" in prepare_data(far).split_desc
