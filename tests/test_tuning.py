import json
import os
import subprocess
import sys

import pytest

from conftest import ENV, REPO_ROOT, SCRIPTS, TINY
from configurator import ConfigError
from experiments.records import read_jsonl
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


@pytest.mark.slow
def test_tuned_comparison_end_to_end(char_data, tmp_path, capsys, monkeypatch):
    """The one command: a rate grid on a selection seed, the rates chosen on validation, fresh
    test seeds at those rates, and the report of the test comparison. (It trains once, as the
    command line; the calls that train nothing run in this process.)"""
    import run_best_advanced_1k as run_best
    from conftest import run_main
    args = ["--tune=True", "--rates=3e-3,1e-2", "--selection_seeds=1", "--seeds=2", "--variants=value_centered",
            "--modes=momentum", "--iters=30", f"--out_root={tmp_path}", f"--data_dir={char_data}"]
    script = [sys.executable, os.path.join(REPO_ROOT, "scripts", "run_best_advanced_1k.py"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    status, out, err = run_main(run_best.main, args + ["--dry_run"] + TINY, capsys)
    assert status == 0, err
    assert "4 runs in" in out and "then 2 test seeds" in out
    r = subprocess.run(script + TINY, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    sweep_dir = tmp_path / "best_advanced_1k-tuned"
    runs = {x["run_id"]: x for x in read_jsonl(str(sweep_dir / "results.jsonl"))}
    report = json.loads((sweep_dir / "results.json").read_text())
    assert len(runs) == 8 and report["extended"] == {}  # 2 variants x (2 rates x 1 selection seed + 2 test seeds)

    # the chosen rate is the validation argmin on the selection seed, whatever the test losses
    for key, variant, mode in (("baseline/none", "baseline", "none"), ("value_centered/momentum", "value_centered", "momentum")):
        selection = {x["params"]["learning_rate"]: x["best_val_loss"] for x in runs.values()
                     if x["variant"] == variant and x["seed"] == 1001}
        assert report["chosen_rates"][key] == min(selection, key=selection.get)
        tested = [x for x in runs.values() if x["variant"] == variant and x["seed"] in (1, 2)]
        assert {x["params"]["learning_rate"] for x in tested} == {report["chosen_rates"][key]}
        group = report["comparisons"][key]
        assert group["mean"] == pytest.approx(sum(x["test_loss"] for x in tested) / 2)
    comparison = report["comparisons"]["value_centered/momentum"]["comparison"]
    assert report["metric"] == "test_loss" and report["family"] == 1
    assert comparison["p_holm"] == pytest.approx(comparison["p_value"])  # one comparison: Holm leaves it
    # the exact two-sided sign test on 2 seeds: 0.5 when both differences have one sign, else 1
    test_loss = {(x["variant"], x["seed"]): x["test_loss"] for x in runs.values() if x["seed"] in (1, 2)}
    signs = {(test_loss[("value_centered", s)] < test_loss[("baseline", s)]) for s in (1, 2)}
    assert comparison["p_sign"] == pytest.approx(0.5 if len(signs) == 1 else 1.0)

    table = (sweep_dir / "results.md").read_text()
    for text in ("lr 3e-3", "lr 1e-2", "p (Holm)", "p (sign, exact)", "Noise floor", "equal wall time",
                 "cannot reach 0.05", "| Value only | momentum |"):
        assert text in table
    for png in ("improvement.png", "rate_grid.png", "val_curves.png"):
        assert (sweep_dir / png).stat().st_size > 10_000

    # a test run trained again (its record replaced, as after a run lost and retrained on another
    # CPU): the report in the same folder names it with both losses, and keeps naming it after
    # the next report, whose earlier report already had the new loss
    results_file = sweep_dir / "results.jsonl"
    lines = results_file.read_text().splitlines()
    retrained_id = "baseline-none-s1-i30-learning_rate=" + report["chosen_rates"]["baseline/none"]
    then = runs[retrained_id]["test_loss"]
    lines = [json.dumps({**json.loads(line), "test_loss": then + 0.01}) if f'"{retrained_id}"' in line else line
             for line in lines]
    results_file.write_text("\n".join(lines) + "\n")
    assert "## Runs trained again" not in (sweep_dir / "results.md").read_text() and "retrained" not in report
    for _ in range(2):
        status, out, err = run_main(run_best.main, args + TINY + ["--report_only"], capsys)
        assert status == 0, err[-2000:]
        again = json.loads((sweep_dir / "results.json").read_text())
        assert again["retrained"] == {retrained_id: {"reported": then, "now": pytest.approx(then + 0.01)}}
        text = (sweep_dir / "results.md").read_text()
        assert "## Runs trained again" in text and f"| {retrained_id} | {then:.4f} | {then + 0.01:.4f} |" in text
        assert again["comparisons"]["baseline/none"]["mean"] != report["comparisons"]["baseline/none"]["mean"]

    # a report of the folder as it is, training nothing: with a test run's record gone, the
    # variant is named as not finished and left out, and nothing is run again; a command written
    # on a GPU machine (--gpus=0) reads back on one without a GPU
    kept = [line for line in results_file.read_text().splitlines() if '"value_centered-momentum-s2-' not in line]
    results_file.write_text("\n".join(kept) + "\n")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    status, out, err = run_main(run_best.main, args + TINY + ["--report_only", f"--report_dir={tmp_path / 'partial'}",
                                                              "--gpus=0"], capsys)
    assert status == 0, err[-2000:]
    text = (tmp_path / "partial" / "results.md").read_text()
    assert "**Partial**: 1 of the variants" in text and "Value only / momentum" in text
    assert "| Value only |" not in text and "lr 3e-3" in text  # not compared; the grid is there
    assert len(read_jsonl(str(results_file))) == len(kept)

    # another experiment's command on the same folder (other modes, sharing the baseline's runs)
    # would replace this report: refused before anything trains, unless it reports elsewhere
    status, out, err = run_main(run_best.main, [a.replace("--modes=momentum", "--modes=adaptive") for a in args] + TINY,
                                capsys)
    assert status == 1 and "holds the report of another command" in err
    assert "Traceback" not in err and len(read_jsonl(str(results_file))) == len(kept)

    # the same folder with another width is refused before anything runs (the sweep folder's own
    # check: tests/test_sweep.py), here already by its report; and so is this report's folder for the
    # same sweep at another width in another folder (the same run ids): its report would replace
    # this one, its runs all "trained again"
    status, out, err = run_main(run_best.main, args + TINY[:2] + ["--n_embd=24"] + TINY[3:], capsys)
    assert status == 1 and "trained with other settings (n_embd=16, now 24)" in err
    before = (sweep_dir / "results.json").read_bytes()
    wider = [a for a in args if not a.startswith("--out_root")] + [f"--out_root={tmp_path / 'wider'}",
                                                                   f"--report_dir={sweep_dir}", "--report_only"]
    status, out, err = run_main(run_best.main, wider + TINY[:2] + ["--n_embd=24"] + TINY[3:], capsys)
    assert status == 1 and err.count("\n") == 1, err
    assert "holds the report of runs trained with other settings (n_embd=16, now 24)" in err
    assert (sweep_dir / "results.json").read_bytes() == before


@pytest.mark.slow
def test_a_failed_selection_run_fails_the_command_and_its_variant_waits(char_data, tmp_path):
    """A variant whose selection run fails (a crash, run again by the next call) gets no rate
    in this call: it is named as not finished in the report, the others are compared, and the
    command exits 1 naming the failed selection run."""
    import shutil
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    for name in ("experiment_base.py", "baseline.py", "value_centered.py"):
        shutil.copy(os.path.join(REPO_ROOT, "config", name), config_dir)
    # a valid config that fails when the run starts: a model too large for the machine's memory
    # (a device or dtype it lacks is refused before the sweep starts; sizes are the trainer's check)
    (config_dir / "half.py").write_text('include("experiment_base.py")\ncenter_v = True\nvocab_multiple = 10 ** 12\n')
    r = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "run_best_advanced_1k.py"), "--tune",
                        "--rates=1e-2", "--selection_seeds=1", "--seeds=2", "--variants=value_centered,half",
                        "--modes=momentum", "--iters=20", f"--config_dir={config_dir}", f"--out_root={tmp_path}",
                        f"--data_dir={char_data}", *TINY],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)
    failed = "half-momentum-s1001-i20-learning_rate=1e-2"
    assert r.returncode == 1, r.stderr[-2000:]
    err = r.stderr.strip().splitlines()
    assert err[-1].startswith(f"error: 1 of 7 runs did not finish ok: {failed} (failed, exit 2)")
    assert f"phase 1: 1 selection runs failed ({failed})" in r.stdout
    sweep_dir = tmp_path / "best_advanced_1k-tuned"
    report = json.loads((sweep_dir / "results.json").read_text())  # written before the command failed
    assert report["no_rate"] == [] and report["selection_not_ok"] == [failed]
    assert report["pending"] == [["half", "momentum"]]
    assert set(report["chosen_rates"]) == {"baseline/none", "value_centered/momentum"}
    assert len(report["runs"]) == 4 and all(x["status"] == "ok" for x in report["runs"])
    table = (sweep_dir / "results.md").read_text()
    assert "**Partial**: 1 of the variants" in table and "half / momentum" in table
    assert f"a failed run is run again by the next call, and its variant waits for it): {failed} (failed)" in table


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
    # robust view: seed 2's improvement (2.02 - 2.006) / 2.02 is the median of the three
    assert "mlp_centered (adaptive, non-causal) +0.69%, 3/3; mlp_centered (momentum) " in notes
    assert notes.count("0/3") == 1
    table = selection_table(records, [1, 2, 3])
    grid = "\n".join(report.grid_table(table, choose_rates(table)))
    assert "| mlp_centered | adaptive, non-causal | **1.9800 (n=3)** | 1e-3 |" in grid
    report.write_report(str(tmp_path), "t", [grid.split("\n")],
                        {"grid": table, "analysis": analysis}, [])
    assert json.loads((tmp_path / "results.json").read_text())["grid"]["baseline/none"]["1e-3"]["mean"] == 2.0


