"""Issue 13, dashboards: deploy/prometheus-rules.yml and deploy/grafana-dashboard.json name
only metrics the daemon exposes (checked against a portfolio daemon's own /metrics text);
`promtool check rules` when promtool is installed."""

import asyncio
import json
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from stairway.daemon.app import Daemon
from stairway.daemon.http import DaemonCollector
from tests.helpers import ROOT, daemon_config, portfolio_bars, portfolio_config, tiny_checkpoint

RULES = ROOT / "deploy" / "prometheus-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
METRIC = re.compile(r"\bstairway_[a-z_]+")


@pytest.fixture(scope="module")
def exposed(tmp_path_factory, market_cfg):
    """Every sample name a two-instrument daemon's /metrics holds after a short replay."""
    from stairway.core.bar_files import load_bars
    from stairway.core.feature_drift import feature_profile
    from stairway.core.features import FeatureSpec, batch_market_features
    from tests.helpers import EURUSD

    tmp = tmp_path_factory.mktemp("deploy")
    files = portfolio_bars(tmp)
    two = {s: files[s] for s in ("EUR_USD", "GBP_USD")}
    spec = FeatureSpec.from_config(market_cfg)
    bars = load_bars(EURUSD)[0][:3000]
    profile = feature_profile(batch_market_features(bars, spec)[spec.window - 1 :], spec.market_names)
    for k, s in enumerate(two):
        tiny_checkpoint(tmp / "models" / s, spec, seed=k, feature_profile=profile)
    cfg, _ = daemon_config(tmp, files["EUR_USD"], "2017-10-01", "2017-10-15")
    cfg = cfg.model_copy(update={"guards": cfg.guards.model_copy(update={"feature_drift_window_bars": 24})})
    d = Daemon(portfolio_config(cfg, two))
    asyncio.run(d.run())
    reg = CollectorRegistry()
    reg.register(DaemonCollector(d.view.snapshot))
    text = generate_latest(reg).decode()
    # a portfolio's position is each instrument's, never the first one's standing for the account
    held = {line.split('"')[1] for line in text.splitlines() if line.startswith("stairway_position_units{")}
    assert held == set(two), held
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_rules_are_well_formed_and_name_exposed_metrics(exposed):
    rules = yaml.safe_load(RULES.read_text())
    (group,) = rules["groups"]
    names = set()
    for r in group["rules"]:
        assert {"alert", "expr", "labels", "annotations"} <= set(r), r
        assert r["labels"]["severity"] in ("warning", "critical") and r["annotations"]["summary"]
        names |= set(METRIC.findall(r["expr"]))
    assert names and names <= exposed, sorted(names - exposed)


def test_dashboard_names_exposed_metrics(exposed):
    dash = json.loads(DASHBOARD.read_text())
    names = {m for p in dash["panels"] for t in p["targets"] for m in METRIC.findall(t["expr"])}
    assert len(dash["panels"]) >= 10 and names <= exposed, sorted(names - exposed)
    assert {"stairway_regime", "stairway_instrument_equity", "stairway_alerts_failed_total"} <= names
    # issue 22 §6: halted, trading enabled, running model, pending swap, refused swaps, reconciliation
    assert {
        "stairway_halted", "stairway_trading_enabled", "stairway_model_info", "stairway_pending_swap",
        "stairway_swaps_refused_total", "stairway_reconcile_discrepancies_total",
    } <= names  # fmt: skip


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian: apt install prometheus)")
def test_promtool_accepts_the_rules():
    p = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian: apt install prometheus)")
def test_promtool_unit_tests_of_the_rules_pass():
    """Weekend (no alert), a feed down on a weekday (alert), halt and recovery."""
    tests = ROOT / "deploy" / "prometheus-rules.test.yml"
    p = subprocess.run(["promtool", "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
