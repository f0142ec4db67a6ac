"""MUSE (Shi et al., 2024, "MUSE: Machine Unlearning Six-Way Evaluation for Language Models").

Two corpora, each a Hugging Face Hub dataset with several configurations:
``News`` (BBC articles, ``muse-bench/MUSE-News``) and ``Books`` (the Harry Potter
novels, ``muse-bench/MUSE-Books``). The configurations, their splits and fields:

=========  ================================================  ==================
config     splits                                            fields
=========  ================================================  ==================
raw        forget, retain1, retain2, holdout                 text
verbmem    forget                                            prompt, gt
knowmem    forget_qa, retain_qa, forget_qa_icl, retain_qa_icl  question, answer
privleak   forget, retain, holdout                           text
scal       forget_1 ... forget_4 (News only)                 text
sust       forget_1 ... forget_4 (News only)                 text
train      forget, retain1, retain2                          text
=========  ================================================  ==================

Splits come from the Hub or, when ``data_dir`` (default: the environment
variable ``FEDUNLEARN_DATA_DIR``) is set, from
``<data_dir>/muse/<corpus>/<config>/<split>.json``: JSON Lines files with the
Hub's field names, one record per line.

A split is named ``config/split`` (``scal/forget_2``) or by its split alone,
which means the ``raw`` configuration (``forget`` is ``raw/forget``).

For unlearning, documents become pretraining examples: each document is
tokenised and cut into windows of at most ``max_length`` tokens (BOS included),
and the loss covers every token of a window. OpenUnlearning's
``PretrainingDataset`` joins all documents with blank lines before cutting.
Here a window never crosses a document boundary, so every window belongs to
one document and therefore to one client.
"""

from __future__ import annotations

import os
from pathlib import Path

from fedunlearn.data.template import IGNORE_INDEX
from fedunlearn.data.tofu import DataError, _read_json_lines

HUB_PATHS = {"News": "muse-bench/MUSE-News", "Books": "muse-bench/MUSE-Books"}
FIELDS = {
    "raw": ("text",),
    "verbmem": ("prompt", "gt"),
    "knowmem": ("question", "answer"),
    "privleak": ("text",),
    "scal": ("text",),
    "sust": ("text",),
    "train": ("text",),
}
DEFAULT_CONFIG = "raw"


def parse_split(name: str) -> tuple[str, str]:
    """Split ``config/split`` into its two parts. A bare split name belongs to ``raw``."""
    config, _, split = str(name).rpartition("/")
    config = config or DEFAULT_CONFIG
    if config not in FIELDS or not split:
        raise DataError(
            f"invalid MUSE split {name!r}: write config/split with config one of {sorted(FIELDS)} "
            "(for example knowmem/forget_qa), or a split of raw (forget, retain1, retain2, holdout)"
        )
    return config, split


def resolve_data_dir(data_dir: str | os.PathLike | None, corpus: str) -> Path | None:
    """Return ``data_dir`` or ``$FEDUNLEARN_DATA_DIR`` as a checked path, or None for the Hub."""
    _check_corpus(corpus)
    data_dir = data_dir or os.environ.get("FEDUNLEARN_DATA_DIR") or None
    if data_dir is None:
        return None
    path = Path(data_dir).expanduser()
    if not (path / "muse" / corpus).is_dir():
        raise DataError(
            f"data folder {str(path)!r} has no 'muse/{corpus}' subfolder: set data_dir (or FEDUNLEARN_DATA_DIR) "
            f"to a folder holding muse/{corpus}/<config>/<split>.json, or unset both to read {HUB_PATHS[corpus]} "
            "from the Hub"
        )
    return path


def load_split(corpus: str, name: str, data_dir: str | os.PathLike | None = None) -> list[dict]:
    """Load one MUSE split (``config/split`` or a ``raw`` split) as a list of records and check its fields."""
    config, split = parse_split(name)
    root = resolve_data_dir(data_dir, corpus)
    if root is None:
        records = _load_from_hub(corpus, config, split)
        source = f"{HUB_PATHS[corpus]}:{config}/{split}"
    else:
        file = root / "muse" / corpus / config / f"{split}.json"
        if not file.is_file():
            available = sorted(f"{p.parent.name}/{p.stem}" for p in (root / "muse" / corpus).glob("*/*.json"))
            raise DataError(f"MUSE-{corpus} split {config}/{split} not found at {file}: available splits are {available}")
        records = _read_json_lines(file)
        source = str(file)

    if not records:
        raise DataError(f"MUSE-{corpus} split {config}/{split} at {source} is empty")
    for index, record in enumerate(records):
        missing = [key for key in FIELDS[config] if not isinstance(record.get(key), str)]
        if missing:
            raise DataError(f"record {index} of {source} has no text field {', '.join(map(repr, missing))}")
    return records


def chunk_document(tokenizer, text: str, max_length: int) -> list[list[int]]:
    """Cut ``text`` into token windows that fit ``max_length`` once the tokenizer's special prefix is added.

    The windows are consecutive and do not overlap; the last one may be shorter.
    A window that would leave no token to predict (one token without a BOS
    prefix) is dropped.
    """
    prefix = special_prefix(tokenizer)
    width = max_length - len(prefix)
    if width < 1:
        raise ValueError(
            f"max_length={max_length} is too small: the tokenizer adds {len(prefix)} special tokens, "
            "so raise data.max_length"
        )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    windows = [ids[start : start + width] for start in range(0, len(ids), width)]
    return [window for window in windows if len(prefix) + len(window) >= 2]


