"""The ablation report of a sweep, run as `python -m lvsweep.report`; the code is in `lvsweep.tracking.report`."""