def fake_tuned_sweep(tmp_path, monkeypatch):
    """The protocol of scripts/run_best_advanced_1k.py (experiments/protocol.py) with run_sweep
    replaced by made-up records (no training): baseline test losses `BASE`, variant "clear" 3% better, "close" about 0.7% better and noisy
    (a Holm p in [0.01, 0.1] on seeds 1-5). Returns (module, fake sweep, the sweeps asked for as
    (execute, run ids), args of --tune=True --seeds=5 --extend_to=10 --report_only=False (the
    tests set report_only), the rate grid's runs)."""
    import argparse

    from experiments import protocol as run_best
    base = [2.00, 2.01, 1.99, 2.02, 2.00, 2.01, 1.98, 2.00, 2.02, 1.99]
    gains = {"clear": [3.0, 3.1, 2.9, 3.0, 3.05], "close": [1.0, 0.4, 1.5, -0.2, 0.8] + [0.9, 0.5, 1.1, 0.7, 0.6]}
    store, asked = {}, []

    def fake_sweep(name, runs, out_root, overrides=(), execute=True, **options):
        asked.append((execute, [r.run_id for r in runs]))
        for r in runs:
            if execute and r.run_id not in store:
                loss = base[r.seed - 1] if r.seed <= 10 else 2.0 + (float(dict(r.params)["learning_rate"]) - 4e-3) ** 2
                if r.variant != "baseline" and r.seed <= 10:
                    loss *= 1 - gains[r.variant][r.seed - 1] / 100
                store[r.run_id] = {"run_id": r.run_id, "variant": r.variant, "mode": r.mode, "seed": r.seed,
                                   "iters": r.iters, "params": dict(r.params), "status": "ok", "best_val_loss": loss,
                                   "test_loss": loss, "wall_s": 1.0}
        return {r.run_id: store[r.run_id] for r in runs if r.run_id in store}

    fake_sweep.store = store
    monkeypatch.setattr(run_best, "run_sweep", fake_sweep)
    args = argparse.Namespace(report_only=False, selection_seeds=[1001, 1002], test_seeds=[1, 2, 3, 4, 5], seeds=5,
                              extend_to=10, iters=100, out_root=str(tmp_path), executor="local", jobs=1, nproc=1,
                              gpus=None, cpus=None, config_dir=None, partition=None, time_min=60, gpus_per_run=0,
                              cpus_per_run=2, wait=True, rates=["2e-3", "4e-3"], plan=None)
    grid = run_best.plan_runs(["baseline", "clear", "close"], ["momentum"], args.selection_seeds, [100],
                              {"learning_rate": args.rates})
    return run_best, fake_sweep, asked, args, grid


