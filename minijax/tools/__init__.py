"""Command-line tools: dataset preparation, PyTorch interop, model summary."""
