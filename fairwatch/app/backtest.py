"""``fairwatch backtest``: the alert policy over history, in event time, with actions dry-run.

The decisions (and outcomes) of JSONL files go through the same engine and the same
:class:`~fairwatch.alerts.loop.AlertLoop` the daemon runs, evaluated every
``evaluation_interval`` of *event* time: the evaluation at ``T`` (a multiple of the
interval since the epoch) sees every line with ``ts ≤ T`` that comes before the first
later line in its file — a line that arrives late in the file counts when it arrives,
as it would live. Gaps in the history are skipped once nothing can change any more
(``for + clear_for`` evaluations without new lines: the windows follow event time).

Each decision line is decoded once, by the engine's fast path: its time cuts the history,
its fields are counted as they are. Actions are dry-run: notifications go nowhere, the
pipeline is only recorded, and every model's rollback is simulated from its first valid
decision on (a flag file in a temporary directory, ``dry_run``);
nothing external is called. Outputs in ``DIR``: ``incidents.jsonl`` (one object per tier
change), ``summary.json``, and ``deadletter.jsonl`` for rejected lines (counted, never
stopping the run, as in replay).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from fairwatch.alerts.audit import MemoryAuditLog
from fairwatch.alerts.baseline import BaselineLearner
from fairwatch.alerts.config import AlertsConfig, ModelFlag
from fairwatch.alerts.loop import AlertLoop
from fairwatch.alerts.notify import Notifier
from fairwatch.app.config import Config
from fairwatch.monitor.decoder import start as start_decoder
from fairwatch.monitor.engine import DECISIONS_TOPIC, OUTCOMES_TOPIC, Engine
from fairwatch.monitor.replay import EventFeed, closing_if, file_progress
from fairwatch.streaming.batch import decode_decision_batch
from fairwatch.streaming.files import DeadLetterFile, check_input

__all__ = ["BacktestResult", "backtest", "rfc3339"]

_BASELINE_FLAG = "approved-baseline"


def rfc3339(t: float) -> str:
    """``2026-11-01T00:00:30.250Z`` (UTC, milliseconds).

    >>> rfc3339(1793491230.25)
    '2026-11-01T00:00:30.250Z'
    """
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class BacktestResult:
    summary: dict[str, Any]
    incidents: Path
    summary_path: Path
    dead_letter: Path | None


def _served_flag(model: str) -> dict[str, Any]:
    """A model's simulated flag: the version it serves, or the approved baseline once rolled back."""
    return {
        "state": "ENABLED",
        "variants": {"served": "served", _BASELINE_FLAG: _BASELINE_FLAG},
        "defaultVariant": "served",
    }


def _add_models(loop: AlertLoop, models: list[str], flags: Path) -> None:
    """Simulate the rollback of models seen for the first time: a flag each in the flag file,
    and in the rollback configuration the loop's rollback manager reads."""
    doc = json.loads(flags.read_text())
    for m in models:
        doc["flags"][f"backtest-{m}"] = _served_flag(m)
        loop.config.rollback.models[m] = ModelFlag(flag=f"backtest-{m}", rollback_to=_BASELINE_FLAG)
    flags.write_text(json.dumps(doc))


def _loop(config: Config, models: list[str], state: Path) -> AlertLoop:
    """The daemon's alert loop with every model's rollback simulated and nothing external
    (``models``: at least one; more join with :func:`_add_models`)."""
    base = config.alerts
    flags = {f"backtest-{m}": _served_flag(m) for m in models}
    (state / "flags.json").write_text(json.dumps({"flags": flags}))
    rollback = base.rollback.model_copy(
        update={
            "dry_run": True,
            "flag_store": {"kind": "flagd-file", "path": str(state / "flags.json"), "fsync": False},
            "models": {m: ModelFlag(flag=f"backtest-{m}", rollback_to=_BASELINE_FLAG) for m in models},
            "state_path": None,
        }
    )
    cfg = AlertsConfig.model_validate(
        {
            **base.model_dump(by_alias=True),
            "rollback": rollback.model_dump(),
            "notify": {},  # no Alertmanager, no webhook: notifications are only recorded
            "baseline_path": str(state / "baselines.json"),
            "audit_path": str(state / "audit.jsonl"),
            "evaluation_interval": config.alerts.evaluation_interval or config.evaluation_interval,
        }
    )
    pipeline_runs: list[dict] = []

    def enqueue(incident: dict) -> str:
        pipeline_runs.append(incident)
        return f"dry-run-{len(pipeline_runs)}"

    return AlertLoop(
        cfg,
        audit=MemoryAuditLog(),
        enqueue=enqueue,
        notifier=Notifier(cfg.notify),
        confidence=config.confidence_level,
        reference_groups=dict(config.reference_groups),
    )


