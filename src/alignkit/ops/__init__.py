"""Pure torch operations shared by losses and recipes. No transformers, no configs."""
