"""The trainer's configuration: the shared market sections plus training arguments."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from stairway.core.config import DateRange, MarketConfig, Strict


class PPOArgs(Strict):
    """PPO hyperparameters (CleanRL names)."""

    total_steps: int = Field(200_000, gt=0, description="Environment steps (bars) to train for.")
    num_envs: int = Field(64, gt=0, description="Parallel sessions.")
    num_steps: int = Field(128, gt=0, description="Rollout length per env before an update.")
    learning_rate: float = Field(3e-4, gt=0, description="Adam step size, annealed linearly to 0.")
    gamma: float = Field(0.99, gt=0, le=1, description="Discount.")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda.")
    num_minibatches: int = Field(4, gt=0, description="Minibatches per epoch.")
    update_epochs: int = Field(4, gt=0, description="Epochs over each rollout.")
    clip_coef: float = Field(0.2, gt=0, description="Policy ratio clip.")
    ent_coef: float = Field(0.01, ge=0, description="Entropy bonus.")
    vf_coef: float = Field(0.5, ge=0, description="Value loss weight.")
    max_grad_norm: float = Field(0.5, gt=0, description="Gradient clip.")
    hidden: int = Field(64, gt=0, description="Hidden units per layer.")
    reward_scale: float = Field(0.1, gt=0, description="Reward = equity change in pips/unit x this.")
    torch_threads: int = Field(1, gt=0, description="Intra-op threads (fixed for determinism).")


class MuZeroArgs(Strict):
    """MuZero self-play and learner (trainer.muzero). Seed defaults where the seed names them."""

    latent: int = Field(32, gt=0, description="Latent state size.")
    hidden: int = Field(64, gt=0, description="Hidden units of each network.")
    simulations: int = Field(15, gt=0, description="MCTS simulations per decision.")
    c_puct: float = Field(1.25, gt=0)
    discount: float = Field(0.997, gt=0, le=1)
    num_envs: int = Field(16, gt=0, description="Self-play sessions stepped together.")
    segment: int = Field(32, gt=1, description="Steps per stored trajectory segment.")
    unroll: int = Field(5, gt=0, description="K: dynamics steps unrolled in training.")
    td_steps: int | tuple[int, ...] = Field(
        10,
        description="Horizons of the held position's value, in bars: one, or several (the value takes the best "
        "of them); M_h learns the discounted return of the next h bars.",
    )
    batch_size: int = Field(128, gt=0)
    updates_per_segment: int = Field(4, gt=0, description="Learner updates after each self-play segment round.")
    learning_rate: float = Field(1e-3, gt=0, description="Adam, annealed linearly to 10 % over the plan.")
    max_grad_norm: float = Field(5.0, gt=0)
    obs_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Learner only: dropout on the observation's market features (regularises mu and M on short "
        "histories; none in self-play, reanalyse or the daemon).",
    )
    demean: bool = Field(
        False,
        description="mu and M learn the market's returns less the training range's mean bar return (the "
        "drift): the model learns what the market state says beyond the window's average, and a search "
        "cannot turn an in-sample drift into a standing bet. The cost table still learns from the raw returns.",
    )
    buffer_segments: int = Field(2000, gt=1, description="Replay buffer capacity (segments).")
    trade_quota: float = Field(0.3, ge=0, lt=1, description="Least share of stored segments with trades.")
    reanalyse_fraction: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Share of sampled segments re-searched with the latest network (fresh policy and value targets).",
    )
    temperature: tuple[float, float] = Field((2.0, 0.5), description="Self-play temperature, start -> end.")
    dirichlet_alpha: float = Field(1.0, gt=0)
    noise_fraction: float = Field(0.5, ge=0, le=1, description="Root noise in self-play only.")
    act_temperature: float = Field(
        0.0,
        ge=0,
        description="Recorded in the checkpoint: temperature at act time; 0 takes the most visited action, as "
        "MuZero does at evaluation (sampling at 1.0 made the chosen action's visit share, the confidence, "
        "fall below min_confidence almost always).",
    )
    policy_target: Literal["improved", "visits"] = Field(
        "improved",
        description="Policy targets and acting: Gumbel MuZero's improved policy from the root Q values (with "
        "forced root visits), or the root visit distribution (the seed; near uniform with 15 simulations).",
    )
    root_min_visits: int = Field(2, ge=0, description="Forced visits of every root action before pUCT ('improved').")
    c_visit: float = Field(50.0, gt=0, description="Improved policy: sigma(q) = (c_visit + max N) * c_scale * q.")
    c_scale: float = Field(0.1, gt=0)
    actors: int = Field(1, gt=0, description="Self-play actors; the num_envs sessions are split among them.")
    ray_address: str | None = Field(
        None,
        description="Run the actors on Ray: a cluster address, or 'local' for a "
        "local Ray with one CPU per actor. None: in this process, one after another.",
    )

    @property
    def horizons(self) -> tuple[int, ...]:
        """td_steps as a tuple of horizons (bars)."""
        return (self.td_steps,) if isinstance(self.td_steps, int) else tuple(self.td_steps)

    @property
    def arch_horizons(self) -> list[int] | None:
        """What a checkpoint's arch records: the horizons when there are several, None for
        one (as every checkpoint did before horizons, so those warm-start and keep their ids)."""
        return list(self.horizons) if len(self.horizons) > 1 else None

    @field_validator("td_steps", mode="before")
    @classmethod
    def _one_or_a_list(cls, v: object) -> object:
        if isinstance(v, bool) or not isinstance(v, (int, list, tuple)):
            raise ValueError("one horizon in bars (24) or a list of them ([3, 8, 24])")
        return v

    @model_validator(mode="after")
    def _horizons_are_bars(self) -> MuZeroArgs:
        hs = self.horizons
        if not 1 <= len(hs) <= 8 or min(hs) < 1 or len(set(hs)) != len(hs):
            raise ValueError(
                f"muzero.td_steps = {list(self.horizons)}: one horizon or a list of 1 to 8 different ones, each >= 1 bar"
            )
        return self

    @model_validator(mode="after")
    def _actors_have_sessions(self) -> MuZeroArgs:
        if self.actors > self.num_envs:
            raise ValueError(
                f"muzero.actors = {self.actors} is more than muzero.num_envs = {self.num_envs}: "
                "every actor needs at least one session"
            )
        return self


class ShapingConfig(Strict):
    """Training-only reward shaping (trainer.shaping). Defaults from the seed plan."""

    hold_bonus: StrictBool = Field(True, description="Pay the dual-lane controller's bonus for HOLD.")
    base_hold_bonus: float = Field(0.01, ge=0, description="Controller base bonus.")
    fast_gain: float = Field(0.25, ge=0, description="Fast lane gain.")
    regime_gain: float = Field(0.3, ge=0, description="Fast lane scaling by regime: (1 + gain·regime).")
    slow_gain: float = Field(0.05, ge=0, description="Slow lane gain.")
    slow_every: int = Field(25, gt=0, description="Slow lane sampling period (steps).")
    target_hold_rate: float = Field(0.55, ge=0, le=1, description="Target when no curriculum applies.")
    regime_target_gain: float = Field(0.1, description="Target += gain · regime.")
    hold_rate_ema: float = Field(0.04, gt=0, le=1, description="EMA weight of the hold-rate estimate.")
    amddp_weight: float = Field(0.0, ge=0, description="Penalty on increases of the trade's max drawdown.")
    sharpe_weight: float = Field(0.0, ge=0, description="Variance penalty.")
    sortino_weight: float = Field(0.0, ge=0, description="Downside variance penalty.")
    drawdown_weight: float = Field(0.0, ge=0, description="Penalty on increases of the session drawdown.")
    cvar_weight: float = Field(0.0, ge=0, description="Penalty below the online VaR quantile.")
    cvar_alpha: float = Field(0.05, gt=0, lt=1, description="VaR quantile for the CVaR penalty.")


class CycleConfig(Strict):
    """The Stairways cycle plan (seed defaults: 8 cycles of 6,000 steps)."""

    count: int = Field(8, gt=0, description="Most cycles per run.")
    steps: int = Field(6000, gt=0, description="Env steps per cycle (rounded up to whole rollouts).")
    curriculum: tuple[float, ...] = Field(
        (0.75, 0.75, 0.70, 0.70, 0.67, 0.55, 0.45, 0.35, 0.25),
        description="Target hold rate per cycle (last one repeats).",
    )
    min_cycles: int = Field(2, gt=0, description="Never stop before this many cycles.")
    patience: int = Field(2, gt=0, description="Stop after this many cycles without improvement.")
    min_sharpe_improvement: float = Field(0.01, ge=0, description="Relative Sharpe gain that counts (1 %).")
    warm_start: StrictBool = Field(True, description="Start from models/current (or gold) when compatible.")

    @model_validator(mode="after")
    def _check(self) -> CycleConfig:
        if not self.curriculum or not all(0.0 <= x <= 1.0 for x in self.curriculum):
            raise ValueError("curriculum must be a non-empty list of hold rates in [0, 1]")
        return self


class GateConfig(Strict):
    """Validation gates every candidate must pass before it is published."""

    daemon_config: Path = Field(Path("config/paper.toml"), description="Pre-flight compares against this.")
    ticks_dir: Path = Field(Path("state/ticks"), description="The daemon's recorded ticks.")
    shadow_days: int = Field(3, gt=0, description="Trading days replayed.")
    shadow_max_gap_days: int = Field(
        7,
        ge=0,
        description="Recorded days judge a candidate only if the first begins within this many days of the "
        "training range's end; else the range's own last days do (and the run says why).",
    )
    min_day_pnl: float | None = Field(
        None,
        description="If set, each shadow day's PnL must be at least this (quote currency). Off by default: a "
        "policy with a daily Sharpe of 0.3 (4.8 a year) loses on 38 % of days, and all of 3 days positive "
        "refused three in four such policies; shadow_max_loss_pct judges the days together.",
    )
    shadow_max_loss_pct: float = Field(
        1.0, gt=0, description="The shadow days together may lose at most this % of the initial equity."
    )
    max_day_drawdown_pct: float = Field(2.0, gt=0, description="Each day's max drawdown at most this.")
    trades_per_day_minute_bars: tuple[int, int] = Field((5, 25), description="Scaled for the bar period.")
    drift_threshold: float = Field(0.15, gt=0, description="Relative L2 distance to gold.")
    mc_resamples: int = Field(1000, ge=1000, description="Monte Carlo bootstrap resamples.")
    walk_forward_windows: int = Field(4, ge=2, description="Rolling windows for walk-forward efficiency.")
    gate_on_robustness: StrictBool = Field(
        True,
        description="Also require CAR25, DD95, WFE, SQN and profit "
        "factor minimums (from min_robustness_trades trades on).",
    )
    min_car25_pct: float = Field(0.0, description="Monte Carlo 25th-percentile annual return (Bandy's CAR25).")
    max_dd95_pct: float = Field(20.0, gt=0, description="Monte Carlo 95th-percentile max drawdown (Bandy's DD95).")
    min_walk_forward_efficiency: float = 0.5
    min_sqn: float = Field(1.6, description="Van Tharp: below 1.6 is 'poor'.")
    min_profit_factor: float = Field(1.2, ge=0)
    min_robustness_trades: int = Field(
        30, ge=2, description="Fewer validation trades: robustness fails, not 'too few to tell' passing."
    )
    # evidence: activity and baselines (a flat, buy-and-hold or one-trade model cannot pass)
    gate_on_evidence: StrictBool = Field(
        True,
        description="Require the evidence below; off only to test the "
        "publishing mechanics (a model then publishes without evidence).",
    )
    min_validation_trades: int = Field(10, ge=1, description="Trades over the validation window.")
    hold_rate_band: tuple[float, float] = Field(
        (0.25, 0.98),
        description="Share of decisions that leave the target position as it is (HOLD, or a BUY while long: "
        "target-position semantics) on the gate window. The top is 98 %, not the seed's 90 %: a policy "
        "trading once a day on hourly bars holds 23 of 24 decisions; a flat or one-trade model (100 %, "
        "99.9 %) and one reversing every bar (0 %) still fail. (Counting HOLD actions alone failed a "
        "policy that re-asserts its position every bar, as a mean-reversion one does: 4 %.)",
    )
    min_shadow_orders: int = Field(1, ge=0, description="Orders over all shadow days together: inactivity fails.")
    last_day: dt.date | None = Field(
        None, description="Recorded days after this are not replayed (set by the rolling window: complete days only)."
    )
    beat_margin_pct: float = Field(
        0.1,
        ge=0,
        description="Validation return must exceed always-flat's and "
        "buy-and-hold's, after costs, by this many percent of equity.",
    )


class TrainConfig(Strict):
    range: DateRange | None = Field(
        None, description="Bars used: training head plus held-back tail. Or rolling_days with data_store."
    )
    data_store: Path | None = Field(
        None,
        description="Train on the data store (imported, fetched and recorded bars; trainer.data_store) "
        "instead of data.bars_csv alone.",
    )
    rolling_days: int | None = Field(
        None,
        gt=0,
        description="With data_store: train and validate on this many calendar days ending where the "
        "shadow days (the last complete recorded days) begin.",
    )
    as_of: dt.date | None = Field(None, description="Today, for the rolling window (default: the UTC date).")
    metrics_file: Path | None = Field(
        None,
        description="Write each run's figures here as Prometheus text (node_exporter's textfile collector), "
        "e.g. /var/lib/node_exporter/textfile/stairway_trainer.prom.",
    )
    algo: Literal["ppo", "muzero"] = Field("ppo", description="The learning algorithm (trainer.algos).")
    min_confidence: float = Field(
        0.35,
        ge=0,
        le=1,
        description="Recorded in the checkpoint: an action whose "
        "confidence is below this is taken as HOLD, in evaluation and in the daemon.",
    )
    holdout_fraction: float = Field(0.15, gt=0, lt=1, description="Tail of the range never trained on.")
    gate_window_fraction: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="Of the held-back tail, the later part: the gate window (the evidence and robustness gates, "
        "the baselines), never used to pick the cycle; the earlier part is the selection window, which does.",
    )
    session_minutes: int = Field(21_600, gt=0, description="Session length (360 one-hour bars).")
    max_gap_minutes: float | None = Field(
        None,
        ge=0,
        description="Reject a session in which two consecutive "
        "bars are further apart than the bar period plus this (a missing bar, "
        "a feed outage); none: no gap check. Seed: 10.",
    )
    reject_weekend: StrictBool = Field(
        False, description="Reject a session that spans a weekend (the week turns at Saturday 12:00 UTC)."
    )
    seed: int = 1
    models_dir: Path = Path("models")
    gate_db: Path = Field(Path("state/gate.db"), description="The trainer's registry database.")
    reports_dir: Path = Field(Path("runs"), description="HTML/Markdown reports, one folder per run.")
    registry_keep: int = Field(
        10, ge=1, description="Checkpoints kept in models_dir/registry besides those current, gold and previous name."
    )
    gate_backup_keep: int = Field(7, ge=1, description="Verified backups of gate_db kept (one per training run).")
    ensemble_seeds: int = Field(
        1,
        ge=1,
        le=16,
        description="PPO: train this many seeds (train.seed, +1, ...) with the cycle plan and publish their best "
        "cycles as one seed-ensemble checkpoint (action probabilities averaged); 1 = a single net.",
    )

    @model_validator(mode="after")
    def _ensemble(self) -> TrainConfig:
        if self.ensemble_seeds > 1 and self.algo != "ppo":
            raise ValueError(
                f"ensemble_seeds = {self.ensemble_seeds}: seed ensembles are of PPO nets (train.algo = 'ppo')"
            )
        return self

    @model_validator(mode="after")
    def _one_window(self) -> TrainConfig:
        if (self.range is None) == (self.rolling_days is None):
            raise ValueError("set exactly one of train.range (fixed) and train.rolling_days (with train.data_store)")
        if self.rolling_days is not None and self.data_store is None:
            raise ValueError("train.rolling_days needs train.data_store: the window ends at the last recorded day")
        return self


class TrainerConfig(MarketConfig):
    train: TrainConfig
    ppo: PPOArgs = PPOArgs()
    muzero: MuZeroArgs = MuZeroArgs()
    shaping: ShapingConfig = ShapingConfig()
    cycles: CycleConfig = CycleConfig()
    gates: GateConfig = GateConfig()
