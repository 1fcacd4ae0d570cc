"""`stairway` command line."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from pathlib import Path

from stairway import bot, config_cli, data_cli, sim_cli, trades_cli
from stairway.config_cli import default_config
from stairway.core.config import CONFIG_ENV, load_config
from stairway.core.errors import ConfigError, StairwayError
from stairway.core.logs import configure_logging
from stairway.core.metrics import format_summary
from stairway.core.redaction import redact


def _ctl(args: argparse.Namespace) -> int:
    from stairway.daemon.config import DaemonConfig
    from stairway.daemon.control import ctl

    cfg = load_config(DaemonConfig, args.config)
    if args.instrument is not None and args.instrument not in [leg.symbol for leg in cfg.legs()]:
        raise ConfigError(
            f"--instrument {args.instrument}: not traded by {args.config} ({', '.join(leg.symbol for leg in cfg.legs())})"
        )
    if args.direct:
        if args.action != "flatten":
            raise ConfigError(f"--direct is for flatten only, not {args.action}")
        from stairway.daemon.direct_flatten import direct_flatten

        configure_logging(json=cfg.service.log_json)
        res = asyncio.run(direct_flatten(cfg, args.instrument))
        print("\n".join(res.lines))
        print("flat at the broker" if res.ok else "NOT FLAT: see above")
        return 0 if res.ok else 1
    if args.instrument is not None and cfg.portfolio is None:  # one instrument: its FLATTEN is the global one
        args.instrument = None
    print(ctl(cfg.service.control_dir, args.action, cfg.service.status_file, args.instrument))
    return 0


def _daemon_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stairway.daemon.app import run_daemon
    from stairway.daemon.config import DaemonConfig

    if not args.config:
        raise ConfigError(
            f"daemon run: which config? --config FILE or {CONFIG_ENV} (config/paper.toml is the paper replay)"
        )
    cfg = load_config(DaemonConfig, args.config)
    configure_logging(json=cfg.service.log_json)
    res = asyncio.run(run_daemon(cfg, config_path=Path(args.config)))
    what = (
        f"{cfg.broker.kind} {'live' if cfg.real_orders else 'paper-live'} ({res.counters['ticks']} broker quotes"
        if cfg.live
        else f"Paper replay ({res.counters['ticks']} bar-derived quotes"
    )
    print(
        f"\n{what}, model {res.model_sha if cfg.portfolio else res.model_sha[:12]}, "
        f"decisions {res.first_decision} .. {res.last_bar} UTC){' — INTERRUPTED' if res.interrupted else ''}"
    )
    if cfg.live:
        print(format_summary({cfg.broker.kind: res.summary}))
    elif cfg.portfolio is None:  # a replay has history to run the baselines on, through the same env and costs
        cmp = replay_baselines(cfg, res.tracker)
        print(format_summary({"paper replay": res.summary, **cmp.baselines}))
        print("\n".join(cmp.lines()))
    else:  # a portfolio: the account, then each instrument next to its own baselines
        print(format_summary({"paper replay (account)": res.summary}))
        assert res.instruments is not None
        for leg in cfg.legs(look_on_disk=False):
            mine = res.instruments[leg.symbol]
            cmp = replay_baselines(leg.cfg, mine["tracker"])
            print(f"\n{leg.symbol} (model {mine['model_sha'][:12]}):")
            print(format_summary({"paper replay": mine["summary"], **cmp.baselines}))
            print("\n".join(cmp.lines()))
    print(risk_line(res.counters))
    print(f"database: {res.db_path} (run_id {res.run_id})")
    return 0


def replay_baselines(cfg, tracker):
    """Baselines over a paper replay's range, next to the daemon's own tracker."""
    from stairway.core.execution import ExecutionModel
    from stairway.core.features import FeatureSpec
    from stairway.trainer.baselines import compare
    from stairway.trainer.history import load_history

    spec = FeatureSpec.from_config(cfg)
    hist = load_history(cfg, spec, *cfg.replay.range.ns())
    ex = ExecutionModel.from_config(cfg.execution, cfg.instrument)
    return compare(hist, spec, ex, cfg.account.initial_equity, 0, len(hist) - 2, tracker, risk=cfg.risk)


def risk_line(counters: dict) -> str:
    """What the risk engine did in a run: events by kind, intents refused or cut, a halt."""
    events = counters.get("risk_events") or {}
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(events.items())) or "none"
    halted = f"; HALTED ({counters['halted']})" if counters.get("halted") else ""
    return f"risk: {counters.get('blocked_intents', 0)} intents blocked or cut; events: {kinds}{halted}"


def _drift(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stairway.daemon.drift import drift_report, financing_report, format_drift, write_drift

    rep = drift_report(Path(args.paper_db), Path(args.live_db), args.pip)
    rep["financing"] = financing_report(Path(args.live_db))
    write_drift(rep, Path(args.out))
    print(format_drift(rep))
    print(f"\nwritten: {args.out}.json, {args.out}.md")
    return 0


def _train_run(args: argparse.Namespace) -> int:
    from stairway.core.errors import ConfigError
    from stairway.trainer.config import TrainerConfig
    from stairway.trainer.cycles import run_cycles

    cfg = load_config(TrainerConfig, args.config)
    if args.as_of:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"as_of": args.as_of})})
    if args.ray_address:
        if cfg.train.algo != "muzero":
            raise ConfigError(
                f"--ray-address runs MuZero's self-play actors; {args.config} has train.algo = {cfg.train.algo!r}"
            )
        cfg = cfg.model_copy(update={"muzero": cfg.muzero.model_copy(update={"ray_address": args.ray_address})})
    if args.instrument:  # a portfolio: each instrument trained, gated and published on its own
        from stairway.trainer.instruments import per_instrument

        configs = per_instrument(cfg, args.instrument)
        configure_logging()
        results = {}
        for symbol, one in configs:
            print(f"\n== {symbol} ({one.data.bars_csv}) -> {one.train.models_dir}")
            results[symbol] = _train_one(one, run_cycles)
        print("\n" + "; ".join(f"{s}: {'published' if rc == 0 else 'NOT published'}" for s, rc in results.items()))
        return 0 if all(rc == 0 for rc in results.values()) else 1
    configure_logging()
    return _train_one(cfg, run_cycles)


def _train_one(cfg, run_cycles) -> int:
    res = run_cycles(cfg)
    print(f"\n{len(res.cycles)} cycle(s), candidate {res.candidate[:12]}, {res.seconds:.1f} s; report {res.report}")
    print(
        format_summary(
            {
                "in-sample": res.in_sample,
                "selection (picked it)": res.selection,
                "gate window (held back)": res.validation,
            }
        )
    )
    from stairway.trainer.ensemble import member_lines

    for line in member_lines(res):
        print(line)
    if res.baselines is not None:
        print("\ngate window (never used to pick), the candidate next to its baselines (same env, fills and costs):")
        print(format_summary(res.baselines.columns()))
        print("\n".join(res.baselines.lines()))
    if res.passed:
        print(f"gates passed: {res.action}; {cfg.train.models_dir}/current -> {res.candidate[:12]}")
        return 0
    failed = [d for d in res.shadow.days if not d.passed]
    reasons = [f"{d.date}: {', '.join(d.reasons)}" for d in failed] + res.shadow.reasons
    reasons += (res.gate.get("evidence") or {}).get("reasons", []) + res.gate["robustness"].get("reasons", [])
    why = "; ".join(reasons) or "see report"
    print(f"stairway: gates FAILED, nothing published ({res.action}): {why}", file=sys.stderr)
    return 1


def _train_sweep(args: argparse.Namespace) -> int:
    from stairway.trainer.config import TrainerConfig
    from stairway.trainer.data_store import resolve_training_data
    from stairway.trainer.sweep import run_sweep

    cfg, _ = resolve_training_data(load_config(TrainerConfig, args.config))
    configure_logging(level="info", stream=sys.stderr)  # a line per trial on stderr; the table on stdout
    res = run_sweep(cfg, args.trials, args.steps, args.ray_address, folds=args.folds)
    print(f"objective: {res['objective']}")
    for t in res["trials"]:
        c = t["config"]
        head = (
            f"fast_gain {c['fast_gain']:.3f} base_bonus {c['base_hold_bonus']:.4f} target {c['target_hold_rate']:.2f} "
            f"w ({c['w_momentum']:.2f},{c['w_volatility']:.2f},{c['w_divergence']:.2f})"
        )
        print(
            f"{head}: "
            + (
                f"ERROR {t['error']}"
                if "error" in t
                else f"Sharpe {t['sharpe']:+.2f} PnL {t['pnl_pct']:+.3f} % trades {t['trades']} hold {t['hold_rate']:.2f}"
            )
        )
    print(f"best: {res['best']['config'] if res['best'] else 'none'}\nsaved {res['path']}")
    return 0 if res["best"] else 1


def _validate(args: argparse.Namespace) -> int:
    import datetime as dt

    from stairway.core.config import DateRange
    from stairway.core.errors import ConfigError
    from stairway.trainer.config import TrainerConfig

    cfg = load_config(TrainerConfig, args.config)
    configure_logging(level="warning")
    try:
        a, b = args.range.split("..", 1)
        rng = DateRange(start=dt.date.fromisoformat(a), end=dt.date.fromisoformat(b))
    except ValueError as e:
        raise ConfigError(f"--range {args.range!r}: expected YYYY-MM-DD..YYYY-MM-DD with start < end ({e})") from None
    if args.checkpoint and args.instrument:
        raise ConfigError("validate: --instrument goes with --folds (a walk-forward per instrument), not --checkpoint")
    if args.checkpoint:
        if args.folds is not None:
            raise ConfigError(
                "validate: give --checkpoint (one existing model) or --folds (walk-forward with retraining), not both"
            )
        return _validate_checkpoint(cfg, args, rng)
    if args.folds is None:
        raise ConfigError("validate: give --checkpoint SHA or --folds N")
    if args.instrument:  # walk-forward per instrument, each with its own folds and report
        from stairway.trainer.instruments import per_instrument

        for symbol, one in per_instrument(cfg, args.instrument):
            print(f"\n== {symbol} ({one.data.bars_csv})")
            out = Path(args.out) / symbol if args.out else None
            _walk_forward(one, args, rng, out)
        return 0
    return _walk_forward(cfg, args, rng, Path(args.out) if args.out else None)


def _walk_forward(cfg, args: argparse.Namespace, rng, out) -> int:
    from stairway.trainer.walk_forward import run_walk_forward
    from stairway.trainer.wf_report import fold_table, stitched_table, verdict_lines, write_wf_report

    wf = run_walk_forward(
        cfg, rng, args.folds, args.scheme, args.train_windows, args.draws, args.ray_address, args.workers
    )
    print(
        f"walk-forward {rng.start} .. {rng.end}: {len(wf.folds)} {wf.scheme} folds, each retrained on its "
        f"training window only; out of sample, costs on ({wf.wall_s:.0f} s, {wf.workers})"
    )
    print("\n".join(fold_table(wf)))
    print("\nstitched out-of-sample result:")
    print("\n".join(stitched_table(wf)))
    print("\n".join(verdict_lines(wf)))
    print(f"report: {write_wf_report(wf, cfg, out)}")
    return 0


def _validate_checkpoint(cfg, args: argparse.Namespace, rng) -> int:
    from stairway.trainer.validation import validate_checkpoint

    v = validate_checkpoint(cfg, args.checkpoint, rng, args.draws)
    print(
        f"checkpoint {v.sha[:12]} (trained on {v.trained_on}) out of sample {rng.start} .. {rng.end}, "
        "costs on, next to its baselines:"
    )
    if v.overlaps_training:
        print(f"WARNING: {rng.start} .. {rng.end} overlaps the checkpoint's training range: NOT out of sample")
    print(format_summary(v.comparison.columns()))
    print("\n".join(v.comparison.lines()))
    return 0


def _models(args: argparse.Namespace) -> int:
    from stairway.trainer import registry_ops as ops
    from stairway.trainer.config import TrainerConfig
    from stairway.trainer.gatedb import GateDB

    cfg = load_config(TrainerConfig, args.config)
    if args.instrument is not None:
        from stairway.trainer.instruments import models_of

        cfg = models_of(cfg, args.instrument)
    models = cfg.train.models_dir
    gdb = GateDB(cfg.train.gate_db)
    try:
        if args.action == "list":
            print(json.dumps(ops.model_rows(models, gdb), indent=2) if args.json else ops.list_models(models, gdb))
        elif args.action == "show":
            print(ops.show_model(models, gdb, args.sha))
        elif args.action == "promote":
            print(ops.promote(models, gdb, args.sha, args.force, args.reason))
        elif args.action == "rollback":
            print(ops.rollback(models, gdb, args.to, _daemon_check(cfg)))
        elif args.action == "set-gold":
            print(ops.set_gold(models, gdb, args.sha, args.reason, args.force, _daemon_check(cfg)))
        elif args.action == "prune":
            print(ops.prune(models, gdb, args.keep))
    finally:
        gdb.close()
    return 0


def _daemon_check(cfg):
    """The daemon's verification for a model command's target, with this config's features and market."""
    from stairway.core.features import FeatureSpec
    from stairway.trainer.registry_ops import daemon_check

    return daemon_check(FeatureSpec.from_config(cfg), cfg.train.gate_db, cfg.model_requirements())


