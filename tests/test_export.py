"""The monthly audit export: exact (≡ replay to 1e-12), complete (manifest, reconciliation), renders in Chromium."""

from __future__ import annotations

import csv
import functools
import math
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import fairwatch.monitor.replay as replay_mod
import numpy as np
import orjson
import pandas as pd
import pytest
from fairwatch.monitor.audit import AuditLog
from fairwatch.monitor.daily import DailyStats, DailyStore
from fairwatch.monitor.engine import Engine, EngineSettings
from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay, write_jsonl

from fairwatch.app.export import MONTH, NO_KAFKA, ExportSettings, export_month, month_metrics, verify_export

START = 1795564800.0  # 2026-11-25T00:00:00Z: six November days, then two of December
MONTH_NAME = "2026-11"
RATE = 0.05  # decisions per simulated second: ≈ 4 300 a day
SETTINGS = EngineSettings(windows=("30d",), buckets=30)  # one bucket per UTC day, the whole of November


def _close(a, b, path=""):
    if isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, path
        assert math.isclose(a, b, rel_tol=0, abs_tol=1e-12), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, tuple | list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """A simulated week across the month end, its per-day statistics, the export, and the reference replay."""
    tmp = tmp_path_factory.mktemp("month")
    sim = LoanSimulator(
        seed=3,
        start=START,
        rate=RATE,
        scenario="dp-drop",
        drift_at=3 * 86400.0,
        delay=OutcomeDelay(median_s=6 * 3600.0, sigma=1.0, never_share=0.05),
    )
    dec, out = tmp / "decisions.jsonl", tmp / "outcomes.jsonl"
    n_dec, n_out = write_jsonl(sim, 8 * 86400.0, dec, out)
    # The daily path: every event (November and December) through replay, with the per-day observer.
    daily = DailyStats(bins=SETTINGS.bins)
    mp = pytest.MonkeyPatch()
    mp.setattr(replay_mod, "Engine", functools.partial(Engine, observer=daily))
    try:
        replay_mod.replay(dec, outcomes=out, settings=EngineSettings(), progress=False)
    finally:
        mp.undo()
    store = DailyStore(tmp / "state.daily.db")
    assert store.apply(daily.take(None))
    log = AuditLog(tmp / "audit.jsonl", clock=lambda: START + 2 * 86400)
    log.append(
        "tier.change",
        model="loan-approval",
        window="24h",
        metric="dp_ratio",
        attribute="race",
        previous=0,
        tier=3,
        at=START + 2 * 86400,
        value=0.6,
        ci=[0.5, 0.7],
        reason="dp_ratio < 0.75",
    )
    log.append("rollback.execute", incident="inc-1", model="loan-approval", flag="loan-model", variant="v2")
    plans = tmp / "runs" / "inc-1-run"
    plans.mkdir(parents=True)
    (plans / "remediation_plan.html").write_text("<html><body>plan</body></html>")
    os.utime(plans / "remediation_plan.html", (START + 3 * 86400, START + 3 * 86400))
    res = export_month(
        MONTH_NAME,
        tmp / "export",
        store=store,
        audit_log=log.path,
        pipeline_dir=tmp / "runs",
        settings=ExportSettings(),
    )
    # The reference: `fairwatch replay` over the month's decisions, one 30-day window = November.
    nov = tmp / "november.jsonl"
    with open(dec, "rb") as src, open(nov, "wb") as dst:
        for line in src:
            if b'"ts":"2026-11-' in line:
                dst.write(line)
    ref = replay_mod.replay(nov, outcomes=out, settings=SETTINGS, progress=False)
    return {
        "tmp": tmp,
        "store": store,
        "result": res,
        "reference": ref,
        "decisions": dec,
        "outcomes": out,
        "n": (n_dec, n_out),
    }


