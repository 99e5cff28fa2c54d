"""Archived sweeps (experiments/archive.py, scripts/archive_sweep.py): committed without
checkpoints, readable as they were, and a sweep brought back from them does only what is left."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ENV, REPO_ROOT, TINY, results, sweep

ARCHIVE = os.path.join(REPO_ROOT, "scripts", "archive_sweep.py")


def archive(capsys, *argv):
    """scripts/archive_sweep.py in this process (the first call of the test below is the command
    line itself) -> its exit status, stdout and stderr, named as subprocess.run names them."""
    import types

    import archive_sweep
    from conftest import run_main
    status, out, err = run_main(archive_sweep.main, [str(a) for a in argv], capsys)
    return types.SimpleNamespace(returncode=status, stdout=out, stderr=err)


@pytest.mark.slow
def test_archived_sweep_reads_as_before_and_a_sweep_restored_from_it_does_only_the_rest(char_data, tmp_path, capsys):
    from experiments.plots import find_runs
    from training.metrics import read_metrics

    args = ["--name=a", f"--out_root={tmp_path / 'out'}", "--variants=baseline", "--seeds=1,2", "--iters=20",
            f"--data_dir={char_data}", *TINY]
    r = subprocess.run(sweep(args), capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    src = tmp_path / "out" / "a"
    # a third run started but not finished: its folder has a checkpoint, no record
    (src / "baseline-none-s3-i20").mkdir()
    (src / "baseline-none-s3-i20" / "ckpt.pt").write_bytes(b"x")
    with open(src / "results.jsonl", "a") as f:  # and a failed attempt, which a sweep would run again
        f.write(json.dumps({**results(src / "results.jsonl")[0], "run_id": "broken", "status": "failed"}) + "\n")

    r = subprocess.run([sys.executable, ARCHIVE, str(src), str(tmp_path / "results" / "a")], capture_output=True,
                       text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    assert "2 runs copied, 0 already there" in r.stdout
    dst = tmp_path / "results" / "a"
    assert sorted(p.name for p in dst.iterdir() if p.is_dir()) == ["baseline-none-s1-i20", "baseline-none-s2-i20"]
    for run in ("baseline-none-s1-i20", "baseline-none-s2-i20"):
        assert sorted(p.name for p in (dst / run).iterdir()) == ["metrics.jsonl.gz", "run.json", "train.log"]
        assert read_metrics(str(dst / run)) == read_metrics(str(src / run)) != []
    assert results(dst / "results.jsonl") == results(src / "results.jsonl")[:2]
    assert len(find_runs([str(dst)])) == 2
    assert "0 runs copied, 2 already there" in archive(capsys, src, dst).stdout  # again: nothing changes

    # a fresh clone: the archive brought into a new out folder; the same sweep with a third seed
    r = archive(capsys, dst, tmp_path / "clone" / "a")
    assert r.returncode == 0, r.stderr
    args3 = [a.replace(str(tmp_path / "out"), str(tmp_path / "clone")) for a in args]
    args3 = [("--seeds=1,2,3" if a.startswith("--seeds") else a) for a in args3]
    r = subprocess.run(sweep(args3), capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "2 already done, 1 to do" in r.stdout
    assert [x["run_id"] for x in results(tmp_path / "clone" / "a" / "results.jsonl")] == [
        "baseline-none-s1-i20", "baseline-none-s2-i20", "baseline-none-s3-i20"]

    # a destination holding one of the runs with another record is refused, nothing copied
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.jsonl").write_text(json.dumps({**results(src / "results.jsonl")[0], "wall_s": 1.0}) + "\n")
    r = archive(capsys, src, other)
    assert r.returncode != 0 and "holds baseline-none-s1-i20 with another record" in r.stderr
    assert "Traceback" not in r.stderr and sorted(p.name for p in other.iterdir()) == ["results.jsonl", "sweep.lock"]
    assert archive(capsys, tmp_path / "nowhere", other).returncode != 0

    # an archive cut short: one run's folder copied without its record, another run failed there;
    # archiving again completes it; a run there with a checkpoint and no record is refused
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "baseline-none-s1-i20").mkdir()
    (cut / "baseline-none-s1-i20" / "train.log").write_text("half")
    (cut / "results.jsonl").write_text(json.dumps({**results(src / "results.jsonl")[1], "status": "failed"}) + "\n")
    r = archive(capsys, src, cut)
    assert r.returncode == 0, r.stderr
    assert "2 runs copied, 0 already there" in r.stdout
    assert sorted(p.name for p in (cut / "baseline-none-s1-i20").iterdir()) == ["metrics.jsonl.gz", "run.json", "train.log"]
    assert [x["status"] for x in results(cut / "results.jsonl")] == ["failed", "ok", "ok"]
    (tmp_path / "busy" / "baseline-none-s2-i20").mkdir(parents=True)
    (tmp_path / "busy" / "baseline-none-s2-i20" / "ckpt.pt").write_bytes(b"x")
    r = archive(capsys, src, tmp_path / "busy")
    assert r.returncode != 0 and "started but not finished" in r.stderr
    # a trainer still running there before its first checkpoint (its sweep killed): its folder is kept
    from files import FileLock
    from training.run_folder import RUN_LOCK
    (tmp_path / "training" / "baseline-none-s2-i20").mkdir(parents=True)
    with FileLock(str(tmp_path / "training" / "baseline-none-s2-i20" / RUN_LOCK)):
        r = archive(capsys, src, tmp_path / "training")
    assert r.returncode != 0 and "holds baseline-none-s2-i20 still training (pid " in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in (tmp_path / "training" / "baseline-none-s2-i20").iterdir()) == [RUN_LOCK]


def test_only_copies_the_runs_that_match(tmp_path, capsys):
    """--only: the runs whose id matches a pattern, e.g. another sweep's selection runs; a pattern
    that matches nothing is one line and exit 2, before anything is copied."""
    from experiments.records import append_record
    src = tmp_path / "src"
    for run_id in ("baseline-none-s1-i20", "baseline-none-s1001-i20", "value_centered-momentum-s1002-i20"):
        (src / run_id).mkdir(parents=True)
        (src / run_id / "run.json").write_text("{}")
        append_record(str(src / "results.jsonl"), {"run_id": run_id, "status": "ok"})
    r = archive(capsys, src, tmp_path / "none", "--only=*-s9*")
    assert r.returncode == 2 and r.stderr.startswith("error: --only") and not (tmp_path / "none").exists()
    r = archive(capsys, src, tmp_path / "dst", "--only=*-s100?-*")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "dst").iterdir() if p.is_dir()) == [
        "baseline-none-s1001-i20", "value_centered-momentum-s1002-i20"]


def test_a_file_destination_and_another_kind_of_jsonl_are_one_line(tmp_path, capsys):
    """A destination that is a file, and a source whose results.jsonl holds another kind of record
    (a run's metrics.jsonl copied in its place): one line, nothing written."""
    from experiments.records import append_record
    src = tmp_path / "src"
    src.mkdir()
    append_record(str(src / "results.jsonl"), {"run_id": "baseline-none-s1-i20", "status": "ok"})
    mine = tmp_path / "mine"
    mine.write_text("mine")
    r = archive(capsys, src, mine)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is a file, not a folder" in r.stderr, r.stderr
    assert mine.read_text() == "mine"

    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "results.jsonl").write_text(json.dumps({"type": "eval", "iter": 0, "val_loss": 4.2}) + "\n")
    r = archive(capsys, metrics, tmp_path / "dst")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert f"{metrics / 'results.jsonl'} is not a sweep's results.jsonl: a record has no run_id" in r.stderr
    assert not (tmp_path / "dst").exists()


