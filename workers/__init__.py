"""Dramatiq side: broker setup, actors for the bulk work, and the periodic scheduler."""
