//! `coordinator`: the judge's front door, and on one host the whole judge (`up`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use coordinator::api::{self, ApiLimits, Judge0Config};
use coordinator::link::AgentHub;
use coordinator::metrics::Metrics;
use coordinator::scheduler::{Scheduler, SchedulerConfig, system_clock};
use coordinator::store::{self, EmbeddedConfig, EmbeddedPostgres, Store};
use coordinator::tls::{ClusterTls, SERVER_NAME};

#[derive(Parser, Debug)]
#[command(version, about = "Judge cluster coordinator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The whole judge on this host: a coordinator plus a local sandbox agent.
    Up(UpArgs),
    /// A coordinator only; agents on other hosts connect to it.
    Serve(ServeArgs),
    /// A sandbox agent (what `up` starts as its child; `sandbox-agent` is the same).
    Agent(sandbox_agent::cli::AgentArgs),
    /// Issues a client certificate for an agent, signed by this cluster's CA.
    IssueAgentCert {
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        #[arg(long)]
        agent_id: String,
        /// Where ca.pem, agent.pem and agent.key are written (give it to the agent).
        #[arg(long)]
        out: PathBuf,
    },
    /// Contest problems (Kattis/ICPC packages) on a running coordinator.
    #[command(subcommand)]
    Problem(ProblemCommand),
}

