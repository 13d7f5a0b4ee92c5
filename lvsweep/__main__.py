from lvsweep.cli import main

main()
