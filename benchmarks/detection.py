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
``limits`` the fastest any detector with the guarantee can be on the ``dp`` and ``cal``
           streams: oracle CUSUMs against the least favourable null stream
           (``detection_limits.py``), beside ours on the same draws / seeds.

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
    python benchmarks/detection.py --part limits --seeds 20   # after cal: compares with it
    python benchmarks/detection.py --part noise --days 30 --noise-seeds 1
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fairwatch.alerts.audit import MemoryAuditLog  # noqa: E402
from fairwatch.alerts.config import AlertsConfig  # noqa: E402
from fairwatch.alerts.flags import FlagdFileStore  # noqa: E402
from fairwatch.alerts.loop import AlertLoop  # noqa: E402
from fairwatch.alerts.notify import Notifier  # noqa: E402
from fairwatch.monitor.engine import Engine, EngineSettings  # noqa: E402
from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detection_counts as dc  # noqa: E402
import detection_limits as dl  # noqa: E402

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


def make_loop(tmp: Path, overrides: dict | None = None) -> tuple[AlertLoop, FlagdFileStore]:
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
            **(overrides or {}),
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
    overrides: dict | None = None,
    naive: bool = True,
) -> dict:
    """One stream through engine + alert loop (or the naive monitor only, ``rollback=False``).

    ``progress(partial_result)`` is called every ``progress_every`` simulated seconds, so a
    long run that is stopped still leaves what it has seen so far.
    """
    with tempfile.TemporaryDirectory() as d:
        loop, store = make_loop(Path(d), {"evaluation_interval": eval_s, **(overrides or {})})
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
            cur = naive_alerts(snap) if naive else set()
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


