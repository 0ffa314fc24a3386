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

/// Bounds on what a component holds, checked on its bytes before it is
/// compiled, so that neither compile time nor the memory compiling takes can
/// be driven up by an upload: Cranelift's time and memory grow with the
/// number of functions and, faster than linearly, with the size of one
/// function body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShapeBounds {
    /// The most functions the component's core modules define, together.
    pub(crate) max_functions: u64,
    /// The largest body one function may have, in bytes.
    pub(crate) max_function_bytes: u64,
    /// The memory ceiling of an attempt: no memory may start above it, and
    /// the data segments together may not exceed it.
    pub(crate) memory_ceiling: u64,
}

/// Checks the component's shape against `bounds` by reading its sections
/// (no validation, no compilation). Bytes that do not parse pass: the
/// compiler reports them with its own message.
pub(crate) fn check_shape(bytes: &[u8], bounds: ShapeBounds) -> Result<(), Error> {
    use wasmparser::Payload;
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20));
    let (mut functions, mut data) = (0u64, 0u64);
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else {
            return Ok(());
        };
        match payload {
            Payload::CodeSectionStart { count, .. } => {
                functions += u64::from(count);
                if functions > bounds.max_functions {
                    return Err(Error::Invalid(format!(
                        "the component defines more than {} functions (at least {functions}); \
                         the host compiles at most {} per component",
                        bounds.max_functions, bounds.max_functions
                    )));
                }
            }
            Payload::CodeSectionEntry(body) => {
                let size = body.range().len() as u64;
                if size > bounds.max_function_bytes {
                    return Err(Error::Invalid(format!(
                        "the component has a function body of {size} bytes; the host compiles \
                         functions of at most {} bytes",
                        bounds.max_function_bytes
                    )));
                }
            }
            Payload::MemorySection(memories) => {
                for memory in memories.into_iter().flatten() {
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    let initial = memory.initial.saturating_mul(page);
                    if initial > bounds.memory_ceiling {
                        return Err(Error::Invalid(format!(
                            "the component declares a memory of {} at start, over the memory \
                             ceiling of {}",
                            mib(initial),
                            mib(bounds.memory_ceiling)
                        )));
                    }
                }
            }
            Payload::DataSection(segments) => {
                for segment in segments.into_iter().flatten() {
                    data += segment.data.len() as u64;
                }
                if data > bounds.memory_ceiling {
                    return Err(Error::Invalid(format!(
                        "the component's data segments hold {}, over the memory ceiling of {}",
                        mib(data),
                        mib(bounds.memory_ceiling)
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
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
    fn shapes_past_a_bound_are_refused_before_compiling() {
        let bounds = ShapeBounds {
            max_functions: 3,
            max_function_bytes: 64,
            memory_ceiling: 4 << 16,
        };
        let shape = |wat: &str| check_shape(&wat::parse_str(wat).unwrap(), bounds);
        shape("(component (core module (func) (func) (func)))").unwrap();
        // Counted over every module of the component, nested ones too.
        let err = shape(
            "(component (core module (func) (func)) (component (core module (func) (func))))",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("more than 3 functions (at least 4)"), "{err}");
        let nops = "nop ".repeat(70);
        let err = shape(&format!("(component (core module (func {nops})))"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("of at most 64 bytes"), "{err}");
        shape("(component (core module (memory 4)))").unwrap();
        let err = shape("(component (core module (memory 5)))")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a memory of 0.3 MiB at start, over the memory ceiling of 0.2 MiB"),
            "{err}"
        );
        let data = "a".repeat(3 << 16);
        let err = shape(&format!(
            r#"(component (core module (memory 1) (data (i32.const 0) "{data}") (data (i32.const 0) "{data}")))"#
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("data segments hold 0.4 MiB, over the memory ceiling of 0.2 MiB"),
            "{err}"
        );
        // What does not parse is left to the compiler's own message.
        check_shape(b"\0asm\x0d\0\x01\0\xff\xff", bounds).unwrap();
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
