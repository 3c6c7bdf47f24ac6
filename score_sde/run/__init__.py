"""Running: what a run builds from its config (experiment), the train state and steps, the one
training loop, evaluation rounds, devices and sharding, and the launcher's modes."""
