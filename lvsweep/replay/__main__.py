"""`python -m lvsweep.replay`: the replay's command line."""
from lvsweep.tracking.replay import main

main()
