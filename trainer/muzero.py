"""MuZero self-play and learner (issue 11 §4), behind the trainer's algorithm seam.

Self-play (trainer.selfplay): ``actors`` actors, in this process or on Ray, each step their
share of the ``num_envs`` sessions of the shared VecTradingEnv (costs on, the daemon's risk
rules, the reward shaper, the indexed session starts); each decision is a search
(core.mcts) on the latest weights, sent as safetensors bytes, with root Dirichlet noise, the
action drawn from the visit counts at the scheduled temperature (2.0 -> 0.5 over the plan).
Every ``segment`` steps each session's trajectory segment (observations, actions, rewards,
visit distributions or improved policies, the market's returns) goes to the replay buffer, in actor order.

Replay buffer: at most ``buffer_segments``; when full the oldest segment goes, unless that
would leave fewer than ``trade_quota`` of them with a position change: then a random
segment without one goes instead.

Learner: batches of (segment, start) positions; per unroll step k = 0..K the search's
policy (the improved policy, or the visit distribution) as the prior's target, and for
k < K the market's targets, which do not depend on what was held: mu against the bar's
realised return, each M_h against the discounted return of the next h bars for each horizon
h of ``td_steps`` (each mean square divided by its target's variance in the batch), and the
cost table against what the step cost beyond the position's share of the bar's return
(core.muzero_net, layout 2). A row ends at its segment's end or at a session's end, whichever
comes first (the env resets after a session: what follows is another day). With ``demean``
mu and M learn the returns less the training range's mean bar return (M_h: its discounted
sum over h bars), so that the window's drift, the least persistent thing in it, is not a
standing bet of every search; the cost table learns from the raw returns. The dynamics
gradient is halved at each step as in MuZero; Adam with the learning rate annealed linearly
to 10 %, gradients clipped; ``obs_dropout`` drops that share of the observation's market
features in each update (inverted dropout; the position features are kept), which made mu
generalise like a ridge regression on ~2,100-bar windows. A ``reanalyse_fraction`` of the
sampled segments is searched again with the latest weights first (fresh policy targets at
the positions those rows read, searched by the actors, in parallel on Ray).
Deterministic on CPU for a fixed seed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from stairway.core.muzero_model import MuZeroNet, muzero_from_tensors
from stairway.core.types import ACTION_NAMES
from stairway.trainer.config import TrainerConfig
from stairway.trainer.env import VecTradingEnv
from stairway.trainer.ppo import PPOProgress
from stairway.trainer.selfplay import ActorPool, bar_returns, weights_to_bytes


class Segment:
    """One session's stretch of self-play: observations (T + 1), actions, rewards, the
    market's returns (T, 1 + H: the bar's, and the next h bars' discounted per horizon), the search's
    policies (T + 1), session ends, and whether the position changed."""

    __slots__ = ("obs", "actions", "rewards", "returns", "policies", "done", "has_trade")

    def __init__(self, obs, actions, rewards, returns, policies, done, has_trade) -> None:
        self.obs, self.actions, self.rewards, self.returns, self.policies = obs, actions, rewards, returns, policies
        self.done, self.has_trade = done, has_trade


class ReplayBuffer:
    def __init__(self, capacity: int, trade_quota: float, rng: np.random.Generator) -> None:
        self.capacity, self.quota, self.rng = capacity, trade_quota, rng
        self.items: list[Segment] = []

    def trade_share(self) -> float:
        return sum(s.has_trade for s in self.items) / len(self.items) if self.items else 0.0

    def add(self, seg: Segment) -> None:
        """FIFO, except that a random hold-only segment goes instead of the oldest whenever
        dropping the oldest would leave fewer than ``quota`` of the segments with trades."""
        if len(self.items) >= self.capacity:
            trades = sum(s.has_trade for s in self.items) - self.items[0].has_trade + seg.has_trade
            hold_only = [i for i, s in enumerate(self.items) if not s.has_trade]
            if hold_only and trades < self.quota * len(self.items):
                del self.items[hold_only[int(self.rng.integers(len(hold_only)))]]
            else:
                del self.items[0]
        self.items.append(seg)


class MuZeroAlgorithm:
    kind = "muzero"

    def __init__(
        self, cfg: TrainerConfig, env: VecTradingEnv, parent=None, start_step: int = 0, planned_steps: int = 100_000
    ) -> None:
        a = cfg.muzero
        self.cfg, self.args, self.env = cfg, a, env
        self.seed = cfg.train.seed
        random.seed(self.seed)
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)
        torch.set_num_threads(cfg.ppo.torch_threads)
        torch.use_deterministic_algorithms(True)
        self.rng = np.random.default_rng(self.seed)
        self.n_actions = n_actions = len(ACTION_NAMES)
        if parent is not None:
            self.net = muzero_from_tensors(parent.tensors, env.obs_dim, parent.meta.architecture())
        else:
            self.net = MuZeroNet(env.obs_dim, n_actions, a.latent, a.hidden, a.arch_horizons)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=a.learning_rate)
        self.global_step, self._first_step, self.planned = start_step, start_step, max(1, planned_steps)
        self.buffer = ReplayBuffer(a.buffer_segments, a.trade_quota, self.rng)
        self.updates = 0
        self._sent: tuple[int, bytes] | None = None  # (updates, the weights as sent to the actors)
        self.actors = ActorPool(cfg, env.h, env.hi, env.session_len, env.session_starts)
        self._controller = np.array([0.0, cfg.shaping.target_hold_rate])  # until the first self-play
        # the training range's mean bar return and, per target column (mu, M_1 .. M_H), what it
        # adds up to (the discounted sum over each horizon): subtracted from the targets (demean)
        drift = (
            float(bar_returns(env.h, env.ex.pip, cfg.ppo.reward_scale, env.hi)[: env.hi + 1].mean())
            if a.demean
            else 0.0
        )
        spans = [1.0] + [float(np.sum(a.discount ** np.arange(h))) for h in a.horizons]
        self.drift = torch.tensor(spans, dtype=torch.float32) * drift

    # -- the seam ---------------------------------------------------------------------------
    def arch(self) -> dict:
        a = self.args
        return self.net.arch() | {
            "inference": {
                "simulations": a.simulations,
                "c_puct": a.c_puct,
                "discount": a.discount,
                "temperature": a.act_temperature,
                "act": a.policy_target,
                "root_min_visits": a.root_min_visits if a.policy_target == "improved" else 0,
                "c_visit": a.c_visit,
                "c_scale": a.c_scale,
                "seed": 0,
                "min_confidence": self.cfg.train.min_confidence,
            }
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.net.state_dict().items()}

    def policy(self, sha: str = ""):
        from stairway.trainer.algos import policy_from_weights

        return policy_from_weights(self.env.spec, self.tensors(), self.arch(), sha)

    def learn(self, steps: int, on_progress: Callable[[PPOProgress], None] | None = None) -> None:
        a, env = self.args, self.env
        done_steps = 0
        t0 = time.perf_counter()
        while done_steps < steps:
            segs, mean_r = self._self_play()
            for s in segs:
                self.buffer.add(s)
            done_steps += a.segment * env.num_envs
            self.global_step += a.segment * env.num_envs
            loss = self._train_round()
            if on_progress is not None:
                on_progress(
                    PPOProgress(self.global_step, done_steps / (time.perf_counter() - t0), mean_r, loss, 0.0, 0.0)
                )

    # -- self-play ----------------------------------------------------------------------------
    def temperature(self) -> float:
        t0, t1 = self.args.temperature
        frac = min(1.0, (self.global_step - self._first_step) / self.planned)
        return t0 + (t1 - t0) * frac

    def _self_play(self) -> tuple[list[Segment], float]:
        """One segment of every session from every actor, in actor order."""
        shaper = self.env.shaper
        target = shaper.target if shaper is not None else self.cfg.shaping.target_hold_rate
        results = self.actors.play(self._weights(), self.arch(), self.temperature(), target)
        self._controller = np.mean([r["controller"] for r in results], axis=0)  # the actors' shapers
        segs, total, count = [], 0.0, 0
        for r in results:
            for e in range(len(r["actions"])):
                # targets are refreshed in place by reanalyse: own copies (Ray's arrays are read-only)
                segs.append(
                    Segment(
                        r["obs"][e],
                        r["actions"][e],
                        r["rewards"][e],
                        r["returns"][e],
                        r["policies"][e].copy(),
                        r["dones"][e],
                        bool(r["traded"][e]),
                    )
                )
            total += float(r["rewards"].sum())
            count += r["rewards"].size
        return segs, total / max(count, 1)

    def controller(self) -> tuple[float, float]:
        """(bonus, hold rate) of the actors' hold-bonus controllers after the last self-play,
        averaged over actors: the shapers that made the rewards MuZero learned from."""
        return float(self._controller[0]), float(self._controller[1])

    def _weights(self) -> bytes:
        """The current weights as safetensors bytes, serialised once per update: a round's
        self-play and its reanalyse (which runs before the round's updates) send the same."""
        if self._sent is None or self._sent[0] != self.updates:
            self._sent = (self.updates, weights_to_bytes(self.tensors()))
        return self._sent[1]

    def close(self) -> None:
        self.actors.close()

    # -- learning ---------------------------------------------------------------------------
    def _batch(self, idx: np.ndarray, starts: list[int]) -> dict[str, torch.Tensor]:
        """The batch's rows (segment ``idx[b]`` from ``starts[b]``) as tensors: the stored
        observation at the start, and per unroll step k the policy target and its mask (0 past
        the segment: a uniform target), the reward into step k (k >= 1; 0 past the segment),
        and for k < K the action taken and the market's returns (past the segment: a random
        action, NaN returns: no target). A session's end inside the unroll ends the row as the
        segment's end does, one step sooner: the environment resets after it, so the stored
        steps that follow belong to another session at another bar; unrolled across it, mu
        and M at k >= 1 learned the returns of an unrelated hour of another day for about a
        fifth of the rows (sessions of 24 bars, 5 unroll steps). Slices per row into arrays
        filled once, not a loop per row and step (it was a fifth of an update's time)."""
        K, A, items = self.args.unroll, self.n_actions, self.buffer.items
        B, width = len(idx), items[int(idx[0])].returns.shape[1]
        obs = np.empty((B, items[int(idx[0])].obs.shape[1]))
        policies, mask = np.full((B, K + 1, A), 1.0 / A), np.zeros((B, K + 1))
        rewards, actions = np.zeros((B, K + 1)), np.zeros((B, K), np.int64)
        returns = np.full((B, K, width), np.nan)
        for b, (j, start) in enumerate(zip(idx, starts)):
            seg = items[int(j)]
            obs[b] = seg.obs[start]
            m, n = self._span(seg, start)
            policies[b, :n], mask[b, :n] = seg.policies[start : start + n], 1.0
            rewards[b, 1 : 1 + m] = seg.rewards[start : start + m]
            actions[b, :m] = seg.actions[start : start + m]
            returns[b, :m] = seg.returns[start : start + m]
            if m < K:
                actions[b, m:] = self.rng.integers(A, size=K - m)
        f32 = torch.float32
        return {
            "obs": torch.tensor(obs, dtype=f32),
            "rewards": torch.tensor(rewards, dtype=f32),
            "policies": torch.tensor(policies, dtype=f32),
            "mask": torch.tensor(mask, dtype=f32),
            "actions": torch.tensor(actions),
            "returns": torch.tensor(returns, dtype=f32),
        }

    def _span(self, seg: Segment, start: int) -> tuple[int, int]:
        """(m, n) of the row from ``start``: m unroll steps with an action, its reward and the
        market's returns, n policy targets (start .. start + n - 1). The segment's end stops
        both (its last observation, T, continues the session: n = m + 1); so does a session's
        end one step sooner for the targets (the observation after it is another session's)."""
        K, T = self.args.unroll, len(seg.actions)
        m = min(K, T - start)
        ends = np.flatnonzero(seg.done[start : start + m])
        if len(ends):
            return int(ends[0]) + 1, int(ends[0]) + 1
        return m, min(K + 1, T + 1 - start)

    def _sample(self) -> tuple[np.ndarray, list[int], np.ndarray]:
        """One batch: buffer indices, start positions, and which rows are reanalysed."""
        a, items = self.args, self.buffer.items
        idx = self.rng.integers(len(items), size=a.batch_size)
        starts = [int(self.rng.integers(len(items[j].actions))) for j in idx]
        return idx, starts, self.rng.random(a.batch_size) < a.reanalyse_fraction

    def _reanalyse(self, plan: list) -> int:
        """Refresh, with the latest weights, the policy targets the round's reanalysed rows will
        read (start .. start + n - 1, _span) by a new search, shared among the actors. Returns the number of
        positions searched."""
        items = self.buffer.items
        searched: set[tuple[int, int]] = set()
        for idx, starts, re in plan:
            for j, start, r in zip(idx, starts, re):
                if r:
                    searched.update((int(j), i) for i in range(start, start + self._span(items[j], start)[1]))
        if not searched:
            return 0
        positions = sorted(searched)
        obs = np.stack([items[j].obs[i] for j, i in positions])
        fresh = self.actors.reanalyse(self._weights(), self.arch(), obs)
        for p, (j, i) in enumerate(positions):
            items[j].policies[i] = fresh["policies"][p]
        return len(positions)

    def _train_round(self) -> float:
        """``updates_per_segment`` learner steps on batches drawn together, after one
        reanalyse pass over what they read."""
        items = self.buffer.items
        if not items:
            return 0.0
        plan = [self._sample() for _ in range(self.args.updates_per_segment)]
        self._reanalyse(plan)
        loss = 0.0
        for idx, starts, _ in plan:
            loss = self._step(self._batch(idx, starts))
        return loss

    def _step(self, batch: dict[str, torch.Tensor]) -> float:
        """One update (the loss of the module docstring): per unroll step k the policy's
        cross-entropy, and for k < K the market's mean squares (mu, M: every step, whatever
        was held) and the cost table's (gradient to the table only)."""
        a, net = self.args, self.net
        K = a.unroll
        obs, rewards, policies, mask = batch["obs"], batch["rewards"], batch["policies"], batch["mask"]
        actions, returns = batch["actions"], batch["returns"]
        known = ~torch.isnan(returns[..., 0])
        returns = torch.nan_to_num(returns)
        targets = returns - self.drift  # mu's and M's (demean); the cost table's ``paid`` reads the raw returns
        kn = known.float()
        var = torch.stack([returns[..., j][known].var(correction=0).clamp(min=1e-6) for j in range(returns.shape[-1])])
        if a.obs_dropout > 0.0:  # the market features only: the position features set the state's slot
            n = self.env.spec.n_market
            obs = torch.cat([nn.functional.dropout(obs[:, :n], a.obs_dropout), obs[:, n:]], 1)
        s = net.represent(obs)
        loss = torch.zeros(())
        for k in range(K + 1):
            pl = net.policy_logits(s)  # the value is not trained: no second market pass for it
            ce_p = -(policies[:, k] * torch.log_softmax(pl, -1)).sum(-1)
            step = ce_p * mask[:, k]
            if k < K:
                slot = net.slot(s)
                z, mu, hold = net.market(s)
                nxt = net.next_slot(slot, actions[:, k])
                m = kn[:, k]
                cost = net.cost[slot * self.n_actions + actions[:, k]]
                paid = net.direction(nxt) * returns[:, k, 0] - rewards[:, k + 1]
                step = step + m * (
                    (mu - targets[:, k, 0]) ** 2 / var[0]
                    + ((hold - targets[:, k, 1:]) ** 2 / var[1:]).sum(-1)
                    + (cost - paid) ** 2
                )
                s = net.state(z, nxt)
                s.register_hook(lambda grad: grad * 0.5)
            loss = loss + step.mean() / (K + 1)
        frac = min(1.0, (self.global_step - self._first_step) / self.planned)
        self.opt.param_groups[0]["lr"] = a.learning_rate * (1.0 - 0.9 * frac)
        self.opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), a.max_grad_norm)
        self.opt.step()
        self.updates += 1
        return float(loss.detach())
