"""outfitrec: personalized outfit recommendation with False Negative Distillation
and contrastive learning (Kim et al., arXiv 2110.06483), and beyond."""

__version__ = "0.1.0"
