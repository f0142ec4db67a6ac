"""The report's figures, drawn with matplotlib's Agg backend and returned as PNG bytes.

* ``tradeoff_plot``: forgetting against utility, one point per model. TOFU:
  ``forget_quality`` (log scale, higher is closer to the retain model) against
  ``model_utility``. MUSE: ``forget_verbmem_ROUGE`` and ``forget_knowmem_ROUGE``
  (lower is more forgotten) against ``retain_knowmem_ROUGE``.
* ``round_plot``: the mean local training loss of the clients in each round of
  each federation, one line per client role (``train``, or ``unlearn`` and
  ``retain`` in an unlearning run).
* ``client_plot``: the examples each client holds in each federation, and each
  client's answer probability on its own records from ``CLIENTS_EVAL.json``
  files (the per-client verification) when there are any.
"""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")  # no display: draw into memory only

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot loads)
import numpy as np  # noqa: E402

from fedunlearn.report.collect import Evaluation, Federation  # noqa: E402

KIND_STYLES = {
    "finetune": {"color": "#d62728", "marker": "s", "label": "fine-tuned"},
    "retain": {"color": "#2ca02c", "marker": "D", "label": "retain (reference)"},
    "unlearn": {"color": "#1f77b4", "marker": "o", "label": "unlearned"},
    "model": {"color": "#7f7f7f", "marker": "^", "label": "other"},
}
ROLE_COLORS = {"train": "#9467bd", "unlearn": "#1f77b4", "retain": "#2ca02c"}
DPI = 120


def tradeoff_plot(evaluations: list[Evaluation]) -> bytes | None:
    """Return the forgetting-against-utility figure, or None when no evaluation has the metrics it plots."""
    tofu = [e for e in evaluations if e.benchmark == "TOFU" and e.summary.get("model_utility") is not None]
    muse = [e for e in evaluations if e.benchmark == "MUSE" and e.summary.get("retain_knowmem_ROUGE") is not None]
    panels = ["TOFU"] if tofu else []
    if muse:
        panels += ["forget_verbmem_ROUGE", "forget_knowmem_ROUGE"]
    if not panels:
        return None

    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "TOFU":
            _tofu_panel(ax, tofu)
        else:
            _muse_panel(ax, muse, panel)
    _shared_legend(fig, axes[0])
    return _png(fig)


def _tofu_panel(ax, evaluations: list[Evaluation]) -> None:
    ax.set_title("TOFU: forget quality against model utility")
    ax.set_xlabel("model_utility (higher keeps more ability)")
    ax.set_ylabel("forget_quality (KS-test p-value, log scale)")
    ax.set_yscale("log")
    points = []
    for evaluation in evaluations:
        x, y = evaluation.summary["model_utility"], evaluation.summary.get("forget_quality")
        if y is None:
            # No reference to compare against (the retain model itself): mark its utility instead.
            style = KIND_STYLES[evaluation.kind]
            ax.axvline(x, color=style["color"], linestyle="--", linewidth=1.2, label=f"{style['label']}: utility")
            ax.annotate(evaluation.name, (x, 0.98), xycoords=("data", "axes fraction"), xytext=(3, 0),
                        textcoords="offset points", fontsize=8, rotation=90, va="top")
        else:
            points.append((evaluation, x, max(y, 1e-30)))
    _scatter(ax, points, log_y=True)
    ax.set_xlim(*_limits([evaluation.summary["model_utility"] for evaluation in evaluations]))
    if points:
        ax.set_ylim(min(y for _, _, y in points) / 5, 2)
    ax.grid(True, which="major", alpha=0.3)


