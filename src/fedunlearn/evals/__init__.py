"""Evaluation: answer scoring, greedy generation, TOFU metrics and the TOFU evaluator."""