def test_the_retired_extension_rule_is_only_read_back_never_trained(tmp_path, monkeypatch):
    """--extend_to (report only): a variant whose Holm p on seeds 1-5 lies in [0.01, 0.1] is
    compared on the extra seeds 6-10 the folder holds for it and the baseline; a clear one is not;
    an unfinished variant is named, not compared, and nothing about extra seeds is decided until
    the whole family is there. No call trains a run."""
    run_best, fake_sweep, asked, args, grid = fake_tuned_sweep(tmp_path, monkeypatch)
    args.report_only = True

    # before the test phase of "close" has run: it is pending, nothing extended
    fake_sweep("s", grid, "", execute=True)
    fake_sweep("s", [run_best.Run(v, m, s, 100, (("learning_rate", "4e-3"),)) for v, m in
                     (("baseline", "none"), ("clear", "momentum")) for s in range(1, 6)], "", execute=True)
    partial = run_best.tuned_phases(args, "s", [], grid, lambda *a: None)
    assert partial["pending"] == [("close", "momentum")] and partial["extended"] == {}
    assert {(r["variant"], r["seed"]) for r in partial["records"]} == {(v, s) for v in ("baseline", "clear") for s in range(1, 6)}

    # the whole family and the extra seeds in the folder (as the second edition's sweeps hold them)
    fake_sweep("s", [run_best.Run("close", "momentum", s, 100, (("learning_rate", "4e-3"),)) for s in range(1, 6)],
               "", execute=True)
    fake_sweep("s", [run_best.Run(v, m, s, 100, (("learning_rate", "4e-3"),)) for v, m in
                     (("baseline", "none"), ("close", "momentum")) for s in range(6, 11)], "", execute=True)
    calls = len(asked)
    done = run_best.tuned_phases(args, "s", [], grid, lambda *a: None)
    assert all(execute is False for execute, _ in asked[calls:])
    assert done["chosen"] == {("baseline", "none"): "4e-3", ("clear", "momentum"): "4e-3", ("close", "momentum"): "4e-3"}
    assert 0.01 <= done["extended"][("close", "momentum")] <= 0.1 and ("clear", "momentum") not in done["extended"]
    assert sorted(asked[-1][1]) == sorted(f"{v}-s{s}-i100-learning_rate=4e-3"
                                          for v in ("baseline-none", "close-momentum") for s in range(6, 11))
    seeds = {}
    for r in done["records"]:
        seeds.setdefault(r["variant"], set()).add(r["seed"])
    assert seeds == {"baseline": set(range(1, 11)), "close": set(range(1, 11)), "clear": set(range(1, 6))}
    assert done["pending"] == []  # (a call that would train by the rule: refused, in the test below)