def _evaluate(
    loop: AlertLoop, engine: Engine, t_eval: float, learn_baseline, seen: set[str], counters_only: bool, record
) -> None:
    """One evaluation at event time ``t_eval``: baselines to learn for new models, the
    judgement, and ``record(change, actions)`` for each tier change."""
    for m, st in engine.models.items():
        if m not in seen and st.max_ts > -math.inf:
            seen.add(m)
            if learn_baseline is not None and not loop.baselines.values(m):
                start = st.max_ts
                loop.learners[m] = BaselineLearner(
                    start=start, end=start + learn_baseline, window=loop._longest_window()
                )
    before = len(loop.changes)
    acted = {i["id"]: len(i["actions"]) for i in loop.incidents()}
    # The sequential policy reads only the counters; the window statistics are for
    # exposition (nothing is exported here) and for a baseline being learned.
    loop.judge(engine.snapshot(now=t_eval, counters_only=counters_only and not loop.learners), engine)
    new_actions = {
        (i["model"], i["metric"], i["attribute"]): [a["action"] for a in i["actions"][acted.get(i["id"], 0) :]]
        for i in loop.incidents()
    }
    for c in loop.changes[before:]:
        acts = new_actions.pop((c.model, c.metric, c.attribute), [])
        record(c, [a for a in acts if a in ("notify", "page", "pipeline", "rollback", "escalate")])


