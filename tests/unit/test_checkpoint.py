import os

import numpy as np
import pytest
import torch

from stairway.core.checkpoint import check_compatible, point_link, publish, read_checkpoint
from stairway.core.errors import CheckpointError, CheckpointMismatch
from stairway.core.policy import PPOPolicy
from stairway.core.ppo_net import ppo_from_tensors
from stairway.core.types import ACTION_NAMES
from tests.helpers import tiny_checkpoint


def test_checkpoint_round_trip_gives_identical_actions(tmp_path, spec):
    ck, net = tiny_checkpoint(tmp_path, spec, seed=5)
    loaded = read_checkpoint(tmp_path / "current")
    assert loaded.sha == ck.sha and loaded.meta == ck.meta
    net2 = ppo_from_tensors(loaded.tensors, spec.obs_dim, loaded.meta.hidden)
    a, b = PPOPolicy(net), PPOPolicy(net2)
    obs = np.random.default_rng(0).normal(size=(200, spec.obs_dim))
    acts = [a.act(o) for o in obs]
    assert acts == [b.act(o) for o in obs]
    assert len({x for x, _ in acts}) > 1  # the test net is not constant


def test_checkpoint_file_is_content_addressed_safetensors(tmp_path, spec):
    ck, _ = tiny_checkpoint(tmp_path, spec)
    assert ck.path.name == f"{ck.sha}.safetensors"
    assert os.readlink(tmp_path / "current") == f"registry/{ck.sha}.safetensors"
    raw = ck.path.read_bytes()
    assert b"stairway-checkpoint/1" in raw[:4096] and not raw.startswith(b"\x80")  # JSON header, no pickle


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        ({"feature_spec_hash": "0000000000000000"}, ["feature spec", "(checkpoint) != 0000000000000000 (ours)"]),
        (
            {"action_space": ("HOLD", "BUY", "SELL")},
            ["action space ['HOLD', 'BUY', 'SELL', 'CLOSE'] (checkpoint)", "['HOLD', 'BUY', 'SELL'] (ours)"],
        ),
        ({"obs_shape": (7,)}, ["observation shape", "(7,) (ours)"]),
    ],
)
def test_check_compatible_refuses_mismatch_naming_both_sides(tmp_path, spec, kwargs, fragments):
    ck, _ = tiny_checkpoint(tmp_path, spec)
    expect = {"feature_spec_hash": spec.hash, "obs_shape": (spec.obs_dim,), "action_space": ACTION_NAMES} | kwargs
    with pytest.raises(CheckpointMismatch) as e:
        check_compatible(ck.meta, "ckpt", **expect)
    for f in fragments:
        assert f in str(e.value)
    check_compatible(ck.meta, "ckpt", feature_spec_hash=spec.hash, obs_shape=(spec.obs_dim,), action_space=ACTION_NAMES)


def test_checkpoint_with_other_action_space_refused(tmp_path, spec):
    ck, _ = tiny_checkpoint(tmp_path, spec, action_space=("HOLD", "BUY", "SELL", "CLOSE", "HEDGE"))
    with pytest.raises(CheckpointMismatch, match="action space .*HEDGE.* \\(checkpoint\\) != .*\\(ours\\)"):
        check_compatible(
            read_checkpoint(ck.path).meta,
            str(ck.path),
            feature_spec_hash=spec.hash,
            obs_shape=(spec.obs_dim,),
            action_space=ACTION_NAMES,
        )


def test_corrupt_checkpoint_refused(tmp_path, spec):
    ck, _ = tiny_checkpoint(tmp_path, spec)
    data = bytearray(ck.path.read_bytes())
    data[-3] ^= 0xFF
    ck.path.chmod(0o644)
    ck.path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its name"):
        read_checkpoint(ck.path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_checkpoint(junk)


def test_foreign_safetensors_without_our_header_refused(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, p)
    with pytest.raises(CheckpointError, match="not a Stairway checkpoint"):
        read_checkpoint(p)


def test_dangling_current_link_refused(tmp_path, spec):
    ck, _ = tiny_checkpoint(tmp_path, spec)
    ck.path.unlink()
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "current")
    with pytest.raises(CheckpointError, match="does not exist"):
        point_link(tmp_path, "current", ck.sha)


