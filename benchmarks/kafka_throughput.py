"""Kafka throughput and event-to-metric latency: raw clients vs the daemon, in one run.

On one topic of ``--partitions`` partitions holding ``--decisions`` decision
messages from the loan simulator (one model per partition), measures:

* raw consume rate of kafka-python (a bare ``KafkaConsumer.poll(max_records)``
  loop touching each value, kafka-python's own record decoding) and of
  confluent-kafka (``consume(num_messages)``);
* the source layer alone (``KafkaSource.poll`` / ``ConfluentSource.poll``: raw
  bytes grouped into ``PartitionBatch``; kafka-python's records decoded
  column-wise by ``fairwatch.streaming.kafka_records``), to separate client cost from ours;
* the daemon end to end with each client: ``python -m fairwatch.app.cli run`` as a
  subprocess with a fresh group and state, timed until
  ``fairwatch_events_total{result="ok"}`` reaches N (scraping ``/metrics``);
* event-to-metric latency at a paced ``--latency-rate`` decisions/s: for each
  event, the first scrape whose count includes it minus its produce time.

``--part replicas`` (also in the default ``all``): ONE model whose producer keys by decision
id over ``--replica-partitions`` (4) partitions, consumed by 1 and then by 2 ``fairwatch run``
replicas in one group on a shared PostgreSQL (started here), in ``--replica-rounds`` rounds;
reports the ratio 2 / 1 replicas (from process start, what a user waits for, and in steady
state), the cores the replicas and the whole machine used (the broker and PostgreSQL share
the 2 cores), how long the evaluator's merged gauges lag the last count, and the evaluator's
per-evaluation merge cost at 1, 6, 24 and 96 partitions (``partials_merge.measure``).

The raw clients and the daemons run ``--repeat`` times (default 5), in rounds
(raw kafka-python, daemon on kafka-python, raw confluent-kafka, daemon on
confluent-kafka), so each daemon run meets the same load of the shared machine as
the raw run before it. The kafka-python ratio is the median over rounds of
daemon / raw; every run is in the JSON. Every rate is given per wall second and per CPU second (user + system of the
consuming process, all threads and any child processes): the machine is shared, and CPU
time is what says "per core". Writes ``benchmarks/results/kafka_throughput.json``.

    python benchmarks/kafka_throughput.py [--bootstrap HOST:PORT] [--decisions 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # the test helpers that start the broker and PostgreSQL (tests.infra)

import numpy as np  # noqa: E402
from fairwatch.streaming.simulator import LoanSimulator, OutcomeDelay  # noqa: E402
from stamp_forms import FORMS, restamp  # noqa: E402  (benchmarks/, beside this script)

RESULTS = ROOT / "benchmarks" / "results" / "kafka_throughput.json"
TICK = os.sysconf("SC_CLK_TCK")
FETCH = {"fetch_max_bytes": 64 * 1024 * 1024, "max_partition_fetch_bytes": 16 * 1024 * 1024}


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (the kafka-python fetch process)."""
    total = proc_cpu(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, ValueError, IndexError):
            continue
    return total


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- topics and data ----------------------------------------------------------------


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        f.result(timeout=30)


def simulators(partitions: int, rate: float, start: float, seed: int = 1) -> list[LoanSimulator]:
    none = OutcomeDelay(kind="none", never_share=1.0)  # decisions only: the decision path is measured
    return [
        LoanSimulator(seed=seed + p, rate=rate, scenario="none", delay=none, model=f"bench-{p}", start=start)
        for p in range(partitions)
    ]


def produce_all(bootstrap: str, topic: str, n: int, partitions: int, stamps: str = "ms_Z") -> dict:
    """N decisions, one model per partition, as fast as the producer goes; ``ts`` in the
    form ``stamps`` (``stamp_forms.FORMS``)."""
    from confluent_kafka import Producer

    rate = 200.0  # decisions per simulated second per model: event time stays in the past
    per = n // partitions
    span = per / rate
    sims = simulators(partitions, rate, start=time.time() - span - 3600.0)
    prod = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "compression.type": "none",
            "acks": "all",
        }
    )
    t0 = time.perf_counter()
    total_bytes = made = 0
    for p, sim in enumerate(sims):
        key = f"bench-{p}".encode()
        left = per
        while left:
            vals = restamp(sim.advance_batch(min(left, 20_000) / rate).topic_values(False)[:left], stamps)
            for v in vals:
                while True:
                    try:
                        prod.produce(topic, v, key, partition=p)
                        break
                    except BufferError:
                        prod.poll(0.05)
                total_bytes += len(v)
            prod.poll(0)
            left -= len(vals)
            made += len(vals)
    assert prod.flush(120) == 0
    return {"decisions": made, "avg_bytes": total_bytes / made, "wall_s": time.perf_counter() - t0}


