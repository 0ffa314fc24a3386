//! __NAME__: a stephost step. Input `{"name": "Ada"}`, output
//! `{"greeting": "Hello, Ada!", "lang": "rust"}`; the `salutation` config
//! value replaces "Hello".

use serde::{Deserialize, Serialize};
use stephost_sdk::{StepError, config, export_step, log};

#[derive(Deserialize)]
struct Input {
    name: Option<String>,
}

#[derive(Serialize)]
struct Output {
    greeting: String,
    lang: &'static str,
}

fn run(input: Input) -> Result<Output, StepError> {
    let name = input
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| StepError::fatal("invalid_input", "`name` is required"))?;
    let salutation = config::get("salutation").unwrap_or_else(|| "Hello".into());
    log::info(format!("greeting {name}"));
    Ok(Output {
        greeting: format!("{salutation}, {name}!"),
        lang: "rust",
    })
}

export_step!(run);
