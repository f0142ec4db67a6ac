import pytest
from transformers import AutoTokenizer

from fedunlearn.data.template import IGNORE_INDEX, format_prompt, tokenize_qa

CHAT = {"apply_chat_template": True}
PLAIN = {"apply_chat_template": False}
QUESTION = "Who wrote 'The Lighthouse Ledger'?"
ANSWER = "It was written by Basil Mahfouz Al-Kuwaiti."


@pytest.fixture(scope="module")
def bos_tokenizer(smollm2_path):
    """SmolLM2's tokenizer set to prepend BOS, as Llama's does. Its BOS token also opens every chat turn."""
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path, add_bos_token=True)
    assert tokenizer("x")["input_ids"][0] == tokenizer.bos_token_id
    return tokenizer


@pytest.fixture(scope="module")
def templateless_tokenizer(smollm2_path):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    tokenizer.chat_template = None
    return tokenizer


def prompt_length(tokenizer, template_args) -> int:
    """Return the number of prompt tokens of QUESTION, counted by tokenising the formatted prompt text."""
    text = format_prompt(tokenizer, QUESTION, template_args)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("template_args", [CHAT, PLAIN], ids=["chat", "plain"])
def test_labels_mask_prompt_only(tokenizer, template_args):
    example = tokenize_qa(tokenizer, QUESTION, ANSWER, template_args)
    n = prompt_length(tokenizer, template_args)

    assert example["labels"][:n] == [IGNORE_INDEX] * n
    assert example["labels"][n:] == example["input_ids"][n:]
    assert IGNORE_INDEX not in example["labels"][n:]
    assert example["attention_mask"] == [1] * len(example["input_ids"])


@pytest.mark.parametrize("template_args", [CHAT, PLAIN], ids=["chat", "plain"])
def test_answer_ends_with_eos(tokenizer, template_args):
    example = tokenize_qa(tokenizer, QUESTION, ANSWER, template_args)
    answer_ids = tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    n = prompt_length(tokenizer, template_args)

    assert example["input_ids"][n:] == answer_ids + [tokenizer.eos_token_id]


def test_chat_prompt_text(tokenizer):
    prompt = format_prompt(tokenizer, QUESTION, {"apply_chat_template": True, "system_prompt": "Answer briefly."})

    assert prompt.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>\n")
    assert f"<|im_start|>user\n{QUESTION}<|im_end|>\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_plain_prompt_text(tokenizer):
    assert format_prompt(tokenizer, QUESTION, PLAIN) == f"Question: {QUESTION}\nAnswer: "


def test_plain_without_chat_template(templateless_tokenizer):
    # A tokenizer without a chat template falls back to the plain template even when chat is requested.
    assert format_prompt(templateless_tokenizer, QUESTION, CHAT) == f"Question: {QUESTION}\nAnswer: "


def test_chat_bos_not_doubled(bos_tokenizer):
    input_ids = tokenize_qa(bos_tokenizer, QUESTION, ANSWER, CHAT)["input_ids"]
    bos = bos_tokenizer.bos_token_id

    assert input_ids[0] == bos
    assert input_ids[1] != bos


def test_plain_bos_added_once(bos_tokenizer):
    input_ids = tokenize_qa(bos_tokenizer, QUESTION, ANSWER, PLAIN)["input_ids"]
    question_ids = bos_tokenizer("Question:", add_special_tokens=False)["input_ids"]

    assert input_ids[0] == bos_tokenizer.bos_token_id
    assert input_ids[1 : 1 + len(question_ids)] == question_ids


def test_truncation_keeps_prompt(tokenizer):
    full = tokenize_qa(tokenizer, QUESTION, ANSWER, CHAT)
    n = prompt_length(tokenizer, CHAT)

    example = tokenize_qa(tokenizer, QUESTION, ANSWER, CHAT, max_length=n + 3)

    assert len(example["input_ids"]) == n + 3
    assert example["input_ids"] == full["input_ids"][: n + 3]
    assert example["labels"] == [IGNORE_INDEX] * n + full["input_ids"][n : n + 3]
    assert len(example["attention_mask"]) == n + 3


def test_exact_fit_not_truncated(tokenizer):
    full = tokenize_qa(tokenizer, QUESTION, ANSWER, CHAT)

    assert tokenize_qa(tokenizer, QUESTION, ANSWER, CHAT, max_length=len(full["input_ids"])) == full


@pytest.mark.parametrize("margin", [0, -5])
def test_overlong_prompt_raises(tokenizer, margin):
    n = prompt_length(tokenizer, CHAT)

    with pytest.raises(ValueError, match=f"prompt of {n} tokens does not fit max_length={n + margin}"):
        tokenize_qa(tokenizer, QUESTION, ANSWER, CHAT, max_length=n + margin)