# -- raw clients and the source layer -------------------------------------------------


def raw_kafka_python(bootstrap: str, topic: str, n: int, max_records: int, *, check_crcs: bool = True) -> dict:
    from kafka import KafkaConsumer

    c = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
        check_crcs=check_crcs,
        **FETCH,
    )
    seen = touched = 0
    t0 = c0 = None
    try:
        while seen < n:
            recs = c.poll(timeout_ms=500, max_records=max_records)
            if t0 is None:
                t0, c0 = time.perf_counter(), cpu()  # from the first fetch: group-less, no join
            for rs in recs.values():
                for r in rs:
                    touched += len(r.value)
                seen += len(rs)
        wall, cpu_s = time.perf_counter() - t0, cpu() - c0
    finally:
        c.close()
    return rate_of(seen, wall, cpu_s, bytes=touched)


def raw_confluent(bootstrap: str, topic: str, n: int, max_records: int, partitions: int) -> dict:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.max.bytes": FETCH["fetch_max_bytes"],
            "max.partition.fetch.bytes": FETCH["max_partition_fetch_bytes"],
        }
    )
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    seen = touched = 0
    t0 = c0 = None
    try:
        while seen < n:
            msgs = c.consume(max_records, 0.5)
            if t0 is None:
                t0, c0 = time.perf_counter(), cpu()
            for m in msgs:
                if m.error() is None:
                    touched += len(m.value())
                    seen += 1
        wall, cpu_s = time.perf_counter() - t0, cpu() - c0
    finally:
        c.close()
    return rate_of(seen, wall, cpu_s, bytes=touched)


def source_only(kind: str, bootstrap: str, topic: str, n: int, max_records: int) -> dict:
    """Our source layer without the engine: poll() → PartitionBatch, with a fresh group."""
    if kind == "confluent":
        from fairwatch.streaming.kafka_confluent import ConfluentSource as Source
    else:
        from fairwatch.streaming.kafka import KafkaSource as Source
    src = Source(
        bootstrap_servers=bootstrap,
        group_id=f"src-{uuid.uuid4().hex[:6]}",
        on_assign=lambda parts: {},
        on_revoke=lambda parts: None,
        on_lost=lambda parts: None,
        decisions_topic=topic,
        outcomes_topic=topic + ".outcomes",
        max_poll_records=max_records,
    )
    seen = 0
    t0 = c0 = None
    try:
        while seen < n:
            batches = src.poll(timeout_ms=500)
            if batches and t0 is None:
                t0, c0 = time.perf_counter(), cpu()  # after the group join
                first = sum(len(b.decisions) for b in batches.values())
            seen += sum(len(b.decisions) for b in batches.values())
        wall, cpu_s = time.perf_counter() - t0, cpu() - c0
    finally:
        src.close()
    return rate_of(seen - first, wall, cpu_s)


def rate_of(n: int, wall: float, cpu_s: float, **extra) -> dict:
    return {
        "decisions": n,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu_s, 3),
        "decisions_per_s": round(n / wall),
        "decisions_per_cpu_s": round(n / cpu_s),
        **extra,
    }


# -- the daemon --------------------------------------------------------------------------


