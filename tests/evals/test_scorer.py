import pytest

import fedunlearn.evals.scorer as scorer_module
from fedunlearn.evals.scorer import Scorer
from fedunlearn.evals.scoring import score_answers

CHAT = {"apply_chat_template": True}
QUESTIONS = ["Who wrote Hamlet?", "Who wrote Faust?"]
ANSWERS = ["Shakespeare.", "Goethe."]


@pytest.fixture
def counted(monkeypatch):
    """Count the sequences and prompts that reach the model."""
    counts = {"scored": 0, "generated": 0, "gradients": 0}
    real_score, real_generate, real_grads = scorer_module.score_examples, scorer_module.generate_answers, \
        scorer_module.parameter_grad_norms

    def score(model, examples, *args, **kwargs):
        counts["scored"] += len(examples)
        return real_score(model, examples, *args, **kwargs)

    def generate(model, tokenizer, questions, *args, **kwargs):
        counts["generated"] += len(questions)
        return real_generate(model, tokenizer, questions, *args, **kwargs)

    def grads(model, examples, *args, **kwargs):
        counts["gradients"] += len(examples)
        return real_grads(model, examples, *args, **kwargs)

    monkeypatch.setattr(scorer_module, "score_examples", score)
    monkeypatch.setattr(scorer_module, "generate_answers", generate)
    monkeypatch.setattr(scorer_module, "parameter_grad_norms", grads)
    return counts


def test_scorer_scores_each_pair_once(tiny_llama, tokenizer, counted):
    scorer = Scorer(tiny_llama, tokenizer, CHAT)

    first = scorer.scores(QUESTIONS, ANSWERS)
    again = scorer.scores([QUESTIONS[1], QUESTIONS[1], QUESTIONS[0]], [ANSWERS[1], ANSWERS[1], ANSWERS[0]])

    assert counted["scored"] == 2
    assert again[0] is first[1]
    assert again[1] is first[1]
    assert again[2] is first[0]


def test_scorer_matches_direct_scoring(tiny_llama, tokenizer):
    expected = score_answers(tiny_llama, tokenizer, QUESTIONS, ANSWERS, CHAT)

    got = Scorer(tiny_llama, tokenizer, CHAT).scores(QUESTIONS, ANSWERS)

    assert [s.avg_loss for s in got] == pytest.approx([s.avg_loss for s in expected], rel=1e-6)


def test_scorer_generates_each_question_once(tiny_llama, tokenizer, counted):
    scorer = Scorer(tiny_llama, tokenizer, CHAT, max_new_tokens=4)

    first = scorer.generations(QUESTIONS)
    again = scorer.generations([QUESTIONS[1], QUESTIONS[0], QUESTIONS[1]])

    assert counted["generated"] == 2
    assert again == [first[1], first[0], first[1]]


def test_scorer_caches_grad_norms_per_norm(tiny_llama, tokenizer, counted):
    scorer = Scorer(tiny_llama, tokenizer, CHAT)

    scorer.grad_norms(QUESTIONS, ANSWERS, p=2)
    scorer.grad_norms(QUESTIONS, ANSWERS, p=2)
    scorer.grad_norms(QUESTIONS[:1], ANSWERS[:1], p=1)

    assert counted["gradients"] == 3


def test_scorer_times_each_phase(tiny_llama, tokenizer):
    scorer = Scorer(tiny_llama, tokenizer, CHAT, max_new_tokens=2)

    scorer.scores(QUESTIONS, ANSWERS)
    scorer.generations(QUESTIONS)

    assert scorer.timings["scoring"] > 0
    assert scorer.timings["generation"] > 0
    assert scorer.timings["gradnorm"] == 0


def test_scorer_rejects_length_mismatch(tiny_llama, tokenizer):
    with pytest.raises(ValueError, match="2 questions but 1 answers"):
        Scorer(tiny_llama, tokenizer, CHAT).scores(QUESTIONS, ANSWERS[:1])
