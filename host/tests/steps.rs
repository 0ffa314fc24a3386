//! The example steps in `steps/`, built to components and run through the
//! real sandbox: each succeeds on a known input with an exact output and
//! fails with its documented error code.

use std::sync::OnceLock;

use serde_json::{Value, json};
use stephost::model::{Outcome, StepError};
use stephost::sandbox::{Cancel, Capabilities, Overrides, Sandbox, Settings};

/// RFC 4231, test case 2: HMAC-SHA256 with the key `Jefe`.
const JEFE_KEY: &str = "Jefe";
const JEFE_DATA: &str = "what do ya want for nothing?";
const JEFE_HEX: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
/// The same MAC as [`JEFE_HEX`], in standard base64.
const JEFE_BASE64: &str = "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=";

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new(Settings::default()).expect("sandbox"))
}

async fn run(path: &str, input: Value, caps: Capabilities) -> Outcome {
    let step = sandbox()
        .prepare(&test_programs::read(path))
        .expect("prepare");
    let limits = sandbox().limits(&Overrides::default()).expect("limits");
    sandbox()
        .run(&step, &input.to_string(), &limits, &caps, &Cancel::new())
        .await
        .expect("run")
        .outcome
}

fn succeeded(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Succeeded { output } => serde_json::from_str(&output).expect("JSON output"),
        other => panic!("expected success, got {other:?}"),
    }
}

/// The step's own error, which every example step reports as non-retryable.
fn failed(outcome: Outcome) -> StepError {
    match outcome {
        Outcome::Failed { error } => {
            assert!(!error.retryable, "{error:?}");
            error
        }
        other => panic!("expected a step error, got {other:?}"),
    }
}

fn secret(value: &str) -> Capabilities {
    Capabilities {
        config: [("secret".to_owned(), value.to_owned())].into(),
        secrets: vec![value.to_owned()],
        http: None,
    }
}

#[tokio::test]
async fn reshape_builds_the_mapped_document() {
    let input = json!({
        "data": {"customer": {"email": "ada@example.com"}, "items": [{"sku": "A-1"}]},
        "mapping": {"/email": "/customer/email", "/first/sku": "/items/0/sku", "/phone": "/customer/phone"},
        "defaults": {"/phone": null}
    });
    let outcome = run(test_programs::STEP_RESHAPE, input, Capabilities::default()).await;
    assert_eq!(
        succeeded(outcome),
        json!({"email": "ada@example.com", "first": {"sku": "A-1"}, "phone": null})
    );
}

#[tokio::test]
async fn reshape_fails_on_a_missing_field_without_default() {
    let input = json!({"data": {"customer": {}}, "mapping": {"/email": "/customer/email"}});
    let outcome = run(test_programs::STEP_RESHAPE, input, Capabilities::default()).await;
    let error = failed(outcome);
    assert_eq!(error.code, "missing_field");
    assert_eq!(
        error.message,
        "`data` has nothing at `/customer/email` (mapped to `/email`), \
         and `defaults` has no value for `/email`"
    );
}

#[tokio::test]
async fn hmac_sign_matches_the_rfc_4231_vector() {
    let input = json!({"payload": JEFE_DATA});
    let outcome = run(test_programs::STEP_HMAC_SIGN, input, secret(JEFE_KEY)).await;
    assert_eq!(
        succeeded(outcome),
        json!({"signature": JEFE_HEX, "algorithm": "hmac-sha256"})
    );

    let input = json!({"payload": JEFE_DATA, "encoding": "base64"});
    let outcome = run(test_programs::STEP_HMAC_SIGN, input, secret(JEFE_KEY)).await;
    assert_eq!(
        succeeded(outcome),
        json!({"signature": JEFE_BASE64, "algorithm": "hmac-sha256"})
    );
}

#[tokio::test]
async fn hmac_sign_without_a_secret_fails_with_missing_config() {
    let input = json!({"payload": JEFE_DATA});
    let outcome = run(
        test_programs::STEP_HMAC_SIGN,
        input,
        Capabilities::default(),
    )
    .await;
    let error = failed(outcome);
    assert_eq!(error.code, "missing_config");
    assert_eq!(error.message, "the step needs the config value `secret`");
}

#[tokio::test]
async fn render_template_renders_the_context() {
    let input = json!({
        "template": "Hello {{ name }}, you ordered {{ items | join(', ') }}.",
        "context": {"name": "Ada", "items": ["tea", "scones"]}
    });
    let outcome = run(
        test_programs::STEP_RENDER_TEMPLATE,
        input,
        Capabilities::default(),
    )
    .await;
    assert_eq!(
        succeeded(outcome),
        json!({"text": "Hello Ada, you ordered tea, scones."})
    );
}

#[tokio::test]
async fn render_template_fails_on_an_undefined_variable() {
    let input = json!({"template": "Hi {{ user.name }}", "context": {"user": {}}});
    let outcome = run(
        test_programs::STEP_RENDER_TEMPLATE,
        input,
        Capabilities::default(),
    )
    .await;
    let error = failed(outcome);
    assert_eq!(error.code, "template_error");
    assert_eq!(
        error.message,
        "undefined value: `user.name` is undefined (in template:1)"
    );
}
