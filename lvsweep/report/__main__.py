"""`python -m lvsweep.report`: the report's command line."""
from lvsweep.tracking.report import main

main()
