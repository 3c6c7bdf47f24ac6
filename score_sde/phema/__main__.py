"""`python -m score_sde.phema --workdir W --std S [--std S ...] --out D`: score_sde.run.posthoc_ema."""

from score_sde.run.posthoc_ema import main

main()
