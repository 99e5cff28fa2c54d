"""The experiment scripts' command lines (experiments/cli.py, experiments/plan.py): what they
refuse before anything runs, in one line with exit status 2, and what their dry runs show."""

import json

import pytest

from conftest import run_main

BASE = ["--iters=10", "--n_embd=32", "--dry_run"]


@pytest.mark.parametrize("argv, message", [
    (["--seeds="], "empty list"),
    (["--modes="], "empty list"),
    (["--iters="], "empty list"),
    (["--variants="], "empty list"),
    (["--seeds=1", "--grid", "learning_rate=,"], "has no values"),
    (["--seeds=1", "--name=../../x"], "plain folder name"),
    (["--seeds=1", "--name=/abs"], "plain folder name"),
    (["--seeds=1", "--name=."], "plain folder name"),
    (["--seeds=1", "--variants=../config/baseline"], "name of a config file"),
    (["--seeds=1", "--config_dir=/nonexistent/config"], "--config_dir=/nonexistent/config is not a folder"),
    # a value listed twice (compared as a value: 1e-3 is 0.001) would plan the same runs twice
    (["--seeds=1,1"], "argument --seeds: lists 1 twice"),
    (["--modes=adaptive,adaptive"], "argument --modes: lists adaptive twice"),
    (["--seeds=1", "--variants=baseline,baseline"], "argument --variants: lists baseline twice"),
    (["--seeds=1", "--grid", "learning_rate=1e-3,0.001"], "--grid learning_rate lists 0.001 twice (as 1e-3 and 0.001)"),
    (["--seeds=1", "--grid", "center_v=True,true"], "--grid center_v lists true twice (as True and true)"),
    # an option is never taken for a longer one it begins (--seed=7 as --seeds=7 would plan 7 seeds)
    (["--seed=7"], "the sweep sets seed itself (use --seeds)"),
    (["--seeds=1", "--eval_only=True"], "the sweep sets eval_only itself"),  # else recorded as a finished run
    # a grid key is spelled with hyphens or underscores alike (it would override the sweep's own)
    (["--seeds=1", "--grid", "max-iters=50"], "the sweep sets max_iters itself (use --iters)"),
    (["--seeds=1", "--grid", "centering-mode=simple"], "the sweep sets centering_mode itself (use --modes)"),
    (["--seeds=1", "--grid", "learning-rate=1e-3", "--learning_rate=2e-3"],
     "learning_rate is both a --grid axis and a --key=value override"),
])
def test_the_sweep_command_refuses_empty_lists_and_paths(tmp_path, capsys, argv, message):
    import advanced_centering_experiments as sweep_script
    name = [] if any(a.startswith("--name") for a in argv) else ["--name=x"]
    status, out, err = run_main(sweep_script.main, [f"--out_root={tmp_path}", *name, *BASE, *argv], capsys)
    assert status == 2 and message in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("argv, message", [
    (["--tune", "--rates="], "--rates"),
    (["--name=../x"], "plain folder name"),
    (["--dataset=../elsewhere"], "name the sweep with --name"),
    (["--tune", "--rates=1e-3,1e-3"], "argument --rates: lists 1e-3 twice"),
    (["--tune", "--rates=1e-3,0.001"], "argument --rates: lists 0.001 twice (as 1e-3 and 0.001)"),
    (["--modes=adaptive,momentum,adaptive"], "argument --modes: lists adaptive twice"),
    (["--variants=value_centered,"], None),  # a trailing comma is not an empty list
    (["--seed=1337"], "the sweep sets seed itself (use --seeds)"),  # not --seeds=1337: 1337 seeds
    (["--tune", "--rate=1e-3"], "rate"),  # not --rates
])
def test_the_protocol_command_refuses_an_empty_grid_and_paths(char_data, tmp_path, capsys, argv, message):
    import run_best_advanced_1k as run_best
    status, out, err = run_main(run_best.main, [f"--out_root={tmp_path}", f"--data_dir={char_data}", *BASE, *argv], capsys)
    if message is None:
        assert status == 0, err
    else:
        assert status == 2 and message in err and "Traceback" not in err, err


def test_hyphens_are_accepted_where_users_type_them(char_data, tmp_path, capsys):
    import advanced_centering_experiments as sweep_script
    status, out, err = run_main(sweep_script.main, [f"--out_root={tmp_path}", "--name=x", "--variants=baseline",
                                                    "--seeds=1", "--iters=10", "--n-embd=32", f"--data-dir={char_data}",
                                                    "--dry-run"], capsys)
    assert status == 0, err
    assert "baseline-none-s1-i10" in out and not (tmp_path / "x").exists()


