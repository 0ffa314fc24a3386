// ---- stephost helpers (from sdk/js/stephost.js; `stephost step new` copies
// them into every JavaScript step, because `jco componentize` takes a single
// module). ------------------------------------------------------------------
//
//   StepError(code, message, retryable = false)
//       throw it to fail the attempt with that code and message;
//       `retryable: true` lets the workflow's retry policy try again.
//   any other thrown value is an uncaught exception: the attempt ends
//       `trapped`, and the exception's text goes to the attempt's logs.
//   log.debug/info/warn/error(message)   write to the attempt's log
//       (console.log and console.error go there too);
//   config(key)   the step's configuration value (or secret), or null;
//   runJson(handler, input)   parses input, awaits handler(request), and
//       returns the result as JSON: use it as the body of `run`. Integers
//       beyond 2^53 arrive as BigInt, and BigInts are written as JSON
//       integers, so large numbers keep their exact value; decimals are
//       doubles.
import { log as hostLog } from "stephost:step/log@0.1.0";
import { get as hostConfigGet } from "stephost:step/config@0.1.0";

export class StepError extends Error {
  constructor(code, message, retryable = false) {
    super(message);
    this.name = "StepError";
    // componentize-js lowers a thrown value's own `payload` as the
    // `step-error` of `result<string, step-error>`.
    this.payload = { code, message, retryable };
  }
}

export const log = {
  debug: (message) => hostLog("debug", String(message)),
  info: (message) => hostLog("info", String(message)),
  warn: (message) => hostLog("warn", String(message)),
  error: (message) => hostLog("error", String(message)),
};

export function config(key) {
  return hostConfigGet(key) ?? null;
}

function exactNumbers(_key, value, context) {
  // Integer literals a double cannot hold exactly become BigInt; the
  // source text comes from JSON.parse's reviver context.
  if (typeof value === "number" && !Number.isSafeInteger(value) && context
      && typeof context.source === "string" && /^-?\d+$/.test(context.source)) {
    return BigInt(context.source);
  }
  return value;
}

function bigIntsAsJson(_key, value) {
  return typeof value === "bigint" ? JSON.rawJSON(value.toString()) : value;
}

export async function runJson(handler, input) {
  let request;
  try {
    request = JSON.parse(input, exactNumbers);
  } catch (e) {
    throw new StepError("invalid_input", `the input is not JSON: ${e.message}`, false);
  }
  try {
    return JSON.stringify(await handler(request), bigIntsAsJson);
  } catch (e) {
    if (!(e instanceof StepError)) {
      // The glue that turns the exception into a trap loses its text, so
      // say it here, where it reaches the attempt's logs.
      console.error(`uncaught exception: ${e && e.stack ? `${e}\n${e.stack}` : e}`);
    }
    throw e;
  }
}
// ---- end of stephost helpers -----------------------------------------------
