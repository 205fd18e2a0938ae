"""The `mendnet` command: thin argument parsing into the jobs and config dataclasses the Python API uses,
one module per command group (`train`: train and poison, `evaluate`, `repair`: repair and robustify,
`detect`: detect and locate, `attention`, `attack`, `bench`, `audit`, `demo`), `common` for the options
they share, `config` for flags generated from config dataclasses, and `app` for the parser and the
dispatch. `main` is the console script's entry point (`mendnet.cli:main`).

Every user-facing problem ends as one line on stderr (`mendnet: error: ...`) and exit status 2.
"""

from mendnet.cli.app import main

__all__ = ["main"]
