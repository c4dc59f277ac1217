"""`python -m bench NAME [ARGS]` runs bench/bench_NAME.py; without NAME, lists them.

Every benchmark prints its figures with the command and the machine; bench/RESULTS.md
records them. Benchmarks are never timed tests.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    if len(sys.argv) < 2 or sys.argv[1] not in names:
        print("usage: python -m bench NAME [ARGS]   (make bench B=NAME)")
        print("benchmarks:", ", ".join(names))
        sys.exit(0 if len(sys.argv) < 2 else 2)
    name = sys.argv.pop(1)
    sys.argv[0] = str(HERE / f"bench_{name}.py")
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
