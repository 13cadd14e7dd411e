"""The hash-chained audit log: any edit, reorder, insertion or removal is found and named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fairwatch.monitor import audit as A
from fairwatch.monitor.audit import AuditLog, MemoryAuditLog, verify

N = 6


def _log(tmp_path: Path) -> tuple[Path, list[bytes]]:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, fsync=False)
    log.append("config.loaded", sha256="ab" * 32, changed=False)
    log.append(
        "tier.change",
        model="m",
        window="1h",
        metric="dp_ratio",
        attribute="race",
        previous=0,
        tier=2,
        at=1.5,
        value=0.7,
        ci=[0.6, 0.8],
        reason="dp_ratio < 0.75",
    )
    log.append("action.page", incident="inc-1", model="m", receivers=["owner", "compliance"])
    log.append("rollback.execute", incident="inc-1", model="m", flag="loan-model", variant="v2", nested={"a": [1, 2]})
    log.append("pipeline.start", run_id="r1", incident="inc-1", model="m")
    log.append("baseline.set", model="m", values={"dp_ratio": 0.93}, approved_by="ö — unicode")
    return path, path.read_bytes().splitlines(keepends=True)


def _write(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def test_intact_chain_verifies_and_fields_read_flat(tmp_path):
    path, lines = _log(tmp_path)
    res = verify(path)
    assert res.ok and res.entries == N and res.head[0] == N
    e = [json.loads(x) for x in lines]
    assert [x["seq"] for x in e] == list(range(1, N + 1))
    assert e[0]["prev_hash"] == A.GENESIS and all(e[i]["prev_hash"] == e[i - 1]["hash"] for i in range(1, N))
    assert e[1]["tier"] == 2 and e[1]["at"] == 1.5  # fields are top-level keys, as the alert tests read them


@pytest.mark.parametrize("i", range(N))
def test_editing_any_entry_names_it(tmp_path, i):
    path, lines = _log(tmp_path)
    entry = json.loads(lines[i])
    entry["kind"] = entry["kind"] + "x"
    lines[i] = json.dumps(entry).encode() + b"\n"
    _write(path, lines)
    res = verify(path)
    assert (res.ok, res.seq, res.reason) == (False, i + 1, A.R_HASH)


@pytest.mark.parametrize("i", range(N))
def test_editing_any_entry_and_rehashing_it_is_caught_by_the_next_link_or_the_head(tmp_path, i):
    path, lines = _log(tmp_path)
    entry = json.loads(lines[i])
    entry["ts"] += 1.0
    entry["hash"] = A.entry_hash(entry)
    lines[i] = json.dumps(entry).encode() + b"\n"
    _write(path, lines)
    res = verify(path)
    assert not res.ok
    if i < N - 1:
        assert (res.seq, res.reason) == (i + 2, A.R_PREV.format(prev=i + 1))
    else:
        assert (res.seq, res.reason) == (N, A.R_HEAD.format(seq=N))


@pytest.mark.parametrize("i", range(N - 1))
def test_reordering_names_the_first_displaced_entry(tmp_path, i):
    path, lines = _log(tmp_path)
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    _write(path, lines)
    res = verify(path)
    assert (res.ok, res.seq, res.line) == (False, i + 1, i + 1)
    assert res.reason == A.R_SEQ.format(got=i + 2, want=i + 1)


@pytest.mark.parametrize("i", range(N))
def test_removing_any_entry_names_it(tmp_path, i):
    path, lines = _log(tmp_path)
    del lines[i]
    _write(path, lines)
    res = verify(path)
    assert (res.ok, res.seq) == (False, i + 1)
    if i < N - 1:
        assert res.reason == A.R_SEQ.format(got=i + 2, want=i + 1)
    else:  # the tail: only the head file knows it existed
        assert res.reason == A.R_TRUNCATED.format(last=N - 1, head=N)


def test_inserting_an_entry_names_it(tmp_path):
    path, lines = _log(tmp_path)
    lines.insert(3, lines[2])  # a replayed copy
    _write(path, lines)
    res = verify(path)
    assert (res.ok, res.seq, res.reason) == (False, 4, A.R_SEQ.format(got=3, want=4))


def test_garbage_and_torn_lines(tmp_path):
    path, lines = _log(tmp_path)
    _write(path, lines[:2] + [b"not json\n"] + lines[2:])
    assert (verify(path).seq, verify(path).reason) == (3, A.R_JSON)
    _write(path, lines + [b'{"seq": 7, "ts"'])
    res = verify(path)
    assert (res.ok, res.seq, res.reason) == (False, N + 1, A.R_TORN)
    # The writer cuts a torn tail (never acknowledged) and records that it did.
    e = AuditLog(path, fsync=False).append("x.after_crash", n=1)
    assert verify(path).ok
    kinds = [x["kind"] for x in AuditLog(path).entries()]
    assert kinds[-2:] == ["audit.recovered", "x.after_crash"] and e["seq"] == N + 2


def test_cli_verify_exit_codes_and_message(tmp_path, capsys):
    from fairwatch.app.cli import main

    path, lines = _log(tmp_path)
    assert main(["audit", "verify", "--log", str(path)]) == 0
    assert f"ok, {N} entries" in capsys.readouterr().out
    lines[2] = lines[2].replace(b'"owner"', b'"nobody"')
    _write(path, lines)
    assert main(["audit", "verify", "--log", str(path)]) == 1
    err = capsys.readouterr().err
    assert "FAILED at entry seq 3" in err and A.R_HASH in err
    # a path where no log was ever written (mistyped, or log and head both removed): not "ok"
    missing = tmp_path / "nope" / "audit.jsonl"
    assert main(["audit", "verify", "--log", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fairwatch audit verify: --log: no audit log at {str(missing)!r}") and "ok" not in err
    # the log removed but its head file kept: the chain is broken, seq by seq
    path.unlink()
    assert main(["audit", "verify", "--log", str(path)]) == 1
    assert "FAILED at entry seq 1" in capsys.readouterr().err


def test_two_writer_processes_keep_one_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    code = (
        "import sys; from fairwatch.monitor.audit import AuditLog\n"
        "log = AuditLog(sys.argv[1], fsync=False)\n"
        "for i in range(60): log.append('w', writer=sys.argv[2], i=i)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), w]) for w in "ab"]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    res = verify(path)
    assert res.ok and res.entries == 120


def test_reserved_fields_and_drop_in_for_alerts(tmp_path):
    import fairwatch.alerts.audit as alerts_audit

    assert alerts_audit.AuditLog is AuditLog and alerts_audit.MemoryAuditLog is MemoryAuditLog
    with pytest.raises(ValueError, match="'hash' is reserved"):
        AuditLog(tmp_path / "a.jsonl").append("x", hash="forged")
    mem = MemoryAuditLog()
    a, b = mem.append("x", a=1), mem.append("y", b=float("nan"))
    assert b["prev_hash"] == a["hash"] == A.entry_hash(a)
    assert [e["kind"] for e in mem.entries()] == ["x", "y"]
