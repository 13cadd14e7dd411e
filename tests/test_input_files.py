"""Input files of ``replay`` and ``backtest`` as users keep them: compressed archives, and the
files that cannot be read at all (a clear error naming the file, exit code 2, never a traceback)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import zipfile

import orjson
import pytest
from fairwatch.monitor.engine import EngineSettings
from fairwatch.streaming.files import InputFileError, read_jsonl_batches

from fairwatch.app.cli import main
from tests.test_events import _replay_file

COMPRESS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


def _packed(path, suffix):
    """``path`` compressed next to it (``d.jsonl`` → ``d.jsonl.gz``)."""
    packed = path.with_name(path.name + suffix)
    packed.write_bytes(COMPRESS[suffix](path.read_bytes()))
    return packed


def _replayed(dec, out, dead, parallel):
    from fairwatch.monitor.replay import replay

    r = replay(
        dec,
        outcomes=out,
        settings=EngineSettings(windows=("1h", "24h"), attributes=("race", "sex", "region")),
        dead_letter=dead,
        batch_size=97,
        progress=False,
        parallel=parallel,
    )
    samples = sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in r.snapshot.samples)
    letters = [{k: v for k, v in orjson.loads(x).items() if k != "source"} for x in dead.read_bytes().splitlines()]
    return samples, r.decisions_read, r.outcomes_read, r.rejected, letters


@pytest.mark.parametrize("suffix", sorted(COMPRESS))
@pytest.mark.parametrize("parallel", [False, True])
def test_a_compressed_file_replays_as_the_plain_file(tmp_path, suffix, parallel):
    """Decisions and outcomes compressed with gzip, bzip2 or xz give the plain files' snapshot,
    counts and dead letters (same reasons, same line numbers), read in one process or in the
    decoder processes."""
    dec, out = _replay_file(tmp_path)
    plain = _replayed(dec, out, tmp_path / "plain.dl", parallel)
    packed = _replayed(_packed(dec, suffix), _packed(out, suffix), tmp_path / "packed.dl", parallel)
    assert packed == plain
    assert plain[3] == 120 and len(plain[4]) == 120  # the files hold rejected lines: compared too


@pytest.mark.parametrize("suffix", sorted(COMPRESS))
def test_compressed_progress_ends_at_the_file_size(tmp_path, suffix):
    """``bytes_read`` of a compressed file counts compressed bytes: it never goes back and ends at
    the file's size (the progress bar's total), while the lines are the plain file's."""
    dec, _ = _replay_file(tmp_path)
    packed = _packed(dec, suffix)
    batches = list(read_jsonl_batches(packed, 500, chunk_bytes=20_000))
    done = [d for _, _, d in batches]
    assert done == sorted(done) and done[-1] == packed.stat().st_size and len(set(done)) > 2
    plain = list(read_jsonl_batches(dec, 500, chunk_bytes=20_000))
    assert [(lines, list(meta)) for lines, meta, _ in batches] == [(lines, list(meta)) for lines, meta, _ in plain]


@pytest.mark.parametrize("parallel", [False, True])
def test_a_truncated_archive_is_an_error_naming_the_file(tmp_path, parallel):
    """A gzip file cut short (a copy that did not finish) stops the replay with an error naming
    the file and the last line read, in one process or from the decoder process; not a partial
    snapshot that looks complete."""
    from fairwatch.monitor.replay import replay

    dec, _ = _replay_file(tmp_path)
    whole = gzip.compress(dec.read_bytes())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(InputFileError, match=r"cut\.jsonl\.gz.*gzip data is corrupt or ends early, after line \d+"):
        replay(cut, progress=False, parallel=parallel)