def test_month_from_daily_counts_equals_replay_over_the_month(month):
    months, days = month_metrics(month["store"], MONTH_NAME, ExportSettings())
    ref = {(w.model, w.metrics.attribute): w.metrics for w in month["reference"].snapshot.windows}
    assert set(ref) == set(months) and len(ref) == 3  # race, sex, race,sex
    for key, am in months.items():
        r = ref[key]
        for name in (
            "reference",
            "dp_ratio",
            "dp_ratio_ci",
            "dp_difference",
            "dp_difference_ci",
            "eo_gap",
            "eo_gap_ci",
        ):
            _close(getattr(am, name), getattr(r, name), f"{key}.{name}")
        assert [g.group for g in am.groups] == [g.group for g in r.groups]
        for g, h in zip(am.groups, r.groups, strict=True):
            for name in g.__slots__:
                _close(getattr(g, name), getattr(h, name), f"{key}.{g.group}.{name}")
    # Six November days, each counted on the decision's own UTC day.
    assert sorted({d for d, _, _ in days}) == [f"2026-11-{d}" for d in range(25, 31)]


def test_month_equals_numpy_on_raw_events(month):
    rows = [orjson.loads(x) for x in month["decisions"].read_bytes().splitlines()]
    labels = {o["decision_id"]: o["label"] for o in map(orjson.loads, month["outcomes"].read_bytes().splitlines())}
    df = pd.DataFrame(
        {
            "ts": [r["ts"] for r in rows],
            "race": [r["attributes"]["race"] for r in rows],
            "decision": [r["decision"] for r in rows],
            "label": [labels.get(r["decision_id"], -1) for r in rows],
            "score": [r["score"] for r in rows],
        }
    )
    df = df[df.ts.str.startswith("2026-11-")]
    months, _ = month_metrics(month["store"], MONTH_NAME, ExportSettings())
    am = months[("loan-approval", "race")]
    for g in am.groups:
        sub = df[df.race == g.group]
        assert g.decisions == len(sub)
        assert g.selection_rate == sub.decision.sum() / len(sub)  # exact: integer counts
        lab = sub[sub.label >= 0]
        assert g.labeled == len(lab)
        pos = lab[lab.label == 1]
        assert g.true_positive_rate == pos.decision.sum() / len(pos)
        b = np.minimum((lab.score.to_numpy() * 10).astype(int), 9)
        ece = sum(abs(lab.label.to_numpy()[b == k].sum() - lab.score.to_numpy()[b == k].sum()) for k in range(10))
        assert math.isclose(g.expected_calibration_error, ece / len(lab), abs_tol=1e-12)
    sr = {g.group: g.selection_rate for g in am.groups if g.sufficient}
    assert math.isclose(am.dp_ratio, min(sr.values()) / max(sr.values()), abs_tol=1e-15)


