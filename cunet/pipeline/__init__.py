"""The pipeline layer: bench, demo and predict drive compile, evaluate and runtime; only commands import it."""
