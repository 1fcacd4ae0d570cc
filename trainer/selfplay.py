"""MuZero self-play actors (issue 11 §4).

An actor owns its share of the ``num_envs`` sessions: a VecTradingEnv over the learner's
history (costs on, the daemon's risk rules, the reward shaper), its own seeded generators
for root noise and action draws, and a search (core.muzero_policy) on the weights the
learner last sent. ``play`` steps its sessions ``segment`` bars, searching every decision
with root Dirichlet noise and drawing the action from the visit counts at the given
temperature, and returns the trajectory segments.

Everything that crosses to an actor is plain data: the config as JSON, the history as a
dict of numpy arrays, the session starts, and the weights as safetensors bytes (read with
safetensors.numpy: an actor needs no torch). Results are dicts of numpy arrays. So the same
class runs in this process (``ray_address`` None: the actors play one after another) or as
Ray actors (a cluster address, or "local"), and for a fixed seed and actor count both give
the same segments in the same order. The actors also run the learner's reanalyse searches,
each on its share of the positions.
"""

from __future__ import annotations

import contextlib
from dataclasses import fields
from typing import Any

import numpy as np

from stairway.core.muzero_policy import MuZeroPolicy
from stairway.core.position import PS_UNITS
from stairway.core.types import ACTION_NAMES
from stairway.trainer.history import MarketHistory


def history_to_plain(h: MarketHistory) -> dict[str, np.ndarray]:
    return {f.name: getattr(h, f.name) for f in fields(h)}


def bar_returns(h: MarketHistory, pip: float, reward_scale: float, last_bar: int) -> np.ndarray:
    """Per bar, the next bar's mid-to-mid return in reward units (pips per traded unit times
    the reward scale); 0 after ``last_bar``: the bars after the training range (selection,
    gate) stay out of every target."""
    mid = (h.last_bid + h.last_ask) / 2.0 / pip * reward_scale
    r = np.diff(mid, append=mid[-1])
    r[last_bar + 1 :] = 0.0
    return r


def weights_to_bytes(tensors: dict) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().contiguous() for k, v in tensors.items()})


def weights_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    return load(data)


