"""`python -m lvsweep.replay RUN_ID`: re-run a recorded run and check that it reproduces (see
`lvsweep.tracking.replay`)."""
