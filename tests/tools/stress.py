"""Convergence under faults, for as long as you like (issue 8; engine: tests/convergence.py).

Usage: python tests/tools/stress.py --rounds 1000 --seed 1 --replicas 3 [--auth] [--verbose]

Prints rounds, faults injected, edits made, edits lost, duplicates and conflicts logged; exits
non-zero when anything was lost, duplicated or left diverging, and then prints a one-line
reproducer. The working folder (service data, replicas, worker log) is kept on failure.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.convergence import StressConfig, run_stress  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    defaults = StressConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--auth", action="store_true", help="token auth on (and tokens expire)")
    parser.add_argument(
        "--timed-kills",
        action="store_true",
        help="kill sync workers after a random delay, anywhere (timing is not reproducible)",
    )
    parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate)
    parser.add_argument("--kill-rate", type=float, default=defaults.kill_rate)
    parser.add_argument("--concurrent-rate", type=float, default=defaults.concurrent_rate)
    parser.add_argument("--office-rate", type=float, default=defaults.office_rate)
    parser.add_argument("--per-layer-rate", type=float, default=defaults.per_layer_rate)
    parser.add_argument("--max-edits", type=int, default=defaults.max_edits)
    parser.add_argument("--hot-rate", type=float, default=defaults.hot_rate)
    parser.add_argument(
        "--sync-model", default=defaults.sync_model, choices=["mixed", "perReplica", "perLayer"]
    )
    parser.add_argument(
        "--directions",
        default=defaults.directions,
        help="comma-separated directions of the random syncs (bidirectional,upload,download)",
    )
    parser.add_argument(
        "--oversize-rate",
        type=float,
        default=defaults.oversize_rate,
        help="chance that a new attachment is above the random syncs' upload limit",
    )
    parser.add_argument(
        "--no-preplanned",
        action="store_true",
        help="no preplanned map area among the replicas (all taken offline on demand)",
    )
    parser.add_argument("--workdir", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--verbose", action="store_true", help="print every edit, fault and sync")
    args = parser.parse_args(argv)
    if args.replicas < 2 or args.rounds < 0:
        parser.error("use at least 2 replicas and a non-negative number of rounds")
    config = StressConfig(
        seed=args.seed,
        rounds=args.rounds,
        replicas=args.replicas,
        auth=args.auth,
        timed_kills=args.timed_kills,
        fault_rate=args.fault_rate,
        kill_rate=args.kill_rate,
        concurrent_rate=args.concurrent_rate,
        office_rate=args.office_rate,
        per_layer_rate=args.per_layer_rate,
        max_edits=args.max_edits,
        hot_rate=args.hot_rate,
        sync_model=args.sync_model,
        directions=args.directions,
        oversize_rate=args.oversize_rate,
        preplanned=not args.no_preplanned,
        verbose=args.verbose,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="oms-stress-"))
    if args.workdir and any(workdir.iterdir() if workdir.exists() else ()):
        parser.error(f"{workdir} is not empty")
    print(
        f"stress: seed {config.seed}, {config.rounds} rounds, {config.replicas} replicas",
        flush=True,
    )
    try:
        report = run_stress(config, workdir)
    except Exception:
        traceback.print_exc()
        print(f"FAILED: the run itself broke (working folder kept: {workdir})")
        print(f"reproduce: {config.reproducer()}")
        return 2
    print("\n".join(report.lines()))
    if report.ok:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        print("OK: every replica equals the service, the service equals the model.")
        return 0
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    print(f"FAILED (working folder kept: {workdir})")
    print(f"reproduce: {config.reproducer()}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
