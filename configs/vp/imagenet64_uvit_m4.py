"""U-ViT-M/4 on ImageNet 64x64, class-conditional, VP SDE (Bao et al. 2023; baofff/U-ViT
configs/imagenet64_uvit_mid.py): the released imagenet64_uvit_mid.pth converts to it.

    python -m score_sde.convert --config configs/vp/imagenet64_uvit_m4.py \
        --source imagenet64_uvit_mid.pth --workdir runs/imagenet64_uvit_m4
    python launch.py --config configs/vp/imagenet64_uvit_m4.py --workdir runs/imagenet64_uvit_m4 \
        --mode sample

Width 768, depth 16 (8 in, 1 middle, 8 out blocks), 12 heads, 4x4 patches (256 patch tokens, a
time and a class token), 1,000 classes: 130,941,060 parameters. The original has 130,940,292
(the paper: 131M) and no null label; ours has its row (768 parameters), which the converter fills
with the mean class embedding, so sample with a class: config.condition.task 'class' (label -1:
the classes in turn), without guidance (scale 0). Published: FID 5.85 (DPM-Solver, 50 steps; here
Euler-Maruyama, 1,000 steps, or --config.sampling.method=dpmpp_2m). As the original:
noise prediction with labels 999 t, batch 1024, 300k steps, AdamW lr 3e-4, weight decay 0.03,
betas (0.99, 0.99) (b2 0.999 here: config.optim has no field for it), 5,000 warmup steps, EMA
0.9999. Not measured here (no ImageNet, no released weights on this machine).
"""

import ml_collections

from configs import datasets, presets


def uvit_imagenet64(embed_dim: int, depth: int, num_heads: int) -> ml_collections.ConfigDict:
    """The ImageNet-64 U-ViT of baofff/U-ViT at a width, depth and head count."""
    config = datasets.imagenet64()
    presets.vp(config, continuous=True)
    training = config.training
    training.batch_size = 1024
    training.n_iters = 300000
    model = config.model
    model.name = "uvit"
    model.patch_size = 4
    model.embed_dim = embed_dim
    model.depth = depth
    model.num_heads = num_heads
    model.num_classes = 1000
    optim = config.optim
    optim.optimizer = "AdamW"
    optim.lr = 3e-4
    optim.weight_decay = 0.03
    optim.beta1 = 0.99
    optim.grad_clip = -1.0
    config.condition = ml_collections.ConfigDict({"task": "class", "scale": 0.0})
    return config


def get_config():
    return uvit_imagenet64(embed_dim=768, depth=16, num_heads=12)
