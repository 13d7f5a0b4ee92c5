"""Training data: noisy observations of a clean orbit (and replicate draws), served to Lightning."""
