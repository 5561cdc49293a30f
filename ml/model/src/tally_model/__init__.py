"""Tally's detector: training data, the network, training, ONNX export, evaluation, benchmarks.

Modules that need PyTorch (`model`, `loss`, `train`, `export`, `cli`) are imported on their own;
`evaluate` and `bench` run against Triton and need no torch.
"""
