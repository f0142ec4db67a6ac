"""fedunlearn: federated fine-tuning and federated unlearning of LLMs."""

__version__ = "0.1.0"
