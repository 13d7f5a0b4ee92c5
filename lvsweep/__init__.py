"""lvsweep: does attention learned from noisy trajectories line up with a system's sensitivity?"""

__version__ = "0.1.0"
