"""Walk-forward report: runs/<wf_id>/report.md, report.html (plots embedded), walk_forward.json
and each fold's weights (fold-K.safetensors), from a trainer.walk_forward.WalkForward."""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from pathlib import Path

import numpy as np

from stairway.core.metrics import MIN_TRADES_FOR_QUALITY, annualised_pct
from stairway.trainer.html_report import write_html
from stairway.trainer.report import save_figure

ORDER = ("policy", "flat", "buy_and_hold", "sell_and_hold", "sma_cross", "sma_long_flat")


def stitched_table(wf) -> list[str]:
    """Markdown table: every strategy over all test windows, with 90 % block-bootstrap intervals."""
    L = [
        "| strategy | return % | 90 % interval | Sharpe | 90 % interval | max DD % | trades | bars long / short % "
        "| bars halted |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in ORDER:
        s = wf.stitched.get(n)
        if s is None:
            continue
        r, sh = s["intervals"]["total_return_pct"], s["intervals"]["sharpe"]
        L.append(
            f"| {n} | {s['total_return_pct']:+.2f} | [{r[0]:+.2f}, {r[1]:+.2f}] | {s['sharpe']:+.2f} | "
            f"[{sh[0]:+.2f}, {sh[1]:+.2f}] | {s['max_drawdown_pct']:.2f} | {s['trades']} | "
            f"{s['long_pct']:.0f} / {s['short_pct']:.0f} | {s.get('halted_bars', 0)} |"
        )
    return L


def verdict_lines(wf) -> list[str]:
    pol = wf.stitched["policy"]
    few = pol["trades"] < MIN_TRADES_FOR_QUALITY
    q = np.percentile(wf.random_pnl_pct, [5, 50, 95]) if len(wf.random_pnl_pct) else None
    out = [
        f"folds: {len(wf.folds)} ({wf.scheme}); the policy beat buy-and-hold in {wf.beat_buy_and_hold:.0%} of them "
        f"and the SMA cross in {wf.beat_sma:.0%}",
        (
            f"too few trades ({pol['trades']}, fewer than {MIN_TRADES_FOR_QUALITY}) for a walk-forward efficiency "
            "or a Monte Carlo CAR25/DD95"
            if few
            else f"walk-forward efficiency {wf.efficiency:.2f} (mean annualised OOS / in-sample return); Monte Carlo "
            f"on {wf.trades} stitched OOS trades: CAR25 {wf.car25_pct:+.2f} %, DD95 {wf.dd95_pct:.2f} %"
        ),
    ]
    idle = [str(f["fold"]) for f in wf.folds if not f["summaries"]["policy"].get("entries")]
    if idle:
        out.append(f"the policy never traded in fold(s) {', '.join(idle)}")
    drift = drift_pct(wf.folds)
    out.append(
        f"drift: net exposure x buy-and-hold's return, fold by fold, sums to {drift:+.2f} % explained by the "
        f"market's drift alone; the policy's return beyond that: {pol['total_return_pct'] - drift:+.2f} %"
    )
    if q is not None:
        out.append(
            f"random entries ({len(wf.random_pnl_pct)} draws per fold, summed over folds): return 5/50/95 % = "
            f"{q[0]:+.2f} / {q[1]:+.2f} / {q[2]:+.2f} %; the policy beat {wf.beat_random_share:.0%} of them"
        )
    return out


def drift_pct(folds: list[dict]) -> float:
    """What the market's drift alone explains of the policy's return: in each fold, its net
    exposure (share of bars long minus short) times buy-and-hold's return there, summed over
    folds (one exposure over the whole span would credit a model that sat flat through a
    crash with the crash)."""
    return float(
        sum(
            (f["summaries"]["policy"]["long_pct"] - f["summaries"]["policy"]["short_pct"])
            / 100.0
            * f["summaries"]["buy_and_hold"]["pnl_pct"]
            for f in folds
        )
    )


def fold_table(wf) -> list[str]:
    L = [
        "| fold | train | test | cycles | IS ann. % | OOS % | B&H % | SMA % | flat % | trades | hold rate | "
        "long / short % | beat random | risk: flattens / blocked / bars halted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in wf.folds:
        s, ins = f["summaries"], f["in_sample"]
        ann = annualised_pct(ins)
        flag = " (open, marked)" if s["policy"]["open_trade_marked"] else ""
        L.append(
            f"| {f['fold']} | {f['train_start']} .. {f['test_start']} | {f['test_start']} .. {f['test_end']} | "
            f"{f['cycles']} (best {f['best_cycle']}) | {ann:+.1f} | {s['policy']['pnl_pct']:+.2f} | "
            f"{s['buy_and_hold']['pnl_pct']:+.2f} | {s['sma_cross']['pnl_pct']:+.2f} | {s['flat']['pnl_pct']:+.2f} | "
            f"{s['policy']['trades']}{flag} | {s['policy']['hold_rate']:.2f} | "
            f"{s['policy']['long_pct']:.0f} / {s['policy']['short_pct']:.0f} | "
            f"{'-' if math.isnan(f['beat_random_share']) else format(f['beat_random_share'], '.0%')} | "
            f"{s['policy'].get('flattens', 0)} / {s['policy'].get('blocked_intents', 0)} / "
            f"{s['policy'].get('halted_bars', 0)} |"
        )
    return L


def _markdown(wf, cfg, wf_id: str) -> str:
    L = (
        [
            f"# Walk-forward {wf_id}",
            "",
            f"Data: {cfg.data.bars_csv} ({cfg.instrument.symbol}, {cfg.bars.period_minutes}-minute bars); "
            f"{len(wf.folds)} {wf.scheme} folds; each fold trains a fresh policy with the cycle plan "
            f"({cfg.cycles.count} x {cfg.cycles.steps:,} steps, patience {cfg.cycles.patience}) on its training "
            f"window only and is tested on the next window. Costs on. {wf.wall_s:.0f} s, {wf.workers}.",
            "",
            "## Stitched out-of-sample result, next to the baselines",
            "",
        ]
        + stitched_table(wf)
        + [""]
    )
    L += [f"- {x}" for x in verdict_lines(wf)]
    L += ["", "## Folds", ""] + fold_table(wf)
    L += [
        "",
        "A position still open at a fold's end is marked to market there (flagged).",
        "Plots: stitched.png, folds.png (embedded in report.html).",
    ]
    return "\n".join(L) + "\n"


def _plots(wf, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    files: dict[str, Path] = {}
    fig, ax = plt.subplots(figsize=(9, 4))
    for n, (ts, eq) in wf.curves.items():
        if n not in ("policy", "buy_and_hold", "sma_cross", "sma_long_flat"):
            continue
        x = np.asarray(ts, dtype=np.int64).astype("datetime64[ns]")  # UTC
        ax.plot(x, eq, label=n, lw=2.0 if n == "policy" else 1.0)
    for f in wf.folds[1:]:
        ax.axvline(mdates.date2num(dt.datetime.fromisoformat(f["test_start"])), color="gray", lw=0.5, ls=":")
    ax.set_ylabel("equity (stitched, costs on)")
    ax.set_xlabel("time (UTC); dotted: a fold's test window begins")
    ax.legend()
    ax.set_title("walk-forward: out-of-sample equity of all folds")
    fig.autofmt_xdate()
    save_figure(fig, files, out, "stitched")

    fig, ax = plt.subplots(figsize=(9, 3))
    k = np.arange(len(wf.folds))
    for j, n in enumerate(("policy", "buy_and_hold", "sma_cross")):
        ax.bar(k + (j - 1) * 0.27, [f["summaries"][n]["pnl_pct"] for f in wf.folds], 0.27, label=n)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("fold")
    ax.set_xticks(k)  # whole folds
    ax.set_ylabel("out-of-sample return %")
    ax.legend()
    save_figure(fig, files, out, "folds")
    return files


def write_wf_report(wf, cfg, out_dir: Path | None = None) -> Path:
    wf_id = time.strftime("walkforward-%Y%m%dT%H%M%S", time.gmtime())
    out = (out_dir or cfg.train.reports_dir) / wf_id
    out.mkdir(parents=True, exist_ok=True)
    for f in wf.folds:
        (out / f"fold-{f['fold']}.safetensors").write_bytes(f["weights"])
    md = _markdown(wf, cfg, wf_id)
    (out / "report.md").write_text(md)
    links = [("walk_forward.json", "walk_forward.json")] + [
        (f"fold {f['fold']} weights", f"fold-{f['fold']}.safetensors") for f in wf.folds
    ]
    write_html(md, _plots(wf, out), wf_id, out / "report.html", links)
    keep = (
        "fold",
        "train_start",
        "test_start",
        "test_end",
        "train_bars",
        "test_bars",
        "cycles",
        "best_cycle",
        "steps",
        "in_sample",
        "summaries",
        "intervals",
        "beat_random_share",
        "wall_s",
    )
    doc = {
        "scheme": wf.scheme,
        "wall_s": wf.wall_s,
        "workers": wf.workers,
        "efficiency": wf.efficiency,
        "car25_pct": wf.car25_pct,
        "dd95_pct": wf.dd95_pct,
        "trades": wf.trades,
        "beat_buy_and_hold": wf.beat_buy_and_hold,
        "beat_sma": wf.beat_sma,
        "beat_random_share": wf.beat_random_share,
        "stitched": wf.stitched,
        "folds": [{k: f[k] for k in keep} for f in wf.folds],
    }
    (out / "walk_forward.json").write_text(json.dumps(doc, indent=1, default=float))
    return out / "report.html"
