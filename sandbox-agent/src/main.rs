//! `sandbox-agent`: judges jobs from a coordinator in sandboxes on this host.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(version, about = "Runs submissions in sandboxes for a judge coordinator")]
struct Cli {
    #[command(flatten)]
    agent: sandbox_agent::cli::AgentArgs,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    sandbox_agent::cli::run(Cli::parse().agent)
}
