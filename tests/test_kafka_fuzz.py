"""Hostile messages of every kind, interleaved with a valid stream, through a real broker.

The daemon never stops advancing; every message is counted exactly once (accepted or
under a reason); every rejected one is in the dead-letter topic exactly once (keyed by
its topic:partition:offset); ``/metrics`` passes ``promtool check metrics``; and the
metrics equal ``replay`` of the same messages. Seeded (``random.Random``): a broker run
takes a minute, too slow for hypothesis' shrinking to pay off.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import subprocess
import time

import orjson
import pytest

from tests.infra.fixtures import service_unavailable
from tests.test_dead_letters import read_dead_letters
from tests.test_kafka import (
    DaemonProcess,
    Topics,
    assert_no_message_stopped_the_stream,
    assert_same_metrics,
    events_total,
    make_events,
    rename_topics,
    replay_samples,
    write_files,
)

pytestmark = pytest.mark.integration


def _decision(i: int, model: str, attributes: dict, ts: float, **over) -> bytes:
    event = {
        "schema": "decision/v1",
        "decision_id": f"fuzz-{i}",
        "model": model,
        "model_version": "v1",
        "ts": dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(),
        "score": 0.5,
        "decision": 1,
        "attributes": attributes,
        "label": None,
        **over,
    }
    return orjson.dumps(event)


def hostile(rng: random.Random, n: int, ts: float) -> list[tuple[str, bytes | None]]:
    """(decision id used as key, value) of every kind of bad or odd message."""
    out: list[tuple[str, bytes | None]] = [
        ("empty", b""),
        ("tombstone", None),
        ("nested", b"[" * 5000 + b"]" * 5000),
        ("nan", b'{"schema":"decision/v1","score":NaN}'),
        ("inf", b'{"schema":"decision/v1","score":Infinity}'),
        ("dupkeys", _decision(0, "loan-approval", {"race": "White"}, ts)[:-1] + b',"decision_id":"fuzz-dup"}'),
        ("types", _decision(1, "loan-approval", {"race": "White"}, ts, score="high", decision=[1])),
        ("big", b'{"schema":"decision/v1","pad":"' + b"x" * 900_000 + b'"}'),
        ("unknown-model", _decision(2, "a-model-nobody-configured", {"race": "White"}, ts)),
    ]
    for k in range(5):
        out.append((f"quotes-{k}", _decision(10 + k, "fuzz-labels", {"race": f'q"u\nn\\{k}'}, ts + k)))
    for k in range(3000):  # distinct attribute values: folded into __other__ past the cap
        out.append((f"card-{k}", _decision(100 + k, "fuzz-cardinality", {"race": f"g{k}"}, ts + k % 600)))
    for k in range(n):
        out.append((f"bin-{k}", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4096)))))
    rng.shuffle(out)
    return out


def test_hostile_messages_never_stop_the_stream(kafka_bootstrap, tmp_path):
    promtool = shutil.which("promtool") or service_unavailable("promtool", "not on PATH")
    rng = random.Random(1313)
    topics = Topics(kafka_bootstrap)
    events, _ = make_events(seed=71, hours=1.0)
    bad = hostile(rng, 40, time.time() - 1800)
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=10, max_request_size=2 * 1024 * 1024)
    sent = []  # (is_outcome, value) in the order produced, for the replay
    try:
        step = max(1, len(events) // len(bad))
        for i, (is_outcome, value) in enumerate(events):
            key = orjson.loads(value)["decision_id"].encode()  # keyed by decision id
            p.send(topics.outcomes if is_outcome else topics.decisions, key=key, value=value)
            sent.append((is_outcome, value))
            if i % step == 0 and bad:
                k, v = bad.pop()
                p.send(topics.decisions, key=k.encode(), value=v)
                sent.append((False, v if v is not None else b""))
        for k, v in bad:
            p.send(topics.decisions, key=k.encode(), value=v)
            sent.append((False, v if v is not None else b""))
        p.flush()
    finally:
        p.close()
    n_dec = sum(1 for o, _ in sent if not o)
    n_out = len(sent) - n_dec

    def counted(m: dict, topic: str) -> float:
        return sum(events_total(m, topic, r) for r in ("ok", "invalid", "duplicate", "late"))

    d = DaemonProcess(kafka_bootstrap, topics, f"sqlite:///{tmp_path}/state.db", tmp_path).start()
    try:
        live = d.wait_for(
            lambda m: counted(m, topics.decisions) >= n_dec and counted(m, topics.outcomes) >= n_out,
            timeout=180,
            what="every message counted",
        )
        time.sleep(1.5)  # anything counted twice would show now
        live = d.metrics()
        _, text = d.get("/metrics")
    finally:
        assert d.stop() == 0
    assert counted(live, topics.decisions) == n_dec and counted(live, topics.outcomes) == n_out
    assert_no_message_stopped_the_stream(d.log.read_text())
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    # the valid stream's (and the odd-but-valid messages') metrics equal a replay of the same messages
    dec, out = write_files(tmp_path, [(o, v) for o, v in sent if b"\n" not in v])
    invalid = events_total(live, topics.decisions, "invalid")
    assert invalid >= 45
    letters = read_dead_letters(kafka_bootstrap, topics.deadletter)
    keys = [r.key for r in letters]
    assert len(keys) == len(set(keys)) == invalid  # every rejected message once
    assert {orjson.loads(r.value)["reason"] for r in letters} >= {"oversized", "malformed_json"}
    batch = replay_samples(dec, out, tmp_path)
    # Which 50 of the 3,000 values keep their own group depends on arrival order (first seen),
    # and the daemon's order over three partitions is not the file's: compare that model by
    # its totals and group count, every other model exactly.
    card = "fuzz-cardinality"
    live, batch = rename_topics(live, topics), dict(batch)
    # The daemon keeps one engine per partition (docs/replicas.md), each with its own cap of 50
    # groups: the merged series hold at most 3 × 50 values and __other__; the replay's one engine 50.
    for samples, cap in ((live, 3 * 50 + 1), (batch, 51)):
        groups = {
            dict(lb)["group"] for (n, lb) in samples if n == "fairness_decisions_total" and dict(lb)["model"] == card
        }
        assert 51 <= len(groups) <= cap and "__other__" in groups  # the cap (50 per engine) holds
    total = {
        name: sum(v for (n, lb), v in s.items() if n == "fairness_decisions_total" and dict(lb)["model"] == card)
        for name, s in (("live", live), ("batch", batch))
    }
    assert total == {"live": 3000, "batch": 3000}
    live = {k: v for k, v in live.items() if dict(k[1]).get("model") != card}
    batch = {k: v for k, v in batch.items() if dict(k[1]).get("model") != card}
    assert_same_metrics(live, batch, ignore_events=True)
