"""Whole-process ``fairwatch replay`` (and ``fairwatch backtest``) against ``orjson.loads``.

Writes ``--decisions`` decision lines and the outcomes the loan simulator
delivers for them (about 0.7 outcomes per decision) as JSONL with ``ts`` as
``datetime.isoformat()`` gives it (µs, ``Z``), then measures in rounds, each a
fresh process timed from ``exec`` to exit:

* ``orjson``: a Python process doing only ``orjson.loads`` on every line of both
  files (the floor: reading and decoding, nothing else);
* ``replay``: ``fairwatch replay --file … --outcomes … --snapshot …``;
* ``backtest``: ``fairwatch backtest --file … --outcomes … --out DIR`` (the default
  policy over the same history in event time, actions in dry-run);
* ``startup``: ``fairwatch replay`` over one decision line (how much of the
  replay time is start-up).

Ratios are decode-only time / command time per round (= command rate as a share of
the ``orjson.loads`` rate over the same lines), median over rounds; target ≥ 0.35
for replay and for backtest. Times are wall seconds and CPU seconds (user + system of the child).
Writes ``benchmarks/results/replay_throughput.json``.

    python benchmarks/replay_throughput.py [--decisions 1000000] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "replay_throughput.json"

from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay  # noqa: E402
from stamp_forms import restamp  # noqa: E402  (benchmarks/, beside this script)

FORM = "us_Z"
DECODE_ONLY = """
import sys, orjson
loads = orjson.loads
n = 0
for path in sys.argv[1:]:
    with open(path, "rb") as fh:
        for line in fh:
            loads(line)
            n += 1
print(n)
"""


def write_files(workdir: Path, n: int) -> dict:
    """``n`` decisions and their outcomes (70 % get one, median delay 30 s) in time order."""
    delay = OutcomeDelay(kind="exponential", median_s=30.0, never_share=0.3)
    sim = LoanSimulator(seed=7, rate=200.0, scenario="none", delay=delay)
    dec, out = workdir / "decisions.jsonl", workdir / "outcomes.jsonl"
    n_dec = n_out = 0
    with open(dec, "wb") as fd, open(out, "wb") as fo:
        while n_dec < n:
            batch = sim.advance_batch(10_000 / 200.0)
            d = restamp(batch.topic_values(False)[: n - n_dec], FORM)
            o = restamp(batch.topic_values(True), FORM)
            fd.write(b"\n".join(d) + b"\n")
            if o:
                fo.write(b"\n".join(o) + b"\n")
            n_dec += len(d)
            n_out += len(o)
    return {
        "decisions": n_dec,
        "outcomes": n_out,
        "bytes": dec.stat().st_size + out.stat().st_size,
        "example_ts": json.loads(dec.open("rb").readline())["ts"],
        "decisions_path": str(dec),
        "outcomes_path": str(out),
    }


def timed(argv: list[str], **kw) -> dict:
    """Run ``argv`` to completion; wall time and the child's CPU time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[2:4]} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "stdout_tail": proc.stdout[-300:]}


def fairwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "fairwatch.app.cli", *args]


def backtest_available() -> bool:
    return subprocess.run(fairwatch("backtest", "--help"), capture_output=True).returncode == 0


def median_ratio(floor: list[dict], runs: list[dict], key: str) -> float:
    return round(statistics.median(f[key] / r[key] for f, r in zip(floor, runs, strict=True)), 3)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--decisions", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3, help="rounds; the median per-round ratio is reported")
    p.add_argument("--quick", action="store_true", help="100k decisions, one round")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.quick:
        args.decisions, args.repeat = 100_000, 1
    workdir = Path(tempfile.mkdtemp(prefix="fairwatch-replay-bench-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    try:
        print(f"writing {args.decisions:,} decisions and their outcomes ({FORM} stamps) …", file=sys.stderr)
        files = write_files(workdir, args.decisions)
        dec, out = files.pop("decisions_path"), files.pop("outcomes_path")
        one = workdir / "one.jsonl"
        with open(dec, "rb") as fh:
            one.write_bytes(fh.readline())
        has_backtest = backtest_available()
        steps = {
            "orjson": [sys.executable, "-c", DECODE_ONLY, dec, out],
            "replay": fairwatch(
                "replay", "--file", dec, "--outcomes", out, "--snapshot", str(workdir / "s.json"), "--no-progress"
            ),
            "startup": fairwatch("replay", "--file", str(one), "--snapshot", str(workdir / "s1.json"), "--no-progress"),
        }
        if has_backtest:
            steps["backtest"] = fairwatch(
                "backtest", "--file", dec, "--outcomes", out, "--out", str(workdir / "backtest"), "--no-progress"
            )
        runs: dict[str, list[dict]] = {k: [] for k in steps}
        for i in range(args.repeat):
            for name, argv in steps.items():
                print(f"round {i + 1}: {name} …", file=sys.stderr)
                runs[name].append(timed(argv, env=env, cwd=workdir))
                print(json.dumps(runs[name][-1]), file=sys.stderr)
        lines = files["decisions"] + files["outcomes"]
        result: dict = {
            "benchmark": "replay_throughput",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {
                "python": platform.python_version(),
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                "note": "shared machine: compare the ratios of one round, not absolute times across runs",
            },
            "setup": {**files, "timestamp_form": FORM, "rounds": args.repeat, "batch": 10_000},
            "runs": runs,
        }
        ratios: dict = {}
        for name in ("replay", "backtest"):
            if name not in runs:
                continue
            wall = [r["wall_s"] for r in runs[name]]
            ratios[name] = {
                "wall": median_ratio(runs["orjson"], runs[name], "wall_s"),
                "cpu": median_ratio(runs["orjson"], runs[name], "cpu_s"),
                "lines_per_s": round(lines / statistics.median(wall)),
            }
        ratios["orjson_lines_per_s"] = round(lines / statistics.median(r["wall_s"] for r in runs["orjson"]))
        ratios["startup_wall_s"] = statistics.median(r["wall_s"] for r in runs["startup"])
        ratios["replay_without_startup_wall"] = round(
            statistics.median(
                o["wall_s"] / (r["wall_s"] - s["wall_s"])
                for o, r, s in zip(runs["orjson"], runs["replay"], runs["startup"], strict=True)
            ),
            3,
        )
        result["ratios_to_orjson_loads"] = ratios
        result["backtest"] = "measured" if has_backtest else "not available (fairwatch backtest --help failed)"
        result["target"] = {
            "replay_ratio_at_least": 0.35,
            "met": ratios["replay"]["wall"] >= 0.35,
            **({"backtest_met": ratios["backtest"]["wall"] >= 0.35} if has_backtest else {}),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("setup", "ratios_to_orjson_loads", "backtest", "target")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