def test_export_files_csv_json_and_manifest(month):
    out = month["result"].out
    assert verify_export(out) == []
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {
        "report.html",
        "report.json",
        "metrics.csv",
        "manifest.sha256",
        "plots/incidents.png",
        "plans/inc-1-run/remediation_plan.html",
    } <= names
    assert sum(n.startswith("plots/loan-approval__") for n in names) == 3
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    sr = [r for r in rows if r["metric"] == "selection_rate" and r["attribute"] == "race"]
    month_sr = [r for r in sr if r["period"] == MONTH]
    day_sr = [r for r in sr if r["period"] != MONTH]
    for r in month_sr:  # the month's sample size is the sum of its days'; CIs are given
        assert int(r["decisions"]) == sum(int(d["decisions"]) for d in day_sr if d["group"] == r["group"])
        assert float(r["ci_low"]) < float(r["value"]) < float(r["ci_high"]) and r["ci_method"] == "wilson"
    assert {r["metric"] for r in rows} >= {
        "demographic_parity_ratio",
        "equalized_odds_gap",
        "disparate_impact",
        "expected_calibration_error",
        "true_positive_rate",
    }
    doc = orjson.loads((out / "report.json").read_bytes())
    assert doc["audit_log"]["ok"] and doc["audit_log"]["head"]["seq"] == 2
    assert [e["kind"] for e in doc["rollbacks"]] == ["rollback.execute"]
    assert doc["reconciliation"] == {
        "pass": None,
        "by": "event day",
        "partitions": [],
        "decisions": None,
    }  # replay: no Kafka
    # Tampering with any exported file is caught by the manifest.
    (out / "metrics.csv").write_text("period\n")
    assert verify_export(out) == ["metrics.csv: sha256 differs"]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_renders_in_headless_chromium_with_every_image(month, tmp_path):
    exe = _chromium()
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (.ci/install.d/50-chromium.sh installs it)")
        pytest.skip("chromium not installed: apt-get install chromium")
    src = month["tmp"] / "export"
    report = tmp_path / "export"
    shutil.copytree(src, report)
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--allow-file-access-from-files",
        "--virtual-time-budget=10000",
    ]
    url = (report / "report.html").as_uri()
    shot = tmp_path / "report.png"
    for args in (["--dump-dom"], [f"--screenshot={shot}", "--window-size=1280,4000"]):
        prof = tmp_path / f"profile-{len(args)}"
        proc = subprocess.run(
            [exe, *flags, f"--user-data-dir={prof}", *args, url], capture_output=True, timeout=120, text=True
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        if args == ["--dump-dom"]:
            dom = proc.stdout
    n_img = dom.count("<img ")
    assert n_img == 4  # three attributes + the incident timeline
    # The report's own load-time check: every <img> is complete with naturalWidth > 0.
    assert f"all {n_img} images loaded" in dom, dom[dom.find("image-check") - 100 :][:400]
    assert shot.stat().st_size > 10_000


def _batch(p, dec, dmeta, nxt):
    from fairwatch.streaming.kafka import PartitionBatch

    assert {part for part, _ in dmeta} <= {p}
    return PartitionBatch(partition=p, decisions=dec, decision_offsets=[off for _, off in dmeta], next_offsets=nxt)


class _DeadLetters:
    def __init__(self):
        self.sent = []

    def send(self, rejected):
        self.sent += rejected


def _daemon(tmp: Path):
    from fairwatch.app.config import load_config
    from fairwatch.app.daemon import Daemon

    cfg = load_config(env={"FAIRWATCH_STATE__URL": f"sqlite:///{tmp}/state.db"})
    d = Daemon(cfg)
    d.dead_letters = _DeadLetters()
    return d


def test_daemon_counts_every_offset_and_a_crash_between_checkpoint_and_daily_apply_is_redone(tmp_path, monkeypatch):
    sim = LoanSimulator(seed=5, start=START, rate=1.0)
    events = [e.value for e in sim.advance(600.0) if e.topic == "fairness.decisions"]
    values = events[:200] + [b"{", b"[]"] + events[:3] + events[200:]  # poison and duplicates
    topic = "fairness.decisions"
    import time
    import types

    clock = types.SimpleNamespace(time=lambda: START + 900.0, monotonic=time.monotonic)  # the source's clock
    monkeypatch.setattr("fairwatch.app.daemon.time", clock)
    d = _daemon(tmp_path)
    d.on_assign([0])
    first = 1000
    for i in range(0, len(values), 50):  # four polls
        chunk = values[i : i + 50]
        meta = [(0, first + i + j) for j in range(len(chunk))]
        d._apply({0: _batch(0, chunk, meta, {f"{topic}:0": first + i + len(chunk)})})
    d.checkpoint()
    rec = d.daily_store.reconciliation(MONTH_NAME)[(topic, 0)]
    assert (rec["first"], rec["last"]) == (first, first + len(values) - 1)
    assert rec["events"] == Counter(
        {
            ("ok", ""): len(events),
            ("invalid", "malformed_json"): 1,
            ("invalid", "not_an_object"): 1,
            ("duplicate", "same"): 3,
        }
    )
    assert sum(rec["events"].values()) == rec["last"] - rec["first"] + 1
    assert sum(rec["dead_lettered"].values()) == 2
    counted = sum(c.n for (_, _, col, _), c in d.daily_store.counts(MONTH_NAME).items() if col == "race")
    assert counted == len(events)
    # More events; the checkpoint is saved but the process dies before the daily store is updated.
    more = [e.value for e in sim.advance(300.0) if e.topic == "fairness.decisions"]
    off = first + len(values)
    d._apply({0: _batch(0, more, [(0, off + j) for j in range(len(more))], {f"{topic}:0": off + len(more)})})

    def crash(record):
        raise OSError("disk gone")

    applied = d.daily_store.apply
    monkeypatch.setattr(d.daily_store, "apply", crash)
    with pytest.raises(OSError):
        d.checkpoint()
    monkeypatch.setattr(d.daily_store, "apply", applied)
    d.store.close()
    d.daily_store.close()
    for _ in range(2):  # restart: the redo record is applied once, and never twice
        d2 = _daemon(tmp_path)
        d2.on_assign([0])
        counted = sum(c.n for (_, _, col, _), c in d2.daily_store.counts(MONTH_NAME).items() if col == "race")
        assert counted == len(events) + len(more)
        rec = d2.daily_store.reconciliation(MONTH_NAME)[(topic, 0)]
        assert sum(rec["events"].values()) == rec["last"] - rec["first"] + 1 == len(values) + len(more)
        d2.store.close()
        d2.daily_store.close()


def test_cli_export_and_refusal_to_overwrite(month, tmp_path, capsys):
    from fairwatch.app.cli import main

    db = month["tmp"] / "state.daily.db"
    out = tmp_path / "cli-export"
    argv = [
        "audit",
        "export",
        "--month",
        MONTH_NAME,
        "--out",
        str(out),
        "--daily-db",
        str(db),
        "--log",
        str(month["tmp"] / "audit.jsonl"),
        "--no-progress",
    ]
    assert main(argv) == 0
    assert f"reconciliation {NO_KAFKA};" in capsys.readouterr().out
    assert verify_export(out) == []
    assert main(argv) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["audit", "export", "--month", "2026-13", "--out", str(tmp_path / "x"), "--daily-db", str(db)])
    assert exc.value.code == 2