def test_publish_keeps_previous_and_is_a_rename(tmp_path, spec):
    first, _ = tiny_checkpoint(tmp_path, spec, seed=1)
    second, _ = tiny_checkpoint(tmp_path, spec, seed=2)
    assert os.readlink(tmp_path / "current") == f"registry/{second.sha}.safetensors"
    assert os.readlink(tmp_path / "previous") == f"registry/{first.sha}.safetensors"
    publish(tmp_path, second.sha)  # re-publishing the same one keeps previous
    assert os.readlink(tmp_path / "previous") == f"registry/{first.sha}.safetensors"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_roll_back_points_current_at_gold_or_previous_and_keeps_the_replaced_one(tmp_path, spec):
    from stairway.core.checkpoint import link_sha, roll_back

    a, _ = tiny_checkpoint(tmp_path, spec, seed=1)
    with pytest.raises(CheckpointError, match="no gold model to roll back to"):
        roll_back(tmp_path, "gold")
    point_link(tmp_path, "gold", a.sha)
    b, _ = tiny_checkpoint(tmp_path, spec, seed=2)  # published: current b, previous a
    assert roll_back(tmp_path, "gold") == (a.sha, b.sha)
    assert (link_sha(tmp_path, "current"), link_sha(tmp_path, "previous")) == (a.sha, b.sha)
    assert roll_back(tmp_path, "previous") == (b.sha, a.sha)
    assert (link_sha(tmp_path, "current"), link_sha(tmp_path, "previous")) == (b.sha, a.sha)
    with pytest.raises(CheckpointError, match="gold or previous, not 'current'"):
        roll_back(tmp_path, "current")


def test_the_daemons_alert_band_and_the_shadow_gates_range_are_one_rule():
    from stairway.core.config import RiskConfig
    from stairway.core.risk_rules import trade_band
    from stairway.daemon.risk import RiskEngine
    from stairway.trainer.config import GateConfig
    from stairway.trainer.gates import trades_range

    for period in (1, 5, 15, 60):
        eng = RiskEngine(RiskConfig(trades_per_session_minute_bars=(5, 25)), 100_000.0, period)
        assert (
            eng.band
            == trades_range(GateConfig(trades_per_day_minute_bars=(5, 25)), period)
            == trade_band((5, 25), period)
        )
    assert trade_band((5, 25), 60) == (0, 1)


def test_a_bf16_checkpoint_is_refused_with_its_dtype_not_a_crash(tmp_path, spec):
    """The daemon reads weights as numpy arrays, which have no bfloat16: such a file is a
    CheckpointError naming the dtype (the watcher refuses it and keeps trading), not a KeyError."""
    from safetensors.torch import save

    from stairway.core.checkpoint import CheckpointMeta

    meta = CheckpointMeta("ppo", spec.hash, spec.to_json(), (spec.obs_dim,), ACTION_NAMES, 16)
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(
        save({"actor.0.weight": torch.zeros(16, spec.obs_dim, dtype=torch.bfloat16)}, metadata=meta.to_header())
    )
    with pytest.raises(
        CheckpointError, match=r"bf16.safetensors: tensor dtype BF16 cannot be read \(float32 expected\)"
    ):
        read_checkpoint(path)


def test_the_same_weights_and_settings_get_the_same_id_in_any_run(tmp_path, spec):
    """Issue 22 §4: the model id no longer hashes the creation time or the run id (nor the
    arbitrary order safetensors writes metadata in): two runs that train the same weights on
    the same data and settings name the same model, and the registry keeps the first file.
    Other weights or settings are another model; a file named by its bytes (before model ids)
    still reads; a tampered header is refused as corrupt."""
    import hashlib
    import json
    from dataclasses import replace

    from stairway.core.checkpoint import CheckpointMeta, save_checkpoint

    net = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2, np.float32)}
    meta = CheckpointMeta("ppo", spec.hash, spec.to_json(), (spec.obs_dim,), ACTION_NAMES, 16,
                          created_at="2026-12-01T00:00:00+00:00", extra=json.dumps({"run_id": "a", "steps": 5}))  # fmt: skip
    first = save_checkpoint(tmp_path, net, meta)
    again = save_checkpoint(
        tmp_path, dict(reversed(net.items())),
        replace(meta, created_at="2026-12-02T00:00:00+00:00", extra=json.dumps({"steps": 5, "run_id": "b"})),
    )  # fmt: skip
    assert again.sha == first.sha and len(list((tmp_path / "registry").glob("*.safetensors"))) == 1
    assert read_checkpoint(first.path).meta.created_at == "2026-12-01T00:00:00+00:00"  # the first file kept
    other = save_checkpoint(tmp_path, {**net, "b": np.zeros(2, np.float32)}, meta)
    longer = save_checkpoint(tmp_path, net, replace(meta, extra=json.dumps({"run_id": "a", "steps": 6})))
    assert len({first.sha, other.sha, longer.sha}) == 3
    # a checkpoint named by its file's bytes (before model ids) still verifies
    legacy = tmp_path / "registry" / f"{hashlib.sha256(first.path.read_bytes()).hexdigest()}.safetensors"
    legacy.write_bytes(first.path.read_bytes())
    assert read_checkpoint(legacy).sha == legacy.stem
    # the header changed under the same name (its validation rewritten): corrupt
    from safetensors.numpy import save

    tampered = replace(meta, extra=json.dumps({"run_id": "a", "steps": 5, "validation": {"sharpe": 9.9}}))
    first.path.chmod(0o644)
    first.path.write_bytes(save(net, metadata=tampered.to_header()))
    with pytest.raises(CheckpointError, match="does not match its name"):
        read_checkpoint(first.path)