def pretraining_example(tokenizer, window: list[int]) -> dict[str, list[int]]:
    """Build a training example from a token window: the special prefix, then the window, with loss on the window.

    The first position never has a label, as in OpenUnlearning's
    ``preprocess_pretraining_instance``, because no token precedes it.
    """
    input_ids = special_prefix(tokenizer) + list(window)
    return {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "labels": [IGNORE_INDEX] + input_ids[1:],
    }


def fewshot_prompt(tokenizer, shots: list[dict], question: str, template_args) -> str:
    """Format a few-shot question-answering prompt: each shot answered, then ``question`` awaiting its answer.

    Without a chat template (``template_args.apply_chat_template`` false, or a
    tokenizer without one) the prompt is MUSE's plain text,
    ``"Question: {q}\\nAnswer: {a}\\n\\n"`` per shot followed by
    ``"Question: {question}\\nAnswer: "``. With a chat template, each shot is a
    user turn and an assistant turn, after an optional system prompt.
    """
    if template_args.get("apply_chat_template", True) and tokenizer.chat_template:
        messages = []
        if template_args.get("system_prompt"):
            messages.append({"role": "system", "content": template_args["system_prompt"]})
        for shot in shots:
            messages.append({"role": "user", "content": shot["question"]})
            messages.append({"role": "assistant", "content": shot["answer"]})
        messages.append({"role": "user", "content": question})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    context = "".join(f"Question: {shot['question']}\nAnswer: {shot['answer']}\n\n" for shot in shots)
    return context + f"Question: {question}\nAnswer: "


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Tokenise a prompt with the tokenizer's special prefix, unless the prompt text already starts with BOS."""
    has_bos = bool(tokenizer.bos_token) and prompt.startswith(tokenizer.bos_token)
    return tokenizer(prompt, add_special_tokens=not has_bos)["input_ids"]


def training_records(
    data_cfg, train_splits, forget_split: str, data_dir: str | os.PathLike | None
) -> tuple[list[dict], list[int], set[int]]:
    """Load the documents a federation trains on and cut them into token windows.

    ``train_splits`` is one split name or a list of them (``[forget, retain1]``).
    The documents of ``forget_split`` among them are the forget documents. The
    windows are cut with the tokenizer named by ``data_cfg.tokenizer`` (the
    model's own, see ``configs/data/muse.yaml``) to ``data_cfg.max_length`` tokens.

    Returns ``(records, documents, forget_documents)``: one record
    ``{"input_ids", "document"}`` per window, the document id of each window
    and the ids of the forget documents. Forget documents get ids -1, -2, ...
    and the others 0, 1, ... in order of ``train_splits``, so the other
    documents keep their ids whether or not the forget split is trained on,
    and a retain-only federation deals them to the same clients.
    """
    corpus = str(data_cfg.get("data_split"))
    _check_corpus(corpus)
    tokenizer = _load_tokenizer(data_cfg.get("tokenizer"))
    max_length = int(data_cfg.get("max_length"))
    names = [train_splits] if isinstance(train_splits, str) else list(train_splits)
    if not names:
        raise DataError("data.train_split is empty: list the MUSE splits to train on, for example [forget, retain1]")

    records, documents, forget_documents = [], [], set()
    next_id = 0
    for name in names:
        is_forget = parse_split(name) == parse_split(forget_split)
        for index, record in enumerate(load_split(corpus, name, data_dir)):
            if is_forget:
                document = -1 - index
                forget_documents.add(document)
            else:
                document, next_id = next_id, next_id + 1
            for window in chunk_document(tokenizer, record["text"], max_length):
                records.append({"input_ids": window, "document": f"{name}#{index}"})
                documents.append(document)
    return records, documents, forget_documents


def special_prefix(tokenizer) -> list[int]:
    """Return the tokens the tokenizer puts before any text (the BOS token for Llama, none for SmolLM2)."""
    return tokenizer("", add_special_tokens=True)["input_ids"]


def _check_corpus(corpus: str) -> None:
    if corpus not in HUB_PATHS:
        raise DataError(f"unknown MUSE corpus {corpus!r}: set data_split to one of {sorted(HUB_PATHS)}")


def _load_tokenizer(source):
    from transformers import AutoTokenizer

    from fedunlearn.models.sources import resolve_model_source

    if not source:
        raise DataError("data.tokenizer is not set: name the tokenizer that cuts MUSE documents into token windows")
    return AutoTokenizer.from_pretrained(resolve_model_source(source))


def _load_from_hub(corpus: str, config: str, split: str) -> list[dict]:
    import datasets

    try:
        return datasets.load_dataset(HUB_PATHS[corpus], config, split=split).to_list()
    except Exception as err:  # datasets raises many types for network and config errors
        raise DataError(
            f"could not load MUSE-{corpus} split {config}/{split} from the Hub ({type(err).__name__}: {err}): "
            "set data_dir or FEDUNLEARN_DATA_DIR to a local copy"
        ) from err
