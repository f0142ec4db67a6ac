import pytest
import torch

from fedunlearn.data.collator import pad_batch

PAD = 7
EXAMPLES = [
    {"input_ids": [11, 12, 13], "attention_mask": [1, 1, 1], "labels": [-100, 12, 13]},
    {"input_ids": [21], "attention_mask": [1], "labels": [21]},
]


def test_right_padding_values():
    batch = pad_batch(EXAMPLES, PAD)

    assert batch["input_ids"].tolist() == [[11, 12, 13], [21, PAD, PAD]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 12, 13], [21, -100, -100]]


def test_left_padding_values():
    batch = pad_batch(EXAMPLES, PAD, padding_side="left")

    assert batch["input_ids"].tolist() == [[11, 12, 13], [PAD, PAD, 21]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["labels"].tolist() == [[-100, 12, 13], [-100, -100, 21]]


def test_token_tensors_are_long():
    batch = pad_batch(EXAMPLES, PAD)

    for key in ("input_ids", "attention_mask", "labels"):
        assert batch[key].dtype == torch.long, key


def test_numeric_extras_stacked():
    examples = [dict(e, index=i, ref_nll=0.5 + i, author="A") for i, e in enumerate(EXAMPLES)]

    batch = pad_batch(examples, PAD)

    assert batch["index"].tolist() == [0, 1]
    assert batch["ref_nll"].tolist() == [0.5, 1.5]
    assert batch["ref_nll"].dtype == torch.float32
    assert "author" not in batch


def test_missing_labels_skipped():
    examples = [{"input_ids": [1, 2], "attention_mask": [1, 1]}, {"input_ids": [3], "attention_mask": [1]}]

    batch = pad_batch(examples, PAD)

    assert set(batch) == {"input_ids", "attention_mask"}


def test_bad_padding_side_raises():
    with pytest.raises(ValueError, match="padding_side must be 'left' or 'right', got 'center'"):
        pad_batch(EXAMPLES, PAD, padding_side="center")
