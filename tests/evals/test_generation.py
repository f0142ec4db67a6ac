import pytest
import torch

from fedunlearn.data.template import format_prompt
from fedunlearn.evals.generation import generate_answers

CHAT = {"apply_chat_template": True}
QUESTIONS = [
    "Who wrote Hamlet?",
    "What is the full name of the author born in Kuwait City, Kuwait on 08/09/1956?",
    "In which city and country was Basil Mahfouz Al-Kuwaiti born?",
]


def manual_greedy(model, tokenizer, question, max_new_tokens):
    """Decode greedily with a plain argmax loop over full forward passes."""
    prompt = format_prompt(tokenizer, question, CHAT)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    new_tokens = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(input_ids=torch.tensor([ids + new_tokens])).logits[0, -1]
            token = int(logits.argmax())
            if token == tokenizer.eos_token_id:
                break
            new_tokens.append(token)
    return tokenizer.decode(new_tokens, skip_special_tokens=True).strip()


def boost_token(model, token_id):
    """Make ``token_id`` the argmax at every position through a hook on the output layer."""

    def hook(module, inputs, output):
        output[..., token_id] += 1e4
        return output

    return model.lm_head.register_forward_hook(hook)


def test_generate_answers_matches_manual_greedy(tiny_llama, tokenizer):
    [answer] = generate_answers(tiny_llama, tokenizer, [QUESTIONS[0]], CHAT, max_new_tokens=8)

    assert answer == manual_greedy(tiny_llama, tokenizer, QUESTIONS[0], max_new_tokens=8)
    assert answer  # the random model does not emit EOS at once, so the comparison is not trivial


def test_generate_answers_batched_equals_one_by_one(tiny_llama, tokenizer):
    batched = generate_answers(tiny_llama, tokenizer, QUESTIONS, CHAT, batch_size=3, max_new_tokens=8)
    one_by_one = [generate_answers(tiny_llama, tokenizer, [q], CHAT, max_new_tokens=8)[0] for q in QUESTIONS]

    assert batched == one_by_one


def test_generate_answers_keeps_tokenizer_padding_side(tiny_llama, tokenizer):
    before = tokenizer.padding_side

    generate_answers(tiny_llama, tokenizer, QUESTIONS[:2], CHAT, batch_size=2, max_new_tokens=2)

    assert tokenizer.padding_side == before


def test_generate_answers_stops_at_eos(tiny_llama, tokenizer):
    handle = boost_token(tiny_llama, tokenizer.eos_token_id)
    try:
        answers = generate_answers(tiny_llama, tokenizer, QUESTIONS[:2], CHAT, max_new_tokens=8)
    finally:
        handle.remove()

    assert answers == ["", ""]


def test_generate_answers_strips_special_tokens(tiny_llama, tokenizer):
    special_id = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert special_id != tokenizer.eos_token_id
    handle = boost_token(tiny_llama, special_id)
    try:
        [answer] = generate_answers(tiny_llama, tokenizer, [QUESTIONS[0]], CHAT, max_new_tokens=4)
    finally:
        handle.remove()

    assert answer == ""


def test_generate_answers_restores_train_mode(tiny_llama, tokenizer):
    tiny_llama.train()

    generate_answers(tiny_llama, tokenizer, [QUESTIONS[0]], CHAT, max_new_tokens=2)

    assert tiny_llama.training


def test_generate_answers_rejects_zero_batch_size(tiny_llama, tokenizer):
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        generate_answers(tiny_llama, tokenizer, QUESTIONS, CHAT, batch_size=0)
