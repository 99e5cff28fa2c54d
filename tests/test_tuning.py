import json

import pytest

from configurator import ConfigError
from experiments.tuning import at_chosen_rates, check_disjoint, choose_rates, selection_table


class NoTestLoss(dict):
    """A results record whose test loss may not be looked at."""

    def __getitem__(self, key):
        if key == "test_loss":
            raise AssertionError("the selection read a test loss")
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key == "test_loss":
            raise AssertionError("the selection read a test loss")
        return super().get(key, default)


def record(variant, mode, seed, rate, val, test, status="ok"):
    return NoTestLoss(variant=variant, mode=mode, seed=seed, params={"learning_rate": rate}, status=status,
                      best_val_loss=val if status == "ok" else None, test_loss=test)


def grid_records():
    # baseline: 3e-3 is best on validation (means 2.0 vs 2.1 vs 2.3); its test loss would pick 1e-3
    rows = [("baseline", "none", "1e-3", (2.1, 2.1), 1.0), ("baseline", "none", "3e-3", (1.95, 2.05), 3.0),
            ("baseline", "none", "1e-2", (2.2, 2.4), 2.0),
            # centered: 1e-2 would win on validation but one selection seed diverged there
            ("mlp_centered", "momentum", "1e-3", (2.3, 2.2), 1.0),
            ("mlp_centered", "momentum", "3e-3", (2.15, 2.15), 5.0),
            ("mlp_centered", "momentum", "1e-2", (1.0, None), 0.5)]
    out = []
    for variant, mode, rate, vals, test in rows:
        for seed, val in zip((101, 102), vals):
            out.append(record(variant, mode, seed, rate, val, test, "diverged" if val is None else "ok"))
    return out


def test_selection_picks_the_validation_argmin_and_never_reads_test():
    table = selection_table(grid_records(), selection_seeds=[101, 102])
    assert table[("baseline", "none")]["3e-3"]["mean"] == pytest.approx(2.0)
    assert table[("mlp_centered", "momentum")]["1e-2"]["eligible"] is False
    assert choose_rates(table) == {("baseline", "none"): "3e-3", ("mlp_centered", "momentum"): "3e-3"}


def test_selection_ignores_runs_of_other_seeds():
    records = grid_records() + [record("baseline", "none", 1, "1e-2", 0.1, 0.1)]  # a test seed
    assert choose_rates(selection_table(records, [101, 102]))[("baseline", "none")] == "3e-3"


def test_a_rate_missing_a_selection_seed_is_not_eligible_and_ties_take_the_smaller_rate():
    records = [record("baseline", "none", 1, "1e-3", 2.0, 0), record("baseline", "none", 2, "1e-3", 2.0, 0),
               record("baseline", "none", 1, "3e-4", 2.0, 0), record("baseline", "none", 2, "3e-4", 2.0, 0),
               record("baseline", "none", 1, "1e-2", 1.0, 0)]  # seed 2 never ran at 1e-2
    assert choose_rates(selection_table(records, [1, 2])) == {("baseline", "none"): "3e-4"}
    assert choose_rates(selection_table(records[4:], [1, 2])) == {}


def test_test_phase_takes_fresh_seeds_at_the_chosen_rates():
    with pytest.raises(ConfigError, match="disjoint; both have 2"):
        check_disjoint([1, 2], [2, 3])
    check_disjoint([101, 102], [1, 2, 3])
    chosen = {("baseline", "none"): "3e-3"}
    records = [dict(variant="baseline", mode="none", seed=s, params={"learning_rate": rate}, status="ok")
               for s in (1, 2, 101) for rate in ("1e-3", "3e-3")]
    picked = at_chosen_rates(records, chosen, test_seeds=[1, 2])
    assert sorted((r["seed"], r["params"]["learning_rate"]) for r in picked) == [(1, "3e-3"), (2, "3e-3")]


def test_report_tables_show_the_grid_and_label_non_causal_modes(tmp_path):
    from experiments import report

    records, curves = [], {}
    for seed in (1, 2, 3):
        for variant, mode, loss, step_ms in (("baseline", "none", 2.0, 10.0), ("mlp_centered", "adaptive", 1.98, 11.0),
                                             ("mlp_centered", "momentum", 2.05, 10.0)):
            run_id = f"{variant}-{mode}-s{seed}"
            records.append({"run_id": run_id, "variant": variant, "mode": mode, "seed": seed, "iters": 40,
                            "status": "ok", "test_loss": loss + 0.01 * seed + 0.003 * seed * (variant != "baseline"),
                            "best_val_loss": loss,
                            "step_ms": step_ms, "params": {"learning_rate": "1e-3"}})
            curves[run_id] = [{"type": "eval", "iter": i, "val_loss": 3 - (3 - loss - 0.01 * seed) * i / 40}
                               for i in (0, 20, 40)]
    analysis = report.analyse(records, 40, "test_loss", ("baseline", "none"), run_dir_of=lambda r: r["run_id"],
                              read_metrics=curves.get)
    table = "\n".join(report.comparison_table(analysis, "test_loss"))
    assert "| mlp_centered | adaptive, non-causal |" in table and "| mlp_centered | momentum |" in table
    assert "| better |" in table and "| worse |" in table and "(x1.100;" in table
    notes = "\n".join(report.notes(analysis, "test_loss"))
    assert "over the 2 comparisons" in notes and "n >= 6" in notes and "Non-causal" in notes
    table = selection_table(records, [1, 2, 3])
    grid = "\n".join(report.grid_table(table, choose_rates(table)))
    assert "| mlp_centered | adaptive, non-causal | **1.9800 (n=3)** | 1e-3 |" in grid
    report.write_report(str(tmp_path), "t", [grid.split("\n")],
                        {"grid": table, "analysis": analysis}, [])
    assert json.loads((tmp_path / "results.json").read_text())["grid"]["baseline/none"]["1e-3"]["mean"] == 2.0
