"""__NAME__: a stephost step.

Input {"name": "Ada"}, output {"greeting": "Hello, Ada!", "lang": "python"};
the `salutation` config value replaces "Hello". See stephost.py for the
helpers (StepError, log, config, run_json).
"""

import wit_world

import stephost


def handle(request):
    name = request.get("name") if isinstance(request, dict) else None
    if not isinstance(name, str) or not name:
        raise stephost.StepError("invalid_input", "`name` is required")
    salutation = stephost.config("salutation") or "Hello"
    stephost.log.info(f"greeting {name}")
    return {"greeting": f"{salutation}, {name}!", "lang": "python"}


class WitWorld(wit_world.WitWorld):
    def run(self, input: str) -> str:
        return stephost.run_json(handle, input)
