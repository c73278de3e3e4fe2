"""Split lists and vocabularies shipped with avbridge (data only)."""
