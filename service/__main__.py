"""``python -m service`` is the ``modelport`` command."""

from service.cli import main

main()