def _demo(args: argparse.Namespace) -> int:
    from stairway.demo import run_demo

    trainer_config = args.trainer_config or (
        "config/trainer-muzero.toml" if args.algo == "muzero" else "config/trainer.toml"
    )
    return run_demo(trainer_config, args.daemon_config, quick=args.quick, algo=args.algo)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stairway")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stairway", description=__doc__)
    p.add_argument("--version", action="version", version=f"stairway {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("daemon", help="the live/paper trading service").add_subparsers(dest="sub", required=True)
    dr = d.add_parser("run", help="run the daemon (paper replay, paper-live or live, per [broker])")
    dr.add_argument(
        "--config", default=default_config(""), help=f"daemon config (default: ${CONFIG_ENV}; one is required)"
    )
    dr.set_defaults(func=_daemon_run)
    c = sub.add_parser("ctl", help="control a running daemon through its signal files")
    c.add_argument("action", choices=["start", "stop", "flatten", "status"])
    c.add_argument(
        "--config",
        default=default_config("config/paper.toml"),
        help=f"daemon config (state_dir) (default: ${CONFIG_ENV}, else config/paper.toml)",
    )
    c.add_argument("--instrument", default=None, help="flatten: close this instrument only (a portfolio's)")
    c.add_argument(
        "--direct",
        action="store_true",
        help="flatten: the daemon is NOT running: close every position (and cancel our working orders) at the "
        "broker with its credentials, journaled in its database (refused while it runs); exit 0 when flat",
    )
    c.set_defaults(func=_ctl)
    t = sub.add_parser("train", help="the offline trainer").add_subparsers(dest="sub", required=True)
    tr = t.add_parser("run", help="gated training cycles; publishes models/current only if the gates pass")
    tr.add_argument(
        "--config",
        default=default_config("config/trainer.toml"),
        help=f"default: ${CONFIG_ENV}, else config/trainer.toml",
    )
    tr.add_argument("--as-of", type=dt.date.fromisoformat, help="today, for train.rolling_days (default: UTC date)")
    tr.add_argument(
        "--ray-address", help="MuZero: run the self-play actors (muzero.actors) on Ray: a cluster address, or 'local'"
    )
    tr.add_argument(
        "--instrument",
        action="append",
        metavar="SYMBOL=BARS_CSV",
        help="train this instrument into models_dir/SYMBOL (repeat for a portfolio; each is gated on its own)",
    )
    tr.set_defaults(func=_train_run)
    sw = t.add_parser("sweep", help="Ray Tune search over shaping/regime parameters (never publishes)")
    sw.add_argument(
        "--config",
        default=default_config("config/trainer.toml"),
        help=f"default: ${CONFIG_ENV}, else config/trainer.toml",
    )
    sw.add_argument("--ray-address", default=None, help="existing Ray cluster; default: a local instance")
    sw.add_argument("--trials", type=int, default=8)
    sw.add_argument("--steps", type=int, default=100_000, help="env steps per trial (per fold)")
    sw.add_argument(
        "--folds",
        type=int,
        default=3,
        help="judge each trial by a rolling walk-forward of N folds inside the training and selection bars "
        "(default 3); 0: on the selection window alone",
    )
    sw.set_defaults(func=_train_sweep)
    m = sub.add_parser("models", help="the checkpoint registry")
    m.add_argument(
        "--config",
        default=default_config("config/trainer.toml"),
        help=f"trainer config (models_dir, gate_db) (default: ${CONFIG_ENV}, else config/trainer.toml)",
    )
    m.add_argument(
        "--instrument",
        help="a portfolio's instrument: its models in models_dir/SYMBOL (as `train run --instrument` writes them)",
    )
    ms = m.add_subparsers(dest="action", required=True)
    ml = ms.add_parser("list", help="registry with gate status and links")
    ml.add_argument("--json", action="store_true", help="one JSON list (show is JSON already)")
    ml.set_defaults(func=_models)
    sh = ms.add_parser("show", help="one checkpoint: header and gate record")
    sh.add_argument("sha")
    sh.set_defaults(func=_models)
    pr = ms.add_parser("promote", help="make SHA current (needs a passing gate, or --force --reason)")
    pr.add_argument("sha")
    pr.add_argument("--force", action="store_true")
    pr.add_argument("--reason")
    pr.set_defaults(func=_models)
    rb = ms.add_parser("rollback", help="point current back at gold or previous")
    rb.add_argument("--to", default="gold", choices=["gold", "previous"])
    rb.set_defaults(func=_models)
    sg = ms.add_parser("set-gold", help="make SHA the trusted fallback (needs a passing gate, or --force --reason)")
    sg.add_argument("sha")
    sg.add_argument("--force", action="store_true")
    sg.add_argument("--reason")
    sg.set_defaults(func=_models)
    pu = ms.add_parser("prune", help="delete old registry checkpoints (never current, gold or previous)")
    pu.add_argument("--keep", type=int, default=10, help="newest checkpoints kept besides the linked ones")
    pu.set_defaults(func=_models)
    va = sub.add_parser(
        "validate",
        help="walk-forward with retraining (--folds N), or one checkpoint out of sample "
        "(--checkpoint SHA), next to the baselines",
    )
    va.add_argument("--checkpoint", help="sha (a unique prefix of 6+ characters) in models/registry")
    va.add_argument("--folds", type=int, help="walk-forward: number of test windows (each fold retrains)")
    va.add_argument("--scheme", default="rolling", choices=["rolling", "anchored"], help="walk-forward training window")
    va.add_argument(
        "--train-windows",
        type=float,
        default=3.0,
        help="walk-forward: training span in test-window lengths (the first one, for anchored)",
    )
    va.add_argument("--ray-address", help="run the folds on Ray: a cluster address, or 'local' for a local Ray")
    va.add_argument("--workers", type=int, default=2, help="CPUs of a local Ray (--ray-address local)")
    va.add_argument("--out", help="report folder (default: train.reports_dir)")
    va.add_argument("--range", required=True, help="YYYY-MM-DD..YYYY-MM-DD (end exclusive)")
    va.add_argument("--draws", type=int, default=100, help="random-entry draws (per fold)")
    va.add_argument(
        "--config",
        default=default_config("config/trainer.toml"),
        help=f"default: ${CONFIG_ENV}, else config/trainer.toml",
    )
    va.add_argument(
        "--instrument",
        action="append",
        metavar="SYMBOL=BARS_CSV",
        help="walk-forward this instrument (repeat for a portfolio; --folds only)",
    )
    va.set_defaults(func=_validate)
    df = sub.add_parser("drift", help="paper-live fills vs broker fills of the same stream and model")
    df.add_argument("--paper-db", required=True, help="database of the paper-live daemon")
    df.add_argument("--live-db", required=True, help="database of the live (broker fills) daemon")
    df.add_argument("--pip", type=float, default=0.0001)
    df.add_argument("--out", default="reports/drift", help="writes OUT.json and OUT.md")
    df.set_defaults(func=_drift)
    data_cli.add_parser(sub)
    config_cli.add_parser(sub)
    trades_cli.add_parser(sub, default_config)
    bot.add_parser(sub, default_config)
    sim_cli.add_parser(sub)
    dm = sub.add_parser("demo", help="train on 2017-01..09, paper-replay 2017-10..12, compare")
    dm.add_argument(
        "--trainer-config", help="default: config/trainer.toml, or config/trainer-muzero.toml with --algo muzero"
    )
    dm.add_argument("--daemon-config", default="config/paper.toml")
    dm.add_argument("--quick", action="store_true", help="fewer training steps (smoke run)")
    dm.add_argument("--algo", choices=["ppo", "muzero"], help="the learner (default: train.algo of the config)")
    dm.set_defaults(func=_demo)
    _defaults_in_help(p)
    return p


def _defaults_in_help(parser: argparse.ArgumentParser) -> None:
    """Every command's --help shows each option's default (issue 22 §1)."""
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _defaults_in_help(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StairwayError as e:
        print(f"stairway: error: {redact(str(e))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