def backtest(
    decisions: str | Path,
    *,
    outcomes: str | Path | None = None,
    config: Config | None = None,
    learn_baseline: float | None = None,
    out: str | Path,
    batch_size: int = 10_000,
    progress: bool = True,
    parallel: bool | None = None,
) -> BacktestResult:
    """Run the policy over history; writes ``out/incidents.jsonl`` and ``out/summary.json``.

    ``parallel``: decode the decisions and the outcomes in child processes, as ``replay`` does
    (default: where two cores are usable).

    ``learn_baseline`` (seconds): each model's baseline is learned from its first
    ``learn_baseline`` seconds of event time (where the config approves none).
    """
    config = config or Config()
    dpath = check_input(decisions, "--file")
    opath = check_input(outcomes, "--outcomes") if outcomes else None
    if learn_baseline is not None and not (math.isfinite(learn_baseline) and learn_baseline > 0):
        raise ValueError(f"--learn-baseline: must be a positive duration, got {learn_baseline!r}")
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out: cannot make the folder {str(out_dir)!r} ({exc.strerror or exc})") from None
    interval = float(config.alerts.evaluation_interval or config.evaluation_interval)
    engine = Engine(config.engine_settings())
    dl = DeadLetterFile(out_dir / "deadletter.jsonl", source=str(dpath))
    # each line decoded once, by the engine's fast path: its time cuts the history, its fields
    # are counted as they are (with the engine's attribute-set registry)
    # (in a child process where two cores are usable, started before the progress bar's thread)
    decode = partial(decode_decision_batch, registry=engine.attribute_sets)
    decoder = start_decoder(dpath, batch_size, engine.attribute_sets, DECISIONS_TOPIC, parallel)
    odecoder = start_decoder(opath, batch_size, None, OUTCOMES_TOPIC, parallel)
    dfeed = EventFeed(dpath, batch_size, decode, DECISIONS_TOPIC, decoded=decoder)
    ofeed = EventFeed(opath, batch_size, decoded=odecoder)
    total = dpath.stat().st_size + (opath.stat().st_size if opath else 0)
    n_dec = n_out = rejected = evaluations = 0
    incidents_path = out_dir / "incidents.jsonl"
    raises: Counter[str] = Counter()
    first_raise: dict[str, str | None] = {"1": None, "2": None, "3": None}
    rollbacks: list[dict[str, Any]] = []
    with (
        closing_if(decoder),
        closing_if(odecoder),
        tempfile.TemporaryDirectory(prefix="fairwatch-backtest-") as state,
        open(incidents_path, "wb") as inc_fh,
        file_progress("backtest", progress) as bar,
    ):
        # the loop starts with the first model; models that appear later join it (_add_models)
        loop: AlertLoop | None = None
        models: list[str] = []
        task = bar.add_task("backtest", total=total)
        first = [t for t in (dfeed.next_time(), ofeed.next_time()) if t is not None and math.isfinite(t)]
        t_eval = math.ceil(min(first) / interval) * interval if first else None
        seen_models: set[str] = set()
        # without new lines the engine's windows stand still (they follow event time), so after
        # for + clear_for empty evaluations every state machine is stationary: a gap is skipped
        pol = config.alerts.policy
        settle, empty = pol.for_ + pol.clear_for + 1, 0
        counters_only = pol.evidence == "sequential"

        def record(c, acts: list[str]) -> None:
            """One tier change: a line of incidents.jsonl, the raises and the simulated rollbacks."""
            row = {
                "at": rfc3339(c.at),
                "model": c.model,
                "metric": c.metric,
                "attribute": c.attribute,
                "group": c.group,
                "window": c.window,
                "previous": c.previous,
                "tier": c.tier,
                "actions": acts,
                "evidence": {
                    "statistic": c.evidence,
                    "threshold": c.threshold,
                    "value": c.value,
                    "ci": list(c.ci) if c.ci else None,
                    "reason": c.reason,
                },
            }
            inc_fh.write(orjson.dumps(row) + b"\n")
            if c.tier > max(c.previous, 0) and c.tier >= 1:
                raises[str(c.tier)] += 1
                first_raise[str(c.tier)] = first_raise[str(c.tier)] or row["at"]
            if "rollback" in acts:
                served = engine.models[c.model].versions.most_common(1) if c.model in engine.models else []
                rollbacks.append({"at": row["at"], "model": c.model, "from_version": served[0][0] if served else None})

        while t_eval is not None:
            rej: list = []
            found: dict[str, None] = {}
            for cols, drej in dfeed.parts(t_eval):  # each part counted before the next batch is decoded
                engine.apply_decisions(cols, rejections=drej)
                n_dec += len(cols) + len(drej)
                found.update(dict.fromkeys(cols.models))
                rej += drej
            outs, orej = ofeed.until(t_eval)
            n_out += len(outs) + len(orej)
            engine.apply_outcomes(outs, rejections=orej)
            arrived = bool(rej or found or len(outs) or orej)
            rej += orej
            rejected += len(rej)
            dl.write(rej)
            new = [m for m in found if m not in models]
            if new:  # a model's first decisions: its rollback is simulated from now on
                if loop is None:
                    loop = _loop(config, new, Path(state))
                else:
                    _add_models(loop, new, Path(state) / "flags.json")
                models += new
            if loop is not None:  # before the first decision there is nothing to judge
                _evaluate(loop, engine, t_eval, learn_baseline, seen_models, counters_only, record)
            evaluations += 1
            bar.update(task, completed=min(total, dfeed.done + ofeed.done))
            empty = 0 if arrived else empty + 1
            nxt = [t for t in (dfeed.next_time(), ofeed.next_time()) if t is not None]
            if not nxt:
                break
            t_eval += interval
            if empty > settle:  # nothing can change until the next line: skip the gap
                t_eval = max(t_eval, math.ceil(min(nxt) / interval) * interval)
        # --learn-baseline longer than a model's history: no baseline, so the degradation rules
        # (relative to it) judged nothing for that model; said, not left to be read as "no alert"
        unfinished = [
            {"model": m, "learning_until": rfc3339(lr.end), "events_end": rfc3339(engine.models[m].max_ts)}
            for m, lr in sorted(loop.learners.items())
        ] if loop is not None else []  # fmt: skip
        if loop is not None:
            loop.close()
    dl.close()
    summary = {
        "decisions": n_dec,
        "outcomes": n_out,
        "rejected": rejected,
        "evaluations": evaluations,
        "evaluation_interval_s": interval,
        "tier_raises": {k: raises.get(k, 0) for k in ("1", "2", "3")},
        "rollbacks": rollbacks,
        "first_raise_at": first_raise,
        "baseline_unfinished": unfinished,
        "models": models,
        "evidence": config.alerts.policy.evidence,
        "budget_s": config.alerts.budget.model_dump(),
    }
    summary_path = out_dir / "summary.json"
    summary_path.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return BacktestResult(summary, incidents_path, summary_path, dl.path if dl.count else None)
