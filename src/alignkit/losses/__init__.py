"""Loss functions: pure torch, tensors in and (loss, metrics) out. Each cites its equation."""
