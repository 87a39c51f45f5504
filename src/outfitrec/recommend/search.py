"""Moved to `outfitrec.models.search` (training mines the student's own top outfits with it: train/own_top.py).

This name stays for code that imported the search from here; new code imports `outfitrec.models.search`.
"""

from outfitrec.models.search import (  # noqa: F401
    MAX_EXACT_COMBINATIONS,
    SCORE_CHUNK,
    OutfitScorer,
    Query,
    Recommendation,
    Searcher,
    SearchIndex,
    SearchParams,
    SearchStats,
    select,
    templates_from_dataset,
)