def part_delay(
    scenario: str,
    seeds: list[int],
    eval_s: float,
    horizon: float,
    target: float,
    save=None,
    overrides: dict | None = None,
    with_naive: bool = False,
) -> dict:
    """Delay from the drift to the rollback (dp-drop) / Tier 2 (calibration-drift), event level.

    ``with_naive``: also run the naive 1h monitor on a second simulator (doubles the cost;
    its numbers do not depend on the policy: ``results/detection_fixed_sample.json``).
    """
    ours, naive, verify, runs = [], [], [], []
    for seed in seeds:
        t0 = time.perf_counter()
        if scenario == "dp-drop":
            r = run_stream(
                scenario,
                seed,
                DRIFT_AT + horizon,
                eval_s,
                overrides=overrides,
                naive=False,
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
                overrides=overrides,
                naive=False,
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
        nd, pre = None, []
        if with_naive:
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


# -- count level ---------------------------------------------------------------------------
DAY = 86400.0


def sim_cells(scenario: str = "none", seed: int = 3) -> dict[str, dc.Cells]:
    """race × sex cells estimated from a long simulator run (200k decisions; before/after a drift)."""
    out = {}
    for name, sc in (("before", "none"), ("after", scenario)):
        sim = LoanSimulator(
            seed=seed, rate=50.0, scenario=sc, drift_at=0.0, delay=OutcomeDelay(kind="fixed", median_s=1.0)
        )
        eng = Engine(EngineSettings(windows=("1h",), buckets=10))
        for _ in range(20):
            b = sim.advance_batch(200.0)
            eng.process(decisions=b.topic_values(False), outcomes=b.topic_values(True))
        out[name] = dc.from_engine_totals(eng.models["loan-approval"])
    return out


def _scaled(cells: dc.Cells, race: str, di: float) -> dc.Cells:
    """``race``'s cells' favorable rate set to ``di`` × the best other race's rate (labels as before)."""
    names, m = cells.groups()
    w = m * cells.share
    p = (w * cells.p).sum(1) / w.sum(1)
    best = max(p[i] for i, (a, g) in enumerate(names) if a == "race" and g != race)
    cur = next(p[i] for i, (a, g) in enumerate(names) if a == "race" and g == race)
    new = cells.p.copy()
    for j, lab in enumerate(cells.labels):
        if lab[0] == race:
            new[j] = cells.p[j] * di * best / cur
    return cells.with_(p=new)


def null_scenarios() -> dict[str, dc.Cells]:
    base = sim_cells()["before"]
    share = base.share.copy()
    black = np.array([lab[0] == "Black" for lab in base.labels])
    share[black] *= 0.01 / share[black].sum()  # the simulator's small_group_share
    share[~black] *= (1 - 0.01) / share[~black].sum()
    races = (("White", 0.62), ("Black", 0.13), ("Hispanic", 0.18), ("Asian", 0.07))
    rng = np.random.default_rng(7)
    inter = dc.synthetic(
        {"race": races, "sex": (("Female", 0.5), ("Male", 0.5)), "age": (("under-40", 0.6), ("40+", 0.4))},
        base_rate=0.7,
        small=(("Asian", "Female", "40+"), 0.005),
    )
    inter = inter.with_(p=np.round(0.7 * (1 - 0.05 * rng.random(len(inter.labels))), 3))
    return {
        "none": base,
        "small-group-noise": base.with_(share=share),
        "intersectional-16": inter,
        "stable-di-0.9": _scaled(base, "Black", 0.9),
    }


def _cfg(budget: dict | None = None) -> AlertsConfig:
    return AlertsConfig.model_validate({"baseline_path": "/nonexistent/b.json", "budget": budget or {}})


def part_null(seeds: int, days: float, eval_s: float, save=None, only: list[str] | None = None) -> dict:
    out = {}
    for name, cells in null_scenarios().items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        r = dc.run(cells, _cfg(), seeds=seeds, seconds=days * DAY, step_s=eval_s, seed=11, baseline=dc.truth(cells))
        per = r.pop("tier_raises_per_seed")
        r.pop("first_raise_s")
        r.pop("first_tier3_s")
        r["groups"] = len(cells.groups()[0])
        r["smallest_group_share"] = float(min(cells.groups()[1] @ cells.share))
        out[name] = {
            **r,
            "days": days,
            "evaluation_s": eval_s,
            "tier_raises_per_seed": per,
            "seeds_with_tier2": sum(1 for x in per["2"] if x),
            "seeds_with_tier3": sum(1 for x in per["3"] if x),
            "tier1_per_model_per_30_days": sum(per["1"]) / seeds / (days / 30.0),
            "cpu_s": round(time.perf_counter() - t0, 1),
        }
        print(
            f"null {name}: T1 {sum(per['1'])} T2 {sum(per['2'])} T3 {sum(per['3'])} ({out[name]['cpu_s']} s)",
            flush=True,
        )
        if save is not None:
            save(out)
    return out


def part_boundary(seeds: int, days: float, eval_s: float, save=None) -> dict:
    """True DI exactly 0.80 for Black against every other group (all others at one rate)."""
    base = sim_cells()["before"]
    black = np.array([lab[0] == "Black" for lab in base.labels])
    cells = base.with_(p=np.where(black, 0.8 * 0.7, 0.7), label_rate=np.tile([0.45, 0.8], (len(base.labels), 1)))
    only = {"policy": {"rules": {"disparate_impact": {"degradation": "none", "guards": [{"tier": 3, "below": 0.8}]}}}}
    out = {}
    for label, budget in (("1d", 86400.0), ("default_365d", 365 * 86400.0)):
        cfg = AlertsConfig.model_validate({**only, "baseline_path": "/x", "budget": {"tier3": budget}})
        t0 = time.perf_counter()
        r = dc.run(cells, cfg, seeds=seeds, seconds=days * DAY, step_s=eval_s, seed=13, rollback=False)
        first = np.array([np.nan if x is None else x for x in r["first_tier3_s"]])
        alarms = int(np.isfinite(first).sum())
        exposure = float(np.where(np.isfinite(first), first, days * DAY).sum())
        out[label] = {
            "budget_s": budget,
            "budget_evaluations": budget / eval_s,
            "seeds": seeds,
            "days": days,
            "false_tier3_alarms": alarms,
            "exposure_s": exposure,
            "run_length_estimate_s": exposure / alarms if alarms else None,
            "run_length_lower_bound_s": exposure if not alarms else None,
            "thresholds": r["thresholds"],
            "detectors": r["detectors"],
            "cpu_s": round(time.perf_counter() - t0, 1),
        }
        print(f"boundary {label}: {alarms} false tier 3 over {exposure / DAY:.0f} stream-days", flush=True)
        if save is not None:
            save(out)
    return out


def part_count_drop(seeds: int, di: float, budget: dict | None, eval_s: float) -> dict:
    """dp-drop at count level: Black's DI 0.95 → ``di`` at 2 h; delay to tier 3."""
    cells = sim_cells()["before"]
    after = sim_cells("dp-drop")["after"] if di == 0.6 else _scaled(cells, "Black", di)
    r = dc.run(
        cells,
        _cfg(budget),
        seeds=seeds,
        seconds=DRIFT_AT + 4 * 3600.0,
        step_s=eval_s,
        seed=17,
        baseline=dc.truth(cells),
        drift=(DRIFT_AT, after),
        stop_after_tier3=True,
    )
    delays = [None if x is None else x - DRIFT_AT for x in r["first_tier3_s"]]
    false = sum(1 for x in delays if x is not None and x <= 0)
    return {
        "di_after": di,
        "budget": budget or "default",
        "ours": summary([x for x in delays if x is None or x > 0]),
        "tier3_before_drift": false,
        "thresholds": r["thresholds"],
    }


def _event_thresholds(scenario: str, seed: int, eval_s: float) -> dict[str, float]:
    """The alarm thresholds log(A·K) per tier of the event-level policy, after its first hour."""
    with tempfile.TemporaryDirectory() as d:
        loop, _ = make_loop(Path(d), {"evaluation_interval": eval_s})
        sim = LoanSimulator(seed=seed, rate=RATE, scenario=scenario, drift_at=DRIFT_AT, delay=DELAY)
        eng = Engine(EngineSettings(windows=WINDOWS, buckets=BUCKETS))
        for _ in range(int(4200 // eval_s)):
            b = sim.advance_batch(eval_s)
            eng.process(decisions=b.topic_values(False), outcomes=b.topic_values(True), now=sim.now)
            loop.evaluate(eng.snapshot(now=sim.now), eng)
        out = {str(k): v for k, v in loop.policy.evidence["loan-approval"].tier_thresholds().items()}
        loop.close()
        return out


def _ratio(ours: dict, floor: dict) -> float | None:
    return round(ours["median"] / floor["median"], 3) if ours.get("n") and floor.get("n") else None


def _dp_limit(before: dc.Cells, after: dc.Cells, seeds: int, eval_s: float, log_a: float, horizon: float) -> dict:
    """Ours and the oracle CUSUMs on the same count-level draws (no rollback): delays to Tier 3."""
    t0 = time.perf_counter()
    r = dc.run(
        before,
        _cfg(),
        seeds=seeds,
        seconds=DRIFT_AT + horizon,
        step_s=eval_s,
        seed=17,
        baseline=dc.truth(before),
        drift=(DRIFT_AT, after),
        rollback=False,
        stop_after_tier3=True,
    )
    ours = summary([None if x is None else x - DRIFT_AT for x in r["first_tier3_s"]])
    thr = {"ours_log_AK": r["thresholds"][3], "one_series_log_A": log_a}
    lim = dl.dp_limit(
        before,
        after,
        seeds=seeds,
        thresholds=thr,
        drift_at=DRIFT_AT,
        horizon=horizon,
        step_s=eval_s,
        rate=RATE,
        seed=17,
    )
    floors = {k: summary(v) for k, v in lim.pop("delays_s").items()}
    return {
        **lim,
        "horizon_s": horizon,
        "thresholds_nats": thr,
        "ours": ours,
        "oracle": floors,
        "ours_over_oracle_median": _ratio(ours, floors["ours_log_AK"]),
        "cpu_s": round(time.perf_counter() - t0, 1),
    }


def part_limits(seeds: int, eval_s: float, cal_ours: dict | None = None) -> dict:
    """Oracle CUSUMs (``detection_limits.py``): the fastest any detector with the guarantee can be.

    dp-drop (DI 0.60, and the smaller drop to 0.75) at count level, paired seed by seed with
    ours on the same draws (no rollback, so every seed sees the same stream); calibration-drift
    at event level on the simulator seeds of ``--part cal`` (ours: that part's delays, ``cal_ours``).
    """
    cfg = _cfg()
    log_a = {t: math.log(cfg.budget.seconds(t) / eval_s) for t in (2, 3)}
    before = sim_cells()["before"]
    dp = {
        **_dp_limit(before, sim_cells("dp-drop")["after"], seeds, eval_s, log_a[3], 4 * 3600.0),
        "target_median_s": 330.0,
    }
    small = _dp_limit(before, _scaled(before, "Black", 0.75), seeds, eval_s, log_a[3], 12 * 3600.0)
    for name, part in (("dp-drop", dp), ("DI 0.75", small)):
        floor = part["oracle"]
        print(
            f"limits {name}: ours {part['ours'].get('median')} s, oracle {floor['ours_log_AK'].get('median')} s "
            f"(one series {floor['one_series_log_A'].get('median')} s)",
            flush=True,
        )
    cthr = {"ours_log_AK": _event_thresholds("calibration-drift", 1, eval_s)["2"], "one_series_log_A": log_a[2]}

    def make_sim(seed: int, drift_at: float) -> LoanSimulator:
        return LoanSimulator(seed=seed, rate=RATE, scenario="calibration-drift", drift_at=drift_at, delay=DELAY)

    lim = dl.calibration_limit(
        make_sim,
        seeds=list(range(1, seeds + 1)),
        thresholds=cthr,
        drift_at=DRIFT_AT,
        horizon=3 * 3600.0,
        step_s=eval_s,
    )
    floors = {k: summary(v) for k, v in lim.pop("delays_s").items()}
    cal = {
        **lim,
        "thresholds_nats": cthr,
        "ours": cal_ours or {},
        "oracle": floors,
        "ours_over_oracle_median": _ratio(cal_ours or {}, floors["ours_log_AK"]),
        "target_median_s": 1455.0,
    }
    print(
        f"limits calibration-drift: oracle {floors['ours_log_AK'].get('median')} s "
        f"(one series {floors['one_series_log_A'].get('median')} s)",
        flush=True,
    )
    return {"dp_drop_rollback": dp, "di_0.75_tier3": small, "calibration_drift_tier2": cal}


def part_evalues(draws: int = 200_000) -> dict:
    """Mean log e-value per 30 s of the two ratio e-values vs a test that knew the reference rate.

    The dp-drop pair (Black 0.425 after the drop, 39 decisions per 30 s, vs White 0.698, 186)
    and a low-rate pair (0.03 vs 0.05); null DI 0.80, alternative 0.60.
    """
    from fairwatch.alerts.evidence import _chernoff, _conditional

    rng = np.random.default_rng(0)
    out = {}
    for name, (pg, ph, ng, nh) in {"dp-drop pair": (0.425, 0.698, 39, 186), "low rates": (0.03, 0.05, 39, 186)}.items():
        kg, kh = rng.binomial(ng, pg, draws), rng.binomial(nh, ph, draws)
        full = lambda v: np.full(draws, float(v))  # noqa: E731
        args = (full(ng), full(nh), kg, kh, full(ph), full(0.8), full(0.6))
        q = 0.8 * ph
        out[name] = {
            "p_g": pg,
            "p_h": ph,
            "n_g_per_eval": ng,
            "n_h_per_eval": nh,
            "chernoff_nats": float(_chernoff(*args)[0].mean()),
            "conditional_binomial_nats": float(_conditional(*args)[0].mean()),
            "known_reference_rate_lr_nats": ng * (pg * np.log(pg / q) + (1 - pg) * np.log((1 - pg) / (1 - q))),
        }
    return out


def part_check(eval_s: float = 30.0, hours: float = 3.0) -> dict:
    """Event level (simulator → engine → snapshot → AlertLoop) vs the count driver on the same engine."""
    from fairwatch.alerts.sequential import ModelEvidence

    base = {"loan-approval": {"values": {"demographic_parity_ratio": {"race": 0.95, "sex": 0.97, "race,sex": 0.9}}}}
    out = {}
    for scenario in ("dp-drop", "calibration-drift"):
        with tempfile.TemporaryDirectory() as d:
            loop, _ = make_loop(Path(d), {"evaluation_interval": eval_s, "baselines": base, "learn_baseline": {}})
            sim = LoanSimulator(seed=5, rate=RATE, scenario=scenario, drift_at=3600.0, delay=DELAY)
            eng = Engine(EngineSettings(windows=("1h",), buckets=12))
            ev = ModelEvidence(loop.config, interval=eval_s)
            counted = []
            prev = None
            for _ in range(int(hours * 3600 / eval_s)):
                b = sim.advance_batch(eval_s)
                eng.process(decisions=b.topic_values(False), outcomes=b.topic_values(True), now=sim.now)
                loop.evaluate(eng.snapshot(now=sim.now), eng)
                st = eng.models["loan-approval"]
                t = st.totals
                st_ = ev.step(
                    list(st.groups.names),
                    t.dec[None],
                    t.lab[None],
                    t.cal_n[None],
                    t.cal_s[None],
                    t.cal_l[None],
                    lambda m, a, lp=loop: lp.baselines.get("loan-approval", m, a),
                )
                if st_ is None:
                    continue
                cur = st_[0].tolist()
                before = prev or [-1] * len(cur)
                counted += [
                    (m, a, p_, c, round(st.max_ts, 3))
                    for (m, a), p_, c in zip(ev.layout.machines, before, cur, strict=True)
                    if c != p_
                ]
                prev = cur
            event = [(c.metric, c.attribute, c.previous, c.tier, round(c.at, 3)) for c in loop.changes]
            loop.close()
        out[scenario] = {
            "same": sorted(event) == sorted(counted),
            "event_changes": len(event),
            "count_changes": len(counted),
            "first": sorted(event)[:3],
        }
        print(f"check {scenario}: event {len(event)} count {len(counted)} same={out[scenario]['same']}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--part",
        choices=("all", "check", "evalues", "null", "boundary", "dp", "dp10y", "drops", "cal", "limits", "noise"),
        default="all",
    )
    ap.add_argument("--days", type=float, default=90.0, help="null stream length per seed (default 90)")
    ap.add_argument("--null-seeds", type=int, default=20)
    ap.add_argument("--scenarios", nargs="*", help="null scenarios to run (default: all four)")
    ap.add_argument("--null-eval", type=float, default=120.0, help="evaluation interval of null streams (default 120)")
    ap.add_argument("--seeds", type=int, default=20, help="seeds for the delay parts (default 20)")
    ap.add_argument("--eval", type=float, default=30.0, help="evaluation interval, simulated s (default 30)")
    ap.add_argument("--noise-eval", type=float, default=60.0, help="event-level noise runs (--part noise)")
    ap.add_argument("--noise-seeds", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smoke: 2-day null streams, 3 seeds")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    if args.quick:
        args.days, args.seeds, args.null_seeds = 2.0, 3, 3
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    setup = {
        "command": "python benchmarks/detection.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rate_per_s": RATE,
        "drift_at_s": DRIFT_AT,
        "policy": AlertsConfig().policy.model_dump(by_alias=True, mode="json"),
        "budget": AlertsConfig().budget.model_dump(mode="json"),
        "count_level": "benchmarks/detection_counts.py: cells (race x sex) estimated from 200k simulated decisions;"
        " per evaluation Poisson decisions, binomial favorable and labels (fixed 600 s delay, 5 % never);"
        " baselines = the population values (a stated constant)",
        "event_level": "simulator -> engine -> snapshot -> AlertLoop (rollback via a flagd file), baseline learned"
        " from the first simulated hour",
        "fixed_sample_policy": "results/detection_fixed_sample.json (today's policy, same seeds and simulator)",
    }
    result["setup"] = setup

    def saver(key: str):
        """Write the file after every run: a killed run still leaves its finished parts."""

        def save(part: dict) -> None:
            result[key] = part if key == "setup" else {**part, "setup": setup}
            out_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = out_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
            tmp.replace(out_path)

        return save

    seeds = list(range(1, args.seeds + 1))
    t0 = time.perf_counter()
    if args.part in ("all", "check"):
        saver("check")(part_check())
    if args.part in ("all", "evalues"):
        saver("evalues")(part_evalues())
    if args.part in ("all", "dp"):
        save = saver("dp_drop")
        save(part_delay("dp-drop", seeds, args.eval, 3600.0, 600.0, save))
    if args.part in ("all", "dp10y"):
        save = saver("dp_drop_10y")
        ten = {"budget": {"tier1": "300d", "tier2": "3650d", "tier3": "3650d"}}
        save(part_delay("dp-drop", seeds, args.eval, 3600.0, 600.0, save, overrides=ten))
    if args.part in ("all", "cal"):
        save = saver("calibration_drift")
        save(part_delay("calibration-drift", seeds, args.eval, 2 * 3600.0, DELAY.median_s + 1800.0, save))
    if args.part in ("all", "drops"):
        saver("count_drops")(
            {
                "di_0.60": part_count_drop(args.seeds, 0.6, None, args.eval),
                "di_0.75": part_count_drop(args.seeds, 0.75, None, args.eval),
                "di_0.60_10y": part_count_drop(args.seeds, 0.6, {"tier3": "3650d"}, args.eval),
                "di_0.75_10y": part_count_drop(args.seeds, 0.75, {"tier3": "3650d"}, args.eval),
            }
        )
    if args.part in ("all", "limits"):  # after "cal": compares with its delays
        saver("limits")(part_limits(args.seeds, args.eval, result.get("calibration_drift", {}).get("ours")))
    if args.part in ("all", "boundary"):
        save = saver("boundary")
        save(part_boundary(args.null_seeds, min(args.days, 30.0), args.null_eval, save))
    if args.part in ("all", "null"):
        save = saver("null")
        save(part_null(args.null_seeds, args.days, args.null_eval, save, args.scenarios))
    if args.part == "noise":  # event level, slow: the fixed-sample benchmark's noise part
        save = saver("noise_event_level")
        save(part_noise(args.days, list(range(101, 101 + args.noise_seeds)), args.noise_eval, save))
    result.setdefault("runs_cpu_s", {})[args.part] = round(time.perf_counter() - t0, 1)
    saver("setup")(setup)
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
