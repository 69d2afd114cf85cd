"""``python -m bench`` (``make bench``): run the benchmarks, print one table, write JSON.

Each benchmark starts real servers on loopback, measures its own baseline in the same run and
reports medians over several runs. ``--quick`` runs each for about a second (the smoke test).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import RESULTS_DIR, Report, format_table, log, machine, write_json

BENCHMARKS = ("exchange", "globalconf", "audit", "consent", "streamcrypto", "notify")
POSTGRES_ENV = "CDX_TEST_POSTGRES_URL"


def _runner(name: str) -> Callable[..., list[Report]]:
    if name == "exchange":
        from bench import exchange

        return lambda **kw: [exchange.run(**kw)]
    if name == "globalconf":
        from bench import globalconf

        return lambda **kw: [globalconf.run(quick=kw["quick"], runs=kw["runs"])]
    if name == "audit":
        from bench import audit

        return lambda **kw: audit.run_all(
            quick=kw["quick"], runs=kw["runs"], postgres_url=kw["postgres_url"]
        )
    if name == "consent":
        from bench import consent

        return lambda **kw: consent.run_all(
            quick=kw["quick"], runs=kw["runs"], postgres_url=kw["postgres_url"]
        )
    if name == "notify":
        from bench import notify

        return lambda **kw: notify.run_all(
            quick=kw["quick"], runs=kw["runs"], postgres_url=kw["postgres_url"]
        )
    if name == "streamcrypto":
        from bench import streamcrypto

        return lambda **kw: [streamcrypto.run(quick=kw["quick"], runs=kw["runs"])]
    raise ValueError(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="CDX benchmarks: each prints absolute figures, p50/p99 and ratios against "
        "a baseline measured in the same run.",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=BENCHMARKS,
        help="run only this benchmark (repeatable; default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="about a second per benchmark")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_ENV, ""),
        help=f"also run audit and consent on PostgreSQL (default: ${POSTGRES_ENV})",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON file")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also record py-spy profiles of the exchange servers under load into DIR",
    )
    args = parser.parse_args(argv)
    selected = args.only or list(BENCHMARKS)
    started = time.monotonic()
    reports: list[Report] = []
    failed: list[str] = []
    log(f"machine: {machine()}")
    for name in selected:
        t0 = time.monotonic()
        kwargs = {"quick": args.quick, "runs": max(1, args.runs), "postgres_url": args.postgres_url}
        if name == "exchange":
            kwargs = {"quick": args.quick, "runs": max(1, args.runs), "profile_dir": args.profile}
        try:
            produced = _runner(name)(**kwargs)
        except Exception as exc:
            log(f"{name}: FAILED: {type(exc).__name__}: {exc}")
            failed.append(name)
            continue
        for report in produced:
            report.seconds = time.monotonic() - t0
        reports.extend(produced)
        log(f"{name}: done in {time.monotonic() - t0:.0f}s")
    elapsed = time.monotonic() - started
    print()
    print(format_table(reports))
    print()
    print(f"total: {elapsed:.0f}s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if not args.no_write and reports:
        path = write_json(
            "quick" if args.quick else "bench",
            reports,
            options={"quick": args.quick, "runs": args.runs, "only": selected, "seconds": elapsed},
            directory=args.results_dir,
        )
        print(f"results: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
