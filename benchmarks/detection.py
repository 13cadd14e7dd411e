"""Detection benchmark (issue 4): false alarms on fair streams, delay on unfair ones.

The loan simulator at 10 decisions/s feeds the engine in simulated time; the
alert loop (default :class:`alerts.config.AlertsConfig` policy) evaluates every
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

    python benchmarks/detection.py --quick            # smoke (minutes of CPU)
    python benchmarks/detection.py --part noise --days 30 --seeds 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.audit import MemoryAuditLog  # noqa: E402
from alerts.config import AlertsConfig  # noqa: E402
from alerts.flags import FlagdFileStore  # noqa: E402
from alerts.loop import AlertLoop  # noqa: E402
from alerts.notify import Notifier  # noqa: E402
from monitor.engine import Engine, EngineSettings  # noqa: E402
from streaming.simulator import LoanSimulator, OutcomeDelay  # noqa: E402

RATE = 10.0
WINDOWS = ("5m", "15m", "30m", "1h", "24h")
BUCKETS = 30
DRIFT_AT = 2 * 3600.0
DELAY = OutcomeDelay(kind="lognormal", median_s=600.0, sigma=0.5)
OUT = Path(__file__).resolve().parent / "results" / "detection.json"
NAIVE = {"disparate_impact": ("low", 0.80), "demographic_parity_ratio": ("low", 0.75),
         "equalized_odds_gap": ("high", 0.12), "expected_calibration_error": ("high", 0.08)}


def naive_alerts(snap) -> set[str]:
    """Metrics the naive fixed-threshold 1h monitor flags in this snapshot."""
    out = set()
    for wm in snap.windows:
        if wm.window != "1h":
            continue
        m = wm.metrics
        vals = {"demographic_parity_ratio": [m.dp_ratio], "equalized_odds_gap": [m.eo_gap],
                "disparate_impact": [g.disparate_impact for g in m.groups if g.sufficient],
                "expected_calibration_error": [g.expected_calibration_error for g in m.groups if g.sufficient_labeled]}
        for metric, (side, thr) in NAIVE.items():
            for v in vals[metric]:
                if v is not None and (v < thr if side == "low" else v > thr):
                    out.add(f"{metric}/{m.attribute}")
    return out


def make_loop(tmp: Path) -> tuple[AlertLoop, FlagdFileStore]:
    flags = tmp / "flags.json"
    flags.write_text(json.dumps({"flags": {"loan-model": {"state": "ENABLED", "variants": {"v2": "v2", "v3": "v3"},
                                                          "defaultVariant": "v3"}}}))
    cfg = AlertsConfig.model_validate({
        "baseline_path": str(tmp / "baselines.json"),
        # approved baseline learned from the first simulated hour (before any drift)
        "learn_baseline": {"loan-approval": [1793491200.0, 1793491200.0 + 3600.0]},
        "rollback": {"flag_store": {"kind": "flagd-file", "path": str(flags), "fsync": False},
                     "models": {"loan-approval": {"flag": "loan-model", "rollback_to": "v2"}}},
    })
    store = FlagdFileStore(flags, fsync=False)
    return AlertLoop(cfg, store=store, audit=MemoryAuditLog(), notifier=Notifier(cfg.notify)), store


def run_stream(scenario: str, seed: int, seconds: float, eval_s: float, *, rollback: bool = True,
               stop_when=None) -> dict:
    """One stream through engine + alert loop (or the naive monitor only, ``rollback=False``)."""
    with tempfile.TemporaryDirectory() as d:
        loop, store = make_loop(Path(d))
        sim = LoanSimulator(seed=seed, rate=RATE, scenario=scenario, drift_at=DRIFT_AT, delay=DELAY)
        eng = Engine(EngineSettings(windows=WINDOWS, buckets=BUCKETS))
        naive_first: dict[str, float] = {}
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
            if rollback:
                loop.evaluate(snap, eng)
                served = store.current("loan-model")
                if served != sim.model_version:
                    sim.set_model_version(served)
            if stop_when is not None and stop_when(loop, naive_first, t):
                break
        tiers = [c for c in loop.changes if c.tier > c.previous and c.tier >= 1]
        out = {
            "scenario": scenario, "seed": seed, "simulated_s": sim.now - sim.start,
            "tier_raises": {str(k): sum(1 for c in tiers if c.tier == k) for k in (1, 2, 3)},
            "incidents_by_max_tier": {str(k): sum(1 for i in loop.incidents() if i["max_tier"] == k) for k in (1, 2, 3)},
            "rollbacks": sum(loop.rollback.executed.values()) if loop.rollback else 0,
            "notifications": len(loop.notifier.sent),
            "naive_alert_episodes": naive_episodes,
            "naive_first_s": naive_first,
            "first_tier": {},
            "rollback_records": [r.as_dict() for r in loop.rollback.records.values()] if loop.rollback else [],
        }
        for c in loop.changes:
            if c.tier >= 1:
                out["first_tier"].setdefault(f"{c.tier}:{c.metric}/{c.attribute}@{c.window}", c.at - sim.start)
        for tier in (2, 3):
            ts = [c.at - sim.start for c in loop.changes if c.tier >= tier]
            out[f"first_tier{tier}_s"] = min(ts) if ts else None
        loop.close()
        return out


def summary(xs: list[float | None]) -> dict:
    vals = sorted(x for x in xs if x is not None)
    if not vals:
        return {"n": 0, "missed": len(xs)}
    q = lambda p: vals[min(len(vals) - 1, int(p * (len(vals) - 1) + 0.5))]  # noqa: E731
    return {"n": len(vals), "missed": len(xs) - len(vals), "min": vals[0], "median": statistics.median(vals),
            "p90": q(0.9), "max": vals[-1], "mean": statistics.fmean(vals), "values": vals}


def part_noise(days: float, seeds: list[int], eval_s: float) -> dict:
    out = {}
    for scenario in ("none", "small-group-noise"):
        runs = []
        for seed in seeds:
            t0 = time.perf_counter()
            r = run_stream(scenario, seed, days * 86400.0, eval_s)
            r["cpu_s"] = round(time.perf_counter() - t0, 1)
            r.pop("rollback_records")
            runs.append(r)
            print(f"noise {scenario} seed {seed}: T3 {r['tier_raises']['3']} rollbacks {r['rollbacks']} "
                  f"T1 {r['tier_raises']['1']} T2 {r['tier_raises']['2']} naive {r['naive_alert_episodes']} "
                  f"({r['cpu_s']} s)", flush=True)
        out[scenario] = {
            "days": days, "seeds": seeds, "evaluation_s": eval_s,
            "tier3_alerts": sum(r["tier_raises"]["3"] for r in runs),
            "rollbacks": sum(r["rollbacks"] for r in runs),
            "tier2_alerts": sum(r["tier_raises"]["2"] for r in runs),
            "tier1_alerts": sum(r["tier_raises"]["1"] for r in runs),
            "tier1_notifications_incidents": sum(r["incidents_by_max_tier"]["1"] for r in runs),
            "naive_alert_episodes": sum(r["naive_alert_episodes"] for r in runs),
            "runs": runs,
        }
    return out


def part_delay(scenario: str, seeds: list[int], eval_s: float, horizon: float, target: float) -> dict:
    ours, naive, verify, runs = [], [], [], []
    for seed in seeds:
        t0 = time.perf_counter()
        if scenario == "dp-drop":
            r = run_stream(scenario, seed, DRIFT_AT + horizon, eval_s,
                           stop_when=lambda lp, nf, t: t > DRIFT_AT + 1800 and any(
                               rec.status != "verifying" for rec in lp.rollback.records.values()))
            execs = [rec["executed_at"] for rec in r["rollback_records"] if rec["executed_at"]]
            d = (min(execs) - 1793491200.0 - DRIFT_AT) if execs else None
            v = next((rec for rec in r["rollback_records"] if rec["status"] in ("verified", "not-recovered")), None)
            verify.append(None if v is None else {"status": v["status"], **v["verification"]})
        else:
            r = run_stream(scenario, seed, DRIFT_AT + horizon, eval_s,
                           stop_when=lambda lp, nf, t: t > DRIFT_AT and any(
                               c.tier >= 2 and c.metric == "expected_calibration_error" for c in lp.changes))
            ts = [c for c in r["first_tier"].items() if c[0].startswith(("2:expected", "3:expected"))]
            d = (min(v for _, v in ts) - DRIFT_AT) if ts else None
        metric = "disparate_impact" if scenario == "dp-drop" else "expected_calibration_error"
        nr = run_stream(scenario, seed, DRIFT_AT + horizon, eval_s, rollback=False,
                        stop_when=lambda lp, nf, t, metric=metric: t > DRIFT_AT and any(
                            k.startswith(metric) and v > DRIFT_AT for k, v in nf.items()))
        nts = [v for k, v in nr["naive_first_s"].items() if k.startswith(metric) and v > DRIFT_AT]
        nd = (min(nts) - DRIFT_AT) if nts else None
        pre = [k for k, v in nr["naive_first_s"].items() if v <= DRIFT_AT]
        ours.append(d)
        naive.append(nd)
        runs.append({"seed": seed, "delay_s": d, "naive_delay_s": nd, "naive_false_before_drift": pre,
                     "first_tier": r["first_tier"], "cpu_s": round(time.perf_counter() - t0, 1)})
        print(f"{scenario} seed {seed}: ours {d} naive {nd} ({runs[-1]['cpu_s']} s)", flush=True)
    res = {"seeds": seeds, "evaluation_s": eval_s, "target_s": target,
           "ours": summary(ours), "naive_1h_fixed_threshold": summary(naive),
           "within_target": sum(1 for x in ours if x is not None and x <= target), "runs": runs}
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
    result["setup"] = {
        "rate_per_s": RATE, "engine_windows": list(WINDOWS), "buckets": BUCKETS, "drift_at_s": DRIFT_AT,
        "outcome_delay": {"kind": DELAY.kind, "median_s": DELAY.median_s, "sigma": DELAY.sigma,
                          "never_share": DELAY.never_share},
        "policy": AlertsConfig().policy.model_dump(by_alias=True, mode="json"),
        "baseline": "learned from the first simulated hour (window 24h)",
        "naive": "point values of the 1h window vs DI<0.80, DP<0.75, EO>0.12, ECE>0.08; no for/evidence/confirmation",
    }
    seeds = list(range(1, args.seeds + 1))
    t0 = time.perf_counter()
    if args.part in ("all", "noise"):
        result["noise"] = part_noise(args.days, list(range(101, 101 + args.noise_seeds)), args.noise_eval)
    if args.part in ("all", "dp"):
        result["dp_drop"] = part_delay("dp-drop", seeds, args.eval, 3600.0, 600.0)
    if args.part in ("all", "cal"):
        result["calibration_drift"] = part_delay("calibration-drift", seeds, args.eval, 2 * 3600.0,
                                                 DELAY.median_s + 1800.0)
    result.setdefault("runs_cpu_s", {})[args.part] = round(time.perf_counter() - t0, 1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
