"""citeqa core library: settings, store, embeddings, retrieval."""
