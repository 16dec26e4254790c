"""Similar paintings in the National Gallery of Art open data: the collection and its
metadata (`nga`), feature extractors (`extractors`) and indexes (`index`), retrieval metrics against the museum's metadata
(`retrieval`) and HTML pages (`pages`)."""
