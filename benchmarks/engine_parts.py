"""Where the engine's time goes, per event, beside ``orjson.loads`` over the same events.

The engine throughput benchmark gives one ratio; this one splits it, so the next change
goes where the time is. In one process, on one core (process CPU time), over the same
decision events (isoformat µs ``Z`` stamps by default, as ``datetime.isoformat()`` writes
them), each figure in µs per event:

* ``orjson_loads``: ``orjson.loads`` alone (the yardstick of issue 16);
* ``engine``: the whole engine, micro-batches of 10,000 with a snapshot after each, and
  inside it, timed by wrapping the functions (no profiler): the batch decode and
  validation, the join store's ``claim`` (dedupe), ``trim`` (back to capacity) and
  ``fill``, the window counting, the snapshots; ``other`` is what is left;
* ``reader``: :func:`fairwatch.streaming.files.read_jsonl_batches` over a JSONL file of
  the same events, beside ``for line in file`` (what a hand-written reader would do).

Writes ``benchmarks/results/engine_parts.json``.

    python benchmarks/engine_parts.py [--events 1000000] [--form us_Z] [--repeat 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]

import orjson  # noqa: E402
from engine_throughput import BATCH, settings, stream  # noqa: E402  (benchmarks/, beside this script)
from fairwatch.monitor import engine as engine_module  # noqa: E402
from fairwatch.monitor import engine_state, ingest  # noqa: E402
from fairwatch.monitor.engine import Engine  # noqa: E402
from fairwatch.streaming import join  # noqa: E402
from fairwatch.streaming.files import read_jsonl_batches  # noqa: E402
from stamp_forms import FORMS, restamp  # noqa: E402

from fairwatch.app.runtime import tune_gc  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "engine_parts.json"
cpu = time.process_time

#: (owner, function name, label): the parts timed inside the engine
PARTS = (
    (ingest, "decode_decision_batch", "decode_and_validate"),
    (join.JoinStore, "claim", "join_claim_dedupe"),
    (join.JoinStore, "trim", "join_trim_to_capacity"),
    (join.JoinStore, "fill", "join_fill"),
    (engine_state.ModelState, "count_decisions", "window_counting"),
    (engine_module, "build_snapshot", "snapshots"),  # Engine.snapshot calls it by this name
)


def timed_parts(spent: Counter) -> list[tuple[object, str, object]]:
    """Wrap every part so that its CPU time adds up in ``spent``; returns what to restore."""
    saved = []
    for owner, name, label in PARTS:
        original = getattr(owner, name)

        def wrapper(*a, _f=original, _label=label, **k):
            t = cpu()
            try:
                return _f(*a, **k)
            finally:
                spent[_label] += cpu() - t

        saved.append((owner, name, original))
        setattr(owner, name, wrapper)
    return saved


def bench_engine(events: list[bytes]) -> dict:
    spent: Counter = Counter()
    saved = timed_parts(spent)
    try:
        eng = Engine(settings())
        t = cpu()
        for i in range(0, len(events), BATCH):
            eng.process(decisions=events[i : i + BATCH])
            eng.snapshot()
        total = cpu() - t
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
    n = len(events)
    per = {label: round(spent[label] / n * 1e6, 3) for _, _, label in PARTS}
    per["other"] = round((total - sum(spent.values())) / n * 1e6, 3)
    return {"us_per_event": round(total / n * 1e6, 3), "parts_us_per_event": per}


def bench_orjson(events: list[bytes]) -> float:
    loads = orjson.loads
    t = cpu()
    for e in events:
        loads(e)
    return (cpu() - t) / len(events) * 1e6


def bench_reader(events: list[bytes]) -> dict:
    with tempfile.TemporaryDirectory(prefix="fairwatch-parts-") as tmp:
        path = Path(tmp) / "decisions.jsonl"
        path.write_bytes(b"\n".join(events) + b"\n")
        t = cpu()
        n = sum(len(lines) for lines, _, _ in read_jsonl_batches(path))
        ours = (cpu() - t) / n * 1e6
        t = cpu()
        with open(path, "rb") as fh:
            for _ in fh:
                pass
        plain = (cpu() - t) / n * 1e6
    return {
        "read_jsonl_batches_us_per_line": round(ours, 3),
        "for_line_in_file_us_per_line": round(plain, 3),
        "ratio": round(ours / plain, 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--form", choices=list(FORMS), default="us_Z", help="timestamp form of the events")
    p.add_argument("--repeat", type=int, default=3, help="rounds of orjson.loads then the engine")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    print(f"making {args.events:,} decisions ({args.form} stamps) …", file=sys.stderr)
    events = restamp([v for chunk in stream(args.events) for v in chunk], args.form)
    tune_gc()
    bench_orjson(events)  # warm-up: the first pass over fresh objects pays page faults
    rounds = []
    for i in range(args.repeat):
        print(f"round {i + 1}: orjson.loads, engine …", file=sys.stderr)
        rounds.append((bench_orjson(events), bench_engine(events)))
    # the round with the median ratio, every round's ratio beside it (the machine is shared)
    ratios = [d / e["us_per_event"] for d, e in rounds]
    decode, engine = sorted(rounds, key=lambda r: r[0] / r[1]["us_per_event"])[len(rounds) // 2]
    print("reader …", file=sys.stderr)
    result = {
        "benchmark": "engine_parts",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "setup": {"events": len(events), "timestamp_form": args.form, "batch": BATCH, "snapshot_every": BATCH},
        "orjson_loads_us_per_event": round(decode, 3),
        "engine": engine,
        "engine_ratio_to_orjson_loads": round(decode / engine["us_per_event"], 3),
        "ratios_per_round": [round(r, 3) for r in ratios],
        "reader": bench_reader(events),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
