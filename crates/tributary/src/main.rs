//! `tributary`: one binary, a subcommand per role. Roles talk only through Kafka and the
//! database, so each can run as its own process and scale alone; `all` runs every role in
//! one process for small installs and tests.

mod normalize_cmd;
mod roles;

use anyhow::Context;

/// See the workspace Cargo.toml: glibc malloc dominated the gateway's profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use tributary_runtime::Config;

#[derive(Parser)]
#[command(name = "tributary", version, about = "Customer data in, notification actions out")]
struct Cli {
    /// TOML configuration file; TRIBUTARY_<SECTION>_<KEY> variables override it.
    #[arg(long, short, global = true, env = "TRIBUTARY_CONFIG")]
    config: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the keyspace, tables, topics and default environments (idempotent).
    Migrate,
    /// HTTP ingestion: /integrations/receive/{token} and the Segment tracking API.
    Gateway,
    /// Kafka ingestion: records your services produce to `{prefix}.ingest` → raw items.
    Ingest,
    /// Raw items → normalized events.
    Translator,
    /// Normalized events → action plans.
    Mapper,
    /// Action plans → logs, users, workflow triggers.
    Executor,
    /// The admin API.
    Admin,
    /// Every role in one process.
    All,
    /// Run a request body through the gateway's and translator's code and print the result.
    Normalize(normalize_cmd::Args),
    /// Print the admin API's OpenAPI document.
    Openapi,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Normalize(args) = &cli.command {
        return normalize_cmd::run(args);
    }
    if let Command::Openapi = &cli.command {
        println!("{}", serde_json::to_string_pretty(&tributary_admin::openapi::document())?);
        return Ok(());
    }
    let cfg = Config::load(cli.config.as_deref(), std::env::vars()).context("configuration")?;
    tributary_runtime::logging::init(&cfg.log);
    // Not stopping for these keeps a deployment's own TRIBUTARY_* variables harmless; the
    // warning still shows a misspelt section name (TRIBUTARY_KAFAK_BROKERS).
    for name in cfg.ignored_env.iter().filter(|n| *n != "TRIBUTARY_CONFIG") {
        tracing::warn!(variable = %name, "names no configuration section; skipped");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Migrate => roles::migrate(&cfg).await,
            Command::Gateway => roles::run(&cfg, &[roles::Role::Gateway]).await,
            Command::Ingest => roles::run(&cfg, &[roles::Role::Ingest]).await,
            Command::Translator => roles::run(&cfg, &[roles::Role::Translator]).await,
            Command::Mapper => roles::run(&cfg, &[roles::Role::Mapper]).await,
            Command::Executor => roles::run(&cfg, &[roles::Role::Executor]).await,
            Command::Admin => roles::run(&cfg, &[roles::Role::Admin]).await,
            Command::All => roles::run(&cfg, &roles::Role::ALL).await,
            Command::Normalize(_) | Command::Openapi => unreachable!(),
        }
    })
}
