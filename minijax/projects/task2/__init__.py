"""Task 2: a network of at most 4 layers (Rep4Net, the layer rule, distillation, report)."""