def test_a_november_consumed_in_december_reconciles_every_november_decision(tmp_path, monkeypatch):
    """Reconciliation by event day: a backfill of November (and a day of December) consumed on
    December 20 reconciles November's decisions against the offsets that carried them."""
    import time
    import types

    topic = "fairness.decisions"
    sim = LoanSimulator(seed=11, start=1795910400.0, rate=0.01)  # 2026-11-29T00:00Z: Nov 29, Nov 30, Dec 1
    events = [e.value for e in sim.advance(3 * 86400.0) if e.topic == topic]
    nov = [v for v in events if b'"ts":"2026-11-' in v]
    assert 1000 < len(nov) < len(events)
    parts: dict[int, list[bytes]] = {0: [], 1: []}  # a decision keeps its partition (keyed by id)
    for i, v in enumerate(events):
        parts[i % 2].append(v)
        if i % 701 == 350:  # poison and a duplicate inside November's offsets (and December's)
            parts[i % 2] += [b"{", v]
    values = parts[0] + parts[1]
    clock = types.SimpleNamespace(time=lambda: 1797724800.0, monotonic=time.monotonic)  # 2026-12-20
    monkeypatch.setattr("fairwatch.app.daemon.time", clock)
    d = _daemon(tmp_path)
    d.on_assign([0, 1])
    # two partitions, offsets from 500 and 9000
    base = {0: 500, 1: 9000}
    for p, vals in parts.items():
        for i in range(0, len(vals), 300):
            chunk = vals[i : i + 300]
            meta = [(p, base[p] + i + j) for j in range(len(chunk))]
            d._apply({p: _batch(p, chunk, meta, {f"{topic}:{p}": base[p] + i + len(chunk)})})
    d.checkpoint()
    store = d.daily_store

    res = export_month("2026-11", tmp_path / "nov", store=store, settings=ExportSettings())
    assert res.reconciliation_ok is True
    doc = orjson.loads((tmp_path / "nov" / "report.json").read_bytes())
    rec = doc["reconciliation"]
    assert rec["decisions"]["kafka_ok"] == len(nov) == sum(rec["decisions"]["metrics"].values())
    assert {p["partition"] for p in rec["partitions"]} == {0, 1}
    for p in rec["partitions"]:
        # the poison counts on the day it was consumed (December), inside November's offsets
        assert p["other_days"] > 0 and p["gaps"] == p["overlaps"] == 0
        assert p["events"] == p["offsets"] and p["by_result"]["invalid"] == 0
    page = (tmp_path / "nov" / "report.html").read_text()
    assert "Reconciliation against Kafka offsets — <span class='pass'>PASS</span>" in page
    assert NO_KAFKA not in page and "FAIL" not in page

    dec = export_month("2026-12", tmp_path / "dec", store=store, settings=ExportSettings())
    assert dec.reconciliation_ok is True
    ddoc = orjson.loads((tmp_path / "dec" / "report.json").read_bytes())["reconciliation"]
    assert ddoc["decisions"]["kafka_ok"] == len(events) - len(nov)
    n_poison = sum(1 for v in values if v == b"{")
    assert sum(p["by_result"]["invalid"] for p in ddoc["partitions"]) == n_poison
    assert sum(p["dead_lettered"] for p in ddoc["partitions"]) == n_poison
    assert sum(p["by_result"]["duplicate"] for p in rec["partitions"] + ddoc["partitions"]) == n_poison

    # The same offsets counted a second time (two replicas both applying a partition) fail the month.
    again = DailyStats()
    again.scope = "stray"
    again.count_event_days(topic, 0, [500, 501], np.array([20786, 20786]), Counter({(20786, "ok", ""): 2}))
    assert store.apply(again.take("stray"))
    bad = export_month("2026-11", tmp_path / "nov2", store=store, settings=ExportSettings())
    assert bad.reconciliation_ok is False
    p0 = next(
        p
        for p in orjson.loads((tmp_path / "nov2" / "report.json").read_bytes())["reconciliation"]["partitions"]
        if p["partition"] == 0
    )
    assert p0["overlaps"] == 2 and not p0["pass"]
    page = (tmp_path / "nov2" / "report.html").read_text()
    assert "<span class='fail'>FAIL</span>" in page and "counted exactly once" not in page
    assert "2 offsets counted twice" in page


