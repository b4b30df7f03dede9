"""Ingestion: read abstracts from files, chunk, embed and upsert them into the store."""
