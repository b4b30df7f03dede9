"""Encoding: the embedding model behind LangChain's Embeddings (embeddings), and its
onnxruntime fast path for queries (onnx_embed)."""
