"""Base of the digits configs: scikit-learn's bundled 8x8 digits, small U-Nets, a 2-core CPU.

Not a config on its own; configs/digits/ddpmpp.py imports it. The data (1,797 images, values
0..16 -> [0, 1]; train = first 1,500, test = the rest) ships with scikit-learn, so the demo needs no
download. Images stay 8x8: the classifier check of tests/test_digits.py runs at the same size.
"""

import ml_collections

from configs.conditional import add_conditional_sections


def get_default_configs() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 42

    config.training = training = ml_collections.ConfigDict()
    training.sde = "vpsde"
    training.continuous = True
    training.reduce_mean = True
    training.likelihood_weighting = False
    training.importance_weighting = False
    training.batch_size = 64
    training.n_iters = 2000
    training.n_jitted_steps = 50  # optimizer steps per dispatch (lax.scan)
    training.log_freq = 250
    training.eval_freq = 500
    training.snapshot_freq = 2000  # one snapshot (and a sample grid) at the end
    training.snapshot_freq_for_preemption = 1000
    training.snapshot_sampling = True

    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.method = "pc"
    sampling.predictor = "euler_maruyama"
    sampling.corrector = "none"
    sampling.snr = 0.16
    sampling.n_steps_each = 1
    sampling.noise_removal = True
    sampling.probability_flow = False
    sampling.batch_size = 256
    sampling.num_samples = 256

    config.eval = evaluate = ml_collections.ConfigDict()
    evaluate.begin_ckpt = -1  # -1: the latest checkpoint only
    evaluate.end_ckpt = -1
    evaluate.batch_size = 256
    evaluate.enable_loss = True
    evaluate.enable_bpd = False
    evaluate.bpd_dataset = "test"
    evaluate.enable_sampling = True
    evaluate.num_samples = 256
    evaluate.enable_fid = False  # Inception features mean nothing on 8x8 digits
    evaluate.samplers = ("pc",)

    config.data = data = ml_collections.ConfigDict()
    data.dataset = "digits"
    data.image_size = 8
    data.num_channels = 1
    data.centered = True  # [-1, 1], the scale of the VP prior
    data.random_flip = False  # digits are not mirror-symmetric
    data.uniform_dequantization = False

    config.model = model = ml_collections.ConfigDict()
    model.sigma_min = 0.01
    model.sigma_max = 10.0
    model.num_scales = 200  # sampler steps
    model.beta_min = 0.1
    model.beta_max = 20.0
    model.dropout = 0.0
    model.ema_rate = 0.99  # short runs: a slow EMA would still remember the init
    model.dtype = "float32"
    model.num_classes = 0  # 10: class-conditional, index 10 = the null label (guidance)

    config.optim = optim = ml_collections.ConfigDict()
    optim.weight_decay = 0.0
    optim.optimizer = "Adam"
    optim.lr = 2e-3
    optim.beta1 = 0.9
    optim.eps = 1e-8
    optim.warmup = 200
    optim.grad_clip = 1.0
    # --mode=sample with --config.condition.task=inpaint|class; --mode=train_classifier
    add_conditional_sections(config)
    return config