def test_the_seed_plan_gives_seeds_look_by_look_to_the_undecided_cells(tmp_path, monkeypatch):
    """--looks: every cell and the baseline get the first look's seeds; a clear cell is decided
    there and stops; the unclear one and the baseline go on to the next look; --report_only
    afterwards trains nothing and reaches the same decisions."""
    from experiments.seed_plan import SeedPlan
    run_best, fake_sweep, asked, args, grid = fake_tuned_sweep(tmp_path, monkeypatch)
    args.plan = SeedPlan((5, 10), (0.5, 0.5), margin=0.5)
    done = run_best.tuned_phases(args, "s", [], grid, lambda *a: None)
    cells = done["sequential"]["cells"]
    assert cells[("clear", "momentum")]["decision"] == "better" and cells[("clear", "momentum")]["decided_at"] == 5
    assert cells[("close", "momentum")]["decision"] == "better" and cells[("close", "momentum")]["decided_at"] == 10
    assert cells[("close", "momentum")]["comparison"]["mde_pct"] > 0
    clear_tests = {run_id for _, ids in asked for run_id in ids if run_id.startswith("clear-") and "-s100" not in run_id}
    assert clear_tests == {f"clear-momentum-s{s}-i100-learning_rate=4e-3" for s in range(1, 6)}  # it stopped
    seeds = {}
    for r in done["records"]:
        seeds.setdefault(r["variant"], set()).add(r["seed"])
    assert seeds == {"baseline": set(range(1, 11)), "close": set(range(1, 11)), "clear": set(range(1, 6))}
    trained = len(fake_sweep.store)
    args.report_only = True
    again = run_best.tuned_phases(args, "s", [], grid, lambda *a: None)
    assert len(fake_sweep.store) == trained
    assert {k: v["decision"] for k, v in again["sequential"]["cells"].items()} == {k: v["decision"] for k, v in cells.items()}


