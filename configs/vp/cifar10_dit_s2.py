"""DiT-S/2 on CIFAR-10 pixels with the VP SDE, continuous time: the DiT family at 32 px.

    python launch.py --config configs/vp/cifar10_dit_s2.py --workdir runs/vp_cifar10_dit_s2

DiT-S/2 (width 384, depth 12, 6 heads, 2x2 patches: 256 tokens), unconditional, no learned
sigma: 32,471,436 parameters (the fixed sin-cos position embedding is not a parameter). Not a
published setting (DiT was trained on ImageNet latents); the schedule is DDPM++'s CIFAR-10 one
but for DiT's optimizer (AdamW, lr 1e-4, no weight decay). Not yet measured.
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.vp(config, continuous=True)
    model = config.model
    model.name = "dit"  # the family's defaults are DiT-S/2
    model.patch_size = 2
    model.hidden_size = 384
    model.depth = 12
    model.num_heads = 6
    optim = config.optim
    optim.optimizer = "AdamW"
    optim.lr = 1e-4
    return config
