"""Detection benchmark (issue 4): false alarms on fair streams, delay on unfair ones.

The loan simulator at 10 decisions/s feeds the engine in simulated time; the
alert loop (default :class:`fairwatch.alerts.config.AlertsConfig` policy) evaluates every
``--eval`` simulated seconds; a tier-3 incident rolls a flagd flag file back and
the simulator serves the version the flag names (as a serving app would).

Parts (``--part``, default all):

``noise``  ``none`` and ``small-group-noise`` for ``--days`` simulated days per seed:
           tier-3 alerts, rollbacks, tier-1/2 notifications.
``dp``     ``dp-drop`` (DI ≈ 0.95 → 0.60 two hours in) over ``--seeds`` seeds:
           delay from the step to the rollback, verification.
``cal``    ``calibration-drift`` over ``--seeds`` seeds: delay to tier 2, against
           the target label delay (median) + 30 min.

Each stream is also judged by a naive monitor: fixed thresholds on the point
values of a single 1h window (DI < 0.80, DP < 0.75, EO gap > 0.12, ECE > 0.08),
no ``for``, no evidence, no confirmation; for the delay parts it runs on a second
simulator with the same seed that is never rolled back (the same stream).

Results merge into one file, ``benchmarks/results/detection.json`` (``--out``): each part
is rewritten after every seed (and every simulated day of a noise run) with
``complete: false`` until it ends, so a run that is stopped leaves what it has done;
each part records the command and policy that produced it under ``setup``. Cost: about
1 s of CPU per simulated 2 h at 10 decisions/s and a 60 s cadence (~10 CPU-minutes per
30-day stream, most of it JSON encoding/decoding and snapshots, not the alert policy).
The simulator already advances in whole evaluation steps (``advance_batch(eval_s)``).

    python benchmarks/detection.py --quick            # smoke (minutes of CPU)
    # what produced results/detection.json (one process at a time):
    python benchmarks/detection.py --part dp --seeds 20
    python benchmarks/detection.py --part cal --seeds 20
    python benchmarks/detection.py --part noise --days 30 --noise-seeds 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fairwatch.alerts.audit import MemoryAuditLog  # noqa: E402
from fairwatch.alerts.config import AlertsConfig  # noqa: E402
from fairwatch.alerts.flags import FlagdFileStore  # noqa: E402
from fairwatch.alerts.loop import AlertLoop  # noqa: E402
from fairwatch.alerts.notify import Notifier  # noqa: E402
from fairwatch.monitor.engine import Engine, EngineSettings  # noqa: E402
from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay  # noqa: E402

RATE = 10.0
START = 1793491200.0  # LoanSimulator's default start (event time)
WINDOWS = ("5m", "15m", "30m", "1h", "24h")
BUCKETS = 30
DRIFT_AT = 2 * 3600.0
DELAY = OutcomeDelay(kind="lognormal", median_s=600.0, sigma=0.5)
OUT = Path(__file__).resolve().parent / "results" / "detection.json"
NAIVE = {
    "disparate_impact": ("low", 0.80),
    "demographic_parity_ratio": ("low", 0.75),
    "equalized_odds_gap": ("high", 0.12),
    "expected_calibration_error": ("high", 0.08),
}


def naive_alerts(snap) -> set[str]:
    """Metrics the naive fixed-threshold 1h monitor flags in this snapshot."""
    out = set()
    for wm in snap.windows:
        if wm.window != "1h":
            continue
        m = wm.metrics
        vals = {
            "demographic_parity_ratio": [m.dp_ratio],
            "equalized_odds_gap": [m.eo_gap],
            "disparate_impact": [g.disparate_impact for g in m.groups if g.sufficient],
            "expected_calibration_error": [g.expected_calibration_error for g in m.groups if g.sufficient_labeled],
        }
        for metric, (side, thr) in NAIVE.items():
            for v in vals[metric]:
                if v is not None and (v < thr if side == "low" else v > thr):
                    out.add(f"{metric}/{m.attribute}")
    return out


def make_loop(tmp: Path) -> tuple[AlertLoop, FlagdFileStore]:
    flags = tmp / "flags.json"
    flags.write_text(
        json.dumps(
            {
                "flags": {
                    "loan-model": {"state": "ENABLED", "variants": {"v2": "v2", "v3": "v3"}, "defaultVariant": "v3"}
                }
            }
        )
    )
    cfg = AlertsConfig.model_validate(
        {
            "baseline_path": str(tmp / "baselines.json"),
            # approved baseline learned from the first simulated hour (before any drift)
            "learn_baseline": {"loan-approval": [1793491200.0, 1793491200.0 + 3600.0]},
            "rollback": {
                "flag_store": {"kind": "flagd-file", "path": str(flags), "fsync": False},
                "models": {"loan-approval": {"flag": "loan-model", "rollback_to": "v2"}},
            },
        }
    )
    store = FlagdFileStore(flags, fsync=False)
    return AlertLoop(cfg, store=store, audit=MemoryAuditLog(), notifier=Notifier(cfg.notify)), store


def run_stream(
    scenario: str,
    seed: int,
    seconds: float,
    eval_s: float,
    *,
    rollback: bool = True,
    stop_when=None,
    progress=None,
    progress_every: float = 86400.0,
) -> dict:
    """One stream through engine + alert loop (or the naive monitor only, ``rollback=False``).

    ``progress(partial_result)`` is called every ``progress_every`` simulated seconds, so a
    long run that is stopped still leaves what it has seen so far.
    """
    with tempfile.TemporaryDirectory() as d:
        loop, store = make_loop(Path(d))
        sim = LoanSimulator(seed=seed, rate=RATE, scenario=scenario, drift_at=DRIFT_AT, delay=DELAY)
        eng = Engine(EngineSettings(windows=WINDOWS, buckets=BUCKETS))
        naive_first: dict[str, float] = {}
        naive_after: dict[str, float] = {}  # first flag of each metric/attribute after the drift
        naive_episodes = 0
        naive_prev: set[str] = set()
        steps = int(seconds // eval_s)
        for _ in range(steps):
            b = sim.advance_batch(eval_s)
            eng.process(decisions=b.topic_values(False), outcomes=b.topic_values(True), now=sim.now)
            snap = eng.snapshot(now=sim.now)
            t = sim.now - sim.start
            cur = naive_alerts(snap)
            naive_episodes += len(cur - naive_prev)
            naive_prev = cur
            for k in cur:
                naive_first.setdefault(k, t)
                if t > DRIFT_AT:
                    naive_after.setdefault(k, t)
            if rollback:
                loop.evaluate(snap, eng)
                served = store.current("loan-model")
                if served != sim.model_version:
                    sim.set_model_version(served)
            if stop_when is not None and stop_when(loop, naive_after, t):
                break
            if progress is not None and t // progress_every > (t - eval_s) // progress_every:
                progress(_stream_result(scenario, seed, sim, loop, naive_episodes, naive_first, naive_after))
        out = _stream_result(scenario, seed, sim, loop, naive_episodes, naive_first, naive_after)
        loop.close()
        return out


def _stream_result(scenario, seed, sim, loop, naive_episodes, naive_first, naive_after) -> dict:
    tiers = [c for c in loop.changes if c.tier > c.previous and c.tier >= 1]
    out = {
        "scenario": scenario,
        "seed": seed,
        "simulated_s": sim.now - sim.start,
        "tier_raises": {str(k): sum(1 for c in tiers if c.tier == k) for k in (1, 2, 3)},
        "incidents_by_max_tier": {str(k): sum(1 for i in loop.incidents() if i["max_tier"] == k) for k in (1, 2, 3)},
        "rollbacks": sum(loop.rollback.executed.values()) if loop.rollback else 0,
        "notifications": len(loop.notifier.sent),
        "naive_alert_episodes": naive_episodes,
        "naive_first_s": naive_first,
        "naive_first_after_drift_s": naive_after,
        "first_tier": {},
        "rollback_records": [r.as_dict() for r in loop.rollback.records.values()] if loop.rollback else [],
    }
    for c in loop.changes:
        if c.tier >= 1:
            out["first_tier"].setdefault(f"{c.tier}:{c.metric}/{c.attribute}@{c.window}", c.at - sim.start)
    for tier in (2, 3):
        ts = [c.at - sim.start for c in loop.changes if c.tier >= tier]
        out[f"first_tier{tier}_s"] = min(ts) if ts else None
    # raises to tier >= 2 (metric/attribute@window, tier, simulated s): the delay parts need
    # the first one *after* the drift, and report any before it as false alarms
    out["raises"] = [
        (f"{c.metric}/{c.attribute}@{c.window}", c.tier, c.at - sim.start)
        for c in loop.changes
        if c.tier >= 2 and c.tier > c.previous
    ]
    return out


def lp_start(loop: AlertLoop) -> float:
    """The simulator's start (event time) of a benchmark stream."""
    return START