def test_report_only_never_trains_the_extra_seeds_and_waits_for_failed_runs(tmp_path, monkeypatch):
    """--report_only on a complete family with a borderline variant names the extra seeds as due
    without running them; a failed test run (which the next call runs again) leaves its variant
    pending and the extension undecided; a baseline none of whose test runs finished ok gives a
    family with nothing to compare, not a crash."""
    run_best, fake_sweep, asked, args, grid = fake_tuned_sweep(tmp_path, monkeypatch)
    fake_sweep("s", grid, "", execute=True)
    test_runs = [run_best.Run(v, m, s, 100, (("learning_rate", "4e-3"),)) for v, m in
                 (("baseline", "none"), ("clear", "momentum"), ("close", "momentum")) for s in range(1, 6)]
    fake_sweep("s", test_runs, "", execute=True)
    trained = len(fake_sweep.store)
    args.report_only = True
    phases = run_best.tuned_phases(args, "s", [], grid, lambda *a: None)
    assert phases["extension_pending"] == [("close", "momentum")] and phases["extended"] == {}
    assert len(fake_sweep.store) == trained and all(execute is False for execute, _ in asked[2:])
    assert {r["seed"] for r in phases["records"]} == set(range(1, 6))

    fake_sweep.store["clear-momentum-s3-i100-learning_rate=4e-3"]["status"] = "failed"
    phases = run_best.tuned_phases(args, "s", [], grid, lambda *a: None)
    assert phases["pending"] == [("clear", "momentum")] and "extension_pending" not in phases
    fake_sweep.store["clear-momentum-s3-i100-learning_rate=4e-3"]["status"] = "ok"

    for seed in range(1, 6):
        fake_sweep.store[f"baseline-none-s{seed}-i100-learning_rate=4e-3"].update(status="diverged", test_loss=None)
    args.report_only = False
    phases = run_best.tuned_phases(args, "s", [], grid, lambda *a: None)
    assert phases["extended"] == {} and phases["pending"] == [] and len(fake_sweep.store) == trained


def test_a_failed_selection_run_holds_its_variant_back_and_a_diverged_one_drops_its_rate(tmp_path, monkeypatch):
    """A selection run that failed (a crash: the next call runs it again) leaves its variant
    without a rate and without test runs in this call, rather than choosing from the rest of
    the grid; a diverged one makes only its rate ineligible. The next call, with the failed run
    now ok, chooses the variant's rate from the whole grid."""
    run_best, fake_sweep, asked, args, grid = fake_tuned_sweep(tmp_path, monkeypatch)
    crashed, diverged = "clear-momentum-s1001-i100-learning_rate=4e-3", "close-momentum-s1002-i100-learning_rate=4e-3"
    for run_id, status in ((crashed, "failed"), (diverged, "diverged")):
        variant, mode = run_id.split("-")[:2]
        seed = int(run_id.split("-s")[1].split("-")[0])
        fake_sweep.store[run_id] = {"run_id": run_id, "variant": variant, "mode": mode, "seed": seed, "iters": 100,
                                    "params": {"learning_rate": "4e-3"}, "status": status, "best_val_loss": None,
                                    "test_loss": None, "wall_s": 1.0}
    lines = []
    phases = run_best.tuned_phases(args, "s", [], grid, lines.append)
    assert phases["chosen"] == {("baseline", "none"): "4e-3", ("close", "momentum"): "2e-3"}
    assert phases["pending"] == [("clear", "momentum")] and phases["unrated"] == []
    asked_of_clear = {run_id.split("-")[2] for _, ids in asked for run_id in ids if run_id.startswith("clear-")}
    assert asked_of_clear == {"s1001", "s1002"}  # its grid only: no test run of "clear" was asked for
    assert any(line.startswith(f"phase 1: 1 selection runs failed ({crashed})") for line in lines)
    assert {r["variant"] for r in phases["records"]} == {"baseline", "close"}

    del fake_sweep.store[crashed]  # the next call runs it again, and now it finishes ok
    phases = run_best.tuned_phases(args, "s", [], grid, lines.append)
    assert phases["chosen"][("clear", "momentum")] == "4e-3" and phases["pending"] == []
    assert {r["seed"] for r in phases["records"] if r["variant"] == "clear"} == set(range(1, 6))


