"""Where the test suite's time goes: run the suite with PYTEST_CPU_LOG=FILE (tests/conftest.py
appends each test's CPU and wall seconds), then

    python bench/test_cpu.py FILE [--top N]

prints the total CPU seconds, the CPU by test file and the top tests, and writes
bench/results/test_cpu.json. CPU is what bounds the suite's wall time on the 2-core CI
machine (wall >= CPU / 2), so it names what to make cheaper first."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from common import report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args()
    rows = [json.loads(x) for x in open(a.file) if x.strip()]
    by_file: dict[str, float] = defaultdict(float)
    for r in rows:
        by_file[r["test"].split("::")[0]] += r["cpu_s"]
    total = sum(r["cpu_s"] for r in rows)
    files = sorted(by_file.items(), key=lambda kv: -kv[1])[: a.top]
    tests = sorted(rows, key=lambda r: -r["cpu_s"])[: a.top]
    report(
        "test_cpu",
        {
            "tests": len(rows),
            "cpu_s": round(total, 1),
            "wall_floor_on_2_cores_s": round(total / 2, 1),
            "by_file": {k: round(v, 1) for k, v in files},
            "top_tests": [{"test": r["test"], "cpu_s": r["cpu_s"], "wall_s": r["wall_s"]} for r in tests],
        },
    )


if __name__ == "__main__":
    main()
