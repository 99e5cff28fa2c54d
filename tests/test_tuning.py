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
