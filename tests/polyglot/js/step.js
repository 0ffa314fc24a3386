// Polyglot test guest (JavaScript) for the stephost `step` world.
//
// One component, many behaviours: the input JSON field "op" picks what `run`
// does, so the host tests can exercise success, step errors, traps, runaway
// guests and sandboxing with a single build. See tests/polyglot/README.md.
//
// Built with `jco componentize` (componentize-js / StarlingMonkey) using the
// DEFAULT feature set, so the component also imports wasi:http (for fetch),
// wasi:cli, wasi:clocks, wasi:random, ...: the host must be able to run such a
// component while denying what it asks for.

import { log } from "stephost:step/log@0.1.0";
import { get as configGet } from "stephost:step/config@0.1.0";

const LANG = "js";

// How componentize-js 0.23 maps what `run` does onto
// `result<string, step-error>` (its generated export glue):
//   - a returned string is ok(string); a returned {tag: "ok"|"err", val} is
//     taken as the result itself;
//   - a thrown value with an own `payload` property is err(payload) (the same
//     convention as jco's ComponentError);
//   - any other thrown value is meant to be err(value) if it is not an Error
//     and an uncaught exception (trap) if it is. In practice the glue runs in
//     a separate realm, so its `instanceof Error` is false for our Errors: a
//     plain Error is lowered as a step-error, fails ("expected a string,
//     received [undefined]") and traps all the same, but the original message
//     is lost. `run` therefore prints unexpected exceptions to stderr before
//     rethrowing them, so a trap's cause still shows up in the attempt's logs.
class StepError extends Error {
  constructor(code, message, retryable) {
    super(message);
    this.payload = { code, message, retryable };
  }
}

const ops = {
  echo(req) {
    log("info", `echo from ${LANG}`);
    console.log(`stdout line from ${LANG}`);
    // option<string> arrives as the string or undefined; JSON.stringify
    // would drop an undefined field, so normalise to null.
    return { echo: req.value, lang: LANG, config: configGet("greeting") ?? null };
  },

  fail() {
    throw new StepError("bad_input", "the input was rejected", false);
  },

  throw() {
    throw new Error(`boom from ${LANG}`);
  },

  // What a step without the helpers does: throw something that is not a
  // step error, with nothing written to stderr (`run` below rethrows these
  // two unprinted).
  throw_quiet() {
    throw new Error(`quiet marker from ${LANG}`);
  },

  throw_string() {
    throw `string marker from ${LANG}`;
  },

  loop() {
    for (;;) {}
  },

  // Unbounded recursion: the engine's stack guard or the host's stack
  // bound stops it.
  recurse() {
    const down = (n) => down(n + 1) + 1;
    return { depth: down(0) };
  },

  async http(req) {
    // The host should deny outbound HTTP (wasi:http/outgoing-handler); fetch
    // then rejects, and we report the text instead of trapping. The test
    // passes the URL of a listener of its own, to see that nothing connects.
    try {
      const res = await fetch(req.url ?? "http://127.0.0.1:9/");
      return { http_status: res.status, http_body: await res.text() };
    } catch (e) {
      return { http_error: String(e && e.message ? `${e.name}: ${e.message}` : e) };
    }
  },

  env() {
    // StarlingMonkey has no `process`; report what a guest could see, if any.
    const proc = globalThis.process;
    return {
      env: proc && proc.env ? { ...proc.env } : {},
      args: proc && proc.argv ? [...proc.argv] : [],
    };
  },
};

// `run` may be async: componentize-js runs the event loop until the returned
// promise settles, and maps a rejection the same way as a synchronous throw.
export async function run(input) {
  const req = JSON.parse(input);
  const op = req && typeof req === "object" ? req.op : undefined;
  const handler = Object.hasOwn(ops, op) ? ops[op] : undefined;
  if (!handler) {
    throw new StepError("unknown_op", `unknown op: ${JSON.stringify(op)}`, false);
  }
  try {
    return JSON.stringify(await handler(req));
  } catch (e) {
    if (!(e instanceof StepError) && op !== "throw_quiet" && op !== "throw_string") {
      console.error(`uncaught exception in run: ${e && e.stack ? `${e}\n${e.stack}` : e}`);
    }
    throw e;
  }
}