def _muse_panel(ax, evaluations: list[Evaluation], metric: str) -> None:
    ax.set_title(f"MUSE: {metric} against retain_knowmem_ROUGE", fontsize=10)
    ax.set_xlabel("retain_knowmem_ROUGE (ROUGE-L F1, higher keeps more)")
    ax.set_ylabel(f"{metric}\n(ROUGE-L F1, lower forgets more)")
    points = [(e, e.summary["retain_knowmem_ROUGE"], e.summary[metric])
              for e in evaluations if e.summary.get(metric) is not None]
    _scatter(ax, points, log_y=False)
    ax.set_xlim(*_limits([x for _, x, _ in points] or [0.0, 1.0]))
    ax.set_ylim(-0.05, 1.05)
    ax.grid(True, alpha=0.3)


def _scatter(ax, points: list[tuple[Evaluation, float, float]], log_y: bool) -> None:
    """Plot one marker per model, styled by its kind, and name it; the names of coinciding points are stacked."""
    placed: list[tuple[float, float]] = []
    for evaluation, x, y in points:
        style = KIND_STYLES[evaluation.kind]
        ax.scatter([x], [y], color=style["color"], marker=style["marker"], s=60, zorder=3, alpha=0.85,
                   label=style["label"])
        key = (round(x, 2), round(math.log10(y), 1) if log_y else round(y, 2))
        stacked = placed.count(key)
        placed.append(key)
        ax.annotate(evaluation.name, (x, y), xytext=(7, 3 - 11 * stacked), textcoords="offset points", fontsize=8)


def round_plot(federations: list[Federation]) -> bytes | None:
    """Return the per-round loss curves, one panel per federation, or None when no federation has a round."""
    federations = [f for f in federations if f.rounds]
    if not federations:
        return None
    columns = min(3, len(federations))
    rows = math.ceil(len(federations) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.8 * rows), squeeze=False)
    for ax, federation in zip(axes.flat, federations):
        for role, series in _role_losses(federation).items():
            rounds, losses = zip(*series)
            ax.plot(rounds, losses, marker="o", color=ROLE_COLORS.get(role, "#7f7f7f"), label=f"{role} clients (mean)")
        rounds = [int(record["round"]) for record in federation.rounds]
        ax.set_xticks(rounds)
        ax.set_xlim(min(rounds) - 0.5, max(rounds) + 0.5)
        ax.set_title(federation.name + (f" ({federation.method})" if federation.method else ""), fontsize=10)
        ax.set_xlabel("round")
        ax.set_ylabel("mean local training loss")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(federations):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)


def _role_losses(federation: Federation) -> dict[str, list[tuple[int, float]]]:
    """Return, per client role, ``(round, mean loss of the clients with that role)`` for every round."""
    series: dict[str, list[tuple[int, float]]] = {}
    for record in federation.rounds:
        by_role: dict[str, list[float]] = {}
        for client, metrics in (record.get("metrics") or {}).items():
            if metrics and metrics.get("loss") is not None:
                role = (record.get("roles") or {}).get(client, "train")
                by_role.setdefault(role, []).append(float(metrics["loss"]))
        for role, losses in by_role.items():
            series.setdefault(role, []).append((int(record["round"]), float(np.mean(losses))))
    return series


def client_plot(federations: list[Federation], client_results: dict[str, dict]) -> bytes | None:
    """Return the per-client bars, or None when there is nothing per client to show.

    The first panel groups, for each client, one bar per federation with the
    number of examples the client holds. Each ``CLIENTS_EVAL.json`` adds a
    panel with each client's answer probability on its forget and retain
    records, against the holdout set's (see ``client_probabilities``).
    """
    federations = [f for f in federations if f.examples]
    scored = {name: client_probabilities(results) for name, results in client_results.items()}
    scored = {name: scores for name, scores in scored.items() if scores[0]}
    panels = (1 if federations else 0) + len(scored)
    if not panels:
        return None

    fig, axes = plt.subplots(1, panels, figsize=(5.8 * panels, 4.4), squeeze=False)
    axes = list(axes[0])
    if federations:
        _examples_panel(axes.pop(0), federations)
    for ax, (name, (probabilities, holdout)) in zip(axes, scored.items()):
        _probabilities_panel(ax, name, probabilities, holdout)
    fig.tight_layout()
    return _png(fig)


