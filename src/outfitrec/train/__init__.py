"""Training: the run configuration, per-epoch negatives, the one loop for every role, run directories."""

from outfitrec.train.config import ConfigError, RunConfig, load_config
from outfitrec.train.loop import train

__all__ = ["ConfigError", "RunConfig", "load_config", "train"]
