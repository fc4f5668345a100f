"""Data layer and the domain rules shared by the web tier and the workers."""
