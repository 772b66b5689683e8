"""Benchmarks printed as one JSON object per line: name, value, unit[, baseline, ratio]."""
