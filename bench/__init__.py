"""Benchmarks for the Kefu platform (run with `.venv/bin/python bench/<name>.py`)."""
