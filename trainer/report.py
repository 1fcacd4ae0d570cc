"""Per-run report: runs/<run_id>/report.html (PNG plots embedded) and report.md."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from stairway.core.metrics import MIN_TRADES_FOR_QUALITY, QUALITY_KEYS, too_few_trades
from stairway.trainer.config import TrainerConfig
from stairway.trainer.html_report import write_html


def save_figure(fig, files: dict[str, Path], out: Path, name: str) -> None:
    """Lay out, write ``out/name.png``, register it under ``name`` and free the figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    files[name] = out / f"{name}.png"
    fig.savefig(files[name], dpi=90)
    plt.close(fig)


def _plots(run, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: dict[str, Path] = {}
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 5), sharex=False, gridspec_kw={"height_ratios": [3, 1]})
    curves = dict(run.curves)
    held = run.baselines.trackers.get("buy_and_hold") if run.baselines is not None else None
    if held is not None and held.curve_ts:  # the gate window's buy-and-hold, same env and costs
        curves["buy-and-hold (gate window)"] = (held.curve_ts, held.curve_equity)
    for name, (ts, eq) in curves.items():
        if not len(ts):
            continue
        x = [dt.datetime.fromtimestamp(t / 1e9, dt.UTC) for t in ts]
        e = np.asarray(eq)
        ax1.plot(x, e, label=name, lw=1.0 if name.startswith("buy") else 1.6)
        peak = np.maximum.accumulate(e)
        ax2.fill_between(x, -(peak - e) / peak * 100, 0, alpha=0.4, label=name)
    ax1.set_ylabel("equity (quote currency)")
    ax1.legend()
    ax1.set_title(f"candidate {run.candidate[:12]}: equity (costs on)")
    ax2.set_ylabel("drawdown %")
    ax2.set_xlabel("time (UTC)")
    fig.autofmt_xdate()
    save_figure(fig, files, out, "equity")

    fig, ax = plt.subplots(figsize=(9, 3))
    c = [r.cycle for r in run.cycles]
    ax.bar(
        c,
        [r.metrics["sharpe"] for r in run.cycles],
        color=["tab:green" if r.improved else "tab:gray" for r in run.cycles],
    )
    ax.set_xlabel("cycle")
    ax.set_xticks(c)  # whole cycles, not 0.5 steps
    ax.set_ylabel("selection-window Sharpe")
    ax2 = ax.twinx()
    ax2.plot(c, [r.target for r in run.cycles], "k--", marker="o", label="target hold rate")
    ax2.plot(c, [r.metrics["hold_rate"] for r in run.cycles], "b-", marker="x", label="hold rate")
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("hold rate")
    ax2.legend(loc="upper right")
    save_figure(fig, files, out, "cycles")

    if run.monte_carlo.trades < MIN_TRADES_FOR_QUALITY:  # as the text says: no Monte Carlo figure on so few
        return files
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.hist(run.monte_carlo.car_pct, bins=50, color="tab:blue", alpha=0.8)
    ax.axvline(run.monte_carlo.car25_pct, color="red", label=f"CAR25 {run.monte_carlo.car25_pct:.2f} %")
    ax.set_xlabel(
        f"compound annual return % ({run.monte_carlo.resamples} bootstrap resamples of "
        f"{run.monte_carlo.trades} gate-window trades)"
    )
    ax.set_ylabel("resamples")
    ax.legend()
    save_figure(fig, files, out, "montecarlo")
    return files