def test_a_report_folder_of_another_experiment_is_refused_also_in_the_older_format(tmp_path, monkeypatch):
    """check_report_dir: the same command (or a partial report of it) may write again; other
    modes or variants may not, also where results.json predates the identity keys; an
    unreadable results.json is one line, not a traceback."""
    from configurator import UserError

    run_best = fake_tuned_sweep(tmp_path, monkeypatch)[0]
    import argparse
    args = argparse.Namespace(dataset="shakespeare_char", iters=100, tune=True, variants=["clear", "close"],
                              modes=["momentum"], plan=None, cells=None)
    report = tmp_path / "results.json"
    report.write_text(json.dumps({"dataset": "shakespeare_char", "iters": 100, "tuned": True, "modes": ["momentum"],
                                  "grid": {"baseline/none": {}, "clear/momentum": {}}, "runs": []}))
    run_best.check_report_dir(args, str(tmp_path))  # older format, a partial report of this command
    for change in ({"modes": ["adaptive"]}, {"variants": ["mlp_centered"]}, {"iters": 150}):
        with pytest.raises(UserError, match="holds the report of another command"):
            run_best.check_report_dir(argparse.Namespace(**{**vars(args), **change}), str(tmp_path))
    report.write_text(json.dumps({**run_best.report_identity(args), "command": "x"}))
    run_best.check_report_dir(args, str(tmp_path))
    with pytest.raises(UserError, match="other mode_set"):
        run_best.check_report_dir(argparse.Namespace(**{**vars(args), "modes": ["momentum", "adaptive"]}), str(tmp_path))
    # a seed plan's margin is declared once: another margin (or no plan) is another report
    from experiments.seed_plan import SeedPlan
    planned = argparse.Namespace(**{**vars(args), "plan": SeedPlan.proportional((5, 10), 0.5)})
    report.write_text(json.dumps({**run_best.report_identity(planned), "command": "x"}))
    run_best.check_report_dir(planned, str(tmp_path))
    with pytest.raises(UserError, match="other seed_plan"):
        run_best.check_report_dir(argparse.Namespace(**{**vars(planned), "plan": SeedPlan.proportional((5, 10), 1.0)}),
                                  str(tmp_path))
    report.write_text("{not json")
    with pytest.raises(UserError, match="cannot be read"):
        run_best.check_report_dir(args, str(tmp_path))
    report.unlink()  # someone's own results.md, without a report's results.json: not replaced
    (tmp_path / "results.md").write_text("my notes")
    with pytest.raises(UserError, match="holds a results.md that is no report of this project"):
        run_best.check_report_dir(args, str(tmp_path))


def test_a_report_folder_that_cannot_be_written_is_refused_before_anything_trains(read_only_folder):
    """On a read-only mount: a ConfigError naming the folder, before anything trains."""
    import argparse

    from configurator import ConfigError
    from experiments.protocol import check_report_dir
    args = argparse.Namespace(dataset="shakespeare_char", iters=100, tune=True, variants=["value_centered"],
                              modes=["momentum"], plan=None, cells=None)
    with pytest.raises(ConfigError, match=f"{read_only_folder} is not a writable folder"):
        check_report_dir(args, str(read_only_folder / "report"))


