"""Every committed report (results/<name>/results.md, which RESULTS.md's tables come from) is
regenerated from the committed runs, without training, by the command written at its top, and
comes out the same: the same results.json and the same results.md but for that command line."""
import json
import os
import shlex

import pytest

from conftest import REPO_ROOT, run_main

RESULTS = os.path.join(REPO_ROOT, "results")


def report_commands():
    """{report folder: its command's arguments}, for every results.md written by the protocol."""
    commands = {}
    for name in sorted(os.listdir(RESULTS)):
        path = os.path.join(RESULTS, name, "results.md")
        if os.path.isfile(path):
            lines = open(path, encoding="utf-8").read().splitlines()
            if len(lines) > 2 and lines[2].startswith("`python scripts/run_best_advanced_1k.py "):
                commands[name] = shlex.split(lines[2].strip("`"))[2:]
    return commands


COMMANDS = report_commands()


def without_command(report):
    return {k: v for k, v in report.items() if k != "command"}


def test_the_reports_are_found():
    assert {"decisive_1k", "decisive_code", "decisive_aggressive", "best_advanced_1k-tuned"} <= set(COMMANDS)


def without_drawing(monkeypatch):
    """Figures are made but not drawn (an empty file where each PNG goes): drawing is most of a
    report's time, and this test is about the tables; the plots are tested in test_plots.py."""
    import matplotlib.figure
    from experiments import plots

    def save_empty(fig, path, *args, **kwargs):
        open(path, "wb").close()

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", save_empty)
    monkeypatch.setattr(plots, "fit_texts", lambda fig, *args, **kwargs: None)


@pytest.mark.slow  # a few seconds a report
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_committed_report_regenerates_from_its_runs(name, tmp_path, capsys, monkeypatch):
    import run_best_advanced_1k as run_best
    without_drawing(monkeypatch)
    argv = COMMANDS[name]
    assert "--report_only" in argv and "--out_root=results" in argv  # reads the committed runs, trains nothing
    monkeypatch.chdir(REPO_ROOT)  # the command's paths are the repository's
    status, out, err = run_main(run_best.main, [*argv, f"--report_dir={tmp_path}"], capsys)
    assert status == 0, err
    committed = os.path.join(RESULTS, name)
    with open(os.path.join(committed, "results.json"), encoding="utf-8") as f:
        old = json.load(f)
    with open(tmp_path / "results.json", encoding="utf-8") as f:
        new = json.load(f)
    assert without_command(new) == without_command(old)
    old_md = open(os.path.join(committed, "results.md"), encoding="utf-8").read().splitlines()
    new_md = (tmp_path / "results.md").read_text(encoding="utf-8").splitlines()
    assert new_md[:2] + new_md[3:] == old_md[:2] + old_md[3:]  # line 3 is the command itself
