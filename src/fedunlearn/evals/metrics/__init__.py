"""TOFU metrics as pure functions of per-item numbers, one metric per module."""
