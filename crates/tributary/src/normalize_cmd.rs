//! `tributary normalize`: run a request through exactly the code the gateway (decode, verify,
//! split, status) and the translator (normalize) use, and print what they would make of it.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::io::Read;
use tributary_model::{Template, VerificationScheme};
use tributary_sources::answer::answered_status;
use tributary_sources::templates::default_settings;
use tributary_sources::{process, Incoming};

#[derive(clap::Args)]
pub struct Args {
    /// segment, rudderstack, hightouch, census or http
    #[arg(long)]
    template: String,
    /// Environment settings: paths.<name>=PATH (event_type, fixed_type, event_name, user_id,
    /// timestamp, idempotency_key, data, array), body_format=auto|segment|rows (hightouch, census),
    /// verification.scheme=SCHEME,
    /// verification.secret=SECRET (repeat for two), verification.header=NAME,
    /// now=UNIX_SECONDS (the clock for signature checks and ingestion time), source=NAME,
    /// max_body_bytes=N.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The request body (`-` for standard input).
    file: String,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    for line in normalize_lines(args)? {
        println!("{line}");
    }
    Ok(())
}

/// The output lines: records, then refused items, then the status.
pub fn normalize_lines(args: &Args) -> anyhow::Result<Vec<String>> {
    let template: Template = args.template.parse().map_err(anyhow::Error::msg)?;
    let mut settings = default_settings(template, template.as_str(), "development", "cli".into());
    let mut now_secs = chrono::Utc::now().timestamp();
    let mut max_body = 8 * 1024 * 1024;
    let mut source = template.as_str().to_string();
    for kv in &args.set {
        let (k, v) = kv.split_once('=').with_context(|| format!("--set {kv}: expected KEY=VALUE"))?;
        let v = v.to_string();
        match k {
            // a type path and a fixed type are alternatives: setting one clears the other
            "paths.event_type" => {
                settings.paths.event_type = Some(v);
                settings.paths.fixed_type = None;
            }
            "paths.fixed_type" => {
                settings.paths.fixed_type = Some(v);
                settings.paths.event_type = None;
            }
            "paths.event_name" => settings.paths.event_name = Some(v),
            "paths.user_id" => settings.paths.user_id = Some(v),
            "paths.timestamp" => settings.paths.timestamp = Some(v),
            "paths.idempotency_key" => settings.paths.idempotency_key = Some(v),
            "paths.data" => settings.paths.data = Some(v),
            "paths.array" => settings.paths.array = Some(v),
            "body_format" => {
                settings.body_format = serde_json::from_value(json!(v))
                    .with_context(|| format!("body_format: `{v}` is not auto, segment or rows"))?;
            }
            "verification.scheme" => {
                settings.verification.scheme = serde_json::from_value(json!(v))
                    .with_context(|| format!("verification.scheme: unknown scheme `{v}`"))?;
            }
            "verification.secret" => settings.verification.secrets.push(v),
            "verification.header" => settings.verification.header = Some(v),
            "now" => now_secs = v.parse().with_context(|| format!("now: `{v}` is not unix seconds"))?,
            "source" => source = v,
            "max_body_bytes" => max_body = v.parse().context("max_body_bytes")?,
            other => bail!("--set {other}: unknown setting"),
        }
    }
    if settings.verification.scheme != VerificationScheme::None && settings.verification.secrets.is_empty() {
        bail!("verification.scheme needs at least one verification.secret");
    }
    let mut headers = Vec::new();
    for h in &args.headers {
        let (k, v) = h.split_once(':').with_context(|| format!("--header {h}: expected `Name: value`"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let body = if args.file == "-" {
        let mut b = Vec::new();
        std::io::stdin().read_to_end(&mut b)?;
        b
    } else {
        std::fs::read(&args.file).with_context(|| format!("read {}", args.file))?
    };

    let mut out = Vec::new();
    let result = process(&Incoming {
        template,
        settings: &settings,
        headers: &headers,
        body: &body,
        max_body,
        now_ms: now_secs * 1000,
        implied_type: None,
    });
    // What the gateway answers, per-template rule included (tributary_sources::answer).
    let status = answered_status(template, &result);
    let processed = match result {
        Ok(p) => p,
        Err(e) => {
            out.push(json!({"error": {"code": e.code(), "message": e.to_string()}}).to_string());
            out.push(json!({"status": status}).to_string());
            return Ok(out);
        }
    };
    let mut rejected = Vec::new();
    for item in &processed.items {
        match &item.outcome {
            Ok(n) => {
                let mut rec = json!({
                    "source": source,
                    "type": n.event_type,
                    "event": n.name,
                    "user_id": n.user_id,
                    "anonymous_id": n.anonymous_id,
                    "data": n.data,
                    "timestamp": n.timestamp,
                    "idempotency_key": n.idempotency_key,
                    "group_id": n.group_id,
                    "previous_id": n.previous_id,
                });
                if n.unsupported {
                    rec["unsupported"] = Value::Bool(true);
                }
                if let Some(ts) = &n.timestamp_source {
                    rec["timestamp_source"] = json!(ts);
                }
                out.push(rec.to_string());
            }
            Err(e) => rejected.push(json!({"rejected": {"index": item.index, "code": e.code, "message": e.message}})),
        }
    }
    out.extend(rejected.iter().map(Value::to_string));
    out.push(json!({"status": status}).to_string());
    Ok(out)
}
