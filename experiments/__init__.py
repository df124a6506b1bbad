"""Sweeps (plain Python definitions), their runner and the committed small-scale results."""