#[derive(Subcommand, Debug)]
enum ProblemCommand {
    /// Imports a package directory or zip through POST /api/problems.
    Import {
        /// The package: a directory with problem.yaml, or a zip of one.
        path: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
        /// The problem's slug; by default the directory's (or the zip's top directory's) name.
        #[arg(long)]
        slug: Option<String>,
        /// Replace a problem of the same slug.
        #[arg(long)]
        replace: bool,
    },
    /// Writes a problem's package as a zip.
    Export {
        slug: String,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct ServerArgs {
    /// The coordinator's API.
    #[arg(long, default_value = "http://127.0.0.1:3001")]
    url: String,
    /// A token of role setter or admin.
    #[arg(long, env = "JUDGE_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// State of this coordinator: the cluster CA and certificates, the local agent's files.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// HTTP API address. Loopback unless told otherwise.
    #[arg(long, default_value = "127.0.0.1:3001")]
    listen: SocketAddr,
    /// QUIC address agents connect to.
    #[arg(long, default_value = "127.0.0.1:3002")]
    agent_listen: SocketAddr,
    /// Extra DNS names or IPs for the coordinator's certificate (for remote agents).
    #[arg(long = "tls-name")]
    tls_names: Vec<String>,
    /// Directory with languages.toml and mounts.toml; the built-in spec by default.
    #[arg(long)]
    rootfs: Option<PathBuf>,
    /// PostgreSQL for the catalog and history (postgres://user@host/db, or key=value).
    /// Without it, a private PostgreSQL is started in <data dir>/postgres.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Server binaries for the private PostgreSQL.
    #[arg(long, default_value = store::embedded::DEFAULT_BIN_DIR)]
    postgres_bin: PathBuf,
    /// Judge only: no database, so no catalog (/api/algorithms answers 503) and no history.
    #[arg(long, conflicts_with = "database_url")]
    no_database: bool,
    #[command(flatten)]
    access: AccessArgs,
}

/// Who may call the API, how often, and how much they may ask for.
#[derive(clap::Args, Debug)]
struct AccessArgs {
    /// Let callers without a credential run code (submissions, Judge0, /ws runs). Off for
    /// `serve`; `up` turns it on when the API listens on loopback only (with a warning).
    #[arg(long, env = "ALLOW_ANONYMOUS", num_args = 0..=1, default_missing_value = "true")]
    allow_anonymous: Option<bool>,
    /// Secret that signs login sessions (JWTs); every coordinator of a cluster needs the
    /// same. Without it, a random one is kept in <data dir>/jwt-secret.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// How long a login session lasts, in seconds.
    #[arg(long, env = "SESSION_TTL", default_value_t = 3600)]
    session_ttl: u64,
    /// Requests per RATE_LIMIT_WINDOW for each user (or, anonymous, each IP). Unlimited
    /// when absent; /health and /metrics are never limited.
    #[arg(long, env = "RATE_LIMIT_MAX")]
    rate_limit_max: Option<u64>,
    /// The rate limit's window, in milliseconds.
    #[arg(long, env = "RATE_LIMIT_WINDOW", default_value_t = 900_000)]
    rate_limit_window: u64,
    /// Highest CPU and wall time limit a submission may ask for, in milliseconds.
    #[arg(long, env = "MAX_EXECUTION_TIME")]
    max_execution_time: Option<u64>,
    /// Highest memory limit a submission may ask for, in MB.
    #[arg(long, env = "MAX_MEMORY_USAGE")]
    max_memory_usage: Option<u64>,
    /// Unfinished submissions each user (or anonymous IP) may have at once.
    #[arg(long, env = "MAX_CONCURRENT_EXECUTIONS")]
    max_concurrent_executions: Option<usize>,
    /// Browser origins allowed to call the API (CORS), comma-separated or repeated; `*`
    /// for any. None by default.
    #[arg(long = "cors-origin", env = "CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct UpArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Jobs the local agent judges at once; the number of CPUs by default.
    #[arg(long)]
    slots: Option<u32>,
    /// First uid/gid of the local agent's sandboxed runs.
    #[arg(long, default_value_t = 60000)]
    uid_base: u32,
    /// Where the local agent serves its /metrics; port 0 picks a free one (printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    agent_metrics_listen: SocketAddr,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Agent(args) => sandbox_agent::cli::run(args),
        Command::IssueAgentCert { data_dir, agent_id, out } => {
            let tls = ClusterTls::load_or_create(&data_dir).context("loading the cluster CA")?;
            tls.issue_agent_cert(&agent_id, &out).context("issuing the agent certificate")?;
            println!("certificate for agent {agent_id} written to {}", out.display());
            Ok(())
        }
        Command::Problem(command) => problem_command(command),
        Command::Serve(args) => tokio::runtime::Runtime::new()?.block_on(serve(args, None)),
        Command::Up(args) => {
            let local = LocalAgent { slots: args.slots, uid_base: args.uid_base, metrics_listen: args.agent_metrics_listen };
            tokio::runtime::Runtime::new()?.block_on(serve(args.serve, Some(local)))
        }
    }
}

fn problem_command(command: ProblemCommand) -> anyhow::Result<()> {
    use coordinator::contest::zip::{PackageCaps, read_dir, write_zip};
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build()?;
    match command {
        ProblemCommand::Import { path, server, slug, replace } => {
            let zip = if path.is_dir() {
                let name = path
                    .canonicalize()?
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .context("the package directory has no name")?;
                let files = read_dir(&path, PackageCaps::default())
                    .with_context(|| format!("reading the package {}", path.display()))?;
                write_zip(&name, &files)?
            } else {
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
            };
            let mut url = reqwest::Url::parse(&format!("{}/api/problems", server.url.trim_end_matches('/')))?;
            if let Some(slug) = &slug {
                url.query_pairs_mut().append_pair("slug", slug);
            }
            if replace {
                url.query_pairs_mut().append_pair("replace", "true");
            }
            let res = client
                .post(url)
                .bearer_auth(&server.token)
                .header("content-type", "application/zip")
                .body(zip)
                .send()
                .context("sending the package")?;
            let status = res.status();
            let body: serde_json::Value = res.json().context("reading the answer")?;
            if !status.is_success() {
                anyhow::bail!("import refused ({status}): {}", body["error"]["message"].as_str().unwrap_or("no message"));
            }
            println!("{}", body["slug"].as_str().unwrap_or_default());
            Ok(())
        }
        ProblemCommand::Export { slug, server, out } => {
            let url = format!("{}/api/problems/{slug}/package", server.url.trim_end_matches('/'));
            let res = client.get(url).bearer_auth(&server.token).send().context("asking for the package")?;
            let status = res.status();
            if !status.is_success() {
                let body: serde_json::Value = res.json().unwrap_or_default();
                anyhow::bail!("export refused ({status}): {}", body["error"]["message"].as_str().unwrap_or("no message"));
            }
            std::fs::write(&out, res.bytes()?).with_context(|| format!("writing {}", out.display()))?;
            println!("{}", out.display());
            Ok(())
        }
    }
}

struct LocalAgent {
    slots: Option<u32>,
    uid_base: u32,
    metrics_listen: SocketAddr,
}

async fn serve(args: ServeArgs, local: Option<LocalAgent>) -> anyhow::Result<()> {
    create_private_dir(&args.data_dir)?;
    let spec = match &args.rootfs {
        Some(dir) => rootfs::Spec::load(dir),
        None => rootfs::Spec::builtin(),
    }
    .context("loading the rootfs spec")?;
    let tls = ClusterTls::load_or_create_with_names(&args.data_dir, &args.tls_names).context("cluster TLS")?;
    // The database before anything listens: a coordinator that cannot keep history
    // should fail at start, not later. The private server (if any) lives in `embedded`
    // and is stopped when it drops: at the end of this function, on every path.
    let (options, caps) = api_options(&args, local.is_some())?;
    let (store, embedded, admin_token) = open_store(&args).await?;
    let languages: Vec<String> = spec.languages.iter().map(|l| l.id.clone()).collect();
    let metrics = Metrics::new(&languages).context("setting up metrics")?;
    if let Some(store) = &store {
        metrics.attach_store(store);
    }
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let hub = AgentHub::bind_with_metrics(args.agent_listen, &tls, "coordinator-1".into(), events_tx, Some(metrics.link_errors()))
        .await
        .with_context(|| format!("binding the agent link on {}", args.agent_listen))?;
    let scheduler = Scheduler::with_metrics(Arc::new(hub.clone()), SchedulerConfig::default(), system_clock(), metrics);
    let mut epoch = None;
    if let Some(store) = &store {
        // Subscribed before the first submission can finish, so none is missed.
        let completions = scheduler.completions();
        let stream = store.new_epoch().await.context("starting a projection stream")?;
        tokio::spawn(store::projection::run(scheduler.clone(), store.clone(), stream, completions));
        epoch = Some(stream);
    }
    tokio::spawn(scheduler.clone().run(events_rx));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the API on {}", args.listen))?;
    let api_addr = listener.local_addr()?;
    let spec = Arc::new(spec);
    let catalog = coordinator::ws::catalog::BuiltinCatalog::with_shipped()
        .map_err(|e| anyhow::anyhow!("loading the algorithms of /ws: {e}"))?;
    let live = coordinator::ws::Live::new(scheduler.clone(), spec.clone(), Arc::new(catalog));
    scheduler.set_observer(live.clone());
    live.set_auth(api::Authn { config: options.auth.clone(), store: store.clone() });
    // Live data passes the runner (which keeps the returned values of the REST API's runs)
    // on its way to the WebSocket hub.
    let runner = coordinator::runner::Runner::new(scheduler.clone());
    runner.forward_to(live.clone());
    hub.set_live(runner.clone());
    // /ws and the dashboard routes first: the API router ends in a catch-all.
    let mut router = salvo::Router::new().push(salvo::Router::with_path("ws").goal(live.handler()));
    router = match (&store, epoch) {
        (Some(store), Some(epoch)) => {
            // Behind the same gate as the main API: CORS, credentials, the rate limit.
            let dashboard = api::dashboard_router(store.clone(), spec.clone(), runner, epoch, api::DashboardLimits::default());
            router.push(salvo::Router::new().hoop(api::gate(&options, Some(store.clone()), scheduler.metrics().clone())).push(dashboard))
        }
        _ => router.push(api::dashboard_unavailable()),
    };
    let router = router.push(api::router_with_options(scheduler, spec, caps, Judge0Config::default(), store.clone(), options));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(api::serve(listener, router, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));

    println!("judge is up: API on http://{api_addr} , agents connect to {} (QUIC)", hub.local_addr());
    println!("coordinator metrics on http://{api_addr}/metrics");
    if let Some(token) = admin_token {
        // Printed once, on the database's first start; after the address line, which
        // scripts read first.
        println!("admin token (saved in {}): {token}", args.data_dir.join("admin-token").display());
    }
    if local.is_none() {
        println!("issue agent certificates with: coordinator issue-agent-cert --data-dir {} --agent-id NAME --out DIR", args.data_dir.display());
    }

    let mut agent = match &local {
        Some(l) => Some(spawn_local_agent(&args.data_dir, &tls, hub.local_addr(), l)?),
        None => None,
    };
    let mut restarts = 0u32;
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        let exited = async {
            match agent.as_mut() {
                Some(child) => child.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut signal => break,
            status = exited => {
                // The local agent died: judging stops until it is back, so restart it
                // with a growing pause rather than spin.
                tracing::error!(status = ?status, "local agent exited; restarting it");
                restarts += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(restarts.min(25)))).await;
                if let Some(l) = &local {
                    agent = Some(spawn_local_agent(&args.data_dir, &tls, hub.local_addr(), l)?);
                }
            }
        }
    }

    tracing::info!("stopping");
    if let Some(child) = agent.as_mut() {
        stop_child(child).await;
    }
    let _ = stop_tx.send(true);
    hub.shutdown().await;
    match server.await {
        Ok(r) => r.context("API server")?,
        Err(e) => anyhow::bail!("API server task failed: {e}"),
    }
    if let Some(store) = &store {
        store.close();
    }
    drop(embedded);
    tracing::info!("stopped");
    Ok(())
}

