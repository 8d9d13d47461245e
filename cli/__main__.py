"""`python -m cli`: the same as the `bulk-export` console script."""

from cli.main import main

main()
