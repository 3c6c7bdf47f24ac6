"""Published checkpoints (the original JAX score_sde, the PyTorch port, the released U-ViT, DiT
and SiT: score_sde.convert.transformers) -> our snapshots.

python -m score_sde.convert --config=vp/cifar10_ddpmpp_continuous --source=... --workdir=...
"""

from score_sde.convert.checkpoints import (
    check_source,
    convert,
    convert_params,
    detect_format,
    main,
    read_jax_checkpoint,
    read_torch_checkpoint,
)

__all__ = [
    "check_source",
    "convert",
    "convert_params",
    "detect_format",
    "main",
    "read_jax_checkpoint",
    "read_torch_checkpoint",
]
