"""`align quickstart`: the embedded demo task, a tiny model, and the whole pipeline."""
