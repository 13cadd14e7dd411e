"""Decoding paths for decision/v1, per event, in one run: the measurements behind the fast path.

For each timestamp form (``stamp_forms.FORMS``), over the same events, CPU µs per event of:

* ``orjson.loads`` alone (a dict, nothing checked);
* msgspec typed decode with ``ts`` kept as text or a number (constraints checked in C,
  ``attributes``/``features`` kept raw);
* msgspec typed decode with ``ts: datetime | float`` (msgspec's RFC 3339 parser) and
  ``datetime.timestamp`` mapped in C over each run's column: what the fast path does;
* the whole batch fast path (``decode_decision_batch``).

Until commit 50e7d39 the fast path read ``ts`` as text and parsed the column with a
vectorised numpy parser of our own (``streaming/stamps.py``); this benchmark then also
measured the two column paths paired, and msgspec's ``datetime`` won for the µs and offset
forms (0.88× and 0.85×) and tied for the others (``results/decode_paths_vectorised_parser.json``;
``git checkout 50e7d39 -- benchmarks streaming`` runs that comparison again).
Writes ``benchmarks/results/decode_paths.json``.

    python benchmarks/decode_paths.py [--events 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import numpy as np
import orjson
from fairwatch.streaming.batch import AttributeRegistry, decode_decision_batch
from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay
from stamp_forms import FORMS, restamp

from fairwatch.app.runtime import tune_gc

RESULTS = Path(__file__).resolve().parent / "results" / "decode_paths.json"
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
TIMESTAMP = dt.datetime.timestamp


class _WithText(msgspec.Struct, gc=False):
    """decision/v1 with ``ts`` kept as text (how the fast path read it until 50e7d39)."""

    schema: Literal["decision/v1"]
    decision_id: _Name
    model: _Name
    model_version: _Name
    ts: str | float
    score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    decision: Literal[0, 1]
    attributes: msgspec.Raw
    features: msgspec.Raw = msgspec.Raw(b"null")
    label: Literal[0, 1] | None = None


def best_us(fn, n: int, repeat: int) -> float:
    """Fastest of ``repeat`` runs, CPU µs per event (the machine is shared)."""
    best = float("inf")
    for _ in range(repeat):
        c0 = time.process_time()
        fn()
        best = min(best, time.process_time() - c0)
    return round(best / n * 1e6, 3)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    tune_gc()
    sim = LoanSimulator(seed=1, rate=200.0, scenario="none", delay=OutcomeDelay(kind="none", never_share=1.0))
    events: list[bytes] = []
    while len(events) < args.events:
        events += sim.advance_batch(50.0).topic_values(False)
    events = events[: args.events]
    from fairwatch.streaming.batch import _DECODERS, _FastDecision  # the fast path's own decoder

    fast = _DECODERS[_FastDecision]
    with_text = msgspec.json.Decoder(_WithText).decode
    forms = {}
    for form in FORMS:
        evs = restamp(events, form)
        n = len(evs)
        runs = [evs[i : i + 1024] for i in range(0, n, 1024)]

        def ts_column(runs=runs):
            for run in runs:
                col = [o.ts for o in map(fast, run)]
                np.fromiter(map(TIMESTAMP, col), np.float64, len(col)) if type(col[0]) is not float else np.array(col)

        forms[form] = {
            "orjson_loads_us": best_us(lambda evs=evs: list(map(orjson.loads, evs)), n, args.repeat),
            "msgspec_struct_ts_text_us": best_us(lambda evs=evs: list(map(with_text, evs)), n, args.repeat),
            "msgspec_fast_path_struct_us": best_us(lambda evs=evs: list(map(fast, evs)), n, args.repeat),
            "fast_path_struct_and_ts_column_us": best_us(ts_column, n, args.repeat),
            "decode_decision_batch_us": best_us(
                lambda evs=evs: [
                    decode_decision_batch(evs[i : i + 10_000], registry=AttributeRegistry())
                    for i in range(0, len(evs), 10_000)
                ],
                n,
                args.repeat,
            ),
        }
        print(form, json.dumps(forms[form]), file=sys.stderr)
    result = {
        "benchmark": "decode_paths",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "msgspec": msgspec.__version__,
            "orjson": orjson.__version__,
        },
        "events": args.events,
        "clock": "process CPU time, fastest of --repeat runs, µs per event",
        "forms": forms,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["forms"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