class SelfPlayActor:
    def __init__(
        self,
        cfg_json: dict,
        history: dict[str, np.ndarray],
        last_bar: int,
        session_len: int,
        starts: np.ndarray | None,
        num_envs: int,
        seed: int,
        threads: int = 0,
    ) -> None:
        from stairway.core.execution import ExecutionModel
        from stairway.core.features import FeatureSpec
        from stairway.trainer.config import TrainerConfig
        from stairway.trainer.env import VecTradingEnv
        from stairway.trainer.shaping import RewardShaper

        cfg = TrainerConfig.model_validate(cfg_json)
        self.args = cfg.muzero
        spec = FeatureSpec.from_config(cfg)
        ex = ExecutionModel.from_config(cfg.execution, cfg.instrument)
        self.shaper = RewardShaper(cfg.shaping, num_envs, cfg.ppo.reward_scale)
        self.env = VecTradingEnv(
            MarketHistory(**history),
            spec,
            ex,
            cfg.account.initial_equity,
            num_envs,
            session_len,
            seed=seed,
            first_bar=0,
            last_bar=last_bar,
            reward_scale=cfg.ppo.reward_scale,
            shaper=self.shaper,
            risk=cfg.risk,
            session_starts=starts,
        )
        self.rng = np.random.default_rng(seed)
        # per bar, the market's targets in reward units (pips per traded unit times the reward
        # scale), from the bars' closing mids, whatever was held: the next bar's return (mu's) and
        # per horizon h of td_steps the discounted sum of the next h bars' returns (M_h's), none
        # from after the training range (the bars the learner's env steps end at last_bar)
        r = bar_returns(self.env.h, ex.pip, cfg.ppo.reward_scale, last_bar)
        sums = []
        for h_bars in cfg.muzero.horizons:
            g = cfg.muzero.discount ** np.arange(h_bars)
            sums.append(np.correlate(np.concatenate([r, np.zeros(h_bars - 1)]), g, "valid"))
        self.market = np.stack([r, *sums], -1)
        self.obs = self.env.reset().copy()
        self.search: MuZeroPolicy | None = None
        # numba threads for the batched searches: all of them in this process; on Ray, where each
        # actor has one CPU, one (numba's setting is per calling thread: set before each search)
        self.threads = threads

    def _threads(self) -> None:
        if self.threads:
            import numba

            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]

    def play(self, weights: bytes, arch: dict, temperature: float, target_hold_rate: float) -> dict[str, np.ndarray]:
        """One segment of every session of this actor, searched on ``weights``."""
        a, env = self.args, self.env
        arch = arch | {"inference": arch["inference"] | {"temperature": 0.0}}
        self.search = search = MuZeroPolicy(weights_from_bytes(weights), env.obs_dim, arch)
        self._threads()
        self.shaper.set_target(target_hold_rate)
        n, T, A = env.num_envs, a.segment, len(ACTION_NAMES)
        obs = np.zeros((n, T + 1, env.obs_dim))
        acts = np.zeros((n, T), np.int64)
        rews = np.zeros((n, T))
        rets = np.zeros((n, T, self.market.shape[1]))
        pols = np.zeros((n, T + 1, A))
        dones = np.zeros((n, T), bool)
        traded = np.zeros(n, bool)
        for k in range(T + 1):
            obs[:, k] = self.obs
            actions = np.zeros(n, np.int64)
            noise = self.rng.dirichlet([a.dirichlet_alpha] * A, size=n)
            visits, _, improved = search.batch_visits(self.obs, noise, a.noise_fraction)
            target = improved if a.policy_target == "improved" else visits / visits.sum(axis=1, keepdims=True)
            pols[:, k] = target
            for e in range(n):
                p = target[e] ** (1.0 / temperature)
                actions[e] = int(self.rng.choice(A, p=p / p.sum()))
            if k == T:
                break  # the last observation: its policy target only
            before = env.state[:, PS_UNITS].copy()
            rets[:, k] = self.market[env.bar]
            o, r, d = env.step(actions)
            traded |= env.state[:, PS_UNITS] != before
            acts[:, k], rews[:, k], dones[:, k] = actions, r, d
            self.obs = o.copy()
        return {
            "obs": obs,
            "actions": acts,
            "rewards": rews,
            "returns": rets,
            "policies": pols,
            "dones": dones,
            "traded": traded,
            # the hold-bonus controller that shaped these rewards: (bonus, smoothed hold rate)
            "controller": np.array([self.shaper.last_bonus, self.shaper.hold_rate]),
        }

    def reanalyse(self, weights: bytes, arch: dict, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Fresh policy targets of stored observations (no root noise)."""
        arch = arch | {"inference": arch["inference"] | {"temperature": 0.0}}
        search = MuZeroPolicy(weights_from_bytes(weights), obs.shape[1], arch)
        self._threads()
        visits, _, improved = search.batch_visits(obs)  # every root in one call (issue 20 §1)
        pols = improved if self.args.policy_target == "improved" else visits / visits.sum(axis=1, keepdims=True)
        return {"policies": pols}


class ActorPool:
    """The actors of one learner, in this process or on Ray; ``play`` returns their results in
    actor order."""

    def __init__(self, cfg, history: MarketHistory, last_bar: int, session_len: int, starts: np.ndarray | None) -> None:
        a = cfg.muzero
        cfg_json = cfg.model_dump(mode="json")
        plain = history_to_plain(history)
        shares = [len(x) for x in np.array_split(np.arange(a.num_envs), a.actors)]
        seeds = [cfg.train.seed + 7919 * i for i in range(a.actors)]
        self._stack = contextlib.ExitStack()
        self.remote = a.ray_address is not None
        threads = 1 if self.remote else 0
        args = [(cfg_json, plain, last_bar, session_len, starts, shares[i], seeds[i], threads) for i in range(a.actors)]
        self.actors: list[Any]  # SelfPlayActor, or Ray handles to them
        if not self.remote:
            self.actors = [SelfPlayActor(*x) for x in args]
            return
        from stairway.trainer.ray_setup import ray_session

        self.ray = self._stack.enter_context(ray_session(a.ray_address, a.actors, "muzero.ray_address"))
        cls = self.ray.remote(num_cpus=1)(SelfPlayActor)
        shared = self.ray.put(plain)
        self.actors = [cls.remote(c, shared, lb, sl, st, n, sd, th) for c, _, lb, sl, st, n, sd, th in args]

    def play(self, weights: bytes, arch: dict, temperature: float, target: float) -> list[dict[str, np.ndarray]]:
        if not self.remote:
            return [x.play(weights, arch, temperature, target) for x in self.actors]
        ref = self.ray.put(weights)
        return self.ray.get([x.play.remote(ref, arch, temperature, target) for x in self.actors])

    def reanalyse(self, weights: bytes, arch: dict, obs: np.ndarray) -> dict[str, np.ndarray]:
        """``obs`` split among the actors in order; their results joined in the same order."""
        chunks = [c for c in np.array_split(obs, len(self.actors)) if len(c)]
        if not self.remote:
            parts = [x.reanalyse(weights, arch, c) for x, c in zip(self.actors, chunks)]
        else:
            ref = self.ray.put(weights)
            parts = self.ray.get([x.reanalyse.remote(ref, arch, c) for x, c in zip(self.actors, chunks)])
        return {"policies": np.concatenate([p["policies"] for p in parts])}

    def close(self) -> None:
        self.actors = []
        self._stack.close()
