"""`stairway validate --checkpoint SHA --range A..B` (issue 10 §3, the no-retraining part): one
checkpoint out of sample next to its baselines, with intervals, and a warning when the range
overlaps the checkpoint's own training range."""

import dataclasses

from stairway.cli import main
from stairway.core.checkpoint import save_checkpoint
from tests.helpers import tiny_checkpoint


def test_validate_prints_policy_baselines_intervals_and_overlap_warning(tmp_path, spec, monkeypatch, capsys):
    monkeypatch.setenv("STAIRWAY_TRAIN__MODELS_DIR", str(tmp_path / "models"))
    ck, net = tiny_checkpoint(tmp_path / "models", spec, seed=3)
    meta = dataclasses.replace(ck.meta, data_range="2017-01-01..2017-10-01; train .. validation ..")
    ck = save_checkpoint(tmp_path / "models", net.state_dict(), meta)
    assert main(["validate", "--checkpoint", ck.sha[:10], "--range", "2017-10-01..2017-12-01", "--draws", "20"]) == 0
    out = capsys.readouterr().out
    for frag in (
        f"checkpoint {ck.sha[:12]}",
        "2017-01-01..2017-10-01",
        "policy",
        "buy_and_hold",
        "sma_long_flat",
        "Sharpe 90 % interval",
        "random entries (20 draws",
    ):
        assert frag in out, frag
    assert "NOT out of sample" not in out
    assert main(["validate", "--checkpoint", ck.sha, "--range", "2017-09-01..2017-11-01", "--draws", "5"]) == 0
    assert "overlaps the checkpoint's training range: NOT out of sample" in capsys.readouterr().out


def test_validate_bad_arguments_are_one_error_line(tmp_path, spec, monkeypatch, capsys):
    monkeypatch.setenv("STAIRWAY_TRAIN__MODELS_DIR", str(tmp_path / "models"))
    ck, _ = tiny_checkpoint(tmp_path / "models", spec, seed=3)
    assert main(["validate", "--checkpoint", ck.sha, "--range", "2017-12-01..2017-10-01"]) == 2
    assert "--range '2017-12-01..2017-10-01'" in capsys.readouterr().err
    assert main(["validate", "--checkpoint", "abc", "--range", "2017-10-01..2017-12-01"]) == 2
    assert "0 checkpoints match 'abc'" in capsys.readouterr().err
