"""Class-conditional DDPM++ on the 8x8 digits, with label dropout for classifier-free guidance,
and a noise-conditional classifier for classifier guidance: the controllable-generation demo.

    python launch.py --config configs/digits/conditional.py --workdir runs/digits_cond
    python launch.py --config configs/digits/conditional.py --workdir runs/digits_cond \
        --mode sample --config.condition.task=class --config.condition.scale=1.0
    python launch.py --config configs/digits/conditional.py --workdir runs/digits_cond \
        --mode sample --config.condition.task=inpaint --config.condition.mask=keep_top
    python launch.py --config configs/digits/conditional.py --workdir runs/digits_cond \
        --mode train_classifier
    python launch.py --config configs/digits/conditional.py --workdir runs/digits_cond \
        --mode sample --config.condition.task=class --config.condition.guidance=classifier

Labels are dropped to the null label (index 10) with probability config.model.class_dropout
during training, so one network gives both s(x, t, y) and s(x, t).
"""

import ml_collections

from configs.digits import ddpmpp


def get_config():
    config = ddpmpp.get_config()
    config.model.num_classes = 10  # index 10 = the null label
    config.model.class_dropout = 0.1
    # Both sections take their defaults (score_sde.config.ConditionConfig, ClassifierConfig;
    # classifier.num_classes = model.num_classes); set fields with --config.condition.task=...
    config.condition = ml_collections.ConfigDict()
    config.classifier = ml_collections.ConfigDict()
    return config
