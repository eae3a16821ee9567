"""WHEN: location fixes to enter / dwell / exit events, and the service that wires the engine."""
