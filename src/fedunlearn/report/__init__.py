"""``fedunlearn report``: tables and figures of every evaluation and federation below a results folder."""

from fedunlearn.report.render import write_report

__all__ = ["write_report"]