def _day_metrics(day_count: dict[str, int]):
    from fairwatch.monitor.metrics import attribute_metrics
    from fairwatch.monitor.stats import DEFAULT_BINS, GroupCounts

    def counts(n: int, rate: float) -> GroupCounts:
        c = GroupCounts.empty(DEFAULT_BINS)
        c.decisions[1], c.decisions[0] = int(n * rate), n - int(n * rate)
        return c

    return {
        d: attribute_metrics({"a": counts(n, 0.5), "b": counts(n, 0.4)}, attribute="g", min_decisions=10, min_labeled=5)
        for d, n in day_count.items()
    }


@pytest.mark.parametrize(
    ("month_name", "with_data", "expected"),
    [
        ("2026-11", ["2026-11-30"], ["11-30"]),  # a one-day month: one tick, that day
        ("2026-02", ["2026-02-01", "2026-02-02", "2026-02-05"], ["02-01", "02-02", "02-03", "02-04", "02-05"]),
        ("2026-12", [f"2026-12-{d:02d}" for d in range(1, 32) if d not in (10, 11, 12)], None),
    ],
)
def test_per_day_plots_are_labelled_by_day_for_one_to_31_days_with_gaps(tmp_path, month_name, with_data, expected):
    from fairwatch.monitor.daily import month_days

    from fairwatch.app.export import _plot

    labels = _plot(
        tmp_path / "p.png",
        "m",
        "g",
        month_days(month_name),
        _day_metrics({d: 400 for d in with_data}),
        [dt_ts(with_data[-1]) + 43200.0],
    )
    assert (tmp_path / "p.png").stat().st_size > 5_000
    if expected is not None:
        assert labels == expected
    else:  # 31 days: every other day and the last, all of December, none of another month
        assert labels[0] == "12-01" and labels[-1] == "12-31" and len(labels) == 16
        assert all(lb.startswith("12-") for lb in labels)


