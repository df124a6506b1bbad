"""Evaluation protocols of the paper: single crop, 10/12/144 crops, and ensembles.

`python -m inception_jax.evaluation --protocol=10crop --weights=<dir>[,<dir>...]` (see
`__main__`); `crops` defines the crops, `members` loads converted weights or run checkpoints,
`protocols` averages softmax outputs over crops and members and scores top-1/top-5.
"""