@pytest.mark.parametrize("argv, message", [
    (["--device=cuda"], "CUDA is not available"),
    (["--dtype=float16"], "float16 needs CUDA"),
    (["--block_size=100000"], "too few for block_size"),
    (["--grid", "dataset=nope"], "no prepared dataset"),
])
def test_a_run_that_could_not_start_is_refused_before_the_first_starts(char_data, tmp_path, capsys, argv, message):
    """The device, dtype, dataset and block size of every planned run are checked up front,
    in --dry_run too, rather than every run failing one after another."""
    import torch
    import advanced_centering_experiments as sweep_script
    if "--device=cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    data = [] if any("dataset" in a for a in argv) else [f"--data_dir={char_data}"]
    common = [f"--out_root={tmp_path}", "--name=x", "--variants=baseline", "--seeds=1", "--iters=10", "--n_embd=32"]
    for dry in (["--dry_run"], []):
        status, out, err = run_main(sweep_script.main, common + data + argv + dry, capsys)
        assert status == 2 and message in err and "Traceback" not in err, err
        assert not (tmp_path / "x" / "baseline-none-s1-i10").exists()


def test_unreadable_inputs_are_one_line(char_data, tmp_path, capsys):
    """A config file that is not UTF-8 text, and a --report_dir that is a file:
    one line and exit 2, no traceback."""
    import run_best_advanced_1k as run_best
    import train as train_module
    latin = tmp_path / "latin1.py"
    latin.write_bytes("# caf\xe9\nmax_iters = 5\n".encode("latin-1"))
    status, _, err = run_main(train_module.main, [str(latin), f"--out_dir={tmp_path / 'o'}"], capsys)
    assert status == 2 and err.startswith("error: cannot read config file") and err.count("\n") == 1, err
    report_file = tmp_path / "report"
    report_file.write_text("not a folder")
    status, _, err = run_main(run_best.main, [f"--out_root={tmp_path}", "--iters=10", "--n_embd=32",
                                              f"--data_dir={char_data}", f"--report_dir={report_file}"], capsys)
    assert status == 2 and "is a file, not a folder" in err and err.count("\n") == 1, err
    status, out, err = run_main(run_best.main, [f"--out_root={tmp_path}", "--iters=10", "--n_embd=32", "--dry_run",
                                                f"--data_dir={char_data}", f"--report_dir={report_file}"], capsys)
    assert status == 2 and "is a file, not a folder" in err and out == "", err  # a dry run checks it too


def test_a_dry_run_checks_that_its_folders_can_be_written(char_data, read_only_folder, capsys):
    import advanced_centering_experiments as sweep_script
    import run_best_advanced_1k as run_best
    for main, extra in ((sweep_script.main, ["--name=x", "--variants=baseline", "--seeds=1"]),
                        (run_best.main, ["--variants=value_centered", f"--report_dir={read_only_folder.parent}/r"])):
        status, out, err = run_main(main, [f"--out_root={read_only_folder / 'out'}", f"--data_dir={char_data}", *BASE,
                                           *extra], capsys)
        assert status == 2 and err.count("\n") == 1 and f"--out_root={read_only_folder / 'out'}" in err, err
        assert f"({read_only_folder} is not a writable folder)" in err and out == "", err


def test_a_prompt_file_that_is_not_text_is_one_line(tiny_config, tmp_path, capsys):
    import dataclasses
    import sample as sample_module
    from train import train
    train(dataclasses.replace(tiny_config, max_iters=2, eval_interval=2), log=lambda *a: None)
    prompt = tmp_path / "prompt.txt"
    prompt.write_bytes(b"\xff\xfe ROMEO")
    status, _, err = run_main(sample_module.main, [f"--out_dir={tiny_config.out_dir}", f"--start=FILE:{prompt}",
                                                   "--device=cpu"], capsys)
    assert status == 2 and err.startswith(f"error: cannot read the prompt file {prompt}") and err.count("\n") == 1, err