class DaemonRun:
    """``fairwatch run`` in a subprocess on its own group, state and port; scrapes /metrics."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        client: str,
        workdir: Path,
        *,
        eval_interval: float,
        checkpoint_interval: float,
        max_poll_records: int,
        profile: Path | None = None,
        extra_env: dict | None = None,
        state: str | None = None,
        group: str | None = None,
    ):
        from tests.test_kafka import free_port

        self.port = free_port()
        tag = uuid.uuid4().hex[:6]
        self.dir = workdir / f"{client}-{tag}"
        self.dir.mkdir()
        args = [
            "-m",
            "fairwatch.app.cli",
            "run",
            "--bootstrap-servers",
            bootstrap,
            "--state",
            state or f"sqlite:///{self.dir}/state.db",
            "--port",
            str(self.port),
        ]
        if profile is not None:
            args = ["-m", "cProfile", "-o", str(profile), *args]
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "FAIRWATCH_KAFKA__CLIENT": client,
            "FAIRWATCH_KAFKA__GROUP_ID": group or f"bench-{tag}",
            "FAIRWATCH_KAFKA__DECISIONS_TOPIC": topic,
            "FAIRWATCH_KAFKA__OUTCOMES_TOPIC": topic + ".outcomes",
            "FAIRWATCH_KAFKA__DEADLETTER_TOPIC": topic + ".deadletter",
            "FAIRWATCH_KAFKA__MAX_POLL_RECORDS": str(max_poll_records),
            "FAIRWATCH_EVALUATION_INTERVAL": f"{eval_interval}s",
            "FAIRWATCH_STATE__CHECKPOINT_INTERVAL": f"{checkpoint_interval}s",
            "FAIRWATCH_ALERTS__ENABLED": "false",
            "FAIRWATCH_LOG__LEVEL": "INFO",
            **(extra_env or {}),
        }
        self.log = open(self.dir / "daemon.log", "wb")  # noqa: SIM115 - closed in stop()
        self.t_start = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, *args], env=env, cwd=self.dir, stdout=self.log, stderr=subprocess.STDOUT
        )

    def scrape(self) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return None

    def ok(self, text: str | None = None) -> float | None:
        text = self.scrape() if text is None else text
        if text is None:
            return None
        total = 0.0
        for line in text.splitlines():
            if line.startswith("fairwatch_events_total{") and 'result="ok"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def log_tail(self) -> str:
        return (self.dir / "daemon.log").read_text(errors="replace")[-4000:]


def daemon_throughput(
    bootstrap: str,
    topic: str,
    n: int,
    client: str,
    workdir: Path,
    *,
    eval_interval: float,
    max_poll_records: int,
    timeout: float,
    profile: Path | None = None,
    extra_env: dict | None = None,
) -> dict:
    d = DaemonRun(
        bootstrap,
        topic,
        client,
        workdir,
        eval_interval=eval_interval,
        checkpoint_interval=5.0,
        max_poll_records=max_poll_records,
        profile=profile,
        extra_env=extra_env,
    )
    try:
        first = None  # (time, cpu, count) at the first scrape with a count > 0
        seen = []
        samples: list[tuple[float, float, float]] = []  # (time, cpu, published count) of every scrape
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if d.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {d.proc.returncode}:\n{d.log_tail()}")
            count = d.ok()
            now, c = time.perf_counter(), d.cpu()
            samples.append((now, c, count or 0.0))
            if count:
                seen.append((now - d.t_start, count))
                if first is None:
                    first = (now, c, count)
                if count >= n:
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError(
                f"daemon with {client} did not reach {n} within {timeout} s (at {seen[-1:]}):\n{d.log_tail()}"
            )
        total_wall = now - d.t_start
        total_cpu = c
        steady_n = count - first[2]
        steady = rate_of(steady_n, now - first[0], c - first[1]) if steady_n > 0 else None
        end_t, end_c = processing_end(samples) if steady_n > 0 else (now, c)
        done = rate_of(steady_n, end_t - first[0], end_c - first[1]) if steady_n > 0 and end_t > first[0] else None
    finally:
        d.stop()
    return {
        "client": client,
        "decisions": int(count),
        "from_process_start": rate_of(int(count), total_wall, total_cpu),
        "steady_state": done or steady,
        "steady_state_to_last_publish": steady,
        "note": "steady_state = from the first published count > 0 (excludes start-up and the group join) to the "
        "end of processing: the last busy scrape interval (>= half a core) before the count reached N. "
        "Counts are published once per evaluation interval, so the publish showing N comes up to one "
        "interval after the work ended: steady_state_to_last_publish includes that idle time",
    }


def processing_end(samples: list[tuple[float, float, float]], busy: float = 0.5) -> tuple[float, float]:
    """(time, cpu) where the daemon stopped working on the stream: the end of the last scrape
    interval, after the last publish below N, in which it used at least ``busy`` of a core.

    >>> processing_end([(0, 0, 5), (1, 1, 5), (2, 1.9, 5), (3, 2.0, 5), (4, 2.05, 9)])
    (2, 1.9)
    """
    last = samples[-1][2]
    k = max(i for i, s in enumerate(samples) if s[2] < last)  # the last scrape before the final publish
    j = min(i for i in range(k + 1) if samples[i][2] == samples[k][2])  # that publish first seen
    end = j
    for i in range(j + 1, len(samples)):
        (t0, c0, _), (t1, c1, _) = samples[i - 1], samples[i]
        if t1 > t0 and (c1 - c0) / (t1 - t0) >= busy:
            end = i
    return samples[end][0], samples[end][1]


# -- one model, many replicas ----------------------------------------------------------------


def produce_one_model(bootstrap: str, topic: str, n: int, stamps: str = "ms_Z") -> dict:
    """N decisions of ONE model, keyed by decision id (the usual producer): the client's
    partitioner spreads the model over every partition of the topic."""
    from confluent_kafka import Producer

    rate = 200.0
    sim = simulators(1, rate, start=time.time() - n / rate - 3600.0, seed=7)[0]
    prod = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "acks": "all",
        }
    )
    t0 = time.perf_counter()
    made = total_bytes = 0
    while made < n:
        vals = restamp(sim.advance_batch(min(n - made, 20_000) / rate).topic_values(False)[: n - made], stamps)
        for v in vals:
            key = orjson_loads(v)["decision_id"].encode()
            while True:
                try:
                    prod.produce(topic, v, key)
                    break
                except BufferError:
                    prod.poll(0.05)
            total_bytes += len(v)
        prod.poll(0)
        made += len(vals)
    assert prod.flush(120) == 0
    return {"decisions": made, "avg_bytes": total_bytes / made, "wall_s": time.perf_counter() - t0}


def orjson_loads(v: bytes):
    import orjson

    return orjson.loads(v)


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (every core, /proc/stat)."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / TICK  # user nice system irq softirq steal


def _merged_decisions(text: str, attribute: str, window: str) -> float | None:
    """The evaluator's merged decisions of one attribute in one window (sum over its groups);
    None from a replica that is not the evaluator."""
    if not any(line.startswith("fairwatch_evaluator") and line.endswith(" 1.0") for line in text.splitlines()):
        return None
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("fairness_group_samples{")
            and f'attribute="{attribute}"' in line
            and f'window="{window}"' in line
            and 'kind="decisions"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def replicas_throughput(
    bootstrap: str,
    topic: str,
    n: int,
    replicas: int,
    workdir: Path,
    dsn: str,
    *,
    eval_interval: float,
    checkpoint_interval: float,
    max_poll_records: int,
    timeout: float,
) -> dict:
    """``replicas`` daemons in one group on a shared PostgreSQL, started together, until their
    ok counts sum to N and the evaluator's merged gauges hold all N decisions."""
    group = f"bench-rep{replicas}-{uuid.uuid4().hex[:6]}"
    runs = [
        DaemonRun(
            bootstrap,
            topic,
            "kafka-python",
            workdir,
            eval_interval=eval_interval,
            checkpoint_interval=checkpoint_interval,
            max_poll_records=max_poll_records,
            state=dsn,
            group=group,
        )
        for _ in range(replicas)
    ]
    t_start = min(d.t_start for d in runs)
    busy0 = machine_busy()
    try:
        samples: list[tuple[float, float, float]] = []
        first = counted = merged_at = None
        deadline = time.perf_counter() + timeout
        while True:
            for d in runs:
                if d.proc.poll() is not None:
                    raise RuntimeError(f"replica exited with {d.proc.returncode}:\n{d.log_tail()}")
            texts = [d.scrape() for d in runs]
            ok = sum((d.ok(t) or 0.0) if t else 0.0 for d, t in zip(runs, texts, strict=True))
            merged = [m for t in texts if t for m in [_merged_decisions(t, "race", "7d")] if m is not None]
            now, c = time.perf_counter(), sum(d.cpu() for d in runs)
            samples.append((now, c, ok))
            if ok and first is None:
                first = (now, c, ok)
            if ok >= n and counted is None:
                counted = (now, c, machine_busy())
            if counted is not None and merged and max(merged) >= n:
                merged_at = now
                break
            if now > deadline:
                raise RuntimeError(
                    f"{replicas} replicas: {ok:.0f} of {n} counted, merged {merged} after {timeout} s:\n"
                    + "\n".join(d.log_tail() for d in runs)
                )
            time.sleep(0.05)
        end_t, end_c = processing_end(samples)
        assigned = [_assigned(d) for d in runs]
    finally:
        for d in runs:
            d.stop()
    wall = counted[0] - t_start
    return {
        "replicas": replicas,
        "assigned_partitions": assigned,
        "from_process_start": rate_of(n, wall, counted[1]),
        "steady_state": rate_of(n - int(first[2]), end_t - first[0], end_c - first[1]) if end_t > first[0] else None,
        "replicas_cpu_cores": round(counted[1] / wall, 2),
        "machine_busy_cores": round((counted[2] - busy0) / wall, 2),
        "merged_lag_after_last_count_s": round(merged_at - counted[0], 2),
        "note": "from_process_start: launch of every replica to the scrape where their ok counts sum to N (start-up, "
        "group join and rebalance included: what a user waits for); machine_busy_cores: the whole machine "
        "(replicas, broker, PostgreSQL, this script) over that time; merged_lag_after_last_count_s: until the "
        "evaluator's merged 7d gauges hold all N (the partials' publish interval plus one evaluation)",
    }


