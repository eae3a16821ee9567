"""Tables: keys (filled by its owner)."""
