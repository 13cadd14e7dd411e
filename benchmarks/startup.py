"""Start-up time of the ``fairwatch`` command line, whole processes as a user runs them.

* ``python -c pass``: the interpreter alone, the floor nothing can beat;
* ``python -c "import fairwatch"``: the package and its lazy public API;
* ``fairwatch --help`` and ``fairwatch run --help``: building the parser;
* ``eager imports``: the modules building the parser imported before issue 12 (root
  configuration → engine → scipy, and the intervention pipeline → scikit-learn,
  fairlearn, matplotlib), the alternative the help times are compared with;
* ``fairwatch demo`` to the first scrape with data: from starting the process until
  ``/metrics`` on a free port serves a ``fairness_selection_rate`` sample.

Writes benchmarks/results/startup.json (median, min, max of the runs, and the ratios).
Run: ``nice -n 5 python benchmarks/startup.py [--runs 9] [--demo-runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import fairwatch

RESULTS = Path(__file__).resolve().parent / "results" / "startup.json"
BIN = Path(sys.executable).parent
FAIRWATCH = str(BIN / "fairwatch")
EAGER = "import fairwatch.app.config, fairwatch.alerts.cli, fairwatch.intervention.pipeline"

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    'python -c "import fairwatch"': [sys.executable, "-c", "import fairwatch"],
    "fairwatch --help": [FAIRWATCH, "--help"],
    "fairwatch run --help": [FAIRWATCH, "run", "--help"],
    "eager imports (the parser before)": [sys.executable, "-c", EAGER],
}


def _time(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    return time.perf_counter() - t0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo_first_data(timeout: float = 60.0) -> float:
    """Seconds from starting ``fairwatch demo`` to a scrape holding a fairness_selection_rate sample."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [FAIRWATCH, "demo", "--port", str(port), "--no-live", "--duration", str(timeout)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"fairwatch demo exited with {proc.returncode} before serving data")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if any(line.startswith(b"fairness_selection_rate{") for line in r.read().splitlines()):
                        return time.perf_counter() - t0
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.01)
        raise RuntimeError(f"no fairness_selection_rate sample within {timeout} s")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _summary(times: list[float]) -> dict:
    return {
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "runs": [round(t, 4) for t in times],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9, help="runs per command (default: 9)")
    ap.add_argument("--demo-runs", type=int, default=3, help="runs of the demo (default: 3)")
    args = ap.parse_args()

    for cmd in COMMANDS.values():  # warm the file cache and the .pyc files once
        _time(cmd)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):  # interleaved, so a busy moment of the machine hits every command
        for name, cmd in COMMANDS.items():
            times[name].append(_time(cmd))
    results = {name: _summary(t) for name, t in times.items()}
    results["fairwatch demo, to the first scrape with data"] = _summary(
        [_demo_first_data() for _ in range(args.demo_runs)]
    )

    med = {name: r["median_s"] for name, r in results.items()}
    floor, eager = med["python -c pass"], med["eager imports (the parser before)"]
    out = {
        "benchmark": "startup",
        "version": fairwatch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "runs": args.runs,
        "demo_runs": args.demo_runs,
        "targets_s": {"fairwatch --help": 0.3, "fairwatch run --help": 0.3, "fairwatch demo, first data": 3.0},
        "before_issue_12_s": {"fairwatch --help": 4.1},
        "results": results,
        "ratios": {
            "fairwatch --help / eager imports": round(med["fairwatch --help"] / eager, 3),
            "fairwatch run --help / eager imports": round(med["fairwatch run --help"] / eager, 3),
            "fairwatch --help / python -c pass": round(med["fairwatch --help"] / floor, 2),
            "import fairwatch / python -c pass": round(med['python -c "import fairwatch"'] / floor, 2),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    for name, r in results.items():
        print(f"{name:<48} median {r['median_s']:.3f} s  (min {r['min_s']:.3f}, max {r['max_s']:.3f})")
    print(json.dumps(out["ratios"], indent=2))


if __name__ == "__main__":
    main()
