"""The application layer's command line: ``mecfed`` and its subcommands.

Layering (checked by ``tests/test_layers.py``): this package and
:mod:`mecfed.testbed` sit on top; they may import anything, but the servers
(``mef``, ``meo``) and ``benchmarks`` only inside the subcommand that needs
them, so ``mecfed --help`` and ``mecfed mef serve`` load nothing else.

Modules: ``main`` (argument parsing, subcommands), ``demo`` (``mecfed
demo``, terminal UI), ``federate`` (requesting federations as a consumer's
MEO would; the demo and the benchmark share it), ``collector`` (in-process
OTLP span receiver), ``trace_view`` (terminal waterfall), ``extras``
(optional dependencies).
"""

from mecfed.cli.main import main, parser

__all__ = ["main", "parser"]
