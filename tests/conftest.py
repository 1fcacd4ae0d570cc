import os

import pytest
import structlog

from stairway.core.config import MarketConfig, load_config
from stairway.core.features import FeatureSpec
from tests.helpers import ROOT, without_stops

os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba-stairway"))


@pytest.fixture(scope="session")
def market_cfg() -> MarketConfig:
    from stairway.trainer.config import TrainerConfig

    # the shipped protective stop off: these tests pin down fills, costs, tiers and evaluation to
    # the cent, which a stop 3 ATRs away would blur; stops have their own tests (test_parity,
    # test_protection, the fault matrix), and tests of the shipped files load them as shipped
    return without_stops(load_config(TrainerConfig, ROOT / "config" / "trainer.toml", environ={}))


@pytest.fixture(scope="session")
def spec(market_cfg) -> FeatureSpec:
    return FeatureSpec.from_config(market_cfg)


@pytest.fixture(autouse=True)
def _fresh_logging():
    """A CLI test configures structlog globally (level, renderer): undo it after every test so
    no later test depends on which ran before it."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def no_blocking():
    """Fails the test on a blocking call (file or socket I/O, time.sleep, ...) made by
    Stairway's own code on the event loop's thread while the loop runs (blockbuster, as
    aiohttp uses it): such work belongs in asyncio.to_thread. Allowed: log lines (stderr),
    imports and numba's first-call cache loads (once per process), starting a worker thread,
    the non-blocking sd_notify datagram, and the flatten tier's rollback (rare, and it must
    be done before the next quote)."""
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx(scanned_modules=["stairway.core", "stairway.daemon"]) as bb:
        for f in bb.functions.values():
            f.can_block_in("structlog/_output.py", ["msg"])
            f.can_block_in(
                "<frozen importlib._bootstrap_external>",
                ["get_data", "path_stats", "_path_stat", "_fill_cache", "find_spec", "get_code"],
            )
            f.can_block_in("<frozen importlib._bootstrap>", ["_find_and_load", "_load_unlocked"])
            f.can_block_in("numba/core/dispatcher.py", ["_compile_for_args", "compile"])
            f.can_block_in("threading.py", ["start"])
            f.can_block_in("asyncio/selector_events.py", ["_write_to_self"])  # a worker thread's wake-up
            f.can_block_in("daemon/notify.py", ["send"])
            f.can_block_in("daemon/model_events.py", ["on_flatten_tier"])
        yield bb


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With PYTEST_CPU_LOG=FILE (not a STAIRWAY_ name: those are config overrides): each test's CPU seconds (this process and the children it
    waited for: daemons, CLIs) and wall seconds appended to FILE as JSON lines, to find what
    the suite's time goes to (bench/test_cpu.py sums them)."""
    out = os.environ.get("PYTEST_CPU_LOG")
    if not out:
        return (yield)
    import json
    import resource
    import time

    def cpu() -> float:
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    c0, w0 = cpu(), time.monotonic()
    try:
        return (yield)
    finally:
        row = {"test": item.nodeid, "cpu_s": round(cpu() - c0, 2), "wall_s": round(time.monotonic() - w0, 2)}
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
