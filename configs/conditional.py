"""Sections for controllable generation, added to any config by `add_conditional_sections(config)`.

config.condition (read by --mode=sample; task 'none' samples unconditionally as before):
    task      'none' | 'class' | 'inpaint' | 'colorize'
    label     class label for guidance; -1: none ('class': labels 0, 1, ..., K-1 in turn)
    guidance  'cfg' (a class-conditional score model, config.model.num_classes > 0) or
              'classifier' (the noise-conditional classifier of --mode=train_classifier)
    scale     guidance weight w: CFG (1 + w) s(x, y) - w s(x), classifier s + w grad log p(y|x)
    image     .npz (first array, or 'x') / .png of the known or grayscale images in [0, 1] or uint8;
              '' takes the first images of the test split
    mask      .npz / .png (1 = known) or a named mask: keep_top, keep_left, keep_border, keep_random
    repeats   samples per input image
    classifier_workdir  where the classifier lives ('' = <workdir>/classifier)
config.classifier (read by --mode=train_classifier; see score_sde/modes/train_classifier.py).
"""

import ml_collections


def add_conditional_sections(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config.condition = condition = ml_collections.ConfigDict()
    condition.task = "none"
    condition.label = -1
    condition.guidance = "cfg"
    condition.scale = 1.0
    condition.image = ""
    condition.mask = "keep_top"
    condition.repeats = 4
    condition.classifier_workdir = ""

    config.classifier = classifier = ml_collections.ConfigDict()
    classifier.nf = 32
    classifier.ch_mult = (1, 2)
    classifier.num_res_blocks = 2
    classifier.dropout = 0.1
    classifier.nonlinearity = "swish"
    classifier.num_classes = 10
    classifier.n_iters = 2000
    classifier.batch_size = 128
    classifier.lr = 1e-3
    classifier.warmup = 100
    classifier.grad_clip = 1.0
    classifier.ema_rate = 0.999
    classifier.log_freq = 250
    classifier.snapshot_freq = 2000
    classifier.n_jitted_steps = 50
    classifier.eps = 1e-5
    return config
