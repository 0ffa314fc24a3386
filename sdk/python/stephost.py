"""stephost helpers for Python steps built with componentize-py.

`stephost step new --lang python` copies this file next to your `app.py`,
together with the WIT package (`wit/step.wit`) that componentize-py reads at
build time. Use it like this:

    import wit_world
    import stephost

    def handle(req: dict) -> dict:
        if "name" not in req:
            raise stephost.StepError("invalid_input", "`name` is required")
        stephost.log.info(f"greeting {req['name']}")
        return {"greeting": f"{stephost.config('salutation') or 'Hello'}, {req['name']}!"}

    class WitWorld(wit_world.WitWorld):
        def run(self, input: str) -> str:
            return stephost.run_json(handle, input)

- `StepError(code, message, retryable=False)`: raise it to fail the attempt
  with that code and message. `retryable=True` lets the workflow's retry
  policy try again; `False` never retries.
- Any other exception that escapes is an uncaught exception: the attempt
  ends `trapped`, and its message and traceback go to the attempt's logs.
- `log.debug/info/warn/error(message)` write to the attempt's log;
  `print()` goes there too (as stdout).
- `config(key)` returns the step's configuration value (or secret) for
  `key`, or None.
"""

import json
import sys
import traceback

import wit_world
from componentize_py_types import Err
from wit_world.imports import config as _config
from wit_world.imports import log as _log


class StepError(Exception):
    """Fails the attempt with a machine-readable code and a message."""

    def __init__(self, code: str, message: str, retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class _Log:
    def debug(self, message: str) -> None:
        _log.log(_log.Level.DEBUG, str(message))

    def info(self, message: str) -> None:
        _log.log(_log.Level.INFO, str(message))

    def warn(self, message: str) -> None:
        _log.log(_log.Level.WARN, str(message))

    def error(self, message: str) -> None:
        _log.log(_log.Level.ERROR, str(message))


log = _Log()


def config(key: str):
    """The configuration value for `key`, or None."""
    return _config.get(key)


def run_json(handler, input: str) -> str:
    """Parses `input`, calls `handler` with it and returns its result as JSON.

    A `StepError` becomes the step's error; any other exception is printed
    to stderr (the attempt's log) and re-raised, which traps the attempt.
    """
    try:
        request = json.loads(input)
    except ValueError as e:
        raise Err(wit_world.StepError(code="invalid_input", message=f"the input is not JSON: {e}", retryable=False))
    try:
        result = handler(request)
    except StepError as e:
        raise Err(wit_world.StepError(code=e.code, message=e.message, retryable=e.retryable))
    except BaseException:
        print(traceback.format_exc(), file=sys.stderr, flush=True)
        raise
    return json.dumps(result, ensure_ascii=False)
