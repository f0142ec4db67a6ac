import pytest
import torch
import torch.nn.functional as F

from fedunlearn.data.template import IGNORE_INDEX, tokenize_qa
from evals.hand_scores import manual_token_stats

from fedunlearn.evals.scoring import answer_nll, score_answers, score_examples

CHAT = {"apply_chat_template": True}
PLAIN = {"apply_chat_template": False}
SHORT = ("Who wrote Hamlet?", "Shakespeare.")
LONG = (
    "What is the full name of the author born in Kuwait City, Kuwait on 08/09/1956?",
    "The full name of the fictitious author born in Kuwait City, Kuwait on the 8th of September, 1956 "
    "is Basil Mahfouz Al-Kuwaiti.",
)


def manual_nll(model, tokenizer, question, answer, template_args):
    """Sum and count the answer-token losses of one unpadded example, position by position."""
    example = tokenize_qa(tokenizer, question, answer, template_args)
    input_ids = torch.tensor([example["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits[0]
    losses = [
        F.cross_entropy(logits[t - 1], torch.tensor(example["input_ids"][t]))
        for t, label in enumerate(example["labels"])
        if label != IGNORE_INDEX
    ]
    return sum(loss.item() for loss in losses), len(losses)


@pytest.mark.parametrize("template_args", [CHAT, PLAIN], ids=["chat", "plain"])
def test_answer_nll_matches_manual_cross_entropy(tiny_llama, tokenizer, template_args):
    expected_sum, expected_count = manual_nll(tiny_llama, tokenizer, *SHORT, template_args)

    [result] = answer_nll(tiny_llama, tokenizer, [SHORT[0]], [SHORT[1]], template_args)

    answer_tokens = tokenizer(SHORT[1], add_special_tokens=False)["input_ids"]
    assert result["num_tokens"] == expected_count == len(answer_tokens) + 1  # answer plus EOS
    assert result["sum_loss"] == pytest.approx(expected_sum, rel=1e-5)
    assert result["avg_loss"] == pytest.approx(expected_sum / expected_count, rel=1e-5)


def test_answer_nll_padding_does_not_contribute(tiny_llama, tokenizer):
    [alone] = answer_nll(tiny_llama, tokenizer, [SHORT[0]], [SHORT[1]], CHAT)

    # Batched with a longer pair, the short pair is right-padded by many positions.
    batched = answer_nll(tiny_llama, tokenizer, [LONG[0], SHORT[0]], [LONG[1], SHORT[1]], CHAT, batch_size=2)

    assert batched[1]["num_tokens"] == alone["num_tokens"]
    assert batched[1]["avg_loss"] == pytest.approx(alone["avg_loss"], rel=1e-5)
    assert batched[0]["num_tokens"] > batched[1]["num_tokens"]


def test_answer_nll_keeps_input_order(tiny_llama, tokenizer):
    questions = [SHORT[0], LONG[0], SHORT[0]]
    answers = [SHORT[1], LONG[1], "Marlowe."]

    batched = answer_nll(tiny_llama, tokenizer, questions, answers, CHAT, batch_size=2)
    one_by_one = [answer_nll(tiny_llama, tokenizer, [q], [a], CHAT)[0] for q, a in zip(questions, answers)]

    for got, expected in zip(batched, one_by_one):
        assert got["num_tokens"] == expected["num_tokens"]
        assert got["avg_loss"] == pytest.approx(expected["avg_loss"], rel=1e-5)


def test_answer_nll_restores_train_mode(tiny_llama, tokenizer):
    tiny_llama.train()

    answer_nll(tiny_llama, tokenizer, [SHORT[0]], [SHORT[1]], CHAT)

    assert tiny_llama.training


def test_answer_nll_leaves_eval_mode(tiny_llama, tokenizer):
    answer_nll(tiny_llama, tokenizer, [SHORT[0]], [SHORT[1]], CHAT)

    assert not tiny_llama.training


def test_answer_nll_bfloat16_autocast_close_to_float32(tiny_llama, tokenizer):
    [full] = answer_nll(tiny_llama, tokenizer, [SHORT[0]], [SHORT[1]], CHAT)
    [mixed] = answer_nll(tiny_llama, tokenizer, [SHORT[0]], [SHORT[1]], CHAT, autocast_dtype=torch.bfloat16)

    assert mixed["num_tokens"] == full["num_tokens"]
    assert mixed["avg_loss"] == pytest.approx(full["avg_loss"], rel=1e-2)


def test_answer_nll_rejects_length_mismatch(tiny_llama, tokenizer):
    with pytest.raises(ValueError, match="2 questions but 1 answers"):
        answer_nll(tiny_llama, tokenizer, [SHORT[0], LONG[0]], [SHORT[1]], CHAT)


def test_score_answers_matches_manual_statistics(tiny_llama, tokenizer):
    expected = manual_token_stats(tiny_llama, tokenizer, *LONG, CHAT)

    [scores] = score_answers(tiny_llama, tokenizer, [LONG[0]], [LONG[1]], CHAT)

    assert scores.target_ids.tolist() == expected["target_ids"]
    assert scores.token_logprobs == pytest.approx(expected["logprobs"], rel=1e-4, abs=1e-5)
    assert scores.greedy_match.tolist() == expected["match"]
    assert scores.vocab_mean == pytest.approx(expected["mean"], rel=1e-4)
    assert scores.vocab_var == pytest.approx(expected["var"], rel=1e-3, abs=1e-5)


def test_score_answers_padding_keeps_statistics(tiny_llama, tokenizer):
    [alone] = score_answers(tiny_llama, tokenizer, [SHORT[0]], [SHORT[1]], CHAT)

    batched = score_answers(tiny_llama, tokenizer, [LONG[0], SHORT[0]], [LONG[1], SHORT[1]], CHAT, batch_size=2)

    assert batched[1].target_ids.tolist() == alone.target_ids.tolist()
    assert batched[1].token_logprobs == pytest.approx(alone.token_logprobs, rel=1e-5)
    assert batched[1].greedy_match.tolist() == alone.greedy_match.tolist()
    assert batched[1].vocab_var == pytest.approx(alone.vocab_var, rel=1e-4)


def test_score_examples_rejects_example_without_targets(tiny_llama, tokenizer):
    example = tokenize_qa(tokenizer, *SHORT, CHAT)
    example["labels"] = [IGNORE_INDEX] * len(example["labels"])

    with pytest.raises(ValueError, match="example 0 has no target token"):
        score_examples(tiny_llama, [example], tokenizer.pad_token_id)


def test_score_answers_inherits_caller_autocast(tiny_llama, tokenizer):
    [full] = score_answers(tiny_llama, tokenizer, [LONG[0]], [LONG[1]], CHAT)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        [mixed] = score_answers(tiny_llama, tokenizer, [LONG[0]], [LONG[1]], CHAT)

    assert mixed.avg_loss != full.avg_loss
    assert mixed.avg_loss == pytest.approx(full.avg_loss, rel=1e-2)


class WithoutLogitsToKeep(torch.nn.Module):
    """A causal LM whose forward takes only input_ids and attention_mask."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask)


def test_score_answers_model_without_logits_to_keep(tiny_llama, tokenizer):
    questions, answers = [LONG[0], SHORT[0]], [LONG[1], SHORT[1]]
    expected = score_answers(tiny_llama, tokenizer, questions, answers, CHAT, batch_size=2)

    got = score_answers(WithoutLogitsToKeep(tiny_llama), tokenizer, questions, answers, CHAT, batch_size=2)

    for result, reference in zip(got, expected):
        assert result.token_logprobs == pytest.approx(reference.token_logprobs, rel=1e-5)
