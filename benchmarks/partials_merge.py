"""Per-evaluation cost of the evaluator's merge as the number of partitions grows.

One hour of the loan simulator (3 decisions/s, one model) is keyed by decision id onto
P ∈ {1, 6, 24, 96} partitions, each with its own engine (as the daemon keeps them). Each
partition's partial is saved as a ``fairwatch_checkpoints`` row in a real PostgreSQL
(started here, as the tests do). One evaluation of the evaluator is then timed, in the
same run as the alternative it replaces — one engine that read the whole stream and only
computes its snapshot (what a single replica does each evaluation):

* ``query``: the evaluator's one ``SELECT`` of the group's rows (``Leadership.partials``);
* ``unpack``: zlib + npz decoding of every partial;
* ``merge``: adding the partials into one engine (``monitor.partials.merge``);
* ``snapshot``: the merged engine's snapshot (gauges, intervals);
* ``ratio``: (query + unpack + merge + snapshot) / the single engine's snapshot.

Median of ``--repeat`` runs (CPU time of this process; the machine is shared). Writes
``benchmarks/results/partials_merge.json``.

    python benchmarks/partials_merge.py [--repeat 5] [--partitions 1,6,24,96]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import zlib
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "partials_merge.json"


def _cpu() -> float:
    return time.process_time()


def measure(dsn: str, partitions: list[int], repeat: int) -> dict:
    """One evaluator evaluation timed for each partition count, against a real PostgreSQL at ``dsn``."""
    from fairwatch.monitor.engine import Engine
    from fairwatch.monitor.partials import PARTIAL, PartitionEngines, merge, partial_blob, read_partial
    from fairwatch.monitor.state import Checkpoint, PostgresStateStore

    from fairwatch.app.config import Config
    from fairwatch.app.evaluator import Leadership
    from tests.test_partials import feed, simulated_events

    settings = Config().engine_settings()
    events = simulated_events(seed=5)
    whole = Engine(settings)
    feed(whole, events)
    rows = []
    store = PostgresStateStore(dsn)
    for p_count in partitions:
        group = f"merge-bench-{p_count}"
        engines = PartitionEngines(settings)
        split: dict[int, list] = {}
        for o, v in events:
            split.setdefault(zlib.crc32(orjson.loads(v)["decision_id"].encode()) % p_count, []).append((o, v))
        for p, evs in split.items():
            feed(engines[p], evs)
        blobs = {f"{group}/{p}{PARTIAL}": partial_blob(engines[p]) for p in engines}
        store.save({k: Checkpoint(b) for k, b in blobs.items()})
        lead = Leadership(dsn, group)
        assert lead.check()
        runs = []
        for _ in range(repeat):
            t0 = _cpu()
            w0 = time.perf_counter()
            got = lead.partials()
            t1 = _cpu()
            parts = [read_partial(b) for b in got.values()]
            t2 = _cpu()
            merged = merge(parts, settings)
            t3 = _cpu()
            merged.snapshot()
            t4 = _cpu()
            wall = time.perf_counter() - w0
            whole.snapshot()
            t5 = _cpu()
            assert len(got) == p_count
            runs.append(
                {
                    "query_s": t1 - t0,
                    "unpack_s": t2 - t1,
                    "merge_s": t3 - t2,
                    "snapshot_s": t4 - t3,
                    "evaluation_s": t4 - t0,
                    "evaluation_wall_s": wall,
                    "single_engine_snapshot_s": t5 - t4,
                }
            )
        lead.close()
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        row = {
            "partitions": p_count,
            "partial_bytes_mean": sum(map(len, blobs.values())) / len(blobs),
            "partial_bytes_uncompressed_mean": sum(len(zlib.decompress(b)) for b in blobs.values()) / len(blobs),
            **{f"median_{k}": v for k, v in med.items()},
            "ratio_to_single_engine_snapshot": med["evaluation_s"] / med["single_engine_snapshot_s"],
            "runs": runs,
        }
        rows.append(row)
        print(
            f"P={p_count:3d}  partial {row['partial_bytes_mean'] / 1024:7.1f} KiB  evaluation "
            f"{med['evaluation_s'] * 1e3:7.1f} ms CPU (query {med['query_s'] * 1e3:.1f}, unpack "
            f"{med['unpack_s'] * 1e3:.1f}, merge {med['merge_s'] * 1e3:.1f}, snapshot "
            f"{med['snapshot_s'] * 1e3:.1f})  single engine snapshot {med['single_engine_snapshot_s'] * 1e3:.1f} ms"
            f"  ratio {row['ratio_to_single_engine_snapshot']:.1f}"
        )
    store.close()
    return {
        "benchmark": "partials_merge",
        "what": "CPU seconds of one evaluator evaluation (query + unpack + merge + snapshot) vs one engine's snapshot",
        "decisions": sum(1 for o, _ in events if not o),
        "windows": list(settings.windows),
        "repeat": repeat,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "rows": rows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--partitions", default="1,6,24,96")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    from tests.infra.postgres import postgres_server

    with postgres_server() as pg:
        result = measure(pg.dsn, [int(x) for x in args.partitions.split(",")], args.repeat)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
