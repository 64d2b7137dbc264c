"""Benchmarks: the LightningModule, the CLI, micro-benchmarks, the results recorder and the report."""