/// The API's access rules and caps from the command line (and the seed's environment
/// variables). `up` is the whole judge for one person on this host: anonymous runs are
/// on there unless the API listens beyond loopback or they are turned off.
fn api_options(args: &ServeArgs, up: bool) -> anyhow::Result<(api::ApiOptions, ApiLimits)> {
    let a = &args.access;
    let allow_anonymous = match a.allow_anonymous {
        Some(allow) => allow,
        None => up && args.listen.ip().is_loopback(),
    };
    if allow_anonymous {
        tracing::warn!(
            listen = %args.listen,
            "anonymous callers may run code (--allow-anonymous); turn it off with --allow-anonymous=false before exposing this API"
        );
    }
    let jwt = api::jwt::JwtKey::load_or_create(
        a.jwt_secret.as_deref(),
        &args.data_dir.join("jwt-secret"),
        Duration::from_secs(a.session_ttl.max(1)),
    )
    .context("the login session secret (JWT_SECRET)")?;
    let rate_limit = match a.rate_limit_max {
        Some(0) => anyhow::bail!("RATE_LIMIT_MAX must be at least 1 (leave it out for no limit)"),
        Some(max) => {
            anyhow::ensure!(a.rate_limit_window > 0, "RATE_LIMIT_WINDOW must be at least 1 ms");
            Some(api::RateLimit { max, window: Duration::from_millis(a.rate_limit_window) })
        }
        None => None,
    };
    let cors = api::Cors::parse(&a.cors_origins).map_err(|e| anyhow::anyhow!(e))?;
    let mut caps = ApiLimits::default();
    if let Some(ms) = a.max_execution_time {
        anyhow::ensure!(ms >= 1, "MAX_EXECUTION_TIME must be at least 1 ms");
        caps.cpu_ms = *caps.cpu_ms.start()..=ms;
        caps.wall_ms = *caps.wall_ms.start()..=ms;
    }
    if let Some(mb) = a.max_memory_usage {
        anyhow::ensure!(mb >= *caps.memory_mb.start(), "MAX_MEMORY_USAGE must be at least {} MB", caps.memory_mb.start());
        caps.memory_mb = *caps.memory_mb.start()..=mb;
    }
    if a.max_concurrent_executions == Some(0) {
        anyhow::bail!("MAX_CONCURRENT_EXECUTIONS must be at least 1 (leave it out for no limit)");
    }
    let options = api::ApiOptions {
        auth: api::AuthConfig { allow_anonymous, jwt: Some(jwt) },
        rate_limit,
        max_concurrent_runs: a.max_concurrent_executions,
        cors,
        ..Default::default()
    };
    Ok((options, caps))
}

