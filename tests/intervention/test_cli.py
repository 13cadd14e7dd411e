"""CLI: stage subcommands work standalone; bad input is one clear line and exit code 2."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fairwatch.intervention.cli import add_pipeline_parser, main
from fairwatch.intervention.synthetic import LOAN_EXPERT_KNOWLEDGE, loan_applications

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    loan_applications(3000, seed=5).to_csv(d / "loan_data.csv", index=False)
    (d / "dag.json").write_text(json.dumps(LOAN_EXPERT_KNOWLEDGE))
    return d


def base(d: Path) -> list[str]:
    return ["--data", str(d / "loan_data.csv"), "--protected", "race,sex", "--outcome", "approved",
            "--exclude", "repaid", "--no-progress"]  # fmt: skip


@pytest.mark.parametrize("argv,message", [
    (["--base-estimator", "svm"], "argument --base-estimator: invalid choice: 'svm' (choose from"),
    (["--target-fairness", "parity"], "argument --target-fairness: invalid choice: 'parity'"),
])  # fmt: skip
def test_bad_choices_exit_2(data, capsys, argv, message):
    assert main(["pipeline", "inprocess", *base(data), *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--protected", "ethnicity"],
     "error: --protected: column 'ethnicity' is not in the data; available columns: 'race'"),
    (["--repair-level", "1.5"], "error: --repair-level: 1.5 is outside the valid range 0.0..1.0"),
    (["--constraint-weight", "-0.1"], "error: --constraint-weight: -0.1 is outside the valid range 0.0..1.0"),
    (["--data", "/nonexistent/x.csv"], "error: --data: cannot read '/nonexistent/x.csv'"),
    (["--outcome", "salary"], "error: --outcome: column 'salary' is not in the data"),
    (["--outcome", "zip_code"], "error: --outcome: 'zip_code' is invalid: not binary"),
])  # fmt: skip
def test_bad_input_is_a_clear_error(data, capsys, extra, message):
    assert main(["pipeline", "causal", *base(data), *extra, "--output", str(data / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err and err.count("\n") == 1


def test_stage_commands_standalone(data, capsys):
    out = data / "stages"
    assert (
        main(
            [
                "pipeline",
                "causal",
                *base(data),
                "--expert-knowledge",
                str(data / "dag.json"),
                "--mediators",
                "income,credit_score",
                "--output",
                str(out / "causal"),
            ]
        )
        == 0
    )
    assert (out / "causal" / "causal" / "causal_dag.dot").is_file()
    assert (
        main(
            [
                "pipeline",
                "preprocess",
                *base(data),
                "--features",
                "credit_score,income",
                "--repair-level",
                "0.8",
                "--technique",
                "disparate_impact_remover",
                "--output",
                str(out / "pre.csv"),
            ]
        )
        == 0
    )
    assert (out / "pre.csv").is_file()
    assert (
        main(
            [
                "pipeline",
                "inprocess",
                "--data",
                str(out / "pre.csv"),
                "--protected",
                "race",
                "--outcome",
                "approved",
                "--exclude",
                "repaid,sex",
                "--fairness-constraint",
                "equalized_odds",
                "--constraint-weight",
                "0.5",
                "--output",
                str(out / "in"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (out / "in" / "model.joblib").is_file()
    assert (
        main(
            [
                "pipeline",
                "postprocess",
                "--data",
                str(out / "pre.csv"),
                "--protected",
                "race",
                "--outcome",
                "approved",
                "--exclude",
                "repaid,sex",
                "--fairness-constraint",
                "equal_opportunity",
                "--model",
                str(out / "in" / "model.joblib"),
                "--output",
                str(out / "post"),
                "--no-progress",
            ]
        )
        == 0
    )
    rep = json.loads((out / "post" / "postprocess_report.json").read_text())
    assert rep["calibration"]["method"] == "platt" and (out / "post" / "model_postprocessed.joblib").is_file()
    assert (
        main(
            [
                "pipeline",
                "evaluate",
                "--data",
                str(out / "pre.csv"),
                "--protected",
                "race,sex",
                "--outcome",
                "approved",
                "--exclude",
                "repaid",
                "--models",
                f"{out / 'in' / 'model.joblib'},{out / 'post' / 'model_postprocessed.joblib'}",
                "--output",
                str(out / "eval"),
            ]
        )
        == 0
    )
    ev = json.loads((out / "eval" / "intersectional_fairness_report.json").read_text())
    assert set(ev["models"]) == {"model", "model_postprocessed"} and ev["pareto"]["frontier"]
    assert "Black,Female" in ev["models"]["model"]["intersectional"]["groups"]
    capsys.readouterr()


def test_parser_plugs_into_a_parent_cli():
    parser = argparse.ArgumentParser(prog="fairwatch")
    add_pipeline_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["pipeline", "run", "--config", "pipeline.yaml"])
    assert args.config == "pipeline.yaml" and callable(args.func)
    assert args.func(argparse.Namespace(**{**vars(args), "config": "/nonexistent.yaml"})) == 2


def test_python_m_intervention_runs():
    r = subprocess.run([sys.executable, "-m", "intervention", "pipeline", "run", "--config", "/nonexistent.yaml"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("error: --config: cannot read '/nonexistent.yaml'")


def test_a_protected_attribute_of_one_group_is_a_clear_error(data, capsys):
    """Every row in one group: nothing to compare, so no run (a plan from it would certify a
    parity ratio of 1.0 that compared nothing)."""
    import pandas as pd

    one = pd.read_csv(data / "loan_data.csv").assign(sex="female")
    one.to_csv(data / "one_group.csv", index=False)
    argv = ["--data", str(data / "one_group.csv"), "--protected", "race,sex", "--outcome", "approved",
            "--exclude", "repaid", "--no-progress", "--output", str(data / "o1")]  # fmt: skip
    assert main(["pipeline", "run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --protected: 'sex' is invalid: every row is in one group ('female', 3000 rows)")
    assert err.count("\n") == 1 and not (data / "o1" / "remediation_plan.md").exists()


def test_spreadsheet_csv_exports_read_as_the_data(data, caplog):
    """A CSV as European spreadsheets save it (semicolons, decimal commas, Windows-1252 text) and
    tab-separated text read as the same table as the plain CSV; text in no known encoding is an
    error naming the file."""
    import logging

    import pandas as pd
    from fairwatch.intervention.data import load_table
    from fairwatch.intervention.errors import PipelineInputError

    plain = load_table(data / "loan_data.csv").assign(
        region=lambda d: "Zürich-" + d["race"].astype(str), debt_ratio=lambda d: (d["income"] % 997 / 997).round(3)
    )
    plain.to_csv(data / "utf8.csv", index=False)
    plain = load_table(data / "utf8.csv")
    assert plain["debt_ratio"].dtype.kind == "f" and not plain["debt_ratio"].eq(plain["debt_ratio"].round()).all()
    plain.to_csv(data / "excel.csv", sep=";", decimal=",", index=False, encoding="cp1252")
    plain.to_csv(data / "tabs.tsv", sep="\t", index=False)
    plain.to_csv(data / "bom.csv", index=False, encoding="utf-8-sig")
    with caplog.at_level(logging.INFO, "fairwatch.pipeline"):
        for name in ("excel.csv", "tabs.tsv", "bom.csv"):
            pd.testing.assert_frame_equal(load_table(data / name), plain, check_dtype=False, obj=name)
    assert "excel.csv is not UTF-8" in caplog.text and "read as Windows-1252" in caplog.text
    plain.to_csv(data / "unicode.txt", sep="\t", index=False, encoding="utf-16")  # Excel's "Unicode text"
    pd.testing.assert_frame_equal(load_table(data / "unicode.txt"), plain, check_dtype=False)
    (data / "utf16le.csv").write_bytes("a,b\n1,2\n".encode("utf-16-le"))
    with pytest.raises(PipelineInputError, match=r"--data: cannot read '.*utf16le\.csv': holds NUL bytes"):
        load_table(data / "utf16le.csv")
    (data / "mixed.csv").write_bytes(b"a,b\n\x81\xe4,2\n")  # 0x81: no character in Windows-1252
    with pytest.raises(PipelineInputError, match=r"cannot read '.*mixed\.csv': neither UTF-8 .* save it as UTF-8"):
        load_table(data / "mixed.csv")


def test_missing_values_in_features_run_and_a_missing_outcome_is_named(data, capsys, caplog):
    """Real data has gaps. Missing numbers (15 % of ``income``), a missing category, and a
    column empty in every row run through the whole pipeline (median plus a "was missing"
    indicator for the model, the median for the causal statistics; the empty column left out,
    with a warning); a row without an outcome is one line naming the first such row."""
    import logging

    import numpy as np
    import pandas as pd

    df = pd.read_csv(data / "loan_data.csv")
    rng = np.random.default_rng(8)
    df.loc[rng.random(len(df)) < 0.15, "income"] = np.nan
    df.loc[rng.random(len(df)) < 0.10, "zip_code"] = None
    df["notes"] = np.nan
    df.to_csv(data / "gaps.csv", index=False)
    out = data / "gaps"
    argv = ["--data", str(data / "gaps.csv"), "--protected", "race,sex", "--outcome", "approved",
            "--exclude", "repaid", "--no-progress", "--sample", "1500", "--output", str(out)]  # fmt: skip
    with caplog.at_level(logging.WARNING, "fairwatch.intervention"):
        assert main(["pipeline", "run", *argv]) in (0, 1, 4)
    assert "features left out: no value in any row: notes" in caplog.text
    run = json.loads((out / "run.json").read_text())
    assert "income" in json.dumps(run) and (out / "remediation_plan.md").is_file()
    assert "Traceback" not in capsys.readouterr().err
    df.loc[[7, 40], "approved"] = np.nan
    df.to_csv(data / "no_outcome.csv", index=False)
    argv[1] = str(data / "no_outcome.csv")
    assert main(["pipeline", "run", *argv]) == 2
    assert capsys.readouterr().err.startswith(
        "error: --outcome: 'approved' is invalid: 2 row(s) have no value (the first: data row 8); drop them"
    )
