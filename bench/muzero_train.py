"""MuZero training throughput (issue 11): self-play env-steps/s and learner updates/s in this
process (with the configured reanalyse fraction, 0.25, and without it), and whole learn() rounds (self-play + updates) with the actors in process and on a
local Ray with 2 actors, side by side in one run; the ratio is the figure.

Config: config/trainer.toml with train.algo = "muzero" and its [muzero] defaults (16
sessions, 32-step segments, 15 simulations, batch 128, unroll 5, 4 updates per round).

    python bench/muzero_train.py [--quick]     (--quick: fewer rounds; STAIRWAY_* overrides apply)
"""

from __future__ import annotations

import argparse
import os
import time

from common import ROOT, report
from stairway.core.config import load_config  # noqa: E402
from stairway.core.logs import configure_logging  # noqa: E402
from stairway.trainer.config import TrainerConfig  # noqa: E402
from stairway.trainer.muzero import MuZeroAlgorithm  # noqa: E402
from stairway.trainer.prepared import prepare_data, training_env  # noqa: E402


def algorithm(cfg: TrainerConfig, data) -> MuZeroAlgorithm:
    env, _ = training_env(cfg, data)
    return MuZeroAlgorithm(cfg, env, planned_steps=10**6)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    rounds = 2 if a.quick else 6
    configure_logging(level="warning")
    # the caller's STAIRWAY_ overrides apply (e.g. STAIRWAY_MUZERO__SIMULATIONS=50)
    base = {k: v for k, v in os.environ.items() if k.startswith("STAIRWAY_") and k != "STAIRWAY_CONFIG"}
    base |= {"STAIRWAY_TRAIN__ALGO": "muzero"}
    cfg = load_config(TrainerConfig, ROOT / "config/trainer.toml", environ=base)
    data = prepare_data(cfg)
    per_round = cfg.muzero.segment * cfg.muzero.num_envs

    algo = algorithm(cfg, data)
    algo._self_play()  # compile and warm
    t0 = time.perf_counter()
    for _ in range(rounds):
        for s in algo._self_play()[0]:
            algo.buffer.add(s)
    self_play_sps = rounds * per_round / (time.perf_counter() - t0)
    algo._train_round()
    n_upd = cfg.muzero.updates_per_segment * rounds
    t0 = time.perf_counter()
    for _ in range(rounds):
        algo._train_round()
    updates_ps = n_upd / (time.perf_counter() - t0)
    buffer = algo.buffer
    algo.close()
    plain = algorithm(
        load_config(
            TrainerConfig, ROOT / "config/trainer.toml", environ=base | {"STAIRWAY_MUZERO__REANALYSE_FRACTION": "0"}
        ),
        data,
    )
    plain.buffer = buffer
    plain._train_round()
    t0 = time.perf_counter()
    for _ in range(rounds):
        plain._train_round()
    plain_ups = n_upd / (time.perf_counter() - t0)
    plain.close()

    runs = {}
    for where, extra in (
        ("in_process_1_actor", {}),
        ("ray_2_actors", {"STAIRWAY_MUZERO__ACTORS": "2", "STAIRWAY_MUZERO__RAY_ADDRESS": "local"}),
    ):
        c = load_config(TrainerConfig, ROOT / "config/trainer.toml", environ=base | extra)
        algo = algorithm(c, data)
        algo.learn(per_round)  # actors started, kernels compiled
        t0 = time.perf_counter()
        algo.learn(rounds * per_round)
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(rounds):
            algo._self_play()
        sp = time.perf_counter() - t0
        algo.close()
        runs[where] = {
            "wall_s": round(wall, 2),
            "env_steps_per_s": round(rounds * per_round / wall, 1),
            "self_play_only_env_steps_per_s": round(rounds * per_round / sp, 1),
        }
    report(
        "muzero_train",
        {
            "sessions": cfg.muzero.num_envs,
            "segment": cfg.muzero.segment,
            "simulations": cfg.muzero.simulations,
            "batch_size": cfg.muzero.batch_size,
            "unroll": cfg.muzero.unroll,
            "rounds": rounds,
            "self_play_env_steps_per_s": round(self_play_sps, 1),
            "learner_updates_per_s": round(updates_ps, 2),
            "learner_updates_per_s_without_reanalyse": round(plain_ups, 2),
            "learn": runs,
            "ray_2_actors_speedup": round(runs["in_process_1_actor"]["wall_s"] / runs["ray_2_actors"]["wall_s"], 2),
            "ray_2_actors_self_play_speedup": round(
                runs["ray_2_actors"]["self_play_only_env_steps_per_s"]
                / runs["in_process_1_actor"]["self_play_only_env_steps_per_s"],
                2,
            ),
        },
    )


if __name__ == "__main__":
    main()
