"""Start jedi-language-server on stdio for the WebIDE (apps/functions/language_server.py).

Run as ``python -I -S language_server.py <site-packages>`` after confine.py has confined the
process: ``-I -S`` keep the console's environment and site configuration out, and the one
directory that holds the language server and its dependencies is added here. What the
server analyses the code against is chosen by the console in ``initialize``
(``workspace.environmentPath``: the interpreter functions run with), not this sys.path.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.stderr.write("usage: language_server.py <site-packages>\n")
        raise SystemExit(64)
    sys.path.append(argv[1])
    from jedi_language_server.cli import cli

    sys.argv = ["jedi-language-server"]
    cli()


if __name__ == "__main__":
    main(sys.argv)
