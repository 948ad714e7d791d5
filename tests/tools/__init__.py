"""Helpers shared by tests, the demo and the benchmarks (never shipped in the plugin zip)."""