def dt_ts(day: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()


def test_the_months_incidents_rollbacks_pipeline_runs_and_plans_are_listed_and_linked(tmp_path):
    import re

    nov = START + 86400  # 2026-11-26
    log = AuditLog(tmp_path / "audit.jsonl", clock=lambda: nov)
    log.append("tier.change", model="m", window="24h", metric="dp_ratio", attribute="race", previous=0, tier=3)
    log.append("action.page", incident="inc-7", model="m", tier=3)
    log.append("pipeline.start", run_id="20261126T000000-inc-7", incident="inc-7", model="m")
    log.append("pipeline.start", run_id="20261126T010000-inc-8", incident="inc-8", model="m")  # its dir is gone
    log.append("rollback.execute", incident="inc-7", model="m", flag="f", variant="v1")
    runs = tmp_path / "runs"
    run = runs / "20261126T000000-inc-7"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"run_id": "20261126T000000-inc-7", "result": "passed", "model": "m"}')
    (run / "remediation_plan.md").write_text("# plan\n")
    old = runs / "20261015T000000-inc-1"  # October's run: not this month's
    old.mkdir()
    (old / "run.json").write_text('{"result": "escalated"}')
    october = START - 40 * 86400
    os.utime(old / "run.json", (october, october))
    store = DailyStore(tmp_path / "empty.db")
    out = tmp_path / "export"
    export_month(MONTH_NAME, out, store=store, audit_log=log.path, pipeline_dir=runs)
    assert verify_export(out) == []
    doc = orjson.loads((out / "report.json").read_bytes())
    by_run = {r["run"]: r for r in doc["pipeline_runs"]}
    assert set(by_run) == {"20261126T000000-inc-7", "20261126T010000-inc-8"}
    assert by_run["20261126T000000-inc-7"] | {"started": None} == {
        "run": "20261126T000000-inc-7",
        "started": None,
        "incident": "inc-7",
        "model": "m",
        "result": "passed",
        "seq": 3,
        "record": "runs/20261126T000000-inc-7/run.json",
        "plan": "plans/20261126T000000-inc-7/remediation_plan.md",
    }
    assert by_run["20261126T010000-inc-8"]["result"] == "no run directory"
    assert doc["remediation_plans"] == [
        {"run": "20261126T000000-inc-7", "href": "plans/20261126T000000-inc-7/remediation_plan.md"}
    ]
    assert [orjson.loads(x)["seq"] for x in (out / "audit/entries.jsonl").read_bytes().splitlines()] == [1, 2, 3, 4, 5]
    assert not [e for e in doc["other_audit_entries"] if e["kind"].startswith("pipeline.")]
    page = (out / "report.html").read_text()
    hrefs = re.findall(r"href='([^']+)'", page)
    ids = set(re.findall(r"id='([^']+)'", page))
    for h in hrefs:  # every link resolves: a file in the bundle or an anchor on the page
        assert (h[1:] in ids) if h.startswith("#") else (out / h).is_file(), h
    # the incident links to its run; the run holds its start entry's anchor and links its record and plan
    assert "#run-20261126T000000-inc-7" in hrefs and {"seq-2", "seq-3", "seq-5"} <= ids
    assert {"runs/20261126T000000-inc-7/run.json", "plans/20261126T000000-inc-7/remediation_plan.md"} <= set(hrefs)
    assert "Pipeline runs: 2" in page and "Remediation plans: 1" in page and "Rollbacks: 1" in page
