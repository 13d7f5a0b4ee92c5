"""Analysis of a trained run: the sensitivity along the orbit, alignment and its controls, the
perturbation test, the phase response, reconstruction quality, and the figures."""
