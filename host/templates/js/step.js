// __NAME__: a stephost step. Input {"name": "Ada"}, output
// {"greeting": "Hello, Ada!", "lang": "js"}; the `salutation` config value
// replaces "Hello". The helpers (StepError, log, config, runJson) are at the
// top of this file.

async function handle(request) {
  const name = request && typeof request === "object" ? request.name : undefined;
  if (typeof name !== "string" || name === "") {
    throw new StepError("invalid_input", "`name` is required", false);
  }
  const salutation = config("salutation") ?? "Hello";
  log.info(`greeting ${name}`);
  return { greeting: `${salutation}, ${name}!`, lang: "js" };
}

export async function run(input) {
  return runJson(handle, input);
}

