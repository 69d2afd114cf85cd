"""Shared benchmark plumbing: timing, percentiles, CPU accounting, the results table and JSON.

Every benchmark returns a ``Report``: rows of (metric, median value over the runs, every run's
value, unit, target). ``print_table`` prints them; ``write_json`` stores them under
``bench/results/<name>-<timestamp>.json`` together with the machine they ran on.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (p / 100.0) * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def median(values: Iterable[float]) -> float:
    items = list(values)
    return float(statistics.median(items)) if items else 0.0


@dataclass(frozen=True)
class Latencies:
    """Latency summary of one measurement, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def of(cls, samples_s: Sequence[float]) -> Latencies:
        ms = [s * 1000.0 for s in samples_s]
        return cls(
            len(ms),
            percentile(ms, 50),
            percentile(ms, 99),
            statistics.fmean(ms) if ms else 0.0,
        )


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Run ``fn`` ``repeat`` times; returns each call's wall time in seconds."""
    out: list[float] = []
    clock = time.perf_counter
    for _ in range(repeat):
        start = clock()
        fn()
        out.append(clock() - start)
    return out


# --- CPU accounting --------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def process_counters(pid: int) -> dict[str, float]:
    """CPU seconds (user, system) and context switches (voluntary, involuntary) of ``pid``."""
    out = {"user_s": 0.0, "sys_s": 0.0, "voluntary_switches": 0.0, "forced_switches": 0.0}
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        out["user_s"] = int(fields[11]) / _CLK_TCK
        out["sys_s"] = int(fields[12]) / _CLK_TCK
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/status", encoding="ascii") as handle:
                    for line in handle:
                        if line.startswith("voluntary_ctxt_switches"):
                            out["voluntary_switches"] += float(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches"):
                            out["forced_switches"] += float(line.split()[1])
            except OSError:
                continue  # the thread ended meanwhile
    except OSError:
        pass
    return out


class CpuMeter:
    """CPU seconds each named process used between ``start()`` and ``stop()``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._start: dict[str, dict[str, float]] = {}
        self.used: dict[str, float] = {}
        self.counters: dict[str, dict[str, float]] = {}

    def start(self) -> None:
        self._start = {name: process_counters(pid) for name, pid in self._pids.items()}

    def stop(self) -> dict[str, float]:
        """CPU seconds per process since ``start`` (``counters`` holds the breakdown)."""
        for name, pid in self._pids.items():
            now = process_counters(pid)
            before = self._start.get(name, {})
            self.counters[name] = {k: v - before.get(k, 0.0) for k, v in now.items()}
        self.used = {n: c["user_s"] + c["sys_s"] for n, c in self.counters.items()}
        return self.used


# --- report ----------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the results table: the median over runs, and every run's value."""

    metric: str
    value: float
    unit: str
    runs: list[float] = field(default_factory=list)
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Report:
    """What one benchmark measured (``rows``) and with which settings (``params``)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def add(
        self,
        metric: str,
        runs: Sequence[float],
        unit: str,
        *,
        target: str = "",
        check: Callable[[float], bool] | None = None,
        note: str = "",
    ) -> Row:
        """Add a row whose value is the median of ``runs``; ``check`` decides ``met``."""
        values = [float(v) for v in runs]
        value = median(values)
        row = Row(
            metric,
            value,
            unit,
            values,
            target,
            check(value) if (check is not None and values) else None,
            note,
        )
        self.rows.append(row)
        return row


def machine() -> dict[str, Any]:
    """Where the benchmarks ran: CPU, cores, load, Python and the libraries that matter."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for name in ("grpcio", "protobuf", "cryptography", "sqlalchemy", "psycopg"):
        try:
            from importlib import metadata

            versions[name] = metadata.version(name)
        except Exception:
            versions[name] = "?"
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": versions,
    }


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_table(reports: Sequence[Report]) -> str:
    """The one results table (medians; the runs' range; target and whether it holds)."""
    header = ("benchmark", "metric", "median", "unit", "runs (min..max)", "target", "")
    lines: list[tuple[str, ...]] = []
    for report in reports:
        for row in report.rows:
            spread = (
                f"{_fmt(min(row.runs))}..{_fmt(max(row.runs))} (n={len(row.runs)})"
                if len(row.runs) > 1
                else ""
            )
            verdict = "" if row.met is None else ("ok" if row.met else "MISSED")
            lines.append(
                (report.name, row.metric, _fmt(row.value), row.unit, spread, row.target, verdict)
            )
    widths = [
        max(len(h), *(len(r[i]) for r in lines)) if lines else len(h) for i, h in enumerate(header)
    ]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    out.append("  ".join("-" * w for w in widths).rstrip())
    previous = ""
    for r in lines:
        name = r[0] if r[0] != previous else ""
        previous = r[0]
        cells = (name, *r[1:])
        out.append(
            "  ".join(
                c.rjust(w) if i == 2 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()
        )
    return "\n".join(out)


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def write_json(
    name: str,
    reports: Sequence[Report],
    *,
    options: dict[str, Any],
    directory: Path = RESULTS_DIR,
) -> Path:
    """Write ``reports`` as ``<directory>/<name>-<UTC timestamp>.json``; returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{name}-{stamp}.json"
    document = {
        "name": name,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "revision": git_revision(),
        "argv": sys.argv[1:],
        "options": options,
        "machine": machine(),
        "reports": [asdict(r) for r in reports],
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