def _markdown(run, cfg: TrainerConfig) -> str:
    g = run.gate
    L = [
        f"# Training run {run.run_id}",
        "",
        f"**Outcome: {run.action}** — candidate `{run.candidate[:12]}`, gates "
        f"{'PASSED' if run.passed else 'FAILED'}; parent `{run.parent[:12] or '-'}`.",
        "",
        f"Data: {cfg.data.bars_csv} ({cfg.instrument.symbol}, {cfg.bars.period_minutes}-minute bars). {run.split_desc}.",
        f"{len(run.cycles)} cycle(s), median {run.steps_per_s:,.0f} env-steps/s, {run.seconds:.1f} s.",
        "",
        "## Cycles (each judged on the selection window, which picks the candidate; not out of sample)",
        "",
        "| cycle | sha | steps | target hold | hold rate | Sharpe | PnL % | max DD % | trades | improved |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in run.cycles:
        m = r.metrics
        L.append(
            f"| {r.cycle} | `{r.sha[:12]}` | {r.global_step:,} | {r.target:.2f} | {m['hold_rate']:.2f} | "
            f"{m['sharpe']:+.2f} | {m['pnl_pct']:+.3f} | {m['max_drawdown_pct']:.3f} | {m['trades']} | "
            f"{'yes' if r.improved else 'no'} |"
        )
    L += [
        "",
        "## Gates",
        "",
        f"- Pre-flight: {'pass' if g['preflight']['passed'] else 'FAIL'} — {g['preflight']['detail']}",
        f"- Shadow replay ({g['shadow']['source']}, trades/day allowed {g['shadow']['trades_range'][0]}-"
        f"{g['shadow']['trades_range'][1]}): {'pass' if g['shadow']['passed'] else 'FAIL'}",
        "",
        "| day | PnL | max DD % | trades | decisions | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for d in g["shadow"]["days"]:
        L.append(
            f"| {d['date']} | {d['pnl']:+.2f} | {d['max_drawdown_pct']:.3f} | {d['trades']} | {d['decisions']} | "
            f"{'pass' if d['passed'] else 'FAIL: ' + '; '.join(d['reasons'])} |"
        )
    L += [f"- the shadow days together: FAIL: {why}" for why in g["shadow"].get("reasons", [])]
    ev = g.get("evidence") or {}
    if ev:
        L += [
            "",
            f"- Evidence (activity, baselines): {'pass' if ev['passed'] else 'FAIL: ' + '; '.join(ev['reasons'])}",
        ]
    rb = g["robustness"]
    note = run.gate.get("drift_note") or "no gold yet"
    drift = note if run.drift is None else f"{run.drift:.4f} (threshold {cfg.gates.drift_threshold})"
    L += [
        "",
        f"- Parameter drift vs gold (relative L2): {drift}",
        f"- Robustness ({'gating' if rb['gating'] else 'reported only'}): "
        + (
            f"too few trades ({rb['mc_trades']}) for CAR25/DD95 or a walk-forward efficiency; "
            if rb["mc_trades"] < MIN_TRADES_FOR_QUALITY
            else f"CAR25 {rb['car25_pct']:.2f} %, DD95 {rb['dd95_pct']:.2f} % over {rb['mc_trades']} trades; "
            f"walk-forward efficiency {rb['walk_forward_efficiency']:.2f}; "
        )
        + "SQN "
        f"{rb['sqn_class'] if rb['sqn_class'].startswith('too few') else format(rb['sqn'], '+.2f') + ' (' + rb['sqn_class'] + ')'}"
        + (f" — FAIL: {'; '.join(rb['reasons'])}" if rb.get("reasons") else ""),
        "",
        "## Walk-forward windows",
        "",
        "| window | from | to | annualised % | trades | Sharpe |",
        "|---|---|---|---|---|---|",
    ]
    for w in run.walk_forward["rows"]:
        L.append(
            f"| {w['kind']} | {w['from']} | {w['to']} | {w['annualised_pct']:+.2f} | {w['trades']} | "
            f"{w['sharpe']:+.2f} |"
        )
    L += [
        "",
        "## Candidate metrics",
        "",
        "| metric | in-sample | selection (picked it) | gate window (held back) |",
        "|---|---|---|---|",
    ]
    for k in (
        "pnl_pct",
        "pnl_pips",
        "max_drawdown_pct",
        "sharpe",
        "sortino",
        "sqn",
        "trades",
        "entries",
        "win_rate",
        "profit_factor",
        "hold_rate",
        "trades_per_day",
        "flattens",
        "blocked_intents",
        "halted_bars",
    ):
        cells = [
            (too_few_trades(s) if k in QUALITY_KEYS else None) or f"{s.get(k, 0):.4g}"
            for s in (run.in_sample, run.selection, run.validation)
        ]
        L.append(f"| {k} | {cells[0]} | {cells[1]} | {cells[2]} |")
    from stairway.trainer.ensemble import member_lines

    spread = member_lines(run)
    if spread:
        L += ["", "## Seed ensemble", ""] + [f"- {line.strip()}" for line in spread]
    if run.baselines is not None:
        cols = run.baselines.columns()
        keys = ("pnl_pct", "max_drawdown_pct", "sharpe", "trades", "hold_rate")
        L += [
            "",
            "## Gate window (never used to pick the cycle): the candidate next to its baselines (same env, fills and costs)",
            "",
            "| | " + " | ".join(cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        for k in keys:
            L.append(f"| {k} | " + " | ".join(f"{c[k]:.4g}" for c in cols.values()) + " |")
        L += [""] + [f"- {line.strip()}" for line in run.baselines.lines()]
    mc = (
        "montecarlo.png" if run.monte_carlo.trades >= MIN_TRADES_FOR_QUALITY else "no Monte Carlo plot (too few trades)"
    )
    L += ["", f"Plots: equity.png, cycles.png, {mc} (embedded in report.html)."]
    return "\n".join(L) + "\n"


def write_report(run, cfg: TrainerConfig) -> Path:
    out = cfg.train.reports_dir / run.run_id
    out.mkdir(parents=True, exist_ok=True)
    md = _markdown(run, cfg)
    (out / "report.md").write_text(md)
    files = _plots(run, out)
    write_html(md, files, run.run_id, out / "report.html", compared_runs(run, cfg))
    return out / "report.html"


def compared_runs(run, cfg: TrainerConfig) -> list[tuple[str, str]]:
    """Links to the reports of the runs this one is compared with: the parent (the gold model
    it started from and whose drift it measures), where its run's report is in this folder."""
    if not run.parent:
        return []
    from stairway.trainer.gatedb import GateDB

    try:
        db = GateDB(cfg.train.gate_db, readonly=True)
    except Exception:  # noqa: BLE001 - a report without the link, never a failed run
        return []
    try:
        row = db.model(run.parent)
    finally:
        db.close()
    rid = (row or {}).get("run_id")
    if not rid or rid == run.run_id or not (cfg.train.reports_dir / str(rid) / "report.md").is_file():
        return []
    return [(f"parent {run.parent[:12]} (run {rid})", f"../{rid}/report.html")]
