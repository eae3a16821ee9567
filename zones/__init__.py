"""WHERE: zone model, sizing by travel profile, geometry validation and the exact H3 index."""
