import json
import os
import shutil
import signal
import subprocess
import sys
import time

from conftest import REPO_ROOT

SCRIPTS = os.path.join(REPO_ROOT, "scripts")
TINY = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16", "--batch_size=4",
        "--eval_interval=10", "--eval_windows=8", "--warmup_iters=2", "--device=cpu", "--log_interval=5"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def sweep(args, **kwargs):
    return [sys.executable, os.path.join(SCRIPTS, "advanced_centering_experiments.py"), *args]


def results(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_sweep_resumes_after_interrupt_without_redoing_runs(char_data, tmp_path):
    args = ["--name=s", f"--out_root={tmp_path}", "--variants=baseline,embeddings_centered",
            "--modes=momentum", "--seeds=1,2", "--iters=60", f"--data_dir={char_data}", *TINY]
    dry = subprocess.run(sweep(args + ["--dry-run"]), capture_output=True, text=True, env=ENV)
    assert dry.returncode == 0 and "4 runs in" in dry.stdout and dry.stdout.count("to do") == 4

    proc = subprocess.Popen(sweep(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    second_ckpt = tmp_path / "s" / "baseline-none-s2-i60" / "ckpt.pt"
    deadline = time.time() + 120
    while not second_ckpt.exists() and time.time() < deadline:  # run 1 done, run 2 under way
        time.sleep(0.05)
    assert second_ckpt.exists()
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again" in err
    before = results(tmp_path / "s" / "results.jsonl")
    assert [r["run_id"] for r in before] == ["baseline-none-s1-i60"]

    r = subprocess.run(sweep(args), capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "1 already done, 3 to do" in r.stdout
    after = results(tmp_path / "s" / "results.jsonl")
    assert after[0] == before[0]  # the finished run was not done again
    assert sorted(x["run_id"] for x in after) == sorted(
        f"{v}-s{s}-i60" for v in ("baseline-none", "embeddings_centered-momentum") for s in (1, 2))
    assert all(x["status"] == "ok" and x["final_val_loss"] > 0 for x in after)
    with open(tmp_path / "s" / "baseline-none-s2-i60" / "train.log") as f:
        assert "resuming from" in f.read()  # the interrupted run continued from its checkpoint

    # plots from this small sweep
    for cmd in (["create_comparison_plots.py", str(tmp_path / "s" / "results.jsonl")],
                ["plot_training_improved.py", str(tmp_path / "s"), f"--out={tmp_path / 'curves.png'}"]):
        r = subprocess.run([sys.executable, os.path.join(SCRIPTS, cmd[0]), *cmd[1:]], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    for png in (tmp_path / "s" / "improvement_i60.png", tmp_path / "s" / "mode_heatmap_i60.png", tmp_path / "curves.png"):
        assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_failed_run_is_recorded_and_the_sweep_goes_on(char_data, tmp_path):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    for name in ("experiment_base.py", "baseline.py", "value_centered.py"):
        shutil.copy(os.path.join(REPO_ROOT, "config", name), config_dir)
    (config_dir / "broken.py").write_text('include("experiment_base.py")\ncenter_v = True\nbias = "yes"\n')
    args = ["--name=f", f"--out_root={tmp_path}", "--variants=baseline,broken,value_centered", "--modes=adaptive",
            "--seeds=1", "--iters=20", f"--config_dir={config_dir}", f"--data_dir={char_data}", *TINY]
    r = subprocess.run(sweep(args), capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    by_id = {x["run_id"]: x for x in results(tmp_path / "f" / "results.jsonl")}
    assert by_id["broken-adaptive-s1-i20"]["status"] == "failed"
    assert by_id["broken-adaptive-s1-i20"]["returncode"] == 2
    assert by_id["baseline-none-s1-i20"]["status"] == by_id["value_centered-adaptive-s1-i20"]["status"] == "ok"
    assert "'bias' must be bool" in (tmp_path / "f" / "broken-adaptive-s1-i20" / "train.log").read_text()


def test_run_best_reproduction_writes_table_and_plots(char_data, tmp_path):
    report = tmp_path / "report"
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "run_best_advanced_1k.py"), "--seeds=2", "--iters=20",
                        f"--out_root={tmp_path}", f"--report_dir={report}", f"--data_dir={char_data}", *TINY],
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr
    table = (report / "results.md").read_text()
    for method in ("Baseline", "Embeddings centered", "QK + Value", "Full attention", "Value only"):
        assert f"| {method} |" in table
    assert "(n=2)" in table and "Baseline seed-to-seed noise" in table and "+2.26%" in table
    data = json.loads((report / "results.json").read_text())
    assert len(data["runs"]) == 10 and len(data["rows"]) == 5
    assert (report / "improvement.png").stat().st_size > 10_000
    assert (report / "val_curves.png").stat().st_size > 10_000


def test_smoke_check_passes(char_data):
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "test_advanced_centering_simple.py"),
                        f"--data_dir={char_data}"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASS") == 33 and "all passed" in r.stdout


def test_detailed_logging(tiny_config):
    args = [f"--data_dir={tiny_config.data_dir}", f"--out_dir={tiny_config.out_dir}", *TINY,
            "--max_iters=6", "--center_embeddings=True", "--center_v=True", "--centering_mode=momentum"]
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "train_with_logging.py"), *args],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    lines = results(os.path.join(tiny_config.out_dir, "detailed.jsonl"))
    assert [x["iter"] for x in lines] == list(range(6))
    first = lines[-1]
    assert first["grad_norm"] > 0 and {"embeddings", "block0"} <= set(first["grad_norm_by_layer"])
    by_layer = first["grad_norm_by_layer"]
    assert abs(sum(v * v for v in by_layer.values()) ** 0.5 - first["grad_norm"]) < 1e-6 * first["grad_norm"] + 1e-9
    assert set(first["center_norm"]) == {"embeddings", "v"} and first["center_norm"]["v"] > 0
