"""--report-to wandb (and all) for a TRL-backed algorithm and for PPO, with W&B offline in a
temporary directory; the model card every run ends with; --push-to-hub up to the upload call
(huggingface_hub mocked, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import addition_pairs, run_cli, write_jsonl

pytest.importorskip("wandb")


@pytest.fixture
def wandb_offline(monkeypatch, tmp_path):
    directory = tmp_path / "wandb-dir"
    directory.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(directory))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "align-tests")
    return directory


def _offline_run(directory: Path, expect: bytes) -> bytes:
    """The bytes of the one offline run W&B wrote under ``directory`` (its records are
    protobufs; metric names and the run's name appear in them as plain strings). W&B's
    service process writes the file on its own after ``finish()``: wait up to 30 s for it."""
    import time

    (run,) = list(directory.glob("wandb/offline-run-*/run-*.wandb"))
    deadline = time.time() + 30
    while expect not in run.read_bytes() and time.time() < deadline:
        time.sleep(0.2)
    return run.read_bytes()


def test_dpo_reports_to_wandb_and_tensorboard(capsys, tmp_path, tiny_lm, wandb_offline):
    data = write_jsonl(tmp_path / "p.jsonl", addition_pairs(16))
    out = tmp_path / "dpo"
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", data,
                            "--max-steps", "3", "--output-dir", out, "--report-to", "all",
                            "--run-name", "dpo-wandb-test"], capsys)
    assert code == 0, err
    record = _offline_run(wandb_offline, b"rewards/margins")
    for key in (b"rewards/margins", b"logps/chosen", b"dpo-wandb-test", b"loss"):
        assert key in record, key
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))  # all: both loggers


def test_ppo_reports_to_wandb(capsys, tmp_path, tiny_lm, tiny_rm, wandb_offline):
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"{i} + {i} ="} for i in range(8)])
    out = tmp_path / "ppo"
    code, _, err = run_cli(["rlhf", "--algo", "ppo", "--model", tiny_lm, "--reward-model",
                            tiny_rm, "--dataset", data, "--output-dir", out, "--max-steps", "2",
                            "--rollout-batch-size", "4", "--max-new-tokens", "4",
                            "--per-device-train-batch-size", "4", "--report-to", "wandb"],
                           capsys)
    assert code == 0, err
    record = _offline_run(wandb_offline, b"objective/kl")
    assert b"reward/raw" in record and b"objective/kl" in record and b"ppo" in record
    assert not (out / "tensorboard").exists()  # wandb alone, as asked


def test_wandb_run_gets_name_project_and_config(monkeypatch, tmp_path):
    """What align hands wandb.init, without W&B itself."""
    from align import metrics
    from align.options import resolve
    from align.registry import flag_owners, get_algo

    seen: dict = {}

    class Run:
        def log(self, row, step):
            seen.setdefault("rows", []).append((step, row))

        def finish(self):
            seen["finished"] = True

    monkeypatch.setattr(metrics, "wandb_run", lambda options: seen.update(options) or Run())
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    spec = get_algo("dpo")
    cfg = resolve(spec, {"model": "m", "dataset": "d", "report_to": "wandb",
                         "output_dir": str(tmp_path / "run-7")}, {},
                  flag_owners())
    logger = metrics.run_logger(cfg, tmp_path / "run-7")
    logger.log(3, {"loss": 0.5, "note": "text", "flag": True})
    logger.close()
    assert seen["project"] == "align" and seen["name"] == "run-7"
    assert seen["config"]["algo"] == "dpo" and seen["dir"] == str(tmp_path / "run-7")
    assert seen["rows"] == [(3, {"loss": 0.5})] and seen["finished"]
    assert not (tmp_path / "run-7" / "tensorboard").exists()


def test_report_to_values_are_checked(capsys, tmp_path, monkeypatch):
    from align import runner

    data = write_jsonl(tmp_path / "p.jsonl", addition_pairs(4))
    base = ["rlhf", "--algo", "dpo", "--model", "m/m", "--dataset", data, "--dry-run"]
    code, _, err = run_cli(base + ["--report-to", "mlflow"], capsys)
    assert code == 2 and "--report-to 'mlflow'" in err
    code, _, err = run_cli(base + ["--report-to", "none,wandb"], capsys)
    assert code == 2 and "none excludes" in err
    monkeypatch.setattr(runner, "has_package", lambda name: name != "wandb")
    code, _, err = run_cli(base + ["--report-to", "tensorboard,wandb"], capsys)
    assert code == 0 and "--report-to wandb needs the wandb package" in err


class FakeApi:
    calls: list = []

    def create_repo(self, repo_id, **kwargs):
        FakeApi.calls.append(("create_repo", repo_id, kwargs))

        class Url:
            pass

        url = Url()
        url.repo_id = repo_id if "/" in repo_id else f"me/{repo_id}"
        return url

    def upload_folder(self, **kwargs):
        FakeApi.calls.append(("upload_folder", kwargs))


def test_push_to_hub_uploads_the_run_with_its_model_card(capsys, tmp_path, tiny_lm, monkeypatch):
    import huggingface_hub

    from align import runner

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(runner, "hub_issue", lambda: None)  # logged in, online
    FakeApi.calls = []
    data = write_jsonl(tmp_path / "pairs.jsonl", addition_pairs(16))
    out = tmp_path / "my-dpo"
    code, stdout, err = run_cli(["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", data,
                                 "--max-steps", "4", "--save-steps", "2", "--lora",
                                 "--eval-split", "0.25", "--output-dir", out,
                                 "--push-to-hub", "--hub-model-id", "me/my-dpo",
                                 "--report-to", "none"], capsys)
    assert code == 0, err
    (create, upload) = FakeApi.calls
    assert create[1] == "me/my-dpo" and create[2]["private"] is True
    assert upload[1]["repo_id"] == "me/my-dpo" and upload[1]["folder_path"] == str(out)
    assert "checkpoint-*" in upload[1]["ignore_patterns"]
    assert "pushed: https://huggingface.co/me/my-dpo" in stdout
    card = (out / "README.md").read_text()
    head = card.split("---")[1]
    assert "library_name: peft" in head and "- dpo" in head
    assert "**dpo**" in card and "pairs.jsonl: 12 records" in card  # 4 held out
    final = json.loads((out / "final_metrics.json").read_text())
    assert f"| last_loss | {final['last_loss']:.4g} |" in card and "| eval_loss |" in card
    assert 'AutoPeftModelForCausalLM.from_pretrained("me/my-dpo")' in card


def test_push_to_hub_offline_or_logged_out_is_a_machine_issue(capsys, tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "p.jsonl", addition_pairs(4))
    base = ["rlhf", "--algo", "dpo", "--model", "m/m", "--dataset", data, "--push-to-hub"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(base + ["--dry-run"], capsys)
    assert code == 0 and "HF_HUB_OFFLINE=1 is set" in err
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    code, _, err = run_cli(base + ["--output-dir", tmp_path / "o"], capsys)
    assert code == 2 and "needs a Hugging Face login" in err
    code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model", "m/m", "--dataset", data,
                            "--hub-model-id", "me/x", "--dry-run"], capsys)
    assert code == 2 and "add --push-to-hub" in err
