"""Benchmark: the full intervention pipeline (`pipeline run`) on UCI Adult (48,842 rows).

Measures wall time and peak resident memory per stage and in total, and writes
``benchmarks/results/pipeline.json``. Target: under 5 minutes in total on 2 cores.

    python benchmarks/pipeline.py [--adult-dir ../shared/datasets/adult] [--output DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from fairwatch.intervention.config import PipelineConfig  # noqa: E402
from fairwatch.intervention.pipeline import run_pipeline  # noqa: E402

TARGET_SECONDS = 300.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adult-dir", default=str(ROOT.parent / "shared" / "datasets" / "adult"))
    ap.add_argument("--output", default=None, help="run folder (default: a temporary directory)")
    ap.add_argument("--result", default=str(ROOT / "benchmarks" / "results" / "pipeline.json"))
    args = ap.parse_args(argv)
    adult = Path(args.adult_dir)
    out = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="fairwatch-bench-")) / "adult-run"
    cfg = PipelineConfig(
        data=[str(adult / "adult.data"), str(adult / "adult.test")],
        protected=["sex", "race"],
        outcome="income",
        expert_knowledge=str(ROOT / "tests" / "data" / "adult_expert_knowledge.json"),
        target_fairness="demographic_parity",
        model_name="adult-income",
        output=str(out),
        progress=sys.stderr.isatty(),
    )
    t0 = time.perf_counter()
    record = run_pipeline(cfg)
    total = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "benchmark": "intervention pipeline run on UCI Adult",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus_available": len(__import__("os").sched_getaffinity(0)),
        },
        "rows": record["data"]["rows"],
        "split": record["data"]["split"],
        "result": record["result"],
        "iterations": record["iteration_count"],
        "candidates": len(record["candidates"]),
        "final_candidate": record["final"]["name"],
        "baseline_metrics": {k: record["baseline"]["metrics"][k] for k in ("accuracy", "dp_ratio", "eo_gap", "ece")},
        "final_metrics": {k: record["final"]["metrics"][k] for k in ("accuracy", "dp_ratio", "eo_gap", "ece")},
        "stages": record["timings"],
        "total_wall_seconds": round(total, 2),
        "peak_rss_mib": round(peak, 1),
        "target_seconds": TARGET_SECONDS,
        "within_target": total < TARGET_SECONDS,
        "run_folder": str(out),
    }
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
