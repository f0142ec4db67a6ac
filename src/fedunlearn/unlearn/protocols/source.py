"""The fine-tuned federation an unlearning request is served from: its settings, history and shards.

An unlearning run's model path is the folder that ``FederatedFinetune`` saved.
Its ``config.yaml`` records the base model, the data, the partition and the
local training of the original federation; ``federation/history`` holds every
round (see ``fedunlearn.federated.history``); ``shards/`` the shard adapters
of a sharded run (see ``fedunlearn.trainers.shards``). Protocols that retrain
or replay the federation read them here.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from fedunlearn.federated.aggregation import Aggregator, build_aggregator
from fedunlearn.federated.client import TrainingArgs
from fedunlearn.federated.history import History
from fedunlearn.federated.server import RoundSettings
from fedunlearn.models.sources import resolve_model_source
from fedunlearn.trainers.shards import read_shards_index, shard_dir

log = logging.getLogger(__name__)

# Settings that define which records each client holds and what it trains: a request must use the fine-tuning's.
FEDERATION_KEYS = {
    "forget_split": ("forget_split",),
    "data.train_split": ("data", "train_split"),
    "data.max_authors": ("data", "max_authors"),
    "data.max_length": ("data", "max_length"),
    "data.dataset": ("data", "dataset"),
    "model.template_args": ("model", "template_args"),
    "trainer.method_args.num_clients": ("trainer", "method_args", "num_clients"),
    "trainer.method_args.partition": ("trainer", "method_args", "partition"),
    "trainer.method_args.partition_alpha": ("trainer", "method_args", "partition_alpha"),
    "trainer.method_args.target_holds_retain": ("trainer", "method_args", "target_holds_retain"),
    "trainer.method_args.lora_aggregation": ("trainer", "method_args", "lora_aggregation"),
}


class FineTunedFederation:
    """A folder saved by federated fine-tuning, read by the unlearning protocols."""

    def __init__(self, path: str | Path, config: DictConfig):
        self.path = Path(path)
        self.config = config
        self.shards = read_shards_index(self.path)
        self.history = History(self.path / "federation")

    @classmethod
    def find(cls, model_path: str) -> FineTunedFederation | None:
        """Return the federation saved at ``model_path``, or None when that model was not fine-tuned by fedunlearn."""
        path = Path(resolve_model_source(model_path))
        config_file = path / "config.yaml"
        if not config_file.is_file():
            return None
        config = OmegaConf.load(config_file)
        if OmegaConf.select(config, "trainer.handler") != "FederatedFinetune":
            return None
        return cls(path, config)

    @property
    def train_args(self) -> TrainingArgs:
        """The local training settings of the original federation."""
        return TrainingArgs.from_config(self.config.trainer.args)

    @property
    def method_args(self) -> dict:
        """The federated settings of the original federation (``trainer.method_args``)."""
        return OmegaConf.to_container(self.config.trainer.method_args, resolve=True)

    def aggregator(self) -> Aggregator:
        """Return a fresh instance of the original federation's aggregation."""
        method_args = self.method_args
        return build_aggregator(method_args["aggregation_strategy"], **(method_args.get("aggregation_args") or {}))

    def round_settings(self) -> RoundSettings:
        """Return the original federation's client sampling and learning-rate schedule."""
        return RoundSettings.from_method_args(self.method_args)

    @property
    def num_shards(self) -> int:
        return int(self.shards["num_shards"]) if self.shards else 1

    def check_request(self, cfg: DictConfig) -> None:
        """Raise ``ValueError`` when the unlearning config deals the records otherwise than the fine-tuning did."""
        for name, keys in FEDERATION_KEYS.items():
            ours, theirs = _select(cfg, keys), _select(self.config, keys)
            if ours != theirs:
                raise ValueError(
                    f"{name}={ours!r} differs from the fine-tuned federation's {theirs!r} ({self.path / 'config.yaml'}): "
                    "clients would hold other records than they trained on; set it to the fine-tuning's value"
                )

    def require_history(self, protocol: str) -> History:
        """Return the round history, or raise ``ValueError`` when ``protocol`` cannot replay it."""
        if self.shards:
            raise ValueError(
                f"protocol={protocol} replays the federation's history, but {self.path} was fine-tuned in "
                f"{self.num_shards} shards: use protocol=sharded or protocol=retrain"
            )
        if self.history.load_checkpoint() is None:
            raise ValueError(f"protocol={protocol} needs the round history {self.history.root}, which has no completed round")
        return self.history

    def completed_rounds(self) -> int:
        return int(self.history.load_checkpoint()["completed_rounds"])

    def initial_state(self) -> OrderedDict[str, torch.Tensor]:
        """Return the adapter the federation started from (round 0 of its history, or of shard 0's)."""
        history = History(shard_dir(self.path, 0) / "federation") if self.shards else self.history
        if not history.round_dir(0).is_dir():
            raise ValueError(f"the initial state {history.round_dir(0)} is missing: fine-tune again to store it")
        return OrderedDict(history.load_global(0))


def _select(cfg: DictConfig, keys: tuple[str, ...]):
    value = OmegaConf.select(cfg, ".".join(keys))
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
