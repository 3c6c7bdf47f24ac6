"""The config boundary: a config file's ConfigDict -> one typed, frozen, checked `Config`.

    cfg = config.from_config(config_dict)           # or config.load(path, overrides)
    cfg.training.batch_size, cfg.model.nf, cfg.data.shape, ...

Every section is a frozen dataclass (`sections`, `families` for config.model) filled by one strict
reader (`reader.read_section`): an unknown field
is rejected with the closest known name, a wrong type names the field, the value and the fix, a
missing required field says how to set it; each dataclass then checks its values. Fields with a
default need not be in the file: the defaults are the original score_sde's, so an original
config file loads unchanged, and every field can be set from the command line
(`--config.sampling.num_samples=1000`) for every config. Below this boundary nothing reads a
ConfigDict. Config files and shipped names: `files`; command-line overrides: `command_line`.

`config.model` is read into the dataclass of its network family (`config.model.name`): NCSN++ /
DDPM++ (`ncsnpp`), DDPM, NCSN / NCSNv2, the toy MLP. Each family knows exactly the fields it reads,
plus the few the original configs set without effect (`ORIGINAL_ONLY`: accepted with the only
value that has a meaning for the family, never set by the configs shipped here).
"""

from score_sde.config.checks import did_you_mean
from score_sde.config.command_line import (
    EXIT_BAD_INPUT,
    answer_help,
    apply_overrides,
    fail,
    parse_value,
    split_argv,
)
from score_sde.config.families import (
    DTYPES,
    FAMILIES,
    NONLINEARITIES,
    PRECONDITIONINGS,
    DDPMConfig,
    DiTConfig,
    MLPConfig,
    ModelConfig,
    NCSNppConfig,
    NCSNv2Config,
    UViTConfig,
    model_class,
)
from score_sde.config.files import (
    configs_dir,
    load,
    load_file,
    resolve_config_path,
    shipped_configs,
)
from score_sde.config.reader import from_config, read_section, section_class
from score_sde.config.sections import (
    DISCRETIZATIONS,
    GUIDANCE,
    SDES,
    SECTIONS,
    TASKS,
    ClassifierConfig,
    ConditionConfig,
    Config,
    DataConfig,
    EvalConfig,
    LoggingConfig,
    OptimConfig,
    SamplingConfig,
    TrainingConfig,
    sampling_methods,
)

__all__ = [
    "DDPMConfig",
    "DISCRETIZATIONS",
    "DiTConfig",
    "DTYPES",
    "EXIT_BAD_INPUT",
    "FAMILIES",
    "GUIDANCE",
    "MLPConfig",
    "ModelConfig",
    "NCSNppConfig",
    "NCSNv2Config",
    "NONLINEARITIES",
    "PRECONDITIONINGS",
    "SDES",
    "SECTIONS",
    "TASKS",
    "ClassifierConfig",
    "ConditionConfig",
    "Config",
    "DataConfig",
    "EvalConfig",
    "LoggingConfig",
    "OptimConfig",
    "SamplingConfig",
    "TrainingConfig",
    "UViTConfig",
    "answer_help",
    "apply_overrides",
    "configs_dir",
    "did_you_mean",
    "fail",
    "from_config",
    "load",
    "load_file",
    "model_class",
    "parse_value",
    "read_section",
    "resolve_config_path",
    "sampling_methods",
    "section_class",
    "shipped_configs",
    "split_argv",
]
