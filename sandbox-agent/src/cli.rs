//! The agent's command line, shared by the `sandbox-agent` binary and by
//! `coordinator agent`, which `coordinator up` starts as its local agent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::judge::{Judge, JudgeRunner};
use crate::link::{self, LinkConfig};
use crate::metrics::AgentMetrics;
use crate::sandbox::Sandbox;

#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// The coordinator's agent (QUIC) address; with several coordinators, all of their
    /// addresses, comma-separated: the link moves to the next when one is unreachable.
    #[arg(long, default_value = "127.0.0.1:3002", value_delimiter = ',', num_args = 1..)]
    pub coordinator: Vec<SocketAddr>,
    /// Name the coordinator's certificate is checked against.
    #[arg(long, default_value = "judge-coordinator")]
    pub server_name: String,
    /// Directory holding ca.pem, agent.pem and agent.key (`coordinator issue-agent-cert`).
    #[arg(long)]
    pub tls_dir: PathBuf,
    /// This agent's id; must match the certificate's name.
    #[arg(long)]
    pub agent_id: String,
    /// Jobs judged at once; defaults to the number of CPUs.
    #[arg(long)]
    pub slots: Option<u32>,
    /// Private working directory (job files, the sandbox root mountpoint).
    #[arg(long, default_value = "./agent-data")]
    pub work_dir: PathBuf,
    /// Directory with languages.toml and mounts.toml; the built-in spec by default.
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// First uid/gid of the unprivileged identities runs use (one per slot).
    #[arg(long, default_value_t = 60000)]
    pub uid_base: u32,
    /// Where Prometheus scrapes `GET /metrics` (port 0 picks one; the address is printed).
    /// Loopback unless told otherwise: the numbers say what is judged and when.
    #[arg(long, default_value = "127.0.0.1:9102")]
    pub metrics_listen: SocketAddr,
    /// Pre-created sandboxes kept to serve run after run (reset in between; see
    /// docs/sandbox.md); 0 makes every run's namespaces afresh. Default: four per CPU.
    #[arg(long, env = "SANDBOX_POOL")]
    pub pooled_sandboxes: Option<usize>,
}

/// Runs an agent until SIGTERM or SIGINT. Tracing must be set up by the caller.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    // First, so a non-root agent is told why before anything else fails on it, and
    // before any thread exists (a user namespace, like unshare, needs that).
    crate::sandbox::enter_agent_namespaces(args.uid_base).context("isolating the agent")?;
    let spec = match &args.rootfs {
        Some(dir) => rootfs::Spec::load(dir),
        None => rootfs::Spec::builtin(),
    }
    .context("loading the rootfs spec")?;
    let slots = args
        .slots
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
        .max(1);
    std::fs::create_dir_all(&args.work_dir).with_context(|| format!("creating {}", args.work_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        // Job files and test data are the agent's alone.
        std::fs::set_permissions(&args.work_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let mut spec = spec;
    for problem in spec.mounts.resolve_probes() {
        tracing::warn!(%problem, "a bind's probe failed; its configured source stays");
    }
    let spec = Arc::new(spec);
    let sandbox = Sandbox::new(&args.work_dir, &spec).context("setting up the sandbox")?;
    if let Some(n) = args.pooled_sandboxes {
        sandbox.set_pool_size(n);
    }
    let languages: Vec<String> = spec.languages.iter().map(|l| l.id.clone()).collect();
    let metrics = AgentMetrics::new(&args.agent_id, slots, &languages).context("setting up metrics")?;
    let judge = Arc::new(Judge::new(sandbox, spec, &args.work_dir, args.uid_base, slots)?.with_metrics(metrics.clone()));
    let (first, also) = args.coordinator.split_first().context("--coordinator needs an address")?;
    let config = LinkConfig {
        coordinator: *first,
        also: also.to_vec(),
        server_name: args.server_name,
        tls_dir: args.tls_dir,
        agent_id: args.agent_id,
        languages: judge.languages(),
        slots,
    };

    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.metrics_listen)
            .await
            .with_context(|| format!("binding the metrics listener on {}", args.metrics_listen))?;
        let metrics_addr = listener.local_addr()?;
        tracing::info!(addr = %metrics_addr, "metrics listening");
        // On stdout too: `coordinator up` passes it on, and tests find the address there.
        println!("agent metrics on http://{metrics_addr}/metrics");
        tokio::spawn(crate::metrics::serve(listener, metrics.clone()));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopper = judge.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping: aborting runs in progress");
            stopper.abort_all();
            let _ = stop_tx.send(true);
        });
        link::run_with_metrics(config, Arc::new(JudgeRunner(judge.clone())), stop_rx, &metrics).await.context("agent link")
    });
    // Dropping the runtime waits for the judge's blocking threads, which end promptly
    // once their runs are aborted, so no sandbox outlives the agent.
    drop(rt);
    result?;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the default action (exit) applies, which is still safe:
        // every run dies with its init through PDEATHSIG.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
