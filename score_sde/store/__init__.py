"""Storage: checkpoints (orbax), the work directory and its lock, file systems (local and
remote), the metrics log (TensorBoard), images (PNG, grids, plots) and PyTorch files without torch."""