def _examples_panel(ax, federations: list[Federation]) -> None:
    clients = sorted({int(c) for f in federations for c in f.examples})
    width = 0.8 / len(federations)
    for position, federation in enumerate(federations):
        offsets = np.arange(len(clients)) + (position - (len(federations) - 1) / 2) * width
        bars = ax.bar(offsets, [federation.examples.get(str(c), 0) for c in clients], width, label=federation.name)
        ax.bar_label(bars, fontsize=7)
        if federation.forget_records and federation.target_client in clients:
            # Hatch the part of the requesting client's data that it unlearns.
            ax.bar(offsets[clients.index(federation.target_client)], federation.forget_records, width, fill=False,
                   hatch="//", edgecolor="black", linewidth=0, label="forget examples")
    ax.set_xticks(np.arange(len(clients)), [f"client {c}" for c in clients])
    ax.set_ylabel("examples held (records or token windows)")
    ax.set_title("Data per client")
    ax.margins(y=0.15)
    handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
    ax.legend(handles.values(), handles.keys(), fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)


def client_probabilities(results: dict) -> tuple[dict[str, dict[str, float]], float | None]:
    """Return ``({client: {"forget" or "retain": Q_A_Prob}}, holdout Q_A_Prob)`` from a parsed ``CLIENTS_EVAL.json``.

    The file (written by ``fedunlearn.evals.clients``) has, per client, a
    ``forget`` set (the requesting client's forget records) and a ``retain``
    set, each with its mean answer probability ``Q_A_Prob``, and the same for
    the ``holdout`` set that no client holds. Sets without a number are left out.
    """
    clients = results.get("clients") if isinstance(results, dict) else None
    probabilities: dict[str, dict[str, float]] = {}
    for client, entry in (clients or {}).items():
        values = {name: float(entry[name]["Q_A_Prob"]) for name in ("forget", "retain")
                  if isinstance(entry, dict) and isinstance((entry.get(name) or {}).get("Q_A_Prob"), (int, float))}
        if values:
            probabilities[str(client)] = values
    holdout = (results.get("holdout") or {}).get("Q_A_Prob") if isinstance(results, dict) else None
    return probabilities, float(holdout) if isinstance(holdout, (int, float)) else None


def _probabilities_panel(ax, name: str, probabilities: dict[str, dict[str, float]], holdout: float | None) -> None:
    clients = sorted(probabilities, key=int)
    width = 0.38
    for position, (set_name, color) in enumerate((("forget", "#d62728"), ("retain", "#2ca02c"))):
        offsets = np.arange(len(clients)) + (position - 0.5) * width
        values = [probabilities[c].get(set_name, np.nan) for c in clients]
        bars = ax.bar(offsets, values, width, color=color, label=f"{set_name} records")
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    if holdout is not None:
        ax.axhline(holdout, color="black", linestyle="--", linewidth=1, label="holdout (never seen)")
    ax.set_xticks(np.arange(len(clients)), [f"client {c}" for c in clients])
    ax.set_ylabel("Q_A_Prob: mean answer probability")
    top = max([v for values in probabilities.values() for v in values.values()] + [holdout or 0])
    ax.set_ylim(0, min(1.0, top * 1.25) if top > 0 else 1.0)
    ax.set_title(f"Per-client answer probability: {name}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)


def _limits(values: list[float]) -> tuple[float, float]:
    """Return x-axis limits around ``values`` (metrics in [0, 1]), with room on the right for point names."""
    low, high = min(values), max(values)
    margin = max((high - low) * 0.15, 0.03)
    return max(low - margin, -0.05), min(high + 2 * margin, 1.1)


def _shared_legend(fig, axes) -> None:
    """Draw one legend below the panels with one entry per model kind."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 1))
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), frameon=False)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()
