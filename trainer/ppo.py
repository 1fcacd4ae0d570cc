"""PPO with a clipped objective and GAE, read top to bottom like CleanRL's ppo.py.

Deterministic under a seed: one seeding block, a fixed number of torch threads, the
environment's own numpy Generator, and actions sampled with the Gumbel-max trick from a
seeded torch Generator.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from stairway.core.ppo_net import ActorCritic
from stairway.trainer.config import PPOArgs
from stairway.trainer.env import VecTradingEnv


@dataclass
class PPOProgress:
    global_step: int
    steps_per_s: float
    mean_reward: float
    policy_loss: float
    value_loss: float
    entropy: float
    # the update's health, as CleanRL and SB3 log it (NaN where an algorithm has none): the mean
    # of (ratio - 1) - log ratio over the update's minibatches, the share of samples whose ratio
    # was clipped, and 1 - Var(returns - values) / Var(returns) of the rollout
    approx_kl: float = float("nan")
    clip_fraction: float = float("nan")
    explained_variance: float = float("nan")


def update_health(p: PPOProgress) -> dict[str, float]:
    """approx_kl, clip_fraction and explained_variance where the algorithm has them."""
    out = {"approx_kl": p.approx_kl, "clip_fraction": p.clip_fraction, "explained_variance": p.explained_variance}
    return {k: v for k, v in out.items() if v == v}


def seed_everything(seed: int, threads: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    return torch.Generator().manual_seed(seed)


class PPOLearner:
    """PPO over one environment; ``learn`` may be called repeatedly (training cycles) and the
    step counter, optimiser state, environment and random streams carry on between calls."""

    def __init__(
        self,
        env: VecTradingEnv,
        args: PPOArgs,
        seed: int,
        net: ActorCritic | None = None,
        start_step: int = 0,
        planned_steps: int | None = None,
    ) -> None:
        self.gen = seed_everything(seed, args.torch_threads)
        self.env, self.args, self.seed = env, args, seed
        self.agent = net if net is not None else ActorCritic(env.obs_dim, hidden=args.hidden)
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=args.learning_rate, eps=1e-5)
        self.global_step = start_step
        self._first_step = start_step
        self.planned_steps = planned_steps or args.total_steps
        self.iteration = 0
        self.next_obs = torch.tensor(env.reset(), dtype=torch.float32)
        self.next_done = torch.zeros(env.num_envs)

    def learn(self, steps: int, on_progress: Callable[[PPOProgress], None] | None = None) -> ActorCritic:
        """Run whole rollouts until at least ``steps`` more env steps are done (min. one)."""
        env, args, agent, optimizer, gen = self.env, self.args, self.agent, self.optimizer, self.gen
        num_envs, num_steps = env.num_envs, args.num_steps
        batch_size = num_envs * num_steps
        minibatch_size = max(1, batch_size // args.num_minibatches)
        num_iterations = max(1, -(-steps // batch_size))

        # rollout storage, shaped (num_steps, num_envs)
        obs = torch.zeros((num_steps, num_envs, env.obs_dim))
        actions = torch.zeros((num_steps, num_envs), dtype=torch.long)
        logprobs = torch.zeros((num_steps, num_envs))
        rewards = torch.zeros((num_steps, num_envs))
        dones = torch.zeros((num_steps, num_envs))
        values = torch.zeros((num_steps, num_envs))

        next_obs, next_done = self.next_obs, self.next_done
        start = time.perf_counter()
        done_steps = 0
        for _ in range(num_iterations):
            self.iteration += 1
            frac = min(1.0, (self.global_step - self._first_step) / max(1, self.planned_steps))
            optimizer.param_groups[0]["lr"] = max(0.0, 1.0 - frac) * args.learning_rate

            for step in range(num_steps):
                self.global_step += num_envs
                done_steps += num_envs
                obs[step] = next_obs
                dones[step] = next_done
                with torch.no_grad():
                    logits = agent.logits(next_obs)
                    values[step] = agent.value(next_obs)
                    u = torch.rand(logits.shape, generator=gen).clamp_(1e-12, 1.0)
                    action = torch.argmax(logits - torch.log(-torch.log(u)), dim=1)
                    logprobs[step] = torch.log_softmax(logits, 1).gather(1, action[:, None]).squeeze(1)
                actions[step] = action
                o, r, d = env.step(action.numpy())
                rewards[step] = torch.from_numpy(r).float()
                next_obs = torch.tensor(o, dtype=torch.float32)
                next_done = torch.from_numpy(d).float()

            # generalised advantage estimation
            with torch.no_grad():
                next_value = agent.value(next_obs)
                advantages = torch.zeros_like(rewards)
                lastgaelam = torch.zeros(num_envs)
                for t in reversed(range(num_steps)):
                    if t == num_steps - 1:
                        nextnonterminal, nextvalues = 1.0 - next_done, next_value
                    else:
                        nextnonterminal, nextvalues = 1.0 - dones[t + 1], values[t + 1]
                    # a step that ended a session (done recorded at t+1) does not bootstrap
                    delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
                    lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
                    advantages[t] = lastgaelam
                returns = advantages + values

            b_obs = obs.reshape(-1, env.obs_dim)
            b_logprobs = logprobs.reshape(-1)
            b_actions = actions.reshape(-1)
            b_advantages = advantages.reshape(-1)
            b_returns = returns.reshape(-1)

            var_returns = float(b_returns.var())
            explained = 1.0 - float((b_returns - values.reshape(-1)).var()) / var_returns if var_returns > 0 else 0.0
            kls, clipped = [], []
            b_inds = np.arange(batch_size)
            perm_rng = np.random.default_rng(self.seed * 7919 + self.iteration)
            for _epoch in range(args.update_epochs):
                perm_rng.shuffle(b_inds)
                for s in range(0, batch_size, minibatch_size):
                    mb_inds = torch.from_numpy(b_inds[s : s + minibatch_size])
                    mb_obs = b_obs[mb_inds]
                    logits = agent.logits(mb_obs)
                    logp_all = torch.log_softmax(logits, 1)
                    newlogprob = logp_all.gather(1, b_actions[mb_inds][:, None]).squeeze(1)
                    entropy = -(logp_all.exp() * logp_all).sum(1)
                    newvalue = agent.value(mb_obs)
                    logratio = newlogprob - b_logprobs[mb_inds]
                    ratio = logratio.exp()
                    with torch.no_grad():
                        kls.append(float(((ratio - 1) - logratio).mean()))
                        clipped.append(float(((ratio - 1.0).abs() > args.clip_coef).float().mean()))

                    mb_adv = b_advantages[mb_inds]
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                    pg_loss = torch.max(
                        -mb_adv * ratio, -mb_adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)
                    ).mean()
                    v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()
                    entropy_loss = entropy.mean()
                    loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef

                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                    optimizer.step()

            if on_progress is not None:
                elapsed = time.perf_counter() - start
                on_progress(
                    PPOProgress(
                        self.global_step,
                        done_steps / elapsed,
                        float(rewards.mean()),
                        pg_loss.item(),
                        v_loss.item(),
                        entropy_loss.item(),
                        float(np.mean(kls)),
                        float(np.mean(clipped)),
                        explained,
                    )
                )
        self.next_obs, self.next_done = next_obs, next_done
        return agent


def train_ppo(
    env: VecTradingEnv,
    args: PPOArgs,
    seed: int,
    net: ActorCritic | None = None,
    on_progress: Callable[[PPOProgress], None] | None = None,
) -> ActorCritic:
    """One-shot training for ``args.total_steps`` (rounded to whole rollouts)."""
    return PPOLearner(env, args, seed, net).learn(args.total_steps, on_progress)
