"""Models: item encoders, Set Transformer outfit encoder, user scorers, the whole OutfitModel, checkpoints."""

from outfitrec.models.checkpoint import CheckpointError, load_model, read_model_info, save_model
from outfitrec.models.outfit_model import ModelConfig, OutfitModel

__all__ = ["CheckpointError", "ModelConfig", "OutfitModel", "load_model", "read_model_info", "save_model"]
