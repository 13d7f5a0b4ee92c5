"""`python -m lvsweep`: the command line (see `lvsweep.cli`)."""
from lvsweep.cli import command_line

command_line()