def summary(xs: list[float | None]) -> dict:
    vals = sorted(x for x in xs if x is not None)
    if not vals:
        return {"n": 0, "missed": len(xs)}
    q = lambda p: vals[min(len(vals) - 1, int(p * (len(vals) - 1) + 0.5))]  # noqa: E731
    return {
        "n": len(vals),
        "missed": len(xs) - len(vals),
        "min": vals[0],
        "median": statistics.median(vals),
        "p90": q(0.9),
        "max": vals[-1],
        "mean": statistics.fmean(vals),
        "values": vals,
    }


def _noise_summary(days: float, seeds: list[int], eval_s: float, runs: list[dict]) -> dict:
    return {
        "days": days,
        "seeds": seeds,
        "evaluation_s": eval_s,
        "simulated_days_done": round(sum(r["simulated_s"] for r in runs) / 86400.0, 3),
        "tier3_alerts": sum(r["tier_raises"]["3"] for r in runs),
        "rollbacks": sum(r["rollbacks"] for r in runs),
        "tier2_alerts": sum(r["tier_raises"]["2"] for r in runs),
        "tier1_alerts": sum(r["tier_raises"]["1"] for r in runs),
        "tier1_notifications_incidents": sum(r["incidents_by_max_tier"]["1"] for r in runs),
        "naive_alert_episodes": sum(r["naive_alert_episodes"] for r in runs),
        "runs": runs,
    }


