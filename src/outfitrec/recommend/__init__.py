"""Recommending whole outfits from the catalogue: beam search over slots, exact search, completion, ONNX export."""
