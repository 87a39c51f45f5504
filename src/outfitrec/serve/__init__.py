"""The HTTP service (FastAPI) and its web page; reads models through `outfitrec.recommend` only."""
