"""Entry point of a benchmark child process: ``python -m bench.child MODULE FUNCTION JSON``.

Runs ``bench.MODULE.FUNCTION(**params)`` (awaited when it is a coroutine function)
and prints its result with :func:`bench.protocol.emit_result`.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys

from bench.protocol import emit_result


def main() -> None:
    """Run the function named on the command line and print its result."""
    module_name, function_name, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    function = getattr(importlib.import_module(f"bench.{module_name}"), function_name)
    if inspect.iscoroutinefunction(function):
        result = asyncio.run(function(**params))
    else:
        result = function(**params)
    emit_result(result)


if __name__ == "__main__":
    main()