def _assigned(d: DaemonRun) -> list[int]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{d.port}/readyz", timeout=5) as r:
            text = r.read().decode()
    except OSError as e:  # not ready (503) still carries the detail
        text = e.read().decode() if hasattr(e, "read") else ""
    if "assigned=[" not in text:
        return []
    return [int(x) for x in text.split("assigned=[", 1)[1].split("]", 1)[0].split(",") if x.strip()]


def replicas_part(bootstrap: str, args) -> dict:
    """1 vs 2 replicas on one model spread over ``--replica-partitions`` partitions, in rounds,
    and the evaluator's merge cost at 1, 6, 24 and 96 partitions (benchmarks/partials_merge.py)."""
    from partials_merge import measure

    from tests.infra.postgres import postgres_server

    workdir = Path(tempfile.mkdtemp(prefix="fairwatch-replica-bench-"))
    out: dict = {
        "setup": {
            "decisions": args.replica_decisions,
            "partitions": args.replica_partitions,
            "models": 1,
            "keyed_by": "decision_id",
            "client": "kafka-python",
            "state": "postgresql (local, started here)",
            "evaluation_interval_s": args.eval_interval,
            "checkpoint_interval_s": 1.0,
            "rounds": args.replica_rounds,
            "cpu_count": os.cpu_count(),
        }
    }
    try:
        with postgres_server() as pg:
            topic = f"rep-{uuid.uuid4().hex[:6]}"
            create_topics(bootstrap, [topic, topic + ".outcomes", topic + ".deadletter"], args.replica_partitions)
            print(f"producing {args.replica_decisions:,} decisions of one model to {topic} …", file=sys.stderr)
            out["produce"] = produce_one_model(bootstrap, topic, args.replica_decisions, args.stamps)
            n = out["produce"]["decisions"]
            rounds: dict[int, list] = {1: [], 2: []}
            for i in range(args.replica_rounds):
                for k in (1, 2):
                    print(f"{k} replica(s), round {i + 1} … (load {load_average()})", file=sys.stderr)
                    entry = replicas_throughput(
                        bootstrap,
                        topic,
                        n,
                        k,
                        workdir,
                        pg.dsn,
                        eval_interval=args.eval_interval,
                        checkpoint_interval=1.0,
                        max_poll_records=args.max_poll_records,
                        timeout=600,
                    )
                    entry["load_average"] = load_average()
                    print(json.dumps(entry), file=sys.stderr)
                    rounds[k].append(entry)
            paired = [
                (
                    b["from_process_start"]["decisions_per_s"] / a["from_process_start"]["decisions_per_s"],
                    (b["steady_state"] or {}).get("decisions_per_s", 0) / a["steady_state"]["decisions_per_s"],
                )
                for a, b in zip(rounds[1], rounds[2], strict=True)
            ]
            out["one_replica"] = rounds[1]
            out["two_replicas"] = rounds[2]
            out["ratio_two_vs_one"] = {
                "from_process_start": round(statistics.median(w for w, _ in paired), 3),
                "steady_state": round(statistics.median(s for _, s in paired), 3),
                "per_round": [[round(w, 3), round(s, 3)] for w, s in paired],
                "note": "median over rounds of (2 replicas) / (1 replica) decisions per wall second",
            }
            out["limit"] = {
                "machine_busy_cores_one_replica": statistics.median(r["machine_busy_cores"] for r in rounds[1]),
                "machine_busy_cores_two_replicas": statistics.median(r["machine_busy_cores"] for r in rounds[2]),
                "replicas_cpu_cores_one": statistics.median(r["replicas_cpu_cores"] for r in rounds[1]),
                "replicas_cpu_cores_two": statistics.median(r["replicas_cpu_cores"] for r in rounds[2]),
                "note": f"{os.cpu_count()} cores shared by the replicas, the broker and PostgreSQL: a second "
                "replica can add at most what the first leaves idle",
            }
            print("merge cost at 1, 6, 24, 96 partitions …", file=sys.stderr)
            out["merge_cost"] = measure(pg.dsn, [1, 6, 24, 96], 5)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out