/// Connects to `--database-url`, or starts the private PostgreSQL; migrates, seeds the
/// shipped catalog, and on a database's first start creates the admin token.
async fn open_store(args: &ServeArgs) -> anyhow::Result<(Option<Store>, Option<EmbeddedPostgres>, Option<String>)> {
    if args.no_database {
        tracing::warn!("running without a database: no catalog, no history");
        return Ok((None, None, None));
    }
    let (config, embedded) = match &args.database_url {
        Some(url) => (Store::parse_url(url)?, None),
        None => {
            let mut config = EmbeddedConfig::new(&args.data_dir);
            config.bin_dir = args.postgres_bin.clone();
            // Blocking for about half a second, before anything else runs.
            let pg = tokio::task::block_in_place(|| EmbeddedPostgres::start(&config))
                .context("starting the private PostgreSQL (give --database-url to use another)")?;
            (pg.pg_config(), Some(pg))
        }
    };
    let store = Store::open(config).await.context("opening the database")?;
    let shipped = store::catalog::shipped::all().map_err(|e| anyhow::anyhow!("the built-in catalog: {e}"))?;
    let added = store.seed_catalog(&shipped).await.context("seeding the catalog")?;
    if added > 0 {
        tracing::info!(added, "catalog seeded");
    }
    let token = store.ensure_admin(&args.data_dir.join("admin-token")).await.context("creating the admin token")?;
    Ok((Some(store), embedded, token))
}

