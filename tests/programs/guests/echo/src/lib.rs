//! Test guest: returns its input unchanged, through the SDK's JSON handling.

use stephost_sdk::{StepError, Value, export_step};

fn echo(input: Value) -> Result<Value, StepError> {
    Ok(input)
}

export_step!(echo);
