import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from experiments import plots
from experiments.stats import compare_records


@pytest.fixture
def kept_figures(monkeypatch):
    """The figures the plot functions save, kept open for inspection."""
    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    yield figures
    monkeypatch.undo()
    plots.plt.close("all")


def texts_outside(fig):
    fig.canvas.draw()
    renderer, box = fig.canvas.get_renderer(), fig.bbox
    outside = []
    for text in fig.findobj(plots.Text):
        if text.get_visible() and text.get_text():
            e = text.get_window_extent(renderer)
            if e.x0 < -0.5 or e.y0 < -0.5 or e.x1 > box.x1 + 0.5 or e.y1 > box.y1 + 0.5:
                outside.append(text.get_text())
    return outside


def records(modes=("adaptive", "momentum")):
    out = []
    for seed in (1, 2, 3):
        out.append({"variant": "baseline", "mode": "none", "seed": seed, "iters": 50, "status": "ok",
                    "final_val_loss": 2.0 + 0.01 * seed})
        for k, mode in enumerate(modes):
            for variant in ("embeddings_centered", "value_centered"):
                out.append({"variant": variant, "mode": mode, "seed": seed, "iters": 50, "status": "ok",
                            "final_val_loss": 2.0 + 0.01 * seed + 0.02 * (k - 0.5) + 0.001 * seed * k})
    return out


def test_titles_and_colour_bar_labels_fit_inside_the_images(kept_figures, tmp_path):
    groups = compare_records(records(), 50)
    long_title = "Mean improvement over the baseline (%) at 50 iterations, paired by seed, on a long dataset name"
    plots.mode_heatmap(groups, tmp_path / "h.png", title=long_title)
    plots.improvement_bars(groups, tmp_path / "b.png", title=long_title)
    assert len(kept_figures) == 2
    for fig in kept_figures:
        assert texts_outside(fig) == []
    # the heatmap labels the batch-statistics modes as not causal
    ticks = [t.get_text() for t in kept_figures[0].axes[0].get_xticklabels()]
    assert ticks == ["adaptive, non-causal", "momentum"]


def write_run(folder, train_iters, eval_iters, mode="momentum"):
    os.makedirs(folder)
    with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
        for i in train_iters:
            f.write(json.dumps({"type": "train", "iter": i, "loss": 3.0 - 0.01 * i, "lr": 1e-3}) + "\n")
        for i in eval_iters:
            f.write(json.dumps({"type": "eval", "iter": i, "train_loss": 3.0 - 0.01 * i,
                                "val_loss": 3.1 - 0.01 * i}) + "\n")
    with open(os.path.join(folder, "run.json"), "w") as f:
        json.dump({"group": f"value_centered-{mode}-i40", "mode": mode}, f)


def test_training_panel_is_not_empty_when_a_run_logged_few_steps(kept_figures, tmp_path):
    write_run(tmp_path / "a-s1", [0], [0, 20, 40], mode="simple")  # log interval longer than the run
    write_run(tmp_path / "a-s2", [0], [0, 20, 40], mode="simple")
    plots.plot_curves(plots.find_runs([str(tmp_path)]), tmp_path / "c.png")
    train_axis = kept_figures[0].axes[0]
    assert [len(line.get_xdata()) for line in train_axis.get_lines()] == [3]
    assert "non-causal" in train_axis.get_lines()[0].get_label()


def test_curves_of_runs_logged_at_different_iterations_are_interpolated():
    x, mean, std = plots.mean_band([[(0, 1.0), (10, 2.0)], [(5, 1.5), (15, 2.5)]])
    # each run linear between its points, flat past its ends: (1, 1.5, 2, 2) and (1.5, 1.5, 2, 2.5)
    assert list(x) == [0, 5, 10, 15]
    assert list(mean) == pytest.approx([1.25, 1.5, 2.0, 2.25]) and list(std) == pytest.approx([0.25, 0, 0, 0.25])


def test_plot_training_improved_writes_next_to_its_input(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep / "r-s1", range(0, 40, 5), [0, 20, 40])
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    r = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "plot_training_improved.py"), str(sweep)],
                       capture_output=True, text=True, cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert (sweep / "training_curves.png").stat().st_size > 10_000 and not os.listdir(elsewhere)


