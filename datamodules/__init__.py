"""LightningDataModules for the paper's four benchmarks."""
