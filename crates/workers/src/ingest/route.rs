//! Which source environment an ingest record is for, from its headers.
//!
//! - `tributary-source` + `tributary-environment`: the source's key and the environment's name;
//! - or `tributary-token`: the environment's ingest token (the one in its ingest URL).
//!
//! Kafka's ACLs decide who may produce to the ingest topic; the token is only a way to name the
//! environment for producers that already hold it. If both are sent they must agree. Header
//! names are case-insensitive; values are UTF-8.

use tributary_model::{EnvironmentSettings, Template};
use tributary_store::Snapshot;

pub const SOURCE: &str = "tributary-source";
pub const ENVIRONMENT: &str = "tributary-environment";
pub const TOKEN: &str = "tributary-token";

/// What the headers name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Named {
    pub source: Option<String>,
    pub environment: Option<String>,
    pub token: Option<String>,
}

/// Why a record cannot be routed to a source environment: it goes to the dead-letter topic
/// with this reason (there is no source whose event log could show it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unroutable {
    /// Stable: `missing_source`, `invalid_header`, `unknown_source`, `unknown_token`,
    /// `source_mismatch`.
    pub code: &'static str,
    /// For people; never contains the token.
    pub message: String,
}

impl Unroutable {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Unroutable { code, message: message.into() }
    }

    /// A change the snapshot may not hold yet (a source created a moment ago) could route it.
    pub fn may_be_stale_config(&self) -> bool {
        matches!(self.code, "unknown_source" | "unknown_token" | "source_mismatch")
    }
}

/// Read the naming headers (the last one of a repeated name wins, as Kafka clients show it).
pub fn named(headers: &[(&str, &[u8])]) -> Result<Named, Unroutable> {
    let mut n = Named::default();
    for (name, value) in headers {
        let slot = match name.to_ascii_lowercase().as_str() {
            SOURCE => &mut n.source,
            ENVIRONMENT => &mut n.environment,
            TOKEN => &mut n.token,
            _ => continue,
        };
        let text = std::str::from_utf8(value)
            .map_err(|_| Unroutable::new("invalid_header", format!("header `{}` is not UTF-8", name.to_ascii_lowercase())))?;
        *slot = Some(text.trim().to_string()).filter(|t| !t.is_empty());
    }
    Ok(n)
}

/// The settings and template the headers name in `snap`.
pub fn resolve<'s>(snap: &'s Snapshot, n: &Named, now_ms: i64) -> Result<(&'s EnvironmentSettings, Template), Unroutable> {
    if let Some(token) = &n.token {
        let (settings, template) = snap
            .by_token(token, now_ms)
            .ok_or_else(|| Unroutable::new("unknown_token", format!("no source environment has the ingest token in `{TOKEN}`")))?;
        let agrees = n.source.as_ref().is_none_or(|s| *s == settings.source)
            && n.environment.as_ref().is_none_or(|e| *e == settings.environment);
        if !agrees {
            return Err(Unroutable::new(
                "source_mismatch",
                format!("`{TOKEN}` is the token of another source environment than `{SOURCE}`/`{ENVIRONMENT}` name"),
            ));
        }
        return Ok((settings, template));
    }
    let (Some(source), Some(environment)) = (&n.source, &n.environment) else {
        return Err(Unroutable::new(
            "missing_source",
            format!("the record names no source: set headers `{SOURCE}` and `{ENVIRONMENT}` (or `{TOKEN}`)"),
        ));
    };
    let settings = snap
        .settings_for(source, environment)
        .ok_or_else(|| Unroutable::new("unknown_source", format!("source `{source}` has no environment `{environment}`")))?;
    let template = snap
        .sources
        .get(source)
        .map(|s| s.template)
        .ok_or_else(|| Unroutable::new("unknown_source", format!("source `{source}` does not exist")))?;
    Ok((settings, template))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_model::Source;
    use tributary_sources::templates::default_settings;

    fn snapshot() -> Snapshot {
        let mut snap = Snapshot::default();
        snap.sources.insert("shop".into(), Source { key: "shop".into(), name: "Shop".into(), template: Template::Segment, created_at: 0 });
        snap.settings.insert(("shop".into(), "production".into()), default_settings(Template::Segment, "shop", "production", "tok_prod".into()));
        snap.index();
        snap
    }

    fn route(headers: &[(&str, &[u8])]) -> Result<(String, String), Unroutable> {
        let snap = snapshot();
        let n = named(headers)?;
        resolve(&snap, &n, 0).map(|(s, t)| {
            assert_eq!(t, Template::Segment);
            (s.source.clone(), s.environment.clone())
        })
    }

    #[test]
    fn source_and_environment_or_token_name_the_environment() {
        let want = Ok(("shop".to_string(), "production".to_string()));
        assert_eq!(route(&[("tributary-source", b"shop"), ("Tributary-Environment", b"production")]), want);
        assert_eq!(route(&[("tributary-token", b"tok_prod")]), want);
        assert_eq!(route(&[("tributary-token", b"tok_prod"), ("tributary-source", b"shop")]), want);
    }

    #[test]
    fn unroutable_records_say_why_without_the_token() {
        let code = |h: &[(&str, &[u8])]| route(h).unwrap_err().code;
        assert_eq!(code(&[]), "missing_source");
        assert_eq!(code(&[("tributary-source", b"shop")]), "missing_source");
        assert_eq!(code(&[("tributary-source", b"shop"), ("tributary-environment", b"")]), "missing_source");
        assert_eq!(code(&[("tributary-source", b"nope"), ("tributary-environment", b"production")]), "unknown_source");
        assert_eq!(code(&[("tributary-source", b"shop"), ("tributary-environment", b"staging")]), "unknown_source");
        assert_eq!(code(&[("tributary-source", b"\xff"), ("tributary-environment", b"production")]), "invalid_header");
        assert_eq!(code(&[("tributary-token", b"tok_prod"), ("tributary-environment", b"development")]), "source_mismatch");
        let e = route(&[("tributary-token", b"tok_secret_guess")]).unwrap_err();
        assert_eq!(e.code, "unknown_token");
        assert!(!e.message.contains("tok_secret_guess"), "{}", e.message);
    }
}