def test_plot_commands_refuse_bad_paths_and_files_in_one_line(tmp_path, capsys):
    """Where the images would go (a folder named like an image, a missing folder, a file as the
    --out_dir) and what is read (a metrics.jsonl given as a sweep's results, a damaged run.json):
    one line and an exit status, no traceback, nothing written."""
    import create_comparison_plots
    import plot_diagnostics
    import plot_training_improved
    from conftest import run_main
    write_run(tmp_path / "sweep" / "r-s1", range(0, 40, 5), [0, 20, 40])
    (tmp_path / "dir.png").mkdir()
    mine = tmp_path / "mine"
    mine.write_text("mine")
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps({**r, "run_id": f"{r['variant']}-{r['seed']}"}) + "\n" for r in records()))
    metrics = tmp_path / "sweep" / "r-s1" / "metrics.jsonl"
    for main, argv, message, expected in (
            (plot_training_improved.main, [str(tmp_path / "sweep"), f"--out={tmp_path / 'dir.png'}"], "is a folder", 2),
            (plot_training_improved.main, [str(tmp_path / "sweep"), f"--out={tmp_path / 'nodir' / 'x.png'}"],
             "is not a writable folder", 2),
            (create_comparison_plots.main, [str(results), f"--out_dir={mine}"], "is a file, not a folder", 2),
            (create_comparison_plots.main, [str(results), f"--out_dir={mine / 'sub'}"], "cannot write there", 2),
            (create_comparison_plots.main, [str(metrics)], "is not a sweep's results.jsonl: a record has no run_id", 1),
            (plot_diagnostics.main, [str(tmp_path / "sweep"), f"--out_dir={mine}"], "is a file, not a folder", 2)):
        status, out, err = run_main(main, argv, capsys)
        assert status == expected and err.count("\n") == 1 and message in err, (argv, err)
    assert mine.read_text() == "mine" and os.listdir(tmp_path / "dir.png") == []

    (tmp_path / "sweep" / "r-s1" / "run.json").write_text('{"group": "value_cen')  # cut short
    status, out, err = run_main(plot_diagnostics.main, [str(tmp_path / "sweep")], capsys)
    assert status == 1 and err.count("\n") == 1 and "run.json cannot be read" in err, err


def test_improvement_bars_take_a_seed_plans_decisions(kept_figures, tmp_path):
    """Under a seed plan the bars are coloured by its decisions (equivalent has a colour of its
    own), and the title names that rule instead of the fixed-design Holm one."""
    from matplotlib.colors import to_rgba
    groups = compare_records(records(modes=("momentum",)), 50)
    decisions = {("embeddings_centered", "momentum"): "equivalent", ("value_centered", "momentum"): "worse"}
    plots.improvement_bars(groups, tmp_path / "b.png", decisions=decisions, rule="seed plan, equivalence within ±0.5%")
    ax = kept_figures[0].axes[0]
    colours = {to_rgba(p.get_facecolor(), 1.0) for p in ax.patches if p.get_height() != 0}
    assert colours == {to_rgba(plots.DECISION_COLORS[d], 1.0) for d in ("equivalent", "worse")}
    assert "seed plan" in ax.get_title() and "Holm-corrected over" not in ax.get_title()
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"equivalent", "worse"}


def test_a_grid_sweep_is_compared_one_grid_point_at_a_time(tmp_path, capsys):
    """Runs of one variant and seed at two learning rates: pairing either with the baseline would
    be a guess (the last record read won, and the comparison depended on the order runs ended).
    Refused in one line that says how; --where picks one grid point, paired within it."""
    import create_comparison_plots
    from conftest import run_main
    lines = []
    for rate, gain in (("3e-3", 0.0007), ("3e-4", -0.066)):  # better at each rate; 3e-4 is worse than 3e-3
        for seed in (1, 2, 3):
            base = {"3e-3": 1.5, "3e-4": 1.6}[rate] + 0.001 * seed
            for variant, mode, loss in (("baseline", "none", base), ("value_centered", "momentum", base * (1 - gain))):
                lines.append({"run_id": f"{variant}-s{seed}-{rate}", "variant": variant, "mode": mode, "seed": seed,
                              "iters": 50, "status": "ok", "params": {"learning_rate": rate}, "test_loss": loss})
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in sorted(lines, key=lambda r: r["variant"])))
    status, out, err = run_main(create_comparison_plots.main, [str(results)], capsys)
    assert status == 1 and err.count("\n") == 1, err
    assert "baseline/none seed 1 has runs at two grid points (learning_rate=3e-3; learning_rate=3e-4)" in err
    assert "--where=KEY=VALUE" in err
    assert not list(tmp_path.glob("*.png"))
    status, out, err = run_main(create_comparison_plots.main, [str(results), "--where=learning_rate=3e-3"], capsys)
    assert status == 0, err
    assert (tmp_path / "improvement_i50.png").stat().st_size > 10_000
    groups = compare_records([r for r in lines if r["params"]["learning_rate"] == "3e-3"], 50, metric="test_loss")
    assert groups[("value_centered", "momentum")]["comparison"]["mean_pct"] == pytest.approx(0.07)
    status, out, err = run_main(create_comparison_plots.main, [str(results), "--where=learning_rate=1"], capsys)
    assert status == 1 and "no run of" in err and "--where=learning_rate=1" in err