def part_noise(days: float, seeds: list[int], eval_s: float, save=None) -> dict:
    out = {}
    for scenario in ("none", "small-group-noise"):
        runs = []
        for seed in seeds:
            t0 = time.perf_counter()

            def progress(partial: dict, scenario=scenario, runs=runs, t0=t0) -> None:
                partial = {**partial, "cpu_s": round(time.perf_counter() - t0, 1), "partial": True}
                partial.pop("rollback_records")
                out[scenario] = {**_noise_summary(days, seeds, eval_s, runs + [partial]), "complete": False}
                print(
                    f"noise {scenario}: {partial['simulated_s'] / 86400:.0f} days, T3 "
                    f"{partial['tier_raises']['3']} rollbacks {partial['rollbacks']}",
                    flush=True,
                )
                if save is not None:
                    save(out)

            r = run_stream(scenario, seed, days * 86400.0, eval_s, progress=progress)
            r["cpu_s"] = round(time.perf_counter() - t0, 1)
            r.pop("rollback_records")
            runs.append(r)
            print(
                f"noise {scenario} seed {seed}: T3 {r['tier_raises']['3']} rollbacks {r['rollbacks']} "
                f"T1 {r['tier_raises']['1']} T2 {r['tier_raises']['2']} naive {r['naive_alert_episodes']} "
                f"({r['cpu_s']} s)",
                flush=True,
            )
            out[scenario] = _noise_summary(days, seeds, eval_s, runs)
            out[scenario]["complete"] = len(runs) == len(seeds)
            if save is not None:
                save(out)
    return out


def part_delay(scenario: str, seeds: list[int], eval_s: float, horizon: float, target: float, save=None) -> dict:
    ours, naive, verify, runs = [], [], [], []
    for seed in seeds:
        t0 = time.perf_counter()
        if scenario == "dp-drop":
            r = run_stream(
                scenario,
                seed,
                DRIFT_AT + horizon,
                eval_s,
                stop_when=lambda lp, nf, t: (
                    t > DRIFT_AT + 1800 and any(rec.status != "verifying" for rec in lp.rollback.records.values())
                ),
            )
            execs = [rec["executed_at"] for rec in r["rollback_records"] if rec["executed_at"]]
            d = (min(execs) - 1793491200.0 - DRIFT_AT) if execs else None
            v = next((rec for rec in r["rollback_records"] if rec["status"] in ("verified", "not-recovered")), None)
            verify.append(None if v is None else {"status": v["status"], **v["verification"]})
        else:
            r = run_stream(
                scenario,
                seed,
                DRIFT_AT + horizon,
                eval_s,
                stop_when=lambda lp, nf, t: (
                    t > DRIFT_AT
                    and any(
                        c.tier >= 2
                        and c.tier > c.previous
                        and c.metric == "expected_calibration_error"
                        and c.at - lp_start(lp) > DRIFT_AT
                        for c in lp.changes
                    )
                ),
            )
            ts = [at for k, _, at in r["raises"] if k.startswith("expected_calibration_error") and at > DRIFT_AT]
            d = (min(ts) - DRIFT_AT) if ts else None
        metric = "disparate_impact" if scenario == "dp-drop" else "expected_calibration_error"
        nr = run_stream(
            scenario,
            seed,
            DRIFT_AT + horizon,
            eval_s,
            rollback=False,
            stop_when=lambda lp, nf, t, metric=metric: t > DRIFT_AT and any(k.startswith(metric) for k in nf),
        )
        nts = [v for k, v in nr["naive_first_after_drift_s"].items() if k.startswith(metric)]
        nd = (min(nts) - DRIFT_AT) if nts else None
        pre = [k for k, v in nr["naive_first_s"].items() if v <= DRIFT_AT]
        ours.append(d)
        naive.append(nd)
        ours_pre = sorted({f"{k} tier {tier}" for k, tier, at in r["raises"] if at <= DRIFT_AT})
        runs.append(
            {
                "seed": seed,
                "delay_s": d,
                "naive_delay_s": nd,
                "naive_false_before_drift": pre,
                "ours_tier2plus_before_drift": ours_pre,
                "first_tier": r["first_tier"],
                "cpu_s": round(time.perf_counter() - t0, 1),
            }
        )
        print(f"{scenario} seed {seed}: ours {d} naive {nd} ({runs[-1]['cpu_s']} s)", flush=True)
        if save is not None:
            save(_delay_result(scenario, seeds, eval_s, target, ours, naive, verify, runs))
    return _delay_result(scenario, seeds, eval_s, target, ours, naive, verify, runs)


