"""`stairway` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys

from core.config import load_config
from core.errors import StairwayError
from core.logs import configure_logging
from core.metrics import format_summary


def _daemon_run(args: argparse.Namespace) -> int:
    from daemon.app import run_daemon
    from daemon.config import DaemonConfig

    cfg = load_config(DaemonConfig, args.config)
    configure_logging(json=cfg.service.log_json)
    res = asyncio.run(run_daemon(cfg))
    print(f"\nPaper replay ({res.counters['ticks']} bar-derived quotes, model {res.model_sha[:12]}, "
          f"decisions {res.first_decision} .. {res.last_bar} UTC){' — INTERRUPTED' if res.interrupted else ''}")
    print(format_summary({"paper replay": res.summary}))
    print(f"database: {res.db_path} (run_id {res.run_id})")
    return 0


def _train_run(args: argparse.Namespace) -> int:
    from trainer.config import TrainerConfig
    from trainer.run import run_training

    cfg = load_config(TrainerConfig, args.config)
    configure_logging()
    res = run_training(cfg)
    print(f"\nTrained {res.steps} steps at {res.steps_per_s:,.0f} steps/s in {res.seconds:.1f} s; "
          f"published {res.sha[:12]} as {cfg.train.models_dir}/current")
    print(format_summary({"in-sample": res.in_sample, "held-back tail": res.holdout}))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from stairway.demo import run_demo

    return run_demo(args.trainer_config, args.daemon_config, quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stairway", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("daemon", help="the live/paper trading service").add_subparsers(dest="sub", required=True)
    dr = d.add_parser("run", help="run the daemon (paper replay for now)")
    dr.add_argument("--config", default="config/paper.toml")
    dr.set_defaults(func=_daemon_run)
    t = sub.add_parser("train", help="the offline trainer").add_subparsers(dest="sub", required=True)
    tr = t.add_parser("run", help="train, evaluate on the held-back tail, publish models/current")
    tr.add_argument("--config", default="config/trainer.toml")
    tr.set_defaults(func=_train_run)
    dm = sub.add_parser("demo", help="train on 2017-01..09, paper-replay 2017-10..12, compare")
    dm.add_argument("--trainer-config", default="config/trainer.toml")
    dm.add_argument("--daemon-config", default="config/paper.toml")
    dm.add_argument("--quick", action="store_true", help="fewer training steps (smoke run)")
    dm.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StairwayError as e:
        print(f"stairway: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