def test_runs_of_other_settings_are_not_archived_into_a_sweep_folder(tmp_path, capsys):
    """The same sweep at another width (other seeds, so no run id is shared): its runs would sit
    beside this one's, and every later sweep or report there would stop on them. Refused, nothing
    copied; the same settings at other seeds are copied."""
    from experiments.records import append_record

    def sweep_folder(folder, n_embd, seeds):
        for seed in seeds:
            run_id = f"baseline-none-s{seed}-i20"
            (folder / run_id).mkdir(parents=True)
            (folder / run_id / "run.json").write_text("{}")
            config = {"n_embd": n_embd, "seed": seed, "out_dir": str(folder / run_id), "learning_rate": 1e-3}
            append_record(str(folder / "results.jsonl"), {"run_id": run_id, "status": "ok", "variant": "baseline",
                                                          "mode": "none", "iters": 20, "params": {}, "seed": seed,
                                                          "config": config})

    sweep_folder(tmp_path / "w128", 128, (1, 2))
    sweep_folder(tmp_path / "w256", 256, (3, 4))
    sweep_folder(tmp_path / "more128", 128, (3,))
    before = (tmp_path / "w128" / "results.jsonl").read_bytes()
    r = archive(capsys, tmp_path / "w256", tmp_path / "w128")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "holds runs like baseline-none-s3-i20 trained with other settings (n_embd=128, now 256)" in r.stderr
    assert (tmp_path / "w128" / "results.jsonl").read_bytes() == before
    assert not (tmp_path / "w128" / "baseline-none-s3-i20").exists()
    r = archive(capsys, tmp_path / "more128", tmp_path / "w128")
    assert r.returncode == 0 and "1 runs copied" in r.stdout, r.stderr
