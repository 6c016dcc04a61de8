"""Tools for tests and benchmarks that ship with dmdesk (no test framework imports here)."""
