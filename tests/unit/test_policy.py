import numpy as np
import torch

from stairway.core.policy import PPOPolicy
from stairway.core.ppo_net import ActorCritic


def test_fused_inference_equals_module_forward():
    torch.manual_seed(0)
    net = ActorCritic(31, hidden=64)
    with torch.no_grad():
        net.actor[-1].weight.mul_(100.0)
    pol = PPOPolicy(net)
    obs = np.random.default_rng(0).normal(size=(500, 31))
    with torch.inference_mode():
        ref = net.actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()
    got = np.array([pol.logits(o).copy() for o in obs])
    assert np.allclose(got, ref, atol=1e-5, rtol=1e-5)
    actions = [pol.act(o) for o in obs]
    assert [a for a, _ in actions] == ref.argmax(1).tolist()
    probs = torch.softmax(torch.as_tensor(ref), 1).numpy()
    assert np.allclose([c for _, c in actions], probs.max(1), atol=1e-5)
    assert len(set(ref.argmax(1).tolist())) > 1


def test_policy_does_not_share_storage_with_later_training():
    net = ActorCritic(8, hidden=8)
    pol = PPOPolicy(net)
    before = pol.logits(np.ones(8)).copy()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)  # the trainer keeps optimising its own copy
    assert np.array_equal(pol.logits(np.ones(8)), before)