def test_seed_plan_and_cells_options_are_checked(char_data, tmp_path, capsys):
    """--looks needs --tune and a declared --margin and replaces --seeds; --cells replaces
    --variants x --modes (the dry run plans only the cells asked for and the baseline); the
    retired extension rule (--extend_to) trains nothing."""
    import run_best_advanced_1k as run_best
    from conftest import run_main
    base = [f"--out_root={tmp_path}", f"--data_dir={char_data}", "--iters=10", "--n_embd=32", "--dry_run"]
    for extra, message in [(["--looks=5,10"], "--looks goes with --tune=True"),
                           (["--tune", "--looks=5,10"], "--looks needs --margin"),
                           (["--tune", "--looks=5,10", "--margin=0.5", "--seeds=5"], "replaces --seeds"),
                           (["--tune", "--looks=5,10", "--margin=0.5", "--extend-to=10", "--report_only"], "replaces --seeds"),
                           (["--tune", "--looks=10,5", "--margin=0.5"], "increasing"),
                           (["--tune", "--looks=5,10", "--margin=0.5", "--spend=0.5,0.6"], "summing to 1"),
                           (["--tune", "--margin=0.5"], "go with --looks"),
                           (["--tune", "--cells=value_centered"], "variant/mode pairs"),
                           (["--tune", "--cells=value_centered/momentum", "--modes=adaptive"], "replaces --variants"),
                           (["--tune", "--seeds=5", "--extend_to=10"], "--extend_to is the retired extension rule")]:
        status, out, err = run_main(run_best.main, base + extra, capsys)
        assert status == 2 and message in err and "Traceback" not in err, (extra, err)
    status, out, err = run_main(run_best.main, base + ["--tune", "--rates=1e-3", "--looks=5,10", "--margin=0.5",
                                                       "--cells=value_centered/momentum,embeddings_centered/adaptive"], capsys)
    assert status == 0, err
    planned = {line.split()[0].rsplit("-s", 1)[0] for line in out.splitlines() if "-s100" in line}
    assert planned == {"baseline-none", "value_centered-momentum", "embeddings_centered-adaptive"}
    assert "test seeds by the seed plan" in out and "±0.5%" in out


@pytest.mark.slow
def test_run_best_reproduction_writes_table_and_plots(char_data, tmp_path, capsys):
    """The results-table command without --tune: by default every placement of the prior report's
    table and the baseline (planned here, not trained); trained for one of them, the table and
    plots of the test comparison."""
    import run_best_advanced_1k as run_best
    from conftest import run_main
    report = tmp_path / "report"
    args = ["--seeds=2", "--iters=20", f"--out_root={tmp_path}", f"--report_dir={report}", f"--data_dir={char_data}", *TINY]
    status, out, err = run_main(run_best.main, args + ["--dry_run"], capsys)
    assert status == 0, err
    planned = {line.split()[0].rsplit("-s", 1)[0] for line in out.splitlines() if "-i20" in line}
    assert planned == {"baseline-none", "embeddings_centered-adaptive", "qk_value_centered-adaptive",
                       "full_attention_centered-adaptive", "value_centered-adaptive"}
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "run_best_advanced_1k.py"), *args,
                        "--variants=value_centered"], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr
    table = (report / "results.md").read_text()
    for method in ("Baseline", "Value only"):
        assert f"| {method} |" in table
    assert "(n=2)" in table and "Noise floor" in table and "p (Holm)" in table
    assert "| +1.13% |" in table  # the prior report's claim for V, in its column
    data = json.loads((report / "results.json").read_text())
    # the measured improvement, from the runs' test losses: the mean over seeds of the relative decrease
    loss = {(x["variant"], x["seed"]): x["test_loss"] for x in data["runs"]}
    improvement = sum(100 * (loss[("baseline", s)] - loss[("value_centered", s)]) / loss[("baseline", s)]
                      for s in (1, 2)) / 2
    assert f"| {improvement:+.2f}% [" in table
    assert len(data["runs"]) == 4 and len(data["comparisons"]) == 2 and data["metric"] == "test_loss"
    assert (report / "improvement.png").stat().st_size > 10_000
    assert (report / "val_curves.png").stat().st_size > 10_000