fn spawn_local_agent(
    data_dir: &Path,
    tls: &ClusterTls,
    coordinator: SocketAddr,
    local: &LocalAgent,
) -> anyhow::Result<tokio::process::Child> {
    let tls_dir = data_dir.join("agents").join("local");
    tls.issue_agent_cert("local", &tls_dir).context("issuing the local agent's certificate")?;
    let exe = std::env::current_exe().context("locating this binary")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("agent")
        .arg("--coordinator")
        .arg(coordinator.to_string())
        .args(["--server-name", SERVER_NAME, "--agent-id", "local"])
        .arg("--tls-dir")
        .arg(&tls_dir)
        .arg("--work-dir")
        .arg(data_dir.join("agent"))
        .arg("--uid-base")
        .arg(local.uid_base.to_string())
        .arg("--metrics-listen")
        .arg(local.metrics_listen.to_string())
        .stdin(std::process::Stdio::null())
        // Its own process group: a terminal's Ctrl-C reaches only us, and we stop the
        // agent in order (its runs aborted first).
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which
    // is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            // Should this process die without stopping the agent (SIGKILL), the agent gets
            // SIGTERM and stops its runs in order. (The signal follows the spawning thread:
            // a runtime worker, alive as long as we are.)
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if let Some(slots) = local.slots {
        cmd.arg("--slots").arg(slots.to_string());
    }
    let child = cmd.spawn().context("starting the local agent")?;
    tracing::info!(pid = child.id(), "local agent started");
    Ok(child)
}

/// SIGTERM, then up to 20 s for the agent to abort its runs and exit, then SIGKILL.
async fn stop_child(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: signalling our own child, which has not been reaped (id() is Some).
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
        Ok(Ok(status)) => tracing::info!(?status, "local agent stopped"),
        _ => {
            tracing::warn!("local agent did not stop in time; killing it");
            let _ = child.kill().await;
        }
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Keys and the agent's job files live here.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("securing {}", dir.display()))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
