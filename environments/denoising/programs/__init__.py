"""Baseline denoising programs, run in the sandbox like any candidate (see ../README.md)."""
