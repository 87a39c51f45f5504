"""Data: the outfit arrays, loaders, the Fashion-MNIST generator, negatives, augmentations."""

from outfitrec.data.outfits import PAD, Catalogue, DataError, OutfitDataset, Outfits

__all__ = ["PAD", "Catalogue", "DataError", "OutfitDataset", "Outfits"]