# -- latency ------------------------------------------------------------------------------


def latency(
    bootstrap: str,
    client: str,
    workdir: Path,
    *,
    rate: float,
    seconds: float,
    partitions: int,
    eval_interval: float,
    scrape_every: float,
) -> dict:
    from confluent_kafka import Producer

    topic = f"lat-{client}-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, [topic, topic + ".outcomes", topic + ".deadletter"], partitions)
    n = int(rate * seconds)
    per = n // partitions + 1
    sims = simulators(partitions, rate / partitions, start=time.time() - seconds - 120.0, seed=100)
    values = []
    for s in sims:
        vals: list[bytes] = []
        while len(vals) < per:  # Poisson arrivals: draw until there are enough
            vals += s.advance_batch(per / (rate / partitions)).topic_values(False)
        values.append(vals[:per])
    order = [(p, values[p][i]) for i in range(per) for p in range(partitions)][:n]
    d = DaemonRun(
        bootstrap, topic, client, workdir, eval_interval=eval_interval, checkpoint_interval=5.0, max_poll_records=10_000
    )
    scrapes: list[tuple[float, float]] = []
    stop = threading.Event()

    def scraper():
        while not stop.is_set():
            t = time.time()
            c = d.ok()
            if c is not None:
                scrapes.append((t, c))
            stop.wait(max(0.0, scrape_every - (time.time() - t)))

    try:
        deadline = time.monotonic() + 60
        while d.ok() is None or not d.ready():
            if time.monotonic() > deadline or d.proc.poll() is not None:
                raise RuntimeError(f"daemon did not start:\n{d.log_tail()}")
            time.sleep(0.2)
        th = threading.Thread(target=scraper, daemon=True)
        th.start()
        prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "1"})
        sent = np.empty(n)
        step = 0.01  # send in 10 ms slices
        per_slice = max(1, int(rate * step))
        t0 = time.time()
        for i in range(0, n, per_slice):
            target = t0 + (i / rate)
            delay = target - time.time()
            if delay > 0:
                time.sleep(delay)
            now = time.time()
            for p, v in order[i : i + per_slice]:
                prod.produce(topic, v, f"bench-{p}".encode(), partition=p)
            sent[i : i + per_slice] = now
            prod.poll(0)
        prod.flush(30)
        achieved = n / (time.time() - t0)
        deadline = time.monotonic() + 60
        while (not scrapes or scrapes[-1][1] < n) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        th.join()
    finally:
        d.stop()
    # The first scrape whose count includes event i (events on different partitions are counted in
    # poll order, not produce order: the count is a lower bound per prefix, which is what a user sees).
    ts = np.array([t for t, _ in scrapes])
    counts = np.maximum.accumulate(np.array([c for _, c in scrapes]))
    idx = np.searchsorted(counts, np.arange(1, n + 1), side="left")
    if idx.max() >= len(ts):
        raise RuntimeError(f"only {counts[-1]:.0f} of {n} events counted")
    lat = ts[idx] - sent
    return {
        "client": client,
        "target_rate": rate,
        "achieved_rate": round(achieved, 1),
        "events": n,
        "evaluation_interval_s": eval_interval,
        "scrape_every_s": scrape_every,
        "p50_s": round(float(np.percentile(lat, 50)), 3),
        "p99_s": round(float(np.percentile(lat, 99)), 3),
        "max_s": round(float(lat.max()), 3),
        "target": {"p99_below_s": eval_interval + 1.0, "met": bool(np.percentile(lat, 99) < eval_interval + 1.0)},
    }


