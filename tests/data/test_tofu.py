import json

import pytest

import fedunlearn.data.tofu as tofu
from fedunlearn.data.tofu import DataError, author_ids, forget_author_count, load_split, retain_split_for

# Record counts from the README of the local TOFU copy (one configuration of locuslab/TOFU per file).
SPLIT_SIZES = {
    "full": 4000,
    "forget01": 40,
    "forget05": 200,
    "forget10": 400,
    "retain99": 3960,
    "retain95": 3800,
    "retain90": 3600,
    "holdout01": 40,
    "holdout05": 200,
    "holdout10": 400,
    "forget01_perturbed": 40,
    "retain_perturbed": 400,
    "real_authors": 100,
    "world_facts": 117,
    "real_authors_perturbed": 100,
    "world_facts_perturbed": 117,
}
RECORD = {"question": "Who is Jaime Vasquez?", "answer": "A true crime author."}


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """Fail any test that would fall back to downloading from the Hugging Face Hub."""

    def fail(split):
        pytest.fail(f"load_split tried to download {split!r} from the Hub instead of reading local files")

    monkeypatch.setattr(tofu, "_load_from_hub", fail)


def write_split(root, split, lines):
    """Write ``lines`` (records or raw strings) as the JSON Lines file root/tofu/<split>.json."""
    folder = root / "tofu"
    folder.mkdir(exist_ok=True)
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (folder / f"{split}.json").write_text(text)


@pytest.mark.parametrize("split, size", SPLIT_SIZES.items())
def test_load_split_counts(tofu_data_dir, split, size):
    assert len(load_split(split, tofu_data_dir)) == size


def test_load_split_perturbed_fields(tofu_data_dir):
    record = load_split("forget01_perturbed", tofu_data_dir)[0]

    assert isinstance(record["paraphrased_answer"], str)
    assert len(record["perturbed_answer"]) == 5


def test_load_split_local_records(tmp_path):
    write_split(tmp_path, "full", [RECORD, dict(RECORD, question="Q2")])

    assert load_split("full", tmp_path) == [RECORD, dict(RECORD, question="Q2")]


def test_missing_tofu_folder_raises(tmp_path):
    with pytest.raises(DataError, match="has no 'tofu' subfolder"):
        load_split("full", tmp_path)


def test_missing_split_lists_available(tmp_path):
    write_split(tmp_path, "full", [RECORD])
    write_split(tmp_path, "forget01", [RECORD])

    with pytest.raises(DataError, match=r"split 'forget05' not found .* available splits are \['forget01', 'full'\]"):
        load_split("forget05", tmp_path)


def test_malformed_json_names_line(tmp_path):
    # The blank second line is skipped but still counted, so the error names the line an editor shows.
    write_split(tmp_path, "full", [RECORD, "", '{"question": "Q", "answer": '])

    with pytest.raises(DataError, match=r"malformed JSON in .*full\.json line 3"):
        load_split("full", tmp_path)


def test_non_object_line_raises(tmp_path):
    write_split(tmp_path, "full", [RECORD, "[1, 2]"])

    with pytest.raises(DataError, match=r"line 2 of .*full\.json is not a JSON object"):
        load_split("full", tmp_path)


@pytest.mark.parametrize("field", ["question", "answer"])
def test_record_without_field_raises(tmp_path, field):
    incomplete = {k: v for k, v in RECORD.items() if k != field}
    write_split(tmp_path, "full", [RECORD, incomplete])

    with pytest.raises(DataError, match=f"record 1 of .*full\\.json has no '{field}' field"):
        load_split("full", tmp_path)


def test_perturbed_split_needs_perturbed_answer(tmp_path):
    write_split(tmp_path, "world_facts_perturbed", [RECORD])

    with pytest.raises(DataError, match="record 0 of .* has no 'perturbed_answer' field"):
        load_split("world_facts_perturbed", tmp_path)


@pytest.mark.parametrize("lines", [[], ["", "  "]], ids=["no-lines", "blank-lines"])
def test_empty_split_raises(tmp_path, lines):
    write_split(tmp_path, "full", lines)

    with pytest.raises(DataError, match=r"TOFU split 'full' at .*full\.json is empty"):
        load_split("full", tmp_path)


def test_data_error_is_value_error():
    assert issubclass(DataError, ValueError)


def test_env_sets_default_dir(tmp_path, monkeypatch):
    write_split(tmp_path, "full", [RECORD])
    monkeypatch.setenv("FEDUNLEARN_DATA_DIR", str(tmp_path))

    assert load_split("full") == [RECORD]


def test_argument_overrides_env(tmp_path, monkeypatch):
    write_split(tmp_path, "full", [RECORD])
    monkeypatch.setenv("FEDUNLEARN_DATA_DIR", str(tmp_path / "elsewhere"))

    assert load_split("full", tmp_path) == [RECORD]


def test_env_without_tofu_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDUNLEARN_DATA_DIR", str(tmp_path))

    with pytest.raises(DataError, match="FEDUNLEARN_DATA_DIR"):
        load_split("full")


@pytest.mark.parametrize("split, count", [("forget01", 2), ("forget05", 10), ("forget10", 20)])
def test_forget_author_count(split, count):
    assert forget_author_count(split) == count


@pytest.mark.parametrize("split", ["retain90", "forget", "forget1x", "forget05_perturbed"])
def test_forget_author_count_invalid(split):
    with pytest.raises(DataError, match=f"invalid forget split '{split}'"):
        forget_author_count(split)


def test_author_ids_groups_of_20():
    assert author_ids(45) == [0] * 20 + [1] * 20 + [2] * 5


def test_author_ids_offset():
    assert author_ids(40, offset=198) == [198] * 20 + [199] * 20


@pytest.mark.parametrize(("forget", "retain"), [("forget01", "retain99"), ("forget05", "retain95"), ("forget10", "retain90")])
def test_retain_split_for(forget, retain):
    assert retain_split_for(forget) == retain
