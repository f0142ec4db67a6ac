"""TOFU (Maini et al., 2024, "TOFU: A Task of Fictitious Unlearning for LLMs").

Splits come from the Hugging Face Hub (``locuslab/TOFU``, one configuration per
split) or, when ``data_dir`` is set, from ``<data_dir>/tofu/<split>.json``: JSON
Lines files with the Hub's field names. ``data_dir`` defaults to the
environment variable ``FEDUNLEARN_DATA_DIR``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

HUB_PATH = "locuslab/TOFU"
QUESTIONS_PER_AUTHOR = 20
NUM_AUTHORS = 200

# The fields each split must have; the perturbed splits add their own.
REQUIRED_FIELDS = ("question", "answer")
PERTURBED_FIELDS = {
    "forget01_perturbed": ("paraphrased_answer", "perturbed_answer"),
    "forget05_perturbed": ("paraphrased_answer", "perturbed_answer"),
    "forget10_perturbed": ("paraphrased_answer", "perturbed_answer"),
    "retain_perturbed": ("paraphrased_answer", "perturbed_answer"),
    "real_authors_perturbed": ("perturbed_answer",),
    "world_facts_perturbed": ("perturbed_answer",),
}


class DataError(ValueError):
    """A data split is missing or malformed."""


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """Return ``data_dir`` or ``$FEDUNLEARN_DATA_DIR`` as a checked path, or None for the Hub."""
    data_dir = data_dir or os.environ.get("FEDUNLEARN_DATA_DIR") or None
    if data_dir is None:
        return None
    path = Path(data_dir).expanduser()
    if not (path / "tofu").is_dir():
        raise DataError(
            f"data folder {str(path)!r} has no 'tofu' subfolder: set data_dir (or FEDUNLEARN_DATA_DIR) "
            "to a folder holding tofu/<split>.json, or unset it to read locuslab/TOFU from the Hub"
        )
    return path


def load_split(split: str, data_dir: str | os.PathLike | None = None) -> list[dict]:
    """Load one TOFU split as a list of records and check its fields."""
    root = resolve_data_dir(data_dir)
    if root is None:
        records = _load_from_hub(split)
        source = f"{HUB_PATH}:{split}"
    else:
        file = root / "tofu" / f"{split}.json"
        if not file.is_file():
            available = sorted(p.stem for p in (root / "tofu").glob("*.json"))
            raise DataError(f"TOFU split {split!r} not found at {file}: available splits are {available}")
        records = _read_json_lines(file)
        source = str(file)

    required = REQUIRED_FIELDS + PERTURBED_FIELDS.get(split, ())
    for index, record in enumerate(records):
        missing = [key for key in required if key not in record]
        if missing:
            raise DataError(f"record {index} of {source} has no {', '.join(map(repr, missing))} field")
    if not records:
        raise DataError(f"TOFU split {split!r} at {source} is empty")
    return records


def _read_json_lines(file: Path) -> list[dict]:
    records = []
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"malformed JSON in {file} line {number}: {err.msg}: fix or re-download the file") from None
            if not isinstance(record, dict):
                raise DataError(f"line {number} of {file} is not a JSON object")
            records.append(record)
    return records


def _load_from_hub(split: str) -> list[dict]:
    import datasets

    try:
        return datasets.load_dataset(HUB_PATH, split, split="train").to_list()
    except Exception as err:  # datasets raises many types for network and config errors
        raise DataError(
            f"could not load TOFU split {split!r} from the Hub ({type(err).__name__}: {err}); "
            "set data_dir or FEDUNLEARN_DATA_DIR to a local copy"
        ) from err


def author_ids(num_records: int, offset: int = 0) -> list[int]:
    """Return the author index of each record of a split that lists authors in order.

    TOFU lists 20 questions per author, author by author, so record ``i`` of
    ``full`` belongs to author ``i // 20``; ``offset`` shifts the first author
    (the forget splits are the last authors of ``full``).
    """
    return [offset + i // QUESTIONS_PER_AUTHOR for i in range(num_records)]


def forget_author_count(forget_split: str) -> int:
    """Return the number of authors in a ``forgetNN`` split (NN percent of 200)."""
    if not (forget_split.startswith("forget") and forget_split[6:].isdigit()):
        raise DataError(f"invalid forget split {forget_split!r}: expected forget01, forget05 or forget10")
    return int(forget_split[6:]) * NUM_AUTHORS // 100


def retain_split_for(forget_split: str) -> str:
    """Return the retain split that holds every author but those of ``forget_split`` (forget10 -> retain90)."""
    forget_author_count(forget_split)
    return f"retain{100 - int(forget_split[6:]):02d}"
