import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


def write_report(folder, n_embd, cells, family, rates, tuned=True):
    """A results.json as run_best_advanced_1k.py writes it, with only what the table reads."""
    folder.mkdir()
    comparisons = {"baseline/none": {"losses": {"1": 2.0, "2": 2.02}, "mean": 2.01, "std": 0.0141, "comparison": None}}
    for cell, (mean, low, high, p, decision) in cells.items():
        comparisons[cell] = {"losses": {"1": 2.0, "2": 2.0}, "mean": 2.0, "std": 0.01,
                             "comparison": {"n": 2, "mean_pct": mean, "ci_low": low, "ci_high": high,
                                            "p_holm": p, "decision": decision}}
    config = {"n_embd": n_embd, "n_layer": 4, "seed": 1, "learning_rate": 1e-3, "out_dir": str(folder), "device": "cpu"}
    runs = [{"variant": "baseline", "mode": "none", "seed": 1, "config": config}]
    (folder / "results.json").write_text(json.dumps({"comparisons": comparisons, "runs": runs, "family": family,
                                                     "metric": "test_loss", "chosen_rates": rates, "tuned": tuned}))


def test_one_row_per_cell_one_column_per_report_labelled_by_what_differs(tmp_path):
    from experiments.compare import across_reports

    write_report(tmp_path / "a", 64, {"value_centered/momentum": (-4.95, -7.18, -2.72, 0.0014, "worse"),
                                      "mlp_centered/adaptive": (0.5, 0.1, 0.9, 0.03, "better")}, 2,
                 {"baseline/none": "8e-3", "value_centered/momentum": "8e-3", "mlp_centered/adaptive": "4e-3"})
    write_report(tmp_path / "b", 128, {"value_centered/momentum": (-1.64, -2.26, -1.03, 0.0019, "worse")}, 12,
                 {"baseline/none": "4e-3", "value_centered/momentum": "4e-3"})
    lines = across_reports([str(tmp_path / "a"), str(tmp_path / "b")])
    assert lines[0] == "| cell | n_embd=64 | n_embd=128 |"  # seed, rate and out_dir differ too, but are no setting
    assert lines[2].startswith("| baseline | lr 8e-3: 2.0100 ± 0.0141 (n=2) | lr 4e-3: 2.0100")
    assert lines[3] == ("| value_centered (momentum) | lr 8e-3: -4.95% [-7.18, -2.72] (n=2), p 0.0014, worse "
                        "| lr 4e-3: -1.64% [-2.26, -1.03] (n=2), p 0.0019, worse |")
    assert lines[4] == ("| mlp_centered (adaptive, non-causal) | lr 4e-3: +0.50% [+0.10, +0.90] (n=2), p 0.03, better "
                        "| not measured |")
    assert "n_embd=64: 2 comparisons, test_loss; n_embd=128: 12 comparisons" in lines[-1]

    only = across_reports([str(tmp_path / "a"), str(tmp_path / "b")], cells=["value_centered/momentum"])
    assert len(only) == 2 + 2 + 2 and "mlp_centered" not in "\n".join(only[:-1])

    # reports that differ in no setting are labelled by their folders
    write_report(tmp_path / "c", 64, {}, 0, {})
    assert across_reports([str(tmp_path / "a"), str(tmp_path / "c")])[0] == "| cell | a | c |"

    # a report at a fixed rate beside tuned ones is labelled so; no curve mixes the two
    from configurator import UserError
    from experiments.compare import setting_curve
    write_report(tmp_path / "fixed", 256, {"value_centered/momentum": (-0.5, -1.0, 0.0, 0.2, "no detectable difference")},
                 1, {}, tuned=False)
    folders = [str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "fixed")]
    assert across_reports(folders)[0] == ("| cell | learning_rate=tuned, n_embd=64 | learning_rate=tuned, n_embd=128 "
                                          "| learning_rate=0.001, n_embd=256 |")
    with pytest.raises(UserError, match="some reports tuned the learning rate and some did not"):
        setting_curve(folders, key="n_embd")
    assert setting_curve(folders[:2])[0] == "n_embd"


