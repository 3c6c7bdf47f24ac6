"""Data: datasets by config (TFDS, folders, .npz, digits, 2-D toys), the 2-D toy distributions,
and `python -m score_sde.data.prepare` (archives and folders -> .npz without TensorFlow)."""
