"""Shared defaults of the CIFAR-10 configs (same fields and values as the original score_sde).

Not a config on its own: the files in vp/, subvp/ and ve/ import it and set the SDE and the model.
Extra fields beyond the original: model.dtype (compute dtype, 'float32' | 'bfloat16') and
model.num_classes (0: unconditional; >0: class-conditional with a null label for guidance).
"""

import ml_collections

from configs.conditional import add_conditional_sections


def get_default_configs():
    config = ml_collections.ConfigDict()
    # training
    config.training = training = ml_collections.ConfigDict()
    training.batch_size = 128
    training.n_iters = 1300001
    training.snapshot_freq = 50000
    training.log_freq = 50
    training.eval_freq = 100
    # additional checkpoints for preemption in cloud computing environments
    training.snapshot_freq_for_preemption = 10000
    # produce samples at each snapshot
    training.snapshot_sampling = True
    training.likelihood_weighting = False
    training.continuous = True
    training.reduce_mean = False

    # sampling
    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.n_steps_each = 1
    sampling.noise_removal = True
    sampling.probability_flow = False
    sampling.snr = 0.16

    # evaluation
    config.eval = evaluate = ml_collections.ConfigDict()
    evaluate.begin_ckpt = 9
    evaluate.end_ckpt = 26
    evaluate.batch_size = 1024
    evaluate.enable_sampling = False
    evaluate.num_samples = 50000
    evaluate.enable_loss = True
    evaluate.enable_bpd = False
    evaluate.bpd_dataset = "test"
    evaluate.num_repeats = 5  # bits/dim: dequantization draws over the whole test split
    evaluate.enable_fid = True  # with enable_sampling: FID/IS/KID of num_samples samples
    # None: $SCORE_SDE_INCEPTION_WEIGHTS, else ~/.cache/score_sde/inception_fid.npz
    evaluate.inception_weights = ml_collections.config_dict.placeholder(str)
    # None: assets/stats/<dataset>[_<category>]_<image_size>_train_stats.npz
    evaluate.fid_stats = ml_collections.config_dict.placeholder(str)

    # data
    config.data = data = ml_collections.ConfigDict()
    data.dataset = "CIFAR10"
    data.image_size = 32
    data.random_flip = True
    data.centered = False
    data.uniform_dequantization = False
    data.num_channels = 3

    # model
    config.model = model = ml_collections.ConfigDict()
    model.sigma_min = 0.01
    model.sigma_max = 50
    model.num_scales = 1000
    model.beta_min = 0.1
    model.beta_max = 20.0
    model.dropout = 0.1
    model.embedding_type = "fourier"
    model.dtype = "float32"
    model.num_classes = 0

    # optimization
    config.optim = optim = ml_collections.ConfigDict()
    optim.weight_decay = 0
    optim.optimizer = "Adam"
    optim.lr = 2e-4
    optim.beta1 = 0.9
    optim.eps = 1e-8
    optim.warmup = 5000
    optim.grad_clip = 1.0

    config.seed = 42
    # --mode=sample with --config.condition.task=inpaint|colorize|class; --mode=train_classifier
    add_conditional_sections(config)
    return config
