"""Issue 19.2: drawdown tiers with hysteresis, one rule for the daemon and the env."""

from stairway.core.config import RiskConfig
from stairway.core.risk_rules import held_tier
from stairway.daemon.risk import RiskEngine

TIERS = (1.5, 1.8, 2.0, 2.5)


def test_held_tier_enters_at_the_threshold_and_leaves_only_below_the_margin():
    eq = lambda dd: 100_000.0 * (1 - dd / 100)  # noqa: E731
    assert held_tier(eq(1.5), 100_000.0, 0, *TIERS, 0.05) == 1
    assert held_tier(eq(1.45), 100_000.0, 1, *TIERS, 0.05) == 1  # above 1.425 %: still warn
    assert held_tier(eq(1.42), 100_000.0, 1, *TIERS, 0.05) == 0
    assert held_tier(eq(1.9), 100_000.0, 3, *TIERS, 0.05) == 3  # stop opening held down to 1.9 %
    assert held_tier(eq(1.89), 100_000.0, 3, *TIERS, 0.05) == 2  # then halve size (still above 1.71 %)
    assert held_tier(eq(0.0), 100_000.0, 3, *TIERS, 0.05) == 0  # a new session's open
    assert held_tier(eq(1.45), 100_000.0, 1, *TIERS, 0.0) == 0  # no margin: the old rule


def test_a_drawdown_hovering_at_the_warn_tier_changes_the_tier_once():
    r = RiskEngine(RiskConfig(), 100_000.0, 60)
    changes = 0
    for k in range(1000):  # 1.49 % / 1.51 % alternating at every quote
        old, new = r.on_equity(100_000.0 * (1 - (1.51 if k % 2 else 1.49) / 100), 100_000.0)
        changes += old != new
    assert changes == 1 and r.state.tier == 1
    r2 = RiskEngine(RiskConfig(tier_exit_fraction=0.0), 100_000.0, 60)
    flaps = sum(
        a != b
        for a, b in (r2.on_equity(100_000.0 * (1 - (1.51 if k % 2 else 1.49) / 100), 100_000.0) for k in range(1000))
    )
    assert flaps == 999  # what it was: every quote a change, every change an alert
