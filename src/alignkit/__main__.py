"""`python -m alignkit` (and `torchrun -m alignkit`) runs the CLI."""

from alignkit.cli import main

main()
