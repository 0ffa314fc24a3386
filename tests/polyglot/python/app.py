"""Polyglot test guest (Python) for the stephost `step` world.

One component, many behaviours: the input JSON field "op" picks what `run`
does, so the host tests can exercise success, step errors, traps, runaway
guests and sandboxing with a single build. See tests/polyglot/README.md.

Built with componentize-py (see scripts/build-polyglot), which generates the
`wit_world` package from wit/step.wit at build time: the exported `run` is a
method of a class named `WitWorld` in this module (`app`).
"""

import json
import os
import sys

import wit_world
from wit_world import StepError
from wit_world.imports import config, log
from componentize_py_types import Err

LANG = "python"


def _echo(req):
    log.log(log.Level.INFO, f"echo from {LANG}")
    print(f"stdout line from {LANG}", flush=True)
    return {"echo": req.get("value"), "lang": LANG, "config": config.get("greeting")}


def _fail(_req):
    # componentize-py maps `result<T, E>`: returning a value is ok(T);
    # raising componentize_py_types.Err(E) is err(E). Any other exception
    # escaping `run` is a trap.
    raise Err(StepError(code="bad_input", message="the input was rejected", retryable=False))


def _throw(_req):
    raise RuntimeError(f"boom from {LANG}")


def _loop(_req):
    while True:
        pass


def _recurse(_req):
    # Lifts Python's own recursion limit, so only the host's stack bound
    # (or CPython's C-stack guard) stops it.
    sys.setrecursionlimit(10_000_000)

    def down(n):
        return down(n + 1) + 1

    return {"depth": down(0)}


def _http(_req):
    # The `step` world gives Python no wasi:http import, so the nearest thing
    # to an outbound request is a raw socket. componentize-py 0.25's CPython
    # build has no `socket` module at all (the import itself fails), though
    # the component still imports wasi:sockets. Either way it must fail
    # without trapping, and we report the error text.
    try:
        import socket

        with socket.create_connection(("127.0.0.1", 9), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = s.recv(100)
        return {"http_ok": data.decode("utf-8", "replace")}
    except BaseException as e:  # noqa: BLE001 - report whatever the sandbox says
        return {"http_error": f"{type(e).__name__}: {e}"}


def _env(_req):
    return {"env": dict(os.environ), "args": list(sys.argv)}


OPS = {
    "echo": _echo,
    "fail": _fail,
    "throw": _throw,
    "loop": _loop,
    "recurse": _recurse,
    "http": _http,
    "env": _env,
}


class WitWorld(wit_world.WitWorld):
    def run(self, input: str) -> str:
        req = json.loads(input)
        op = req.get("op") if isinstance(req, dict) else None
        handler = OPS.get(op)
        if handler is None:
            raise Err(StepError(code="unknown_op", message=f"unknown op: {op!r}", retryable=False))
        # ensure_ascii=False keeps non-ASCII text as-is, so the host can
        # check an exact round trip of the echoed value.
        return json.dumps(handler(req), ensure_ascii=False)
