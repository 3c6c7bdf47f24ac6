"""U-ViT-S/2 on CIFAR-10 with the VP SDE, continuous time (Bao et al. 2023, Table 1; the original
configs/cifar10_uvit.py of baofff/U-ViT).

    python launch.py --config configs/vp/cifar10_uvit_s2.py --workdir runs/vp_cifar10_uvit_s2

The released cifar10_uvit_small.pth converts to it (python -m score_sde.convert --config
configs/vp/cifar10_uvit_s2.py --source cifar10_uvit_small.pth --workdir runs/cifar10_uvit_pub).
Parameters: 44,255,328 (the paper: 44M). Published: FID 3.11 (Euler-Maruyama, 1000 steps).
As the original: noise prediction with labels 999 t, batch 128, 500k steps, AdamW lr 2e-4,
weight decay 0.03, betas (0.99, 0.999) (0.999 is optax's default b2, which config.optim has no
field for), 2,500 warmup steps then constant, EMA 0.9999, no gradient clipping, random flips.
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.vp(config, continuous=True)
    config.training.n_iters = 500000
    model = config.model
    model.name = "uvit"  # the family's defaults are U-ViT-S/2 at 32 px
    model.patch_size = 2
    model.embed_dim = 512
    model.depth = 12
    model.num_heads = 8
    optim = config.optim
    optim.optimizer = "AdamW"
    optim.lr = 2e-4
    optim.weight_decay = 0.03
    optim.beta1 = 0.99
    optim.warmup = 2500
    optim.grad_clip = -1.0
    return config
