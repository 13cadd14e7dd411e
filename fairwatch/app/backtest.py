"""``fairwatch backtest``: the alert policy over history, in event time, with actions dry-run.

The decisions (and outcomes) of JSONL files go through the same engine and the same
:class:`~fairwatch.alerts.loop.AlertLoop` the daemon runs, evaluated every
``evaluation_interval`` of *event* time: the evaluation at ``T`` (a multiple of the
interval since the epoch) sees every line with ``ts ≤ T`` that comes before the first
later line in its file — a line that arrives late in the file counts when it arrives,
as it would live. Gaps in the history are skipped once nothing can change any more
(``for + clear_for`` evaluations without new lines: the windows follow event time).

Actions are dry-run: notifications go nowhere, the pipeline is only recorded, and every
model's rollback is simulated (a flag file in a temporary directory, ``dry_run``);
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
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from fairwatch.alerts.audit import MemoryAuditLog
from fairwatch.alerts.baseline import BaselineLearner
from fairwatch.alerts.config import AlertsConfig, ModelFlag
from fairwatch.alerts.loop import AlertLoop
from fairwatch.alerts.notify import Notifier
from fairwatch.app.config import Config
from fairwatch.monitor.engine import Engine
from fairwatch.monitor.replay import _outcome_time as _line_time
from fairwatch.monitor.replay import _OutcomeFeed
from fairwatch.streaming.batch import stamps_column
from fairwatch.streaming.files import DeadLetterFile, LineMeta, read_jsonl_batches

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


class _ModelName(msgspec.Struct):
    """Only the ``model`` of an event (msgspec skips the other fields in C)."""

    model: str | None = None


_MODEL_NAME = msgspec.json.Decoder(_ModelName).decode


def _model_of(line: bytes) -> str | None:
    try:
        return _MODEL_NAME(line).model
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _models(path: Path) -> list[str]:
    """Model names in a decisions file, in order of first appearance: each line's top-level
    ``model`` read by msgspec (the rest of the line skipped in C); unreadable lines are skipped
    (the engine rejects them with their reason when they are processed)."""
    found: dict[str | None, None] = {}
    for lines, _, _ in read_jsonl_batches(path, 100_000):
        try:
            names = map(attrgetter("model"), list(map(_MODEL_NAME, lines)))
        except (msgspec.DecodeError, msgspec.ValidationError):
            names = map(_model_of, lines)
        found.update(dict.fromkeys(names))
    found.pop(None, None)
    return list(found)


class _Stamp(msgspec.Struct):
    """Only the ``ts`` of an event (msgspec skips the other fields in C)."""

    ts: str | float | None = None


_STAMP = msgspec.json.Decoder(_Stamp).decode


def _line_times(lines: list[bytes]) -> list[float] | np.ndarray:
    """Event times of decision lines, vectorised for the usual case (every line an object
    with an RFC 3339 or epoch ``ts`` in range); line by line otherwise, where an unreadable
    line sorts first (the engine rejects it with its reason when it is processed)."""
    try:
        stamps = list(map(attrgetter("ts"), map(_STAMP, lines)))  # C loops, no bytecode per line
    except (msgspec.DecodeError, msgspec.ValidationError):
        return [_line_time(x) for x in lines]
    ts = stamps_column(stamps) if stamps else None
    return ts if ts is not None else [_line_time(x) for x in lines]


class _DecisionFeed:
    """Decision lines in file order with their event times, handed out up to a time.

    The engine validates the lines (fast path) when they are processed; here only their
    time is read, to cut the history at each evaluation."""

    def __init__(self, path: Path, batch_size: int):
        self.batches = read_jsonl_batches(path, batch_size)
        self.lines: list[bytes] = []
        self.meta = LineMeta(())
        self.times = np.zeros(0)
        self.pos = 0
        self.done = 0

    def _refill(self) -> bool:
        nxt = next(self.batches, None)
        if nxt is None:
            return False
        self.lines, self.meta, self.done = nxt
        self.times = np.asarray(_line_times(self.lines), np.float64)
        self.pos = 0
        return True

    def until(self, t: float) -> tuple[list[bytes], LineMeta]:
        """Lines with time ≤ ``t`` (the file is expected in time order)."""
        out: list[bytes] = []
        meta: list[LineMeta] = []
        while True:
            if self.pos >= len(self.lines) and not self._refill():
                break
            later = np.flatnonzero(self.times[self.pos :] > t)  # the prefix up to the first later line
            j = self.pos + int(later[0]) if len(later) else len(self.lines)
            out.extend(self.lines[self.pos : j])
            meta.append(self.meta[self.pos : j])
            self.pos = j
            if j < len(self.lines):
                break
        return out, LineMeta.concat(meta)


def _next_time(feed: _DecisionFeed | _OutcomeFeed) -> float | None:
    """Event time of the next unread line of a feed (``None`` when it is exhausted)."""
    if feed.pos >= len(feed.times) and not feed._refill():
        return None
    return float(feed.times[feed.pos])


def _loop(config: Config, models: list[str], state: Path) -> AlertLoop:
    """The daemon's alert loop with every model's rollback simulated and nothing external."""
    base = config.alerts
    flags = {
        f"backtest-{m}": {
            "state": "ENABLED",
            "variants": {"served": "served", _BASELINE_FLAG: _BASELINE_FLAG},
            "defaultVariant": "served",
        }
        for m in models
    }
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


def backtest(
    decisions: str | Path,
    *,
    outcomes: str | Path | None = None,
    config: Config | None = None,
    learn_baseline: float | None = None,
    out: str | Path,
    batch_size: int = 10_000,
    progress: bool = True,
) -> BacktestResult:
    """Run the policy over history; writes ``out/incidents.jsonl`` and ``out/summary.json``.

    ``learn_baseline`` (seconds): each model's baseline is learned from its first
    ``learn_baseline`` seconds of event time (where the config approves none).
    """
    config = config or Config()
    dpath = Path(decisions)
    opath = Path(outcomes) if outcomes else None
    for p, field in ((dpath, "--file"), (opath, "--outcomes")):
        if p is not None and not p.is_file():
            raise FileNotFoundError(f"{field}: no such file {str(p)!r}")
    if learn_baseline is not None and not (math.isfinite(learn_baseline) and learn_baseline > 0):
        raise ValueError(f"--learn-baseline: must be a positive duration, got {learn_baseline!r}")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    interval = float(config.alerts.evaluation_interval or config.evaluation_interval)
    models = _models(dpath)
    engine = Engine(config.engine_settings())
    dl = DeadLetterFile(out_dir / "deadletter.jsonl", source=str(dpath))
    dfeed, ofeed = _DecisionFeed(dpath, batch_size), _OutcomeFeed(opath, batch_size)
    total = dpath.stat().st_size + (opath.stat().st_size if opath else 0)
    n_dec = n_out = rejected = evaluations = 0
    incidents_path = out_dir / "incidents.jsonl"
    raises: Counter[str] = Counter()
    first_raise: dict[str, str | None] = {"1": None, "2": None, "3": None}
    rollbacks: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="fairwatch-backtest-") as state,
        open(incidents_path, "wb") as inc_fh,
        Progress(
            TextColumn("[bold]backtest[/]"),
            BarColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            disable=not progress,
            transient=True,
        ) as bar,
    ):
        loop = _loop(config, models, Path(state))
        task = bar.add_task("backtest", total=total)
        first = [t for t in (_next_time(dfeed), _next_time(ofeed)) if t is not None and math.isfinite(t)]
        t_eval = math.ceil(min(first) / interval) * interval if first else None
        seen_models: set[str] = set()
        # without new lines the engine's windows stand still (they follow event time), so after
        # for + clear_for empty evaluations every state machine is stationary: a gap is skipped
        pol = config.alerts.policy
        settle, empty = pol.for_ + pol.clear_for + 1, 0
        while t_eval is not None:
            dec, dmeta = dfeed.until(t_eval)
            outs, orej = ofeed.until(t_eval)
            n_dec += len(dec)
            n_out += len(outs) + len(orej)
            rej = engine.process(decisions=dec, decision_meta=dmeta)
            engine.apply_outcomes(outs, rejections=orej)
            rej += orej
            rejected += len(rej)
            dl.write(rej)
            for m, st in engine.models.items():
                if m not in seen_models and st.max_ts > -math.inf:
                    seen_models.add(m)
                    if learn_baseline is not None and not loop.baselines.values(m):
                        start = st.max_ts
                        loop.learners[m] = BaselineLearner(
                            start=start, end=start + learn_baseline, window=loop._longest_window()
                        )
            before = len(loop.changes)
            acted = {i["id"]: len(i["actions"]) for i in loop.incidents()}
            loop.evaluate(engine.snapshot(now=t_eval), engine)
            evaluations += 1
            new_actions = {
                (i["model"], i["metric"], i["attribute"]): [a["action"] for a in i["actions"][acted.get(i["id"], 0) :]]
                for i in loop.incidents()
            }
            for c in loop.changes[before:]:
                acts = new_actions.pop((c.model, c.metric, c.attribute), [])
                acts = [a for a in acts if a in ("notify", "page", "pipeline", "rollback", "escalate")]
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
                    rollbacks.append(
                        {"at": row["at"], "model": c.model, "from_version": served[0][0] if served else None}
                    )
            bar.update(task, completed=min(total, dfeed.done + ofeed.done))
            empty = 0 if (dec or len(outs) or orej) else empty + 1
            nxt = [t for t in (_next_time(dfeed), _next_time(ofeed)) if t is not None]
            if not nxt:
                break
            t_eval += interval
            if empty > settle:  # nothing can change until the next line: skip the gap
                t_eval = max(t_eval, math.ceil(min(nxt) / interval) * interval)
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
        "models": models,
        "evidence": config.alerts.policy.evidence,
        "budget_s": config.alerts.budget.model_dump(),
    }
    summary_path = out_dir / "summary.json"
    summary_path.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return BacktestResult(summary, incidents_path, summary_path, dl.path if dl.count else None)