# -- main ---------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", help="use this broker (default: start one with tests.infra.kafka_broker)")
    p.add_argument("--decisions", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--max-poll-records", type=int, default=10_000)
    p.add_argument("--eval-interval", type=float, default=1.0, help="daemon evaluation interval (s)")
    p.add_argument("--latency-rate", type=float, default=5000.0)
    p.add_argument("--latency-seconds", type=float, default=20.0)
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument(
        "--profile", action="store_true", help="also run each daemon under cProfile (slower; separate numbers)"
    )
    p.add_argument("--quick", action="store_true", help="200k decisions, 10 s of latency, one run each")
    p.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="runs of each raw client and daemon measurement; the median is compared (shared machine)",
    )
    p.add_argument(
        "--stamps",
        choices=list(FORMS),
        default="ms_Z",
        help="form of the decisions' ts (us_Z: as datetime.isoformat() gives it, with Z)",
    )
    p.add_argument("--out", type=Path, help="default: results/kafka_throughput.json (_<form>.json for other stamps)")
    p.add_argument(
        "--part",
        choices=["all", "clients", "replicas"],
        default="all",
        help="clients: raw clients vs the daemon; replicas: one model over --replica-partitions partitions, "
        "1 vs 2 replicas on PostgreSQL, and the evaluator's merge cost (the other part's results are kept)",
    )
    p.add_argument("--replica-partitions", type=int, default=4)
    p.add_argument("--replica-decisions", type=int, default=1_000_000)
    p.add_argument("--replica-rounds", type=int, default=3)
    args = p.parse_args()
    if args.out is None:
        args.out = RESULTS if args.stamps == "ms_Z" else RESULTS.with_name(f"kafka_throughput_{args.stamps}.json")
    if args.quick:
        args.decisions, args.latency_seconds, args.repeat = 200_000, 10.0, 1
        args.replica_decisions, args.replica_rounds = 200_000, 1

    broker = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        from tests.infra.kafka_broker import provide_kafka

        broker = provide_kafka()
        bootstrap = broker.bootstrap_servers
    workdir = Path(tempfile.mkdtemp(prefix="fairwatch-kafka-bench-"))
    result: dict = {
        "benchmark": "kafka_throughput",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": load_average(),
            "note": "shared machine (other engineers' jobs run beside this one): compare per-CPU-second rates",
        },
        "setup": {
            "decisions": args.decisions,
            "partitions": args.partitions,
            "models": args.partitions,
            "timestamp_form": args.stamps,
            "max_poll_records": args.max_poll_records,
            "evaluation_interval_s": args.eval_interval,
            "checkpoint_interval_s": 5.0,
            "windows": ["1h", "24h", "7d"],
            "alerts": False,
            "broker": "external" if args.bootstrap else getattr(broker, "kind", "local"),
            "clients": {
                "kafka-python": _version("kafka-python"),
                "confluent-kafka": _version("confluent-kafka"),
                "crc32c_c_extension": _version("crc32c"),
            },
            "note": "without the crc32c package kafka-python checks record CRCs in pure Python "
            "(most of its CPU time); raw_kafka_python_check_crcs_off shows the rate without that",
        },
    }
    try:
        if args.part in ("all", "clients"):
            topic = f"bench-{uuid.uuid4().hex[:6]}"
            create_topics(bootstrap, [topic, topic + ".outcomes", topic + ".deadletter"], args.partitions)
            print(f"producing {args.decisions:,} decisions to {topic} …", file=sys.stderr)
            result["produce"] = produce_all(bootstrap, topic, args.decisions, args.partitions, args.stamps)
            n = result["produce"]["decisions"]
            result["setup"]["avg_event_bytes"] = round(result["produce"]["avg_bytes"], 1)
            steps = [
                ("raw_kafka_python", lambda: raw_kafka_python(bootstrap, topic, n, args.max_poll_records)),
                (
                    "raw_kafka_python_check_crcs_off",
                    lambda: raw_kafka_python(bootstrap, topic, n, args.max_poll_records, check_crcs=False),
                ),
                ("raw_confluent", lambda: raw_confluent(bootstrap, topic, n, args.max_poll_records, args.partitions)),
                (
                    "source_kafka_python",
                    lambda: source_only("kafka-python", bootstrap, topic, n, args.max_poll_records),
                ),
                ("source_confluent", lambda: source_only("confluent", bootstrap, topic, n, args.max_poll_records)),
                (
                    "daemon_kafka_python",
                    lambda: daemon_throughput(
                        bootstrap,
                        topic,
                        n,
                        "kafka-python",
                        workdir,
                        eval_interval=args.eval_interval,
                        max_poll_records=args.max_poll_records,
                        timeout=300,
                    ),
                ),
                (
                    "daemon_confluent",
                    lambda: daemon_throughput(
                        bootstrap,
                        topic,
                        n,
                        "confluent",
                        workdir,
                        eval_interval=args.eval_interval,
                        max_poll_records=args.max_poll_records,
                        timeout=300,
                    ),
                ),
            ]
            # The repeated steps run in rounds (raw client, then the daemon on it), so each daemon
            # run is compared with the raw run just before it, under the same load of the shared machine.
            repeated = ["raw_kafka_python", "daemon_kafka_python", "raw_confluent", "daemon_confluent"]
            rounds = {name: [] for name in repeated}
            once = [(name, fn) for name, fn in steps if name not in rounds]
            looped = sorted((s for s in steps if s[0] in rounds), key=lambda s: repeated.index(s[0]))
            for i in range(args.repeat):
                for name, fn in [*once, *looped] if i == 0 else looped:
                    print(f"{name} run {i + 1} … (load {load_average()})", file=sys.stderr)
                    entry = {**fn(), "load_average": load_average()}
                    print(json.dumps(entry), file=sys.stderr)
                    if name in rounds:
                        rounds[name].append(entry)
                    else:
                        result[name] = entry
            for name in repeated:
                runs = rounds[name]
                result[name] = {"median": median_rates(runs), "runs": runs} if len(runs) > 1 else runs[0]
            kp, cf = rates(result["raw_kafka_python"]), rates(result["raw_confluent"])
            dc = rates(result["daemon_confluent"])
            paired = [
                (
                    rates(d)["decisions_per_s"] / rates(r)["decisions_per_s"],
                    rates(d)["decisions_per_cpu_s"] / rates(r)["decisions_per_cpu_s"],
                )
                for r, d in zip(rounds["raw_kafka_python"], rounds["daemon_kafka_python"], strict=True)
            ]
            wall_ratio = statistics.median(w for w, _ in paired)
            cpu_ratio = statistics.median(c for _, c in paired)
            result["ratios"] = {
                "daemon_kafka_python_vs_raw_kafka_python_wall": round(wall_ratio, 3),
                "daemon_kafka_python_vs_raw_kafka_python_cpu": round(cpu_ratio, 3),
                "daemon_kafka_python_vs_raw_kafka_python_per_round": [[round(w, 3), round(c, 3)] for w, c in paired],
                "daemon_confluent_vs_raw_confluent_wall": round(dc["decisions_per_s"] / cf["decisions_per_s"], 3),
                "daemon_confluent_vs_raw_confluent_cpu": round(
                    dc["decisions_per_cpu_s"] / cf["decisions_per_cpu_s"], 3
                ),
                "daemon_confluent_vs_raw_kafka_python_wall": round(dc["decisions_per_s"] / kp["decisions_per_s"], 3),
                "note": "kafka-python ratios: the median over rounds of daemon run / raw run of the same round",
            }
            result["targets"] = {
                "daemon_kafka_python_at_least_90pct_of_raw_kafka_python": {
                    "wall": wall_ratio >= 0.9,
                    "cpu": cpu_ratio >= 0.9,
                },
                "daemon_confluent_at_least_150k_per_core": {
                    "decisions_per_cpu_s": dc["decisions_per_cpu_s"],
                    "met": dc["decisions_per_cpu_s"] >= 150_000,
                },
            }
            if args.profile:
                for client in ("kafka-python", "confluent"):
                    prof = args.out.parent / f"kafka_throughput.{client}.prof"
                    print(f"profiling the daemon with {client} …", file=sys.stderr)
                    daemon_throughput(
                        bootstrap,
                        topic,
                        n,
                        client,
                        workdir,
                        eval_interval=args.eval_interval,
                        max_poll_records=args.max_poll_records,
                        timeout=900,
                        profile=prof,
                    )
                    result.setdefault("profiles", []).append(str(prof.relative_to(ROOT)))
            if not args.skip_latency:
                for client in ("kafka-python", "confluent"):
                    print(f"latency with {client} at {args.latency_rate:g}/s …", file=sys.stderr)
                    result[f"latency_{client.replace('-', '_')}"] = {
                        **latency(
                            bootstrap,
                            client,
                            workdir,
                            rate=args.latency_rate,
                            seconds=args.latency_seconds,
                            partitions=args.partitions,
                            eval_interval=args.eval_interval,
                            scrape_every=0.05,
                        ),
                        "load_average": load_average(),
                    }
                    print(json.dumps(result[f"latency_{client.replace('-', '_')}"]), file=sys.stderr)
        if args.part in ("all", "replicas"):
            result["replicas"] = replicas_part(bootstrap, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if broker is not None:
            broker.close()
    if args.part != "all" and args.out.exists():  # keep the other part's results
        old = json.loads(args.out.read_text())
        result = {**old, "replicas": result["replicas"]} if args.part == "replicas" else {**old, **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    shown = {k: v for k, v in result.items() if k in ("ratios", "targets")}
    if "replicas" in result:
        shown["replicas_ratio_two_vs_one"] = result["replicas"]["ratio_two_vs_one"]
    print(json.dumps(shown, indent=2))
    return 0


def rates(entry: dict) -> dict:
    """Decisions per second and per CPU-second of one step: the median over its runs, if repeated."""
    if "median" in entry:
        return entry["median"]
    return entry.get("steady_state") or entry


def median_rates(runs: list[dict]) -> dict:
    """Per metric, the median over runs (of the steady state for daemon runs)."""
    ok = [r.get("steady_state") or r for r in runs]
    return {k: statistics.median(r[k] for r in ok) for k in ("decisions_per_s", "decisions_per_cpu_s")}


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
