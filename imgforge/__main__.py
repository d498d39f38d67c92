"""``python -m imgforge`` runs the CLI (the tests use it to check exit codes and stderr)."""

from imgforge.cli import main

main()
