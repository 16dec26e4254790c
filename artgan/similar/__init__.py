"""Similar paintings in the National Gallery of Art open data: the collection and its
metadata (`nga`), feature indexes (`index`), retrieval metrics against the museum's metadata
(`retrieval`) and HTML pages (`pages`)."""
