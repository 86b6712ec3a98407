"""Evaluation: metrics (pure numpy), accuracy runs, latency/memory profiling and reports."""
