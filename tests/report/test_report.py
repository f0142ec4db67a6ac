"""fedunlearn report on results folders written with the project's own writers."""

import base64
import json
import re

import matplotlib.image
import pytest
from cli_helpers import run_cli
from report.results_folder import CLIENTS, LOSSES, SUMMARIES, write_muse_saves, write_run_folder

from fedunlearn.report import write_report
from fedunlearn.report.collect import collect
from fedunlearn.report.plots import _role_losses, client_probabilities
from fedunlearn.report.render import format_value

FIGURE_FILES = ("tradeoff.png", "rounds.png", "clients.png")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    return write_run_folder(tmp_path_factory.mktemp("results") / "run")


@pytest.fixture(scope="module")
def report(run_folder):
    folder = write_report(run_folder)
    return folder, (folder / "report.md").read_text(), (folder / "report.html").read_text()


def table_rows(markdown: str, title: str) -> dict[str, list[str]]:
    """Return the rows of the Markdown table under ``## title``, by first cell."""
    section = markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("|")]
    header, *body = [[cell.strip() for cell in row] for row in rows if not row[0].startswith("---")]
    return {row[0]: dict(zip(header, row)) for row in body}


def test_report_files_exist(report):
    folder, _, _ = report

    assert folder.name == "report"
    for name in ("report.md", "report.html", *FIGURE_FILES):
        assert (folder / name).is_file()


@pytest.mark.parametrize("name", FIGURE_FILES)
def test_figures_are_valid_pngs(report, name):
    folder, _, _ = report
    image = matplotlib.image.imread(folder / name)

    assert image.ndim == 3
    assert image.shape[0] > 300
    assert image.shape[1] > 500


def test_summary_table_per_model(report):
    _, markdown, _ = report
    rows = table_rows(markdown, "TOFU summary")

    assert list(rows) == ["finetune", "retain", "unlearn"]
    for name, summary in SUMMARIES.items():
        assert rows[name]["kind"] == name
        for metric, value in summary.items():
            assert rows[name][metric] == format_value(value)
    assert rows["retain"]["forget_quality"] == "n/a"


def test_format_value_cases():
    assert format_value(None) == "n/a"
    assert format_value(0.0262) == "0.0262"
    assert format_value(2.11e-05) == "2.11e-05"
    assert format_value(0) == "0.0000"


def test_federation_rows(report):
    _, markdown, _ = report
    rows = table_rows(markdown, "Federations")

    assert rows["unlearn"]["method"] == "GradDiff"
    assert rows["unlearn"]["rounds"] == "2"
    assert rows["unlearn"]["clients (examples)"] == "0: 60, 1: 20, 2: 20"
    # The mean over clients of the last round's losses.
    assert rows["unlearn"]["final mean loss"] == format_value((-1.5 + 1.3 + 1.2) / 3)
    assert rows["retain"]["kind"] == "retain"


def test_round_losses_by_role(run_folder):
    federations = {f.name: f for f in collect(run_folder).federations}

    unlearn = _role_losses(federations["unlearn"])
    finetune = _role_losses(federations["finetune"])

    assert unlearn["unlearn"] == [(1, -0.5), (2, -1.5)]
    assert unlearn["retain"] == [(1, pytest.approx((1.4 + 1.5) / 2)), (2, pytest.approx((1.3 + 1.2) / 2))]
    assert finetune["train"] == [(r, pytest.approx(sum(l.values()) / 3)) for r, l in enumerate(LOSSES["finetune"], 1)]


def test_client_probabilities_read_file():
    probabilities, holdout = client_probabilities(CLIENTS)

    assert probabilities == {"0": {"forget": 0.45, "retain": 0.6}, "1": {"retain": 0.55}}
    assert holdout == 0.2


def test_per_client_table(report):
    _, markdown, _ = report

    assert "## Per-client verification: unlearn" in markdown
    assert "| 0 | forget | 4 | 0.4500 | 0.5000 | 0.7000 | n/a |" in markdown


def test_html_embeds_figures(report):
    folder, _, page = report
    sources = re.findall(r'<img alt="[^"]*" src="([^"]+)"', page)

    assert len(sources) == len(FIGURE_FILES)
    for source, name in zip(sources, FIGURE_FILES):
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]) == (folder / name).read_bytes()
    assert "<td>unlearn</td>" in page


def test_muse_results_reported(tmp_path):
    root = write_muse_saves(tmp_path / "saves")

    folder = write_report(root)

    rows = table_rows((folder / "report.md").read_text(), "MUSE summary")
    assert list(rows) == ["muse_target", "unlearn/muse_test"]
    assert rows["unlearn/muse_test"]["forget_verbmem_ROUGE"] == "0.2000"
    assert rows["muse_target"]["privleak"] == format_value(-99.8)
    # Two MUSE panels (verbmem and knowmem against retain knowmem) side by side.
    image = matplotlib.image.imread(folder / "tradeoff.png")
    assert image.shape[1] > 2 * image.shape[0]
    assert not (folder / "rounds.png").exists()


def test_rewrite_replaces_report(run_folder, report):
    folder, markdown, _ = report
    (folder / "stale.txt").write_text("from an older report")

    assert write_report(run_folder) == folder

    assert not (folder / "stale.txt").exists()
    assert (folder / "report.md").read_text() == markdown
    assert [p.name for p in run_folder.iterdir() if p.name.startswith(".")] == []


def test_empty_folder_raises(tmp_path):
    with pytest.raises(ValueError, match="nothing to report in"):
        write_report(tmp_path)


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="results folder .* not found"):
        write_report(tmp_path / "nowhere")


def test_cli_report_output_option(run_folder, tmp_path, capsys):
    assert run_cli("report", str(run_folder), "--output", str(tmp_path / "elsewhere")) == 0

    out = capsys.readouterr().out
    assert f"Report: {tmp_path / 'elsewhere' / 'report.html'}" in out
    assert (tmp_path / "elsewhere" / "clients.png").is_file()


def test_cli_report_empty_fails(tmp_path, capsys):
    assert run_cli("report", str(tmp_path)) == 2

    assert capsys.readouterr().err.startswith("error: nothing to report in")


def test_run_ends_with_report(run_folder):
    # Every stage of this folder is finished, so fedunlearn run resume=true only tabulates and reports.
    # No capsys here: Hydra's logging setup closes the handlers of earlier imports, among them absl's,
    # which would close pytest's captured stream.
    assert run_cli("run", "resume=true", f"paths.output_dir={run_folder}") == 0

    assert (run_folder / "report" / "report.md").is_file()
    assert (run_folder / "report" / "report.html").is_file()
    assert json.loads((run_folder / "results.json").read_text())["unlearn"] == SUMMARIES["unlearn"]