@pytest.mark.parametrize("args, message", [
    (["{a}"], "error: give two or more report folders to compare"),
    (["{a}", "{missing}"], "has no results.json: give a report folder of run_best_advanced_1k.py"),
    (["{a}", "{broken}"], "cannot be read"),
    (["{a}", "{listed}"], "is not a comparison report (its runs are not a list of records)"),
    (["{a}", "{selecting}"], "has no test runs yet, only its learning-rate selection"),
    (["{a}", "{a}", "--cells=foo/bar"], "error: no report has foo/bar"),
])
def test_bad_input_is_one_line_and_exit_1(tmp_path, args, message, capsys):
    import compare_reports
    from conftest import run_main
    write_report(tmp_path / "a", 64, {}, 0, {})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    (tmp_path / "listed").mkdir()
    (tmp_path / "listed" / "results.json").write_text(json.dumps({"comparisons": {}, "runs": ["x"]}))
    (tmp_path / "selecting").mkdir()  # a tuned sweep under way: its grid reported, no test run yet
    (tmp_path / "selecting" / "results.json").write_text(json.dumps(
        {"grid": {"baseline/none": {"1e-3": 1.9}}, "chosen_rates": {}, "comparisons": None, "runs": []}))
    folders = {"a": tmp_path / "a", "missing": tmp_path / "missing", "broken": tmp_path / "broken",
               "listed": tmp_path / "listed", "selecting": tmp_path / "selecting"}
    argv = [a.format(**folders) for a in args]
    status, out, err = run_main(compare_reports.main, argv, capsys)
    assert status == 1 and err.count("\n") == 1 and message in err, err
    if args[-1] == "{broken}":  # once as the command line itself: the exit status and no traceback
        r = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "compare_reports.py"), *argv],
                           capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr == err, r.stderr


def test_a_seed_plan_report_shows_its_own_decision_and_the_width_curve_draws_every_cell(tmp_path, capsys):
    """A report with a seed plan (--looks) gives the decision of its plan (here "equivalent within
    ±0.5%", decided by the equivalence test), not the fixed-design t-test's; --plot draws each
    cell against the setting the reports differ in, one point per report that has it."""
    import compare_reports
    from conftest import run_main
    from experiments.compare import across_reports, setting_curve
    write_report(tmp_path / "a", 64, {"value_centered/momentum": (-4.95, -7.18, -2.72, 0.0014, "worse"),
                                      "mlp_centered/adaptive": (0.5, 0.1, 0.9, 0.03, "better")}, 2, {})
    write_report(tmp_path / "b", 128, {"value_centered/momentum": (-0.1, -0.3, 0.1, 0.4, "no detectable difference")},
                 1, {})
    planned = json.loads((tmp_path / "b" / "results.json").read_text())
    comparison = {**planned["comparisons"]["value_centered/momentum"]["comparison"], "n": 40, "p_tost_holm": 0.012}
    planned["sequential"] = {"cells": {"value_centered/momentum": {"decision": "equivalent", "decided_at": 40,
                                                                   "comparison": comparison}}}
    planned["seed_plan"] = {"looks": [10, 20, 30, 40], "margin": 0.5}
    (tmp_path / "b" / "results.json").write_text(json.dumps(planned))
    folders = [str(tmp_path / "b"), str(tmp_path / "a")]
    row = across_reports(folders)[3]
    assert row == ("| value_centered (momentum) | -0.10% [-0.30, +0.10] (n=40), p 0.012, equivalent within ±0.5% "
                   "| -4.95% [-7.18, -2.72] (n=2), p 0.0014, worse |"), row
    key, curve = setting_curve(folders)
    assert key == "n_embd"
    assert curve["value_centered/momentum"] == [(64, -4.95, -7.18, -2.72, 2, "worse"),
                                                (128, -0.1, -0.3, 0.1, 40, "equivalent")]
    assert curve["mlp_centered/adaptive"] == [(64, 0.5, 0.1, 0.9, 2, "better")]

    png = tmp_path / "curve.png"
    (tmp_path / "a_folder.png").mkdir()
    status, out, err = run_main(compare_reports.main, [*folders, f"--plot={png}"], capsys)
    assert status == 0 and f"written to {png}" in out, err
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
    for argv, message, expected in (([*folders, "--x=n_embd"], "--x goes with --plot", 2),
                                    ([*folders, f"--plot={png}", "--x=device"], "--x=device: not a number", 1),
                                    ([*folders, f"--plot={png}", "--cells=foo/bar"], "no report has foo/bar", 1),
                                    ([folders[0], folders[0], f"--plot={png}"], "differ in no setting", 1),
                                    ([*folders, f"--plot={tmp_path / 'curve.txt'}"], "give a .png, .pdf or .svg file", 2),
                                    ([*folders, f"--plot={tmp_path / 'nowhere' / 'curve.png'}"], "is not a writable folder", 2),
                                    ([*folders, f"--plot={tmp_path / 'a_folder.png'}"], "is a folder: give a file name", 2)):
        status, out, err = run_main(compare_reports.main, argv, capsys)
        assert status == expected and err.count("\n") == 1 and message in err, (argv, err)  # 2: a bad option, 1: the reports

    # a seed plan whose first look is not complete yet (a report of a sweep under way): no figure yet
    planned["sequential"]["cells"]["value_centered/momentum"]["comparison"] = None
    (tmp_path / "b" / "results.json").write_text(json.dumps(planned))
    assert "| no look of the seed plan complete yet |" in across_reports(folders)[3]
    assert setting_curve(folders)[1]["value_centered/momentum"] == [(64, -4.95, -7.18, -2.72, 2, "worse")]
