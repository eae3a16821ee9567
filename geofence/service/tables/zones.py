"""Tables: zones (filled by its owner)."""