def test_yes_no_options_and_counts_are_checked_when_parsed(char_data, tmp_path, capsys):
    """--dry_run and --wait alone or =True/False (the configurator's words); --jobs/--nproc below 1
    are refused while parsing, so a dry run catches them too."""
    import advanced_centering_experiments as sweep_script
    import run_best_advanced_1k
    from configurator import CommandLine
    from experiments.cli import add_sweep_arguments, sweep_options

    base = ["--name=x", f"--out_root={tmp_path}", "--variants=baseline", "--seeds=1", "--iters=10", f"--data_dir={char_data}"]
    for dry in (["--dry_run"], ["--dry_run=True"], ["--dry_run=1", "--dropout=0.1"], ["--dry_run", "--dropout=0.1"]):
        assert sweep_script.main(base + dry) == 0
        assert capsys.readouterr().out.endswith(f"1 runs in {tmp_path / 'x'}\n")
    assert not (tmp_path / "x").exists()  # nothing ran
    assert run_best_advanced_1k.main([f"--out_root={tmp_path}", "--variants=baseline", "--tune", "--rates=1e-3",
                                      "--selection_seeds=1", "--seeds=2", "--iters=10", f"--data_dir={char_data}",
                                      "--dry_run"]) == 0
    assert "1 runs in" in (out := capsys.readouterr().out) and "then 2 test seeds" in out  # --tune alone: True
    for bad, message in (("--jobs=0", "argument --jobs: must be at least 1, got 0"),
                         ("--jobs=-2", "argument --jobs: must be at least 1, got -2"),
                         ("--nproc=0", "argument --nproc: must be at least 1, got 0"),
                         ("--dry_run=maybe", "argument --dry_run: expected a boolean"),
                         ("--wait=yes", "argument --wait: expected a boolean")):
        with pytest.raises(SystemExit) as exit:
            sweep_script.main(base + ["--dry_run", bad])
        err = capsys.readouterr().err
        assert exit.value.code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1, err

    parser = CommandLine("x")
    add_sweep_arguments(parser)
    for argv, dry, wait in (([], False, False), (["--wait"], False, True), (["--wait=False", "--dry_run=false"], False, False),
                            (["--wait=true", "--dry_run", "config/gpu.py"], True, True)):
        args, rest = parser.parse_with_overrides(["--executor=slurm", *argv])
        assert (args.dry_run, sweep_options(args)["wait"]) == (dry, wait)
        assert rest == [a for a in argv if a.endswith(".py")]  # an overlay after a bare flag stays an overlay


def test_dry_run_shows_runs_held_with_other_settings(char_data, tmp_path, capsys):
    """A run the folder holds (finished: its record; started: its run.json) trained otherwise is
    listed as "other settings", not as its old status, by both experiment scripts' dry runs."""
    import advanced_centering_experiments as sweep_script
    import run_best_advanced_1k
    from experiments.plan import check_plan, plan_runs
    from experiments.records import RESULTS_FILE, append_record

    runs = plan_runs(["baseline"], [], [1, 2, 3], [10])
    configs = check_plan(runs, ["baseline"], [], ["--n_embd=32", f"--data_dir={char_data}"])
    folder = tmp_path / "x"
    for run in runs:
        configs[run.run_id]["out_dir"] = str(folder / run.run_id)
    (folder / runs[0].run_id).mkdir(parents=True)
    (folder / runs[0].run_id / "run.json").write_text(json.dumps({"config": {**configs[runs[0].run_id], "n_embd": 16}}))
    append_record(str(folder / RESULTS_FILE), {"run_id": runs[1].run_id, "status": "ok",
                                               "config": {**configs[runs[1].run_id], "device": "cuda"}})
    append_record(str(folder / RESULTS_FILE), {"run_id": runs[2].run_id, "status": "ok",
                                               "config": {**configs[runs[2].run_id], "n_embd": 16}})
    assert sweep_script.main(["--name=x", f"--out_root={tmp_path}", "--variants=baseline", "--seeds=1,2,3",
                              "--iters=10", "--n_embd=32", f"--data_dir={char_data}", "--dry_run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(None, 1) == [runs[0].run_id, "other settings (n_embd=16, now 32)"]
    assert lines[1].split() == [runs[1].run_id, "ok"]  # another device is the same run
    assert lines[2].split(None, 1) == [runs[2].run_id, "other settings (n_embd=16, now 32)"]
    assert lines[-1].startswith("2 of them the folder holds trained with other settings")

    assert run_best_advanced_1k.main([f"--out_root={tmp_path}", "--name=x", "--variants=baseline", "--seeds=3",
                                      "--iters=10", "--n_embd=32", f"--data_dir={char_data}", "--dry_run",
                                      f"--dataset={configs[runs[0].run_id]['dataset']}"]) == 0
    out = capsys.readouterr().out
    assert out.count("other settings (n_embd=16, now 32)") == 2 and f"{runs[1].run_id}" in out


def test_a_dry_run_checks_the_executor_as_a_start_does(char_data, tmp_path, capsys, monkeypatch):
    """README: everything typed is checked before the first run starts, --dry_run included: GPU
    ids on a machine without GPUs, and (the Slurm executor) no sbatch on the PATH."""
    import torch

    import advanced_centering_experiments as sweep_script
    import run_best_advanced_1k as run_best
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    common = [f"--out_root={tmp_path}", f"--data_dir={char_data}", *BASE]
    for main, extra in ((sweep_script.main, ["--name=x", "--variants=baseline", "--seeds=1"]),
                        (run_best.main, ["--variants=value_centered"])):
        status, out, err = run_main(main, [*common, *extra, "--gpus=0,5", "--jobs=2"], capsys)
        assert status == 2 and "--gpus=0,5: torch sees no GPU on this machine" in err and out == "", err
        monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
        status, out, err = run_main(main, [*common, *extra, "--executor=slurm"], capsys)
        monkeypatch.undo()
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert status != 0 and err.count("\n") == 1 and ("sbatch is not on the PATH" in err or "needs submitit" in err), err
    assert list(tmp_path.iterdir()) == []
