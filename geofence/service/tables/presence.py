"""Tables: presence (filled by its owner)."""