def test_unreadable_inputs_get_one_line_and_exit_code_2(tmp_path, capsys):
    """A directory, a zstd or zip archive, a truncated archive: ``replay`` and ``backtest`` print
    one line naming the option or the file and the reason, and exit with 2; nothing is written."""
    dec, _ = _replay_file(tmp_path)
    (tmp_path / "dir.jsonl").mkdir()
    zst = tmp_path / "d.jsonl.zst"
    zst.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 20)  # a zstd frame's magic number
    zipped = tmp_path / "d.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.write(dec, "d.jsonl")
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(dec.read_bytes())[:5000])
    cases = [
        (tmp_path / "dir.jsonl", "is a directory"),
        (zst, "is zstd-compressed; .* decompress it first \\(zstd -d\\)"),
        (zipped, "is zip-compressed; .* \\(unzip\\)"),
        (cut, "the gzip data is corrupt or ends early, after line"),
    ]
    for path, message in cases:
        for argv in (
            ["replay", "--file", str(dec), "--outcomes", str(path), "--snapshot", str(tmp_path / "s.json")],
            ["backtest", "--file", str(path), "--out", str(tmp_path / "bt")],
        ):
            assert main([*argv, "--no-progress"]) == 2, argv
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith(f"fairwatch {argv[0]}: "), err
            assert re.search(message, err[0]), (message, err[0])
            assert "Traceback" not in err[0]
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "bt" / "summary.json").exists()


def test_the_dead_letter_file_of_an_archive_is_named_after_its_events(tmp_path, capsys):
    """``replay --file d.jsonl.gz`` dead-letters to ``d.deadletter.jsonl``, as for ``d.jsonl``."""
    dec, _ = _replay_file(tmp_path)
    packed = _packed(dec, ".gz")
    assert main(["replay", "--file", str(packed), "--snapshot", str(tmp_path / "s.json"), "--no-progress"]) == 0
    letters = (tmp_path / "d.deadletter.jsonl").read_bytes().splitlines()
    assert len(letters) == 80 and orjson.loads(letters[0])["source"] == str(packed)
    assert "(written to " + str(tmp_path / "d.deadletter.jsonl") in capsys.readouterr().err


@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_array_of_events_replays_as_its_json_lines(tmp_path, indent):
    """A file holding one JSON array of events (``json.dump`` of a list, on one line or
    pretty-printed) gives the JSON-lines file's snapshot and counts; its invalid elements are
    dead-lettered with their element number as the line."""
    import json

    dec, out = _replay_file(tmp_path)
    lines = [x for x in dec.read_bytes().splitlines() if x]
    events = []
    for x in lines:
        try:
            events.append(json.loads(x))
        except ValueError:
            events.append("not json")  # a string element: rejected, as the bad line was
    array = tmp_path / "d.json"
    array.write_text(json.dumps(events, indent=indent))
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    a = _replayed(array, out, tmp_path / "a.dl", False)
    b = _replayed(plain, out, tmp_path / "b.dl", False)
    assert a[:4] == b[:4] and [x["reason"] for x in a[4]] == [x["reason"] for x in b[4]]
    assert [x["offset"] for x in a[4] if x["topic"] == "fairness.decisions"] == [
        x["offset"] for x in b[4] if x["topic"] == "fairness.decisions"
    ]


def test_a_file_that_only_starts_like_an_array_is_read_as_json_lines(tmp_path, caplog):
    """A first line ``[1, 2]`` (an invalid event) or an array cut short: read as JSON lines with a
    warning; the other lines count as before, nothing is lost."""
    import logging

    dec, out = _replay_file(tmp_path)
    odd = tmp_path / "odd.jsonl"
    odd.write_bytes(b"[1, 2]\n" + dec.read_bytes())
    with caplog.at_level(logging.WARNING, "fairwatch.files"):
        got = _replayed(odd, out, tmp_path / "odd.dl", False)
    assert "starts with '[' but is not one JSON array" in caplog.text
    want = _replayed(dec, out, tmp_path / "plain.dl", False)
    assert got[3] == want[3] + 1 and got[4][0]["reason"] == "not_an_object" and got[4][0]["offset"] == 1
    # (one line more shifts the batches: score sums add up in another order, equal to 1e-9)
    samples = [[(n, lab, round(v, 9)) for n, lab, v in r[0] if n != "fairwatch_events_total"] for r in (got, want)]
    assert samples[0] == samples[1]
