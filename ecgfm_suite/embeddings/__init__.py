"""Embeddings layer: batched encoding of records and the on-disk embedding cache."""