def _delay_result(scenario, seeds, eval_s, target, ours, naive, verify, runs) -> dict:
    res = {
        "complete": len(runs) == len(seeds),
        "seeds": seeds,
        "evaluation_s": eval_s,
        "target_s": target,
        "ours": summary(ours),
        "naive_1h_fixed_threshold": summary(naive),
        "within_target": sum(1 for x in ours if x is not None and x <= target),
        "seeds_with_our_tier2plus_before_drift": sum(1 for r in runs if r["ours_tier2plus_before_drift"]),
        "seeds_with_naive_alert_before_drift": sum(1 for r in runs if r["naive_false_before_drift"]),
        "runs": runs,
    }
    if scenario == "dp-drop":
        res["verification"] = verify
        res["verified"] = sum(1 for v in verify if v and v["status"] == "verified")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("all", "noise", "dp", "cal"), default="all")
    ap.add_argument("--days", type=float, default=30.0, help="noise run length per seed (default 30)")
    ap.add_argument("--noise-seeds", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=20, help="seeds for the delay parts (default 20)")
    ap.add_argument("--eval", type=float, default=30.0, help="evaluation interval, simulated s (default 30)")
    ap.add_argument("--noise-eval", type=float, default=60.0, help="evaluation interval of noise runs (default 60)")
    ap.add_argument("--quick", action="store_true", help="smoke: 0.5 day noise, 3 seeds")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    if args.quick:
        args.days, args.seeds = 0.5, 3
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    setup = {
        "command": "python benchmarks/detection.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rate_per_s": RATE,
        "engine_windows": list(WINDOWS),
        "buckets": BUCKETS,
        "drift_at_s": DRIFT_AT,
        "outcome_delay": {
            "kind": DELAY.kind,
            "median_s": DELAY.median_s,
            "sigma": DELAY.sigma,
            "never_share": DELAY.never_share,
        },
        "policy": AlertsConfig().policy.model_dump(by_alias=True, mode="json"),
        "baseline": "learned from the first simulated hour (window 24h)",
        "naive": "point values of the 1h window vs DI<0.80, DP<0.75, EO>0.12, ECE>0.08; no for/evidence/confirmation",
    }
    result["setup"] = setup

    def saver(key: str):
        """Write the file after every run: a killed run still leaves its finished seeds."""

        def save(part: dict) -> None:
            result[key] = part if key == "setup" else {**part, "setup": setup}
            out_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = out_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
            tmp.replace(out_path)

        return save

    seeds = list(range(1, args.seeds + 1))
    t0 = time.perf_counter()
    if args.part in ("all", "noise"):
        save = saver("noise")
        save(part_noise(args.days, list(range(101, 101 + args.noise_seeds)), args.noise_eval, save))
    if args.part in ("all", "dp"):
        save = saver("dp_drop")
        save(part_delay("dp-drop", seeds, args.eval, 3600.0, 600.0, save))
    if args.part in ("all", "cal"):
        save = saver("calibration_drift")
        save(part_delay("calibration-drift", seeds, args.eval, 2 * 3600.0, DELAY.median_s + 1800.0, save))
    result.setdefault("runs_cpu_s", {})[args.part] = round(time.perf_counter() - t0, 1)
    saver("setup")(setup)
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
