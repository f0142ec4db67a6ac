import json

import datasets
import pytest
from muse_corpus import FORGET, FORGET_QA, RETAIN1, write_muse_corpus
from omegaconf import OmegaConf

import fedunlearn.data.muse as muse
from fedunlearn.data.muse import (
    chunk_document,
    fewshot_prompt,
    load_split,
    parse_split,
    pretraining_example,
    special_prefix,
    training_records,
)
from fedunlearn.data.template import IGNORE_INDEX
from fedunlearn.data.tofu import DataError
from fedunlearn.trainers.data import load_federated_data, tokenize_records

PLAIN = {"apply_chat_template": False}


@pytest.fixture
def corpus(tmp_path):
    return write_muse_corpus(tmp_path)


@pytest.fixture
def no_hub(monkeypatch):
    def fail(corpus, config, split):
        pytest.fail(f"load_split tried to download {config}/{split} from the Hub instead of reading local files")

    monkeypatch.setattr(muse, "_load_from_hub", fail)


def data_cfg(tokenizer_path, **overrides):
    return OmegaConf.create({"dataset": "MUSE", "data_split": "News", "train_split": ["forget", "retain1"],
                             "max_authors": None, "max_length": 24, "tokenizer": tokenizer_path, **overrides})


@pytest.mark.parametrize(
    ("name", "expected"),
    [("forget", ("raw", "forget")), ("knowmem/forget_qa", ("knowmem", "forget_qa")), ("scal/forget_2", ("scal", "forget_2"))],
)
def test_parse_split_names(name, expected):
    assert parse_split(name) == expected


@pytest.mark.parametrize("name", ["lyrics/forget", "raw/", ""])
def test_parse_split_rejects_invalid(name):
    with pytest.raises(DataError, match="invalid MUSE split"):
        parse_split(name)


def test_load_split_local_records(corpus, no_hub):
    assert [r["text"] for r in load_split("News", "forget", corpus)] == FORGET
    assert load_split("News", "knowmem/forget_qa", corpus) == FORGET_QA


def test_missing_split_lists_available(corpus, no_hub):
    with pytest.raises(DataError, match=r"raw/retain3 not found .* available splits are \['knowmem/forget_qa'"):
        load_split("News", "retain3", corpus)


def test_missing_muse_folder_raises(tmp_path, no_hub):
    with pytest.raises(DataError, match="has no 'muse/News' subfolder"):
        load_split("News", "forget", tmp_path)


def test_books_folder_is_separate(corpus, no_hub):
    with pytest.raises(DataError, match="has no 'muse/Books' subfolder"):
        load_split("Books", "forget", corpus)


def test_unknown_corpus_raises(corpus):
    with pytest.raises(DataError, match="unknown MUSE corpus 'Poems'"):
        load_split("Poems", "forget", corpus)


def test_record_without_field_raises(corpus, no_hub):
    file = corpus / "muse" / "News" / "verbmem" / "forget.json"
    file.write_text(json.dumps({"prompt": "A prefix"}) + "\n")

    with pytest.raises(DataError, match="record 0 of .*forget.json has no text field 'gt'"):
        load_split("News", "verbmem/forget", corpus)


def test_empty_split_raises(corpus, no_hub):
    (corpus / "muse" / "News" / "raw" / "holdout.json").write_text("\n")

    with pytest.raises(DataError, match="raw/holdout at .* is empty"):
        load_split("News", "holdout", corpus)


