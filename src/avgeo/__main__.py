"""`python -m avgeo` runs the command-line interface."""

from avgeo.cli import main

main()
