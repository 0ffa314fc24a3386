//! Static checks a component must pass before anything runs it: it is a
//! component, it exports `run` with exactly the WIT type, and it imports only
//! what the host provides.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::{ComponentItem, Type};

use super::Error;

/// The interfaces, by package prefix, that the host links for steps.
const PROVIDED: &[&str] = &[
    "stephost:step/log@",
    "stephost:step/config@",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "wasi:http/types@",
    "wasi:http/outgoing-handler@",
];

const MAGIC: &[u8; 4] = b"\0asm";
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
const MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];

/// Rejects anything that is not a binary WebAssembly component, with a
/// message that says what it is instead.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), Error> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(Error::NotAComponent(
            "the bytes do not start with the WebAssembly magic number `\\0asm`".into(),
        ));
    }
    match bytes[4..8].try_into().expect("four bytes") {
        COMPONENT_VERSION => Ok(()),
        MODULE_VERSION => Err(Error::NotAComponent(
            "this is a core WebAssembly module, not a component; build for \
             wasm32-wasip2 or run `wasm-tools component new` on it"
                .into(),
        )),
        other => Err(Error::NotAComponent(format!(
            "unknown WebAssembly version or layer {other:02x?}"
        ))),
    }
}

/// The names of everything the component imports.
pub(crate) fn imports(component: &Component, engine: &Engine) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// The names of everything the component exports.
pub(crate) fn exports(component: &Component, engine: &Engine) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Checks the imports against the interfaces the host provides.
pub(crate) fn check_imports(imports: &[String]) -> Result<(), Error> {
    let unknown: Vec<&str> = imports
        .iter()
        .map(String::as_str)
        .filter(|name| !PROVIDED.iter().any(|p| name.starts_with(p)))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "the component imports {}, which the host does not provide; a step may import \
         stephost:step/log, stephost:step/config and WASI 0.2 (io, clocks, random, cli, \
         filesystem, sockets, http)",
        unknown
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Checks that the component exports `run: func(input: string) ->
/// result<string, step-error>` with `step-error` being
/// `record { code: string, message: string, retryable: bool }`.
pub(crate) fn check_run_export(component: &Component, engine: &Engine) -> Result<(), Error> {
    let ty = component.component_type();
    let Some(item) = ty
        .exports(engine)
        .find_map(|(name, item)| (name == "run").then_some(item))
    else {
        let names: Vec<_> = exports(component, engine);
        return Err(Error::Invalid(format!(
            "the component does not export `run`; it exports [{}]. Build it against the \
             `step` world of stephost:step@0.1.0",
            names.join(", ")
        )));
    };
    let ComponentItem::ComponentFunc(func) = item.ty else {
        return Err(Error::Invalid(
            "the export `run` is not a function; expected `run: func(input: string) -> \
             result<string, step-error>`"
                .into(),
        ));
    };
    let wrong = |what: &str| {
        Err(Error::Invalid(format!(
            "the export `run` has the wrong type ({what}); expected `run: func(input: string) \
             -> result<string, step-error>` from stephost:step@0.1.0"
        )))
    };
    let params: Vec<_> = func.params().collect();
    if params.len() != 1 || !matches!(params[0].1, Type::String) {
        return wrong("it must take exactly one string parameter");
    }
    let results: Vec<_> = func.results().collect();
    let [Type::Result(result)] = results.as_slice() else {
        return wrong("it must return a result");
    };
    if !matches!(result.ok(), Some(Type::String)) {
        return wrong("the ok value must be a string");
    }
    let Some(Type::Record(record)) = result.err() else {
        return wrong("the error must be the step-error record");
    };
    let fields: Vec<(String, bool)> = record
        .fields()
        .map(|f| {
            let ok = match f.name {
                "code" | "message" => matches!(f.ty, Type::String),
                "retryable" => matches!(f.ty, Type::Bool),
                _ => false,
            };
            (f.name.to_owned(), ok)
        })
        .collect();
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    if names != ["code", "message", "retryable"] || fields.iter().any(|(_, ok)| !ok) {
        return wrong(
            "step-error must be record { code: string, message: string, retryable: bool }",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        assert!(matches!(
            check_header(b"junk"),
            Err(Error::NotAComponent(_))
        ));
        let module = wat::parse_str("(module)").unwrap();
        let err = check_header(&module).unwrap_err().to_string();
        assert!(err.contains("core WebAssembly module"), "{err}");
        let component = wat::parse_str("(component)").unwrap();
        check_header(&component).unwrap();
    }

    #[test]
    fn unknown_imports_are_named() {
        let err = check_imports(&[
            "wasi:cli/environment@0.2.0".into(),
            "acme:evil/backdoor@1.0.0".into(),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("`acme:evil/backdoor@1.0.0`"), "{err}");
        assert!(!err.contains("environment"), "{err}");
    }
}
