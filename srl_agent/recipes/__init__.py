"""Bundled training recipes (YAML): ``srl`` (the paper's settings) and ``tiny`` (the offline CPU demo)."""
