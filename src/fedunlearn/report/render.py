"""Write the report: ``report.md`` with its PNG figures beside it, and a self-contained ``report.html``.

The report folder (``<root>/report`` unless given) is written as a whole
through ``atomic_dir``, so a reader sees the previous report or the complete new
one. ``report.html`` embeds the figures as base64 data URIs, so it can be
mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import logging
import math
from pathlib import Path

from fedunlearn.evals.clients import summary_rows
from fedunlearn.report.collect import REPORT_FOLDER, Collection, Evaluation, collect
from fedunlearn.report.plots import client_plot, round_plot, tradeoff_plot
from fedunlearn.utils.io import atomic_dir

log = logging.getLogger(__name__)

# Metrics listed first in the tables, in this order; others follow alphabetically.
LEADING_METRICS = {
    "TOFU": ("forget_quality", "model_utility", "forget_Q_A_Prob", "forget_Q_A_ROUGE", "forget_truth_ratio", "privleak"),
    "MUSE": ("forget_verbmem_ROUGE", "forget_knowmem_ROUGE", "retain_knowmem_ROUGE", "privleak", "extraction_strength"),
}
KIND_ORDER = {"finetune": 0, "retain": 1, "unlearn": 2, "model": 3}
FIGURES = {
    "tradeoff.png": "Forgetting against utility",
    "rounds.png": "Training and unlearning rounds",
    "clients.png": "Clients",
}
FIGURE_NOTES = {
    "tradeoff.png": "Each point is one evaluated model. On TOFU, higher forget_quality means the forget set "
                    "looks more as it does to the retain model; on MUSE, lower forget ROUGE means less is reproduced.",
    "rounds.png": "Mean local loss of each client role per round. An unlearning client's loss is its method's "
                  "objective (negative for gradient ascent), so compare it across rounds, not with the others.",
    "clients.png": "How the data was dealt out, and per-client scores where a per-client evaluation exists.",
}


def write_report(root: str | Path, output_dir: str | Path | None = None) -> Path:
    """Collect the results below ``root``, write the report into ``output_dir`` (default ``root/report``), return it.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: ``root`` contains no evaluation, federation or per-client result.
    """
    found = collect(root)
    if found.empty:
        raise ValueError(
            f"nothing to report in {str(root)!r}: no TOFU_SUMMARY.json, TOFU_EVAL.json, MUSE_SUMMARY.json, "
            "MUSE_EVAL.json or federation/history.json below it. Point fedunlearn report at a saves folder "
            "or a fedunlearn run folder"
        )
    output_dir = Path(output_dir) if output_dir is not None else Path(root) / REPORT_FOLDER
    figures = {
        "tradeoff.png": tradeoff_plot(found.evaluations),
        "rounds.png": round_plot(found.federations),
        "clients.png": client_plot(found.federations, found.client_results),
    }
    figures = {name: png for name, png in figures.items() if png is not None}

    with atomic_dir(output_dir) as tmp:
        for name, png in figures.items():
            (tmp / name).write_bytes(png)
        (tmp / "report.md").write_text(render_markdown(found, figures))
        (tmp / "report.html").write_text(render_html(found, figures))
    log.info("Wrote the report of %d evaluations and %d federations to %s", len(found.evaluations),
             len(found.federations), output_dir)
    return output_dir


def render_markdown(found: Collection, figures: dict[str, bytes]) -> str:
    """Return the Markdown report; figures are linked as files beside it."""
    lines = [f"# Results in {found.root}", ""]
    for benchmark, evaluations in _by_benchmark(found.evaluations).items():
        for title, (header, rows) in _summary_tables(benchmark, evaluations).items():
            lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
            lines += ["| " + " | ".join(row) + " |" for row in rows]
            lines.append("")
    if found.federations:
        lines += ["## Federations", "", "| run | kind | method | rounds | clients (examples) | final mean loss |",
                  "|---|---|---|---|---|---|"]
        for federation in found.federations:
            lines.append(" | ".join(["", *_federation_row(federation), ""]).strip())
        lines.append("")
    for model, rows in _client_tables(found).items():
        lines += [f"## Per-client verification: {model}", "", *rows, ""]
    for name, title in FIGURES.items():
        if name in figures:
            lines += [f"## {title}", "", FIGURE_NOTES[name], "", f"![{title}]({name})", ""]
    return "\n".join(lines)


def render_html(found: Collection, figures: dict[str, bytes]) -> str:
    """Return the report as one HTML page with the figures embedded."""
    body = [f"<h1>Results in {html.escape(str(found.root))}</h1>"]
    for benchmark, evaluations in _by_benchmark(found.evaluations).items():
        for title, (header, rows) in _summary_tables(benchmark, evaluations).items():
            body += [f"<h2>{html.escape(title)}</h2>", _html_table(header, rows)]
    if found.federations:
        rows = [_federation_row(federation) for federation in found.federations]
        body += ["<h2>Federations</h2>",
                 _html_table(["run", "kind", "method", "rounds", "clients (examples)", "final mean loss"], rows)]
    for model, rows in _client_tables(found).items():
        cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows if not row.startswith("|---")]
        body += [f"<h2>Per-client verification: {html.escape(model)}</h2>", _html_table(cells[0], cells[1:])]
    for name, title in FIGURES.items():
        if name in figures:
            data = base64.b64encode(figures[name]).decode("ascii")
            body += [f"<h2>{title}</h2>", f"<p>{html.escape(FIGURE_NOTES[name])}</p>",
                     f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">']
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>fedunlearn report: {html.escape(str(found.root))}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body) + "\n</body>\n</html>\n"
    )


STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}"
    "table{border-collapse:collapse;margin:1em 0}"
    "th,td{border:1px solid #ccc;padding:0.3em 0.6em;text-align:right}"
    "th:first-child,td:first-child,td:nth-child(2){text-align:left}"
    "th{background:#f2f2f2}img{max-width:100%}"
)


def format_value(value) -> str:
    """Format a metric value for a table: 4 decimals, scientific notation below 1e-3, n/a for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.3g}" if value != 0 and abs(value) < 1e-3 else f"{value:.4f}"


