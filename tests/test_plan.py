"""A sweep's plan (experiments/plan.py): run ids of a grid, and typos refused before anything runs."""
import pytest


def test_grid_plan_ids_and_typos(tmp_path):
    from configurator import ConfigError
    from experiments.plan import BASELINE_MODE, check_plan, parse_grid, plan_runs, variant_names

    assert variant_names()[0] == "baseline" and "embeddings_centered" in variant_names()
    assert "experiment_base" not in variant_names() and "gpu" not in variant_names()
    grid = parse_grid(["n_layer=2,4", "learning_rate=3e-4,1e-3"])
    runs = plan_runs(["baseline", "qk_centered"], ["adaptive", "momentum"], [1, 2], [50], grid)
    assert len(runs) == (1 + 2) * 4 * 2 and len({r.run_id for r in runs}) == len(runs)
    assert runs[0].run_id == f"baseline-{BASELINE_MODE}-s1-i50-learning_rate=3e-4-n_layer=2"
    assert runs[0].group == f"baseline-{BASELINE_MODE}-i50-learning_rate=3e-4-n_layer=2"
    assert runs[-1].run_id == "qk_centered-momentum-s2-i50-learning_rate=1e-3-n_layer=4"
    assert runs[-1].train_args(["--batch_size=4"])[1:] == [
        "--batch_size=4", "--seed=2", "--max_iters=50", "--lr_decay_iters=50", "--centering_mode=momentum",
        "--learning_rate=1e-3", "--n_layer=4"]
    configs = check_plan(runs, ["baseline", "qk_centered"], ["adaptive", "momentum"], ["--batch_size=4"])
    assert configs[runs[-1].run_id]["learning_rate"] == 1e-3 and configs[runs[-1].run_id]["n_layer"] == 4

    def rejected(grid=None, overrides=(), variants=("baseline",), modes=("adaptive",)):
        with pytest.raises(ConfigError) as e:
            check_plan(plan_runs(variants, modes, [1], [10], parse_grid(grid)), variants, modes, overrides)
        return str(e.value)

    assert "did you mean 'learning_rate'" in rejected(["learnin_rate=1e-3"])
    assert "--n_layer expects an integer, got 'two'" in rejected(["n_layer=2,two"])
    assert "did you mean 'batch_size'" in rejected(overrides=["--bach_size=4"])
    assert "use --seeds" in rejected(["seed=1,2"])
    assert "both a --grid axis and a --key=value override" in rejected(["n_layer=2"], ["--n_layer=3"])
    assert "no config for variant 'nope'" in rejected(variants=["nope"])
    assert "unknown mode 'adaptiv'" in rejected(modes=["adaptiv"])
    assert "must be divisible" in rejected(["n_head=3"])  # validated with the variant's config
    with pytest.raises(ConfigError):
        parse_grid(["learning_rate"])
    overlay = tmp_path / "wide.py"  # a config file among the overrides: an overlay on every variant
    overlay.write_text("n_embd = 64\nn_head = 8\n")
    configs = check_plan(runs[:1], ["baseline"], [], [str(overlay), "--n_head=2"])
    assert (configs[runs[0].run_id]["n_embd"], configs[runs[0].run_id]["n_head"]) == (64, 2)
