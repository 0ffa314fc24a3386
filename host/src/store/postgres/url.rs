//! Database URLs and schema names: telling a PostgreSQL URL from a path,
//! hiding its password, and the schema names the store accepts.

use crate::store::{Error, Result};

/// Whether `url` names a PostgreSQL database rather than a file.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) if user.contains(':') => {
                let name = user.split_once(':').map_or(user, |(n, _)| n);
                format!("{scheme}://{name}:***@{host}")
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Refuses a schema name that would need quoting: the search path and the
/// `CREATE SCHEMA` must name the same schema.
pub(super) fn check_schema_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= 63 {
        return Ok(());
    }
    Err(Error::Backend(format!(
        "the database schema `{name}` must be 1 to 63 lower-case letters, digits and `_`, \
         not starting with a digit"
    )))
}

/// `name` as a quoted SQL identifier.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
