"""The index: the vector-store seam and Chroma behind it (store, chroma_store), and BM25 over
the same chunks on local disk (lexical)."""
