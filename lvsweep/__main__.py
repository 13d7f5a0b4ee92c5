"""`python -m lvsweep`: the command line (see `lvsweep.cli`)."""
from lvsweep.cli import main

main()
