"""A sweep's records (experiments/records.py): run summaries, and results.jsonl kept whole by appends."""
import json
import os

import pytest


def test_records_read_the_test_split_and_survive_concurrent_appends(tmp_path):
    import multiprocessing

    from experiments.plan import Run
    from experiments.records import read_jsonl, summarize

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines = [{"type": "eval", "iter": 0, "val_loss": 3.0}, {"type": "train", "iter": 5, "step_ms": 2.0},
             {"type": "eval", "iter": 10, "val_loss": 2.5}, {"type": "test", "iter": 10, "test_loss": 2.6,
                                                             "test_bpb": 3.7, "test_tokens": 100}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    record = summarize(Run("baseline", "none", 1, 10), str(run_dir), 0, 1.0, "local", {}, {})
    assert (record["test_loss"], record["test_bpb"], record["final_val_loss"], record["best_val_loss"]) == (2.6, 3.7, 2.5, 2.5)
    assert summarize(Run("baseline", "none", 1, 10), str(tmp_path), 3, 1.0, "local", {}, {})["test_loss"] is None
    assert summarize(Run("baseline", "none", 1, 10), str(run_dir), 3, 1.0, "local", {}, {})["status"] == "diverged"

    # records far larger than an atomic pipe write, from 4 processes at once
    path = str(tmp_path / "results.jsonl")
    workers = [multiprocessing.Process(target=_append_many, args=(path, w)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join()
        assert p.exitcode == 0
    got = read_jsonl(path)
    assert sorted((r["worker"], r["i"]) for r in got) == [(w, i) for w in range(4) for i in range(50)]
    assert all(r["pad"] == "x" * 20_000 for r in got)


def _append_many(path, worker):
    from experiments.records import append_record
    for i in range(50):
        append_record(path, {"worker": worker, "i": i, "pad": "x" * 20_000})


def test_torn_last_line_is_dropped_and_cut_before_the_next_append(tmp_path, capsys):
    """A full disk in the middle of an append leaves half a line: readers report it once and drop
    it, and the next append cuts it off instead of landing on it, so the sweep folder stays
    readable and no record is lost. A broken line before the last is an error."""
    from configurator import UserError
    from experiments.records import RESULTS_FILE, append_record, read_results

    path = tmp_path / RESULTS_FILE
    record = lambda run_id: {"run_id": run_id, "status": "ok"}  # noqa: E731
    append_record(str(path), record("a"))
    with open(path, "ab") as f:
        f.write(b'{"run_id": "b", "sta')  # the write a full disk cut short
    assert list(read_results(str(tmp_path))) == list(read_results(str(tmp_path))) == ["a"]
    err = capsys.readouterr().err  # one warning, however often the file is read
    assert err == f"warning: {path}: dropped a torn last line (20 bytes, a write cut short)\n"
    append_record(str(path), record("b"))
    assert path.read_text() == "".join(json.dumps(record(k)) + "\n" for k in "ab")
    with open(path, "ab") as f:  # a whole record but for its newline is kept, and ended first
        f.write(json.dumps(record("c")).encode())
    append_record(str(path), record("d"))
    assert list(read_results(str(tmp_path))) == ["a", "b", "c", "d"] and capsys.readouterr().err == ""

    path.write_text(json.dumps(record("a")) + "\n" + '{"run_id": "b", "sta\n' + json.dumps(record("c")) + "\n")
    with pytest.raises(UserError, match=f"^{path}:2 is not a JSON record"):
        read_results(str(tmp_path))


def test_append_that_fails_midway_leaves_whole_lines(tmp_path, monkeypatch):
    import files
    from configurator import UserError
    from experiments.records import append_record, read_jsonl

    path = str(tmp_path / "results.jsonl")
    append_record(path, {"run_id": "a"})
    real_write = os.write
    monkeypatch.setattr(files.os, "write", lambda fd, data: real_write(fd, data[:len(data) // 2]))  # disk full
    with pytest.raises(UserError, match="cannot append to .*results.jsonl: short write"):
        append_record(path, {"run_id": "b", "pad": "x" * 100})
    monkeypatch.undo()
    assert open(path).read() == json.dumps({"run_id": "a"}) + "\n"  # its half taken back
    append_record(path, {"run_id": "c"})
    assert [r["run_id"] for r in read_jsonl(path)] == ["a", "c"]


def test_a_divergence_is_in_the_runs_records_so_a_torchrun_exit_1_is_still_diverged(tiny_config, monkeypatch):
    """torchrun (--nproc > 1) returns 1 when its workers exit 3: the run's own last record says it
    diverged, so the sweep records it as diverged (final), not failed (trained again on every rerun).
    A resume drops that record; a later crash is failed again."""
    import dataclasses

    import model as model_module
    from experiments.plan import Run
    from experiments.records import summarize
    from train import train
    from training import TrainingDiverged
    from training.metrics import read_metrics
    cfg = dataclasses.replace(tiny_config, max_iters=8, eval_interval=4)
    forward, calls = model_module.GPT.forward, []

    def nan_after_four_steps(self, idx, targets=None, **kwargs):
        logits, loss = forward(self, idx, targets, **kwargs)
        if targets is not None and self.training:
            calls.append(1)
            if len(calls) > 4:  # the step right after the checkpoint at iteration 4
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(model_module.GPT, "forward", nan_after_four_steps)
    with pytest.raises(TrainingDiverged):
        train(cfg, log=lambda *a: None)
    last = read_metrics(cfg.out_dir)[-1]
    assert last["type"] == "diverged" and last["iter"] == 4 and last["loss"] == "nan"
    run = Run("baseline", "none", 1, 8)
    assert summarize(run, cfg.out_dir, 1, 1.0, "local", {}, {})["status"] == "diverged"
    monkeypatch.setattr(model_module.GPT, "forward", forward)
    train(dataclasses.replace(cfg, init_from="resume"), log=lambda *a: None)
    assert [r["type"] for r in read_metrics(cfg.out_dir)].count("diverged") == 0
    assert summarize(run, cfg.out_dir, 1, 1.0, "local", {}, {})["status"] == "failed"