def _by_benchmark(evaluations: list[Evaluation]) -> dict[str, list[Evaluation]]:
    grouped: dict[str, list[Evaluation]] = {}
    for evaluation in sorted(evaluations, key=lambda e: (KIND_ORDER[e.kind], e.name)):
        grouped.setdefault(evaluation.benchmark, []).append(evaluation)
    return grouped


def _summary_tables(benchmark: str, evaluations: list[Evaluation]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Return ``{title: (header, rows)}``: the headline metrics per model, then every metric with models as columns.

    The second table lists the metrics as rows, so the many TOFU metrics stay
    readable. It is left out when the first already shows every metric.
    """
    present = {metric for evaluation in evaluations for metric in evaluation.summary}
    leading = [metric for metric in LEADING_METRICS[benchmark] if metric in present]
    rows = [[e.name, e.kind] + [format_value(e.summary.get(metric)) for metric in leading] for e in evaluations]
    tables = {f"{benchmark} summary": (["model", "kind", *leading], rows)}
    others = sorted(present - set(leading))
    if others:
        every = [[metric] + [format_value(e.summary.get(metric)) for e in evaluations] for metric in leading + others]
        tables[f"All {benchmark} metrics"] = (["metric", *(e.name for e in evaluations)], every)
    return tables


def _federation_row(federation) -> list[str]:
    clients = ", ".join(f"{client}: {count}" for client, count in sorted(federation.examples.items(), key=lambda c: int(c[0])))
    last_round = federation.rounds[-1].get("metrics") or {} if federation.rounds else {}
    losses = [metrics["loss"] for metrics in last_round.values() if metrics and metrics.get("loss") is not None]
    final = format_value(sum(losses) / len(losses)) if losses else "n/a"
    return [federation.name, federation.kind, federation.method or "", str(len(federation.rounds)), clients, final]


def _client_tables(found: Collection) -> dict[str, list[str]]:
    """Return the Markdown rows of each per-client result (``fedunlearn.evals.clients.summary_rows``), by model."""
    tables = {}
    for model, results in sorted(found.client_results.items()):
        try:
            tables[model] = summary_rows(results)
        except (KeyError, TypeError, ValueError) as err:
            log.warning("Skipping the per-client table of %s: unexpected CLIENTS_EVAL.json layout (%r)", model, err)
    return tables


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
