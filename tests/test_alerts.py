"""Tier policy: golden state-machine behaviour, evidence, confirmation; notifications never block."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fairwatch.alerts.config import AlertsConfig
from fairwatch.alerts.notify import Notifier
from fairwatch.alerts.policy import Policy
from fairwatch.alerts.tiers import INSUFFICIENT, TierMachine
from fairwatch.monitor.metrics import attribute_metrics
from fairwatch.monitor.snapshot import Snapshot, WindowMetrics
from fairwatch.monitor.stats import GroupCounts


def counts(fav: int, n: int) -> GroupCounts:
    c = GroupCounts.empty()
    c.decisions[:] = [n - fav, fav]
    return c


def snap(t: float, per_window: dict[str, dict[str, tuple[int, int]]]) -> Snapshot:
    """A snapshot with one attribute ``race`` per window: {window: {group: (favorable, n)}}."""
    wms = []
    for window, groups in per_window.items():
        am = attribute_metrics({g: counts(*v) for g, v in groups.items()}, attribute="race", min_decisions=100)
        wms.append(WindowMetrics("m", window, am))
    return Snapshot(t, (), tuple(wms), {"m": t})


def policy(**over) -> Policy:
    pol = {  # the fixed-sample policy (windows, confirmation); the sequential one: tests/test_evidence.py
        "evidence": "ci",
        "for": 2,
        "clear_for": 3,
        "confirm": {"5m": "15m"},
        "rules": {"disparate_impact": {"degradation": "none", "guards": [{"tier": 3, "below": 0.8, "above": 1.25}]}},
    }
    pol.update(over)
    return Policy(AlertsConfig.model_validate({"policy": pol, "baseline_path": "/nonexistent/b.json"}))


FAIR = {"White": (700, 1000), "Black": (665, 1000)}  # DI 0.95
UNFAIR = {"White": (700, 1000), "Black": (400, 1000)}  # DI 0.57, CI well below 0.8
BORDER = {"White": (140, 200), "Black": (108, 200)}  # DI 0.77: point below 0.8, CI upper above


def tiers(p: Policy, window: str = "5m") -> int:
    return p.last[("m", window, "disparate_impact", "race")][0]


def test_machine_golden_sequence():
    m = TierMachine(for_=3, clear_for=2)
    seq = [(0, 0), (3, 3), (3, 3), (3, 3), (3, 3), (0, 3), (0, 0), (0, 0), (1, 1)]
    assert [m.update(r, h) for r, h in seq] == [0, 0, 0, 3, 3, 3, 3, 0, 0]


def test_machine_raises_to_the_level_held_for_all_evaluations():
    m = TierMachine(for_=2, clear_for=2)
    assert [m.update(r, r) for r in (2, 3, 3, 1)] == [0, 2, 3, 3]


def test_machine_insufficient_is_its_own_state_never_ok():
    m = TierMachine(for_=1, clear_for=2)
    assert m.update(None, None) == INSUFFICIENT
    assert m.update(0, 0) == 0
    assert m.update(None, None) == INSUFFICIENT
    m.update(2, 2)
    assert m.update(None, None) == 2  # a raised tier does not vanish with one gap
    assert m.update(None, None) == INSUFFICIENT


def test_tier3_at_evaluation_2_with_confirmation():
    p = policy()
    states = []
    for i in range(4):
        p.evaluate(snap(i, {"5m": UNFAIR, "15m": UNFAIR}))
        states.append(tiers(p))
    assert states == [0, 3, 3, 3]


def test_hysteresis_holds_until_clear_for_evaluations_inside_margin():
    p = policy()
    for i in range(2):
        p.evaluate(snap(i, {"5m": UNFAIR, "15m": UNFAIR}))
    assert tiers(p) == 3
    near = {"White": (700, 1000), "Black": (553, 1000)}  # DI 0.79 + margin 0.02 → still held
    for i in range(5):
        p.evaluate(snap(10 + i, {"5m": near, "15m": near}))
    assert tiers(p) == 3
    got = []
    for i in range(3):
        p.evaluate(snap(20 + i, {"5m": FAIR, "15m": FAIR}))
        got.append(tiers(p))
    assert got == [3, 3, 0]


def test_ci_evidence_needs_the_bound_point_evidence_does_not():
    ci, point = policy(), policy(evidence="point")
    for i in range(3):
        for p in (ci, point):
            p.evaluate(snap(i, {"5m": BORDER, "15m": BORDER}))
    assert tiers(ci) == 0
    assert tiers(point) == 3


def test_short_window_needs_the_longer_window_to_confirm():
    p = policy()
    for i in range(4):
        p.evaluate(snap(i, {"5m": UNFAIR, "15m": FAIR}))  # a blip in the short window
    assert tiers(p) == 0
    changes = []
    for i in range(2):
        changes += p.evaluate(snap(10 + i, {"5m": UNFAIR, "15m": UNFAIR}))
    assert tiers(p) == 3
    assert any(c.window == "5m" and "confirmed by 15m" in c.reason for c in changes)


def test_insufficient_data_is_exported_as_minus_one():
    p = policy()
    small = {"White": (30, 50), "Black": (10, 40)}  # below min_decisions
    p.evaluate(snap(0, {"5m": small, "15m": small}))
    samples = {(s.labels["window"], s.labels["metric"]): s.value for s in p.samples()}
    assert samples[("5m", "disparate_impact")] == -1.0


def test_degradation_against_baseline(tmp_path):
    from fairwatch.alerts.baseline import BaselineStore

    store = BaselineStore(tmp_path / "b.json")
    store.set("m", {"demographic_parity_ratio": {"race": 0.95}}, source="test")
    cfg = AlertsConfig.model_validate({"policy": {"for": 1, "evidence": "point", "confirm": {}}})
    p = Policy(cfg, baselines=store)
    # DP 0.88: 7.4 % below 0.95 → tier 1; DP 0.83: 12.6 % → tier 2 (absolute guard 0.75 not crossed)
    p.evaluate(snap(0, {"1h": {"White": (700, 1000), "Black": (616, 1000)}}))
    assert p.last[("m", "1h", "demographic_parity_ratio", "race")][0] == 1
    p.evaluate(snap(1, {"1h": {"White": (700, 1000), "Black": (581, 1000)}}))
    assert p.last[("m", "1h", "demographic_parity_ratio", "race")][0] == 2


def test_bad_policy_config_is_rejected_with_the_key():
    with pytest.raises(ValueError, match="confirm"):
        AlertsConfig.model_validate({"policy": {"confirm": {"1h": "5m"}}})
    with pytest.raises(ValueError, match="unknown metric"):
        AlertsConfig.model_validate({"policy": {"rules": {"f1": {}}}})


# -- notifications -------------------------------------------------------------------------
class _Recorder(BaseHTTPRequestHandler):
    bodies: list = []
    delay = 0.0

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.delay)
        type(self).bodies.append((self.path, self.headers.get("Content-Type"), json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


def _server(delay: float):
    handler = type("H", (_Recorder,), {"bodies": [], "delay": delay})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, handler


def test_alertmanager_post_body_shape():
    from fairwatch.alerts.config import NotifyConfig
    from fairwatch.alerts.notify import make_alert

    srv, h = _server(0.0)
    try:
        n = Notifier(NotifyConfig(alertmanager_url=f"http://127.0.0.1:{srv.server_port}"))
        n.send(
            make_alert(
                {"model": "m", "metric": "disparate_impact", "attribute": "race", "window": "5m"},
                tier=3,
                summary="s",
                starts_at=1_800_000_000.0,
                generator_url="http://fw/incidents",
            )
        )
        assert n.flush(5)
        n.close()
    finally:
        srv.shutdown()
        srv.server_close()
    path, ctype, body = h.bodies[0]
    assert path == "/api/v2/alerts" and ctype == "application/json"
    assert isinstance(body, list) and set(body[0]) >= {"labels", "annotations", "startsAt", "generatorURL"}
    assert body[0]["labels"]["alertname"] == "FairnessTier3" and body[0]["labels"]["tier"] == "3"
    assert body[0]["startsAt"] == "2027-01-15T08:00:00Z"


def test_hung_notifier_never_slows_evaluation():
    from fairwatch.alerts.actions import Responder
    from fairwatch.alerts.config import NotifyConfig
    from fairwatch.alerts.tiers import TierChange

    srv, _ = _server(30.0)  # answers after 30 s
    try:
        n = Notifier(NotifyConfig(webhook_url=f"http://127.0.0.1:{srv.server_port}/hook", timeout=60, queue_size=5))
        r = Responder(notifier=n, resend_interval=0.0)
        t0 = time.perf_counter()
        for i in range(50):
            r.handle(
                [TierChange("m", "5m", "demographic_parity_ratio", "race", 0, 1 + i % 2, float(i), 0.7, None, "x")],
                now=float(i),
            )
        assert time.perf_counter() - t0 < 1.0
        assert n.counts["dropped"] > 0  # the bounded queue filled up, nothing blocked
        n.close(timeout=0.1)
    finally:
        srv.shutdown()
        srv.server_close()
