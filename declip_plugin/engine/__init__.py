"""The embedded DeepfakeBench-compatible engine: train / test / predict on one or many devices."""
