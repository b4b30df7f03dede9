"""Retrieval: from a question to the papers and passages that speak to it (retrieve: fused
BM25 and dense rankings in named stages), with MMR (mmr) and rerankers (rerank)."""