def test_hub_loads_config_and_split(monkeypatch):
    calls = []

    def load_dataset(path, name, split):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(FORGET_QA)

    monkeypatch.delenv("FEDUNLEARN_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)

    assert load_split("Books", "knowmem/forget_qa") == FORGET_QA
    assert calls == [("muse-bench/MUSE-Books", "knowmem", "forget_qa")]


def test_chunk_document_covers_text(tokenizer):
    text = " ".join(FORGET)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    width = 16 - len(special_prefix(tokenizer))

    windows = chunk_document(tokenizer, text, max_length=16)

    assert [token for window in windows for token in window] == ids
    assert all(len(window) == width for window in windows[:-1])
    assert 0 < len(windows[-1]) <= width


def test_chunk_document_rejects_tiny_max_length(tokenizer, monkeypatch):
    monkeypatch.setattr(muse, "special_prefix", lambda tokenizer: [1])

    with pytest.raises(ValueError, match="max_length=1 is too small"):
        chunk_document(tokenizer, "text", max_length=1)


def test_pretraining_example_labels_every_token_but_first(tokenizer):
    example = pretraining_example(tokenizer, [11, 12, 13])
    prefix = special_prefix(tokenizer)

    assert example["input_ids"] == prefix + [11, 12, 13]
    assert example["labels"] == [IGNORE_INDEX] + (prefix + [11, 12, 13])[1:]
    assert example["attention_mask"] == [1] * len(example["input_ids"])


def test_fewshot_prompt_plain_text(tokenizer):
    shots = [{"question": "Q1?", "answer": "A1"}, {"question": "Q2?", "answer": "A2"}]

    prompt = fewshot_prompt(tokenizer, shots, "Q3?", PLAIN)

    assert prompt == "Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\nQuestion: Q3?\nAnswer: "


def test_fewshot_prompt_chat_turns(tokenizer):
    shots = [{"question": "Q1?", "answer": "A1"}]

    prompt = fewshot_prompt(tokenizer, shots, "Q2?", {"apply_chat_template": True})

    messages = [{"role": "user", "content": "Q1?"}, {"role": "assistant", "content": "A1"},
                {"role": "user", "content": "Q2?"}]
    assert prompt == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_training_records_mark_forget_documents(corpus, tiny_llama_path, tokenizer, no_hub):
    records, documents, forget = training_records(data_cfg(tiny_llama_path), ["forget", "retain1"], "forget", corpus)

    assert forget == {-1, -2, -3}
    assert sorted(set(documents)) == [-3, -2, -1, 0, 1, 2, 3]
    # Every document's windows rebuild its tokens, in order.
    first = [r["input_ids"] for r, d in zip(records, documents) if d == -1]
    assert [t for window in first for t in window] == tokenizer(FORGET[0], add_special_tokens=False)["input_ids"]
    assert records[0]["document"] == "forget#0"


def test_training_records_keep_retain_ids(corpus, tiny_llama_path, no_hub):
    _, with_forget, _ = training_records(data_cfg(tiny_llama_path), ["forget", "retain1"], "forget", corpus)
    _, retain_only, forget = training_records(data_cfg(tiny_llama_path), ["retain1"], "forget", corpus)

    assert forget == set()
    assert [d for d in with_forget if d >= 0] == retain_only


def test_training_records_need_tokenizer(corpus, no_hub):
    with pytest.raises(DataError, match="data.tokenizer is not set"):
        training_records(data_cfg(None), ["forget"], "forget", corpus)


def test_federated_data_gives_forget_to_target(corpus, tiny_llama_path, tokenizer, no_hub):
    method_args = {"num_clients": 2, "target_client_idx": 1, "partition": "author", "target_holds_retain": False}

    data = load_federated_data(["forget", "retain1"], "forget", method_args, data_cfg(tiny_llama_path), corpus, seed=0)

    forget_windows = [i for i, d in enumerate(data.authors) if d < 0]
    assert sorted(data.clients[1]) == forget_windows
    assert sorted(data.clients[0]) == [i for i, d in enumerate(data.authors) if d >= 0]
    examples = tokenize_records(tokenizer, data.records, PLAIN, 24)
    assert all(len(example["input_ids"]) <= 24 for example in examples)
    assert examples[0]["input_ids"] == special_prefix(tokenizer) + data.records[0]["input_ids"]


def test_federated_data_max_authors_counts_documents(corpus, tiny_llama_path, no_hub):
    method_args = {"num_clients": 1, "target_client_idx": 0}

    data = load_federated_data(["forget", "retain1"], "forget", method_args,
                               data_cfg(tiny_llama_path, max_authors=2), corpus, seed=0)

    assert sorted({d for d in data.authors if d >= 0}) == [0, 1]
    assert len(RETAIN1) > 2
