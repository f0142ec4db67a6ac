"""Federated recipes, selected by the trainer config's ``handler``."""

from fedunlearn.trainers.finetune import federated_finetune
from fedunlearn.trainers.unlearn import federated_unlearn

TRAINERS = {"FederatedFinetune": federated_finetune, "FederatedUnlearningTrainer": federated_unlearn}
