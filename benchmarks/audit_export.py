"""Monthly audit export of a month of traffic at 10 decisions/s (≈ 26 M decisions), via persisted per-day counts.

    python benchmarks/audit_export.py [--rate 10] [--days 30] [--out benchmarks/results/audit_export.json]

Phases, each timed:

1. *feed* — the month's decisions are drawn with the simulator's vectorised
   ``LoanSimulator.decisions_frame`` (scores, decisions, labels, race × sex), one
   chunk per simulated ~2.4 h, and fed to :class:`fairwatch.monitor.daily.DailyStats` through
   the same ``on_decisions`` / ``on_labels`` hook the engine calls. Streaming
   26 M JSON events through decode + engine would take tens of minutes on the
   shared CI box, and measures the engine, not the export; the engine's own
   throughput is ``benchmarks/engine_throughput.py``. Every outcome is treated
   as arrived (the labeled counts are complete), 5 % never arrive.
2. *persist* — the redo record (``take``) applied to the SQLite daily store.
3. *export* — ``fairwatch audit export --month`` in a fresh child process:
   wall time and the child's peak RSS. Its cost depends on days × groups, not
   on the number of decisions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from fairwatch.monitor.daily import DailyStats, DailyStore  # noqa: E402
from fairwatch.streaming.simulator import RACES, SEXES, LoanSimulator  # noqa: E402

MONTH_START = 1793491200.0  # 2026-11-01T00:00:00Z
MONTH = "2026-11"


def names() -> list[tuple[str, str]]:
    out = [("race", r) for r in RACES] + [("sex", s) for s in SEXES]
    out += [("race,sex", f"{r},{s}") for r in RACES for s in SEXES]
    return out


def feed(daily: DailyStats, rate: float, days: int, chunks_per_day: int, seed: int) -> int:
    sim = LoanSimulator(seed=seed, start=MONTH_START, rate=rate)
    table = names()
    race_code = {r: i for i, r in enumerate(RACES)}
    n_day = int(round(rate * 86400))
    rng = np.random.default_rng(seed)
    total = 0
    for day in range(days):
        for c in range(chunks_per_day):
            n = n_day // chunks_per_day + (1 if c < n_day % chunks_per_day else 0)
            f = sim.decisions_frame(n)
            ts = MONTH_START + day * 86400.0 + np.sort(rng.uniform(0, 86400.0, n))
            r = f["race"].cat.codes.to_numpy().astype(np.int64)
            s = f["sex"].cat.codes.to_numpy().astype(np.int64)
            assert list(f["race"].cat.categories) == list(race_code)
            gidx = np.column_stack([r, len(RACES) + s, len(RACES) + len(SEXES) + r * len(SEXES) + s])
            dec = f["decision"].to_numpy().astype(np.int64)
            daily.on_decisions("loan-approval", table, ts, dec, gidx)
            arrived = rng.random(n) >= 0.05
            daily.on_labels(
                "loan-approval",
                table,
                ts[arrived],
                f["score"].to_numpy()[arrived],
                dec[arrived],
                f["label"].to_numpy().astype(np.int64)[arrived],
                gidx[arrived],
            )
            total += n
    return total


EXPORT_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from fairwatch.monitor.daily import DailyStore
from fairwatch.app.export import export_month
t0 = time.perf_counter()
store = DailyStore(sys.argv[2])
res = export_month(sys.argv[3], sys.argv[4], store=store, progress=False)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "files": len(res.files), "rows": res.rows}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=10.0, help="decisions per second (default 10)")
    ap.add_argument("--days", type=int, default=30, help="days of the month (default 30 = November)")
    ap.add_argument("--chunks-per-day", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "audit_export.json"))
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        daily = DailyStats()
        t0 = time.perf_counter()
        n = feed(daily, args.rate, args.days, args.chunks_per_day, args.seed)
        t_feed = time.perf_counter() - t0
        t0 = time.perf_counter()
        db = Path(tmp) / "state.daily.db"
        store = DailyStore(db)
        store.apply(daily.take(None))
        rows = len(store.counts(MONTH))
        store.close()
        t_persist = time.perf_counter() - t0
        feed_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out_dir = Path(tmp) / "export"
        proc = subprocess.run(
            [sys.executable, "-c", EXPORT_CHILD, str(ROOT), str(db), MONTH, str(out_dir)],
            capture_output=True,
            text=True,
            check=True,
        )
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
        db_size = db.stat().st_size

    result = {
        "benchmark": "audit_export",
        "month": MONTH,
        "rate_per_s": args.rate,
        "days": args.days,
        "decisions": n,
        "method": "per-day counts fed vectorised from LoanSimulator.decisions_frame through DailyStats.on_decisions/"
        "on_labels (the engine hook), not 26 M JSON events through the engine",
        "feed_seconds": round(t_feed, 2),
        "feed_decisions_per_s": round(n / t_feed),
        "feed_peak_rss_mib": round(feed_rss, 1),
        "persist_seconds": round(t_persist, 3),
        "daily_rows": rows,
        "daily_db_bytes": db_size,
        "export_seconds": round(child["seconds"], 2),
        "export_peak_rss_mib": round(child["peak_rss_mib"], 1),
        "export_files": child["files"],
        "export_csv_rows": child["rows"],
        "export_bytes": size,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
