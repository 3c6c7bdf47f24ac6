"""U-ViT-L/4 on ImageNet 64x64, class-conditional, VP SDE (Bao et al. 2023; baofff/U-ViT
configs/imagenet64_uvit_large.py): the released imagenet64_uvit_large.pth converts to it.

    python -m score_sde.convert --config configs/vp/imagenet64_uvit_l4.py \
        --source imagenet64_uvit_large.pth --workdir runs/imagenet64_uvit_l4
    python launch.py --config configs/vp/imagenet64_uvit_l4.py --workdir runs/imagenet64_uvit_l4 \
        --mode sample

Width 1024, depth 20 (10 in, 1 middle, 10 out blocks), 16 heads, 4x4 patches: 286,828,676
parameters, the original's 286,827,652 (the paper: 287M) and the null label's row (see
configs/vp/imagenet64_uvit_m4.py). Published: FID 4.26 (DPM-Solver, 50 steps). Training as
U-ViT-M/4. Not measured here.
"""

from configs.vp.imagenet64_uvit_m4 import uvit_imagenet64


def get_config():
    return uvit_imagenet64(embed_dim=1024, depth=20, num_heads=16)
