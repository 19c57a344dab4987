"""`anagram batch`: job files, resume after Ctrl-C and SIGKILL, two processes (gloo on CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anagram import AnagramPipeline
from anagram.runs.jobs import parse_seeds, read_jobs
from anagram.cli import app
from tiny_models import sd_components

runner = CliRunner()
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "anagram" / "models" / "digits" / "model_index.json"


@pytest.fixture(scope="module")
def tiny_sd_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-sd")
    AnagramPipeline(**sd_components()).save_pretrained(folder)
    return folder


def write_csv(path: Path, rows: list[str], header="prompts,views,style,seeds,steps,size") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def check_complete(out: Path, expected_units: set[str]) -> list[dict]:
    """Every unit exactly once in the manifest and on disk; nothing temporary or per-process left."""
    entries = manifest(out)
    ids = [e["unit"] for e in entries]
    assert len(ids) == len(set(ids)), "a unit is listed twice"
    assert set(ids) == expected_units
    assert {p.name[: -len(".json")] for p in out.glob("*.json")} == expected_units
    for entry in entries:
        assert all((out / name).is_file() for name in entry["files"].values())
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    assert not list(out.glob("manifest.rank*.jsonl")), "per-process manifests not merged"
    return entries


def snapshot(out: Path, units) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes())
            for u in units for p in out.glob(f"{u}*") if p.suffix in (".png", ".json")}


def subprocess_env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


# -- job files -----------------------------------------------------------------------------------------


def test_seed_specs():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("1,5,7") == [1, 5, 7]
    assert parse_seeds("0-2,10, 1") == [0, 1, 2, 10]
    assert parse_seeds([4, 2]) == [2, 4] and parse_seeds(3) == [3]
    for bad in ("a", "3-1", "-1", "", [], [1.5], True):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_malformed_csv_lists_every_bad_line_and_runs_nothing(tiny_sd_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # short relative paths in the messages
    rows = [
        "a red fox|a duck,\"identity,rotate_180\",,0-1,2,32",  # line 2: fine
        "a red fox,\"identity,rotate_180\",,0,2,32",  # 3: one prompt, two views
        "a red fox|a duck,\"identity,rotate_18\",,0,2,32",  # 4: unknown view
        "a red fox|a duck,,,0-x,2,32",  # 5: bad seeds
        "a red fox|a duck,identity,rotate_180,,0,2,32",  # 6: unquoted commas: too many fields
        ",identity,,0,2,32",  # 7: no prompts
        "a red fox|a duck,,,0,two,32",  # 8: bad steps
    ]
    write_csv(tmp_path / "jobs.csv", rows)
    result = runner.invoke(app, ["batch", "jobs.csv", "--out", "out", "--model", str(tiny_sd_folder)])
    assert result.exit_code == 2, result.output
    text = result.output
    assert "6 bad lines" in text
    assert "jobs.csv:3: got 1 prompt(s) for 2 view(s)" in text
    assert "jobs.csv:4: unknown view 'rotate_18'. Did you mean 'rotate_180'?" in text
    assert "jobs.csv:5: bad seeds '0-x'" in text
    assert "jobs.csv:6: 7 fields but the header has 6" in text
    assert "jobs.csv:7: missing 'prompts'" in text
    assert "jobs.csv:8: 'steps' must be a whole number" in text
    assert "jobs.csv:2:" not in text
    assert not (tmp_path / "out").exists(), "nothing may run when a line is bad"

    write_csv(tmp_path / "header.csv", ["a|b,0"], header="prompt_text,seeds")
    result = runner.invoke(app, ["batch", "header.csv", "--out", "out", "--model", str(tiny_sd_folder)])
    assert result.exit_code == 2
    assert "header.csv:1: unknown column(s) 'prompt_text'" in result.output


def test_malformed_jsonl_lists_every_bad_line(tiny_sd_folder, tmp_path):
    lines = [
        {"prompts": ["a red fox", "a duck"], "views": ["identity", "rotate_180"], "seeds": [0, 1]},
        {"prompts": ["a red fox", "a duck", "a dog"], "views": "identity,rotate_180"},
        {"prompts": "a red fox|a duck", "views": ["identity", "spin"]},
        {"views": ["identity"]},
        {"prompts": "a red fox|a duck", "seeds": "0-3", "num_samples": 2},
        {"prompts": "a red fox|a duck", "colour": "red"},
        {"prompts": "a red fox|a duck", "model": str(tmp_path / "no-such-model")},
        {"prompts": "a red fox|a duck", "method": {"no_such_setting": 1}},
    ]
    text = "\n".join(json.dumps(line) for line in lines[:3]) + "\n\n# a comment\nnot json\n"
    text += "\n".join(json.dumps(line) for line in lines[3:]) + "\n"
    (tmp_path / "jobs.jsonl").write_text(text)
    from anagram.runs.jobs import JobFileError

    with pytest.raises(JobFileError) as caught:
        read_jobs(tmp_path / "jobs.jsonl", default_model=str(tiny_sd_folder))
    problems = {p.split(":")[1]: p for p in (q.replace(str(tmp_path / "jobs.jsonl"), "J")
                                             for q in caught.value.problems)}
    assert sorted(problems, key=int) == ["2", "3", "6", "7", "8", "9", "10", "11"]
    assert "3 prompt(s) for 2 view(s)" in problems["2"]
    assert "unknown view 'spin'" in problems["3"]
    assert "invalid JSON" in problems["6"]
    assert "missing 'prompts'" in problems["7"]
    assert "either 'seeds' or 'num_samples'" in problems["8"]
    assert "unknown column(s) 'colour'" in problems["9"]
    assert "no such model folder" in problems["10"]
    assert "no_such_setting" in problems["11"]

    plan = read_jobs(write_csv(tmp_path / "ok.csv", ["a red fox|a duck,,,0-2,2,32", "a red fox|a duck,,,2-3,2,32",
                                                     "a red fox|a duck,,a painting of,2,2,32"]),
                     default_model=str(tiny_sd_folder))
    assert len(plan.units) == 5  # line 3 adds seed 3 only; the styled job is a different unit
    assert len({u.id for u in plan.units}) == 5 and len(plan.notes) == 1 and plan.notes[0].startswith("3:")


# -- in-process runs ---------------------------------------------------------------------------------------


def test_batch_resumes_from_files_and_repairs_the_manifest(tiny_sd_folder, tmp_path, monkeypatch):
    jobs = write_csv(tmp_path / "jobs.csv", [
        "a red fox|a duck,\"identity,rotate_180\",a painting of,0-2,2,32",
        "a dog|a cat,identity|flip,,\"4,9\",2,32",
    ])
    calls = []

    def evaluate_folder(folder):
        calls.append(Path(folder))
        if len(calls) > 1:
            raise ValueError("no automatic judge for this model")
        return {"samples": 5, "success_rate": 0.25, "alignment": {"mean": 0.5, "q90": 0.9}}

    import anagram.evaluation

    monkeypatch.setattr(anagram.evaluation, "evaluate_folder", evaluate_folder)
    out = tmp_path / "out"
    args = ["batch", str(jobs), "--out", str(out), "--model", str(tiny_sd_folder), "--batch-size", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    units = {u.id for u in read_jobs(jobs, str(tiny_sd_folder)).units}
    entries = check_complete(out, units)
    assert calls == [out], "the metrics hook runs over DIR at the end"
    assert "metrics: samples 5, success_rate 0.250, alignment 0.500" in result.output
    record = json.loads((out / entries[0]["files"]["record"]).read_text())
    assert record["full_prompts"] == ["a painting of a red fox", "a painting of a duck"]
    assert record["files"] == entries[0]["files"] and record["num_inference_steps"] == 2
    assert {e["job_line"] for e in entries} == {2, 3}

    # A crash between writing a unit's files and its manifest line, one unit's image deleted, a
    # half-written temporary file: the rerun regenerates that unit only, and repairs the manifest.
    victim = entries[1]
    (out / victim["files"]["image"]).unlink()
    (out / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries[2:]) + '{"unit": "torn')
    (out / f".{victim['files']['record']}.abc123.tmp").write_bytes(b"half")
    before = snapshot(out, units - {victim["unit"]})
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output  # metrics that cannot run are reported, not a failed batch
    output = " ".join(result.output.split())
    assert "1 to generate" in output and "removed 1 temporary" in output
    assert "metrics: not computed (ValueError: no automatic judge for this model)" in output
    entries = check_complete(out, units)
    assert snapshot(out, units - {victim["unit"]}) == before, "finished units must not be redone"
    assert [e.get("recovered") for e in entries].count(True) == 1  # entries[0]: files without a line
    assert len(calls) == 2


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(tiny_sd_folder, tmp_path, monkeypatch):
    import anagram.runs.batch as batch

    jobs = write_csv(tmp_path / "jobs.csv", ["a red fox|a duck,,,0-4,2,32"])
    out = tmp_path / "out"
    args = ["batch", str(jobs), "--out", str(out), "--model", str(tiny_sd_folder), "--batch-size", "1",
            "--no-evaluate"]
    save_unit, saved = batch.save_unit, []

    def interrupted_after_two(*a, **k):
        if len(saved) == 2:
            raise KeyboardInterrupt
        saved.append(save_unit(*a, **k))

    monkeypatch.setattr(batch, "save_unit", interrupted_after_two)
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    assert "run the same command again to resume" in " ".join(result.output.split())
    assert len(manifest(out)) == 2 and not list(out.glob(".*.tmp"))

    monkeypatch.setattr(batch, "save_unit", save_unit)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 already done, 3 to generate" in " ".join(result.output.split())
    check_complete(out, {u.id for u in read_jobs(jobs, str(tiny_sd_folder)).units})


def test_a_job_failing_at_run_time_is_reported_and_the_others_finish(tiny_sd_folder, tmp_path, monkeypatch):
    import anagram.runs.batch as batch

    jobs = write_csv(tmp_path / "jobs.csv", ["a red fox|a duck,,,0-1,2,32", "a dog|a cat,,,0-1,2,32"])
    generate = batch.generate_units

    def broken_second_job(model, job, units):
        if job.request.prompts[0] == "a dog":
            raise RuntimeError("out of memory")
        return generate(model, job, units)

    monkeypatch.setattr(batch, "generate_units", broken_second_job)
    out = tmp_path / "out"
    result = runner.invoke(app, ["batch", str(jobs), "--out", str(out), "--model", str(tiny_sd_folder),
                                 "--no-evaluate"])
    assert result.exit_code == 1
    assert f"{jobs}:3: RuntimeError: out of memory (2 unit(s) not done)" in " ".join(result.output.split())
    assert len(manifest(out)) == 2


def test_a_full_disk_stops_the_run_cleanly_and_the_same_command_resumes(tiny_sd_folder, tmp_path, monkeypatch):
    import errno

    import anagram.outputs.atomic

    jobs = write_csv(tmp_path / "jobs.csv", ["a red fox|a duck,,,0-2,2,32"])
    out = tmp_path / "out"
    args = ["batch", str(jobs), "--out", str(out), "--model", str(tiny_sd_folder), "--batch-size", "1",
            "--no-evaluate"]
    write, writes = anagram.outputs.atomic.atomic_write_bytes, []

    def disk_full_at_the_fifth_file(path, data):
        writes.append(path)
        if len(writes) == 5:  # the second unit's image (views strip, image, sidecar per unit)
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(path, data)

    monkeypatch.setattr(anagram.outputs.atomic, "atomic_write_bytes", disk_full_at_the_fifth_file)
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "No space left on device" in result.output and "run the same command again" in result.output
    assert len(manifest(out)) == 1 and len(list(out.glob("*.json"))) == 1

    monkeypatch.setattr(anagram.outputs.atomic, "atomic_write_bytes", write)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    check_complete(out, {u.id for u in read_jobs(jobs, str(tiny_sd_folder)).units})


# -- processes ---------------------------------------------------------------------------------------------


def test_killed_run_resumes_without_redoing_or_losing_units(tiny_sd_folder, tmp_path):
    shipped = SHIPPED_MODEL.is_file()
    model = "digits" if shipped else str(tiny_sd_folder)
    header, size = ("prompts,views,style,seeds,steps", "") if shipped else ("prompts,views,style,seeds,steps,size",
                                                                            ",32")
    jobs = write_csv(tmp_path / "jobs.csv", [
        f"a digit zero|a digit eight,\"identity,rotate_180\",,0-7,2{size}",
        f"a digit one|a digit seven,identity|flip,,0-5,2{size}",
        f"a digit three|a digit five,identity|rotate_cw,,\"3,11,12,13\",2{size}",
    ], header=header)
    units = {u.id for u in read_jobs(jobs, model).units}
    assert len(units) == 18
    out = tmp_path / "out"
    command = [sys.executable, "-m", "anagram.cli", "batch", str(jobs), "--out", str(out), "--model", model,
               "--batch-size", "1", "--no-evaluate"]
    process = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    try:
        while len(list(out.glob("*.json"))) < 3:
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "no unit was written in time"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    finished = {p.name[: -len(".json")] for p in out.glob("*.json")}
    assert 3 <= len(finished) < len(units), "the kill must land part-way"
    before = snapshot(out, finished)

    resumed = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{len(finished)} already done, {len(units) - len(finished)} to generate" in " ".join(resumed.stderr.split())
    entries = check_complete(out, units)
    assert snapshot(out, finished) == before, "units finished before the kill were redone"
    assert {e["unit"] for e in entries if e["unit"] not in finished} == units - finished


def test_two_processes_split_the_units_without_loss_or_duplication(tiny_sd_folder, tmp_path):
    jobs = write_csv(tmp_path / "jobs.csv", [
        "a red fox|a duck,\"identity,rotate_180\",,0-4,2,32",
        "a dog|a cat,identity|flip,,0-2,2,32",
    ])
    units = {u.id for u in read_jobs(jobs, str(tiny_sd_folder)).units}
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "anagram.cli", "batch", str(jobs), "--out", str(out), "--model", str(tiny_sd_folder),
               "--batch-size", "2", "--no-evaluate"]
    result = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "on 2 processes" in " ".join(result.stderr.split())
    entries = check_complete(out, units)
    by_rank = {rank: {e["unit"] for e in entries if e["rank"] == rank} for rank in (0, 1)}
    assert by_rank[0] and by_rank[1], f"both processes must work: {by_rank}"
    assert not by_rank[0] & by_rank[1] and by_rank[0] | by_rank[1] == units
    assert abs(len(by_rank[0]) - len(by_rank[1])) <= 1
