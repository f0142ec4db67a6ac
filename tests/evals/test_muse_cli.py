"""The MUSE commands as a user types them, on the tiny Llama and a small corpus in MUSE's layout."""

import json

import pytest
from cli_helpers import run_cli
from muse_corpus import write_muse_corpus

UNLEARN = ["train", "--config-name=unlearn.yaml", "experiment=unlearn/muse/default.yaml", "model=Llama-2-7b-hf",
           "data_split=News", "trainer=FederatedUnlearningTrainer", "task_name=test"]
EVAL = ["eval", "experiment=eval/muse/default", "data_split=News", "task_name=test"]


def tiny_model(path) -> list[str]:
    return [f"model.model_args.pretrained_model_name_or_path={path}",
            f"model.tokenizer_args.pretrained_model_name_or_path={path}", "model.model_args.torch_dtype=float32"]


def tiny_eval(output_dir) -> list[str]:
    return [f"paths.output_dir={output_dir}", "eval.muse.max_samples=2", "eval.muse.max_length=32",
            "eval.muse.verbmem.max_new_tokens=4", "eval.muse.knowmem.max_new_tokens=4"]


@pytest.fixture(scope="module")
def unlearned(tiny_llama_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("muse-cli")
    data_dir = write_muse_corpus(root / "data")
    output_dir = root / "unlearn"
    code = run_cli(*UNLEARN, *tiny_model(tiny_llama_path), f"data_dir={data_dir}", f"paths.output_dir={output_dir}",
                   "data.max_length=32", "trainer.method_args.global_rounds=1", "trainer.args.max_steps=1",
                   "trainer.args.per_device_train_batch_size=2", "trainer.args.gradient_accumulation_steps=1",
                   "trainer.args.bf16=false")
    assert code == 0
    return root, data_dir, output_dir


def test_unlearn_serves_forget_documents(unlearned):
    _, _, output_dir = unlearned
    summary = json.loads((output_dir / "federation.json").read_text())
    rounds = json.loads((output_dir / "federation" / "history.json").read_text())

    assert summary["trainer"] == "FederatedUnlearningTrainer"
    assert summary["forget_records"] > 0
    assert (output_dir / "config.json").is_file()
    assert rounds[-1]["roles"] == {"0": "unlearn", "1": "retain", "2": "retain"}


def test_eval_writes_muse_files(unlearned, capsys):
    root, data_dir, output_dir = unlearned
    eval_dir = root / "eval-unlearned"

    code = run_cli(*EVAL, *tiny_model(output_dir), f"data_dir={data_dir}", *tiny_eval(eval_dir))

    assert code == 0
    summary = json.loads((eval_dir / "MUSE_SUMMARY.json").read_text())
    logs = json.loads((eval_dir / "MUSE_EVAL.json").read_text())
    assert set(summary) == {"forget_knowmem_ROUGE", "retain_knowmem_ROUGE", "forget_verbmem_ROUGE", "privleak",
                            "extraction_strength", "mia_min_k"}
    assert len(logs["forget_verbmem_ROUGE"]["value_by_index"]) == 2


def test_eval_takes_retain_logs(unlearned, tiny_llama_path):
    # The tiny model before unlearning plays the retain model; its MUSE_EVAL.json is the privleak reference.
    root, data_dir, output_dir = unlearned
    retain_dir, eval_dir = root / "eval-retain", root / "eval-against-retain"
    assert run_cli(*EVAL, *tiny_model(tiny_llama_path), f"data_dir={data_dir}", *tiny_eval(retain_dir),
                   "eval.muse.metrics=[privleak]") == 0

    code = run_cli(*EVAL, *tiny_model(output_dir), f"data_dir={data_dir}", *tiny_eval(eval_dir),
                   "eval.muse.metrics=[privleak]", f"retain_logs_path={retain_dir / 'MUSE_EVAL.json'}")

    assert code == 0
    reference = json.loads((retain_dir / "MUSE_SUMMARY.json").read_text())["mia_min_k"]
    summary = json.loads((eval_dir / "MUSE_SUMMARY.json").read_text())
    assert summary["privleak"] == pytest.approx(((1 - summary["mia_min_k"]) - (1 - reference)) / (1 - reference) * 100)


def test_eval_missing_corpus_fails(tiny_llama_path, tmp_path, capsys):
    code = run_cli(*EVAL, *tiny_model(tiny_llama_path), f"data_dir={tmp_path}", *tiny_eval(tmp_path / "out"))

    assert code == 2
    assert "has no 'muse/News' subfolder" in capsys.readouterr().err
