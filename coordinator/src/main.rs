//! `coordinator`: the judge's front door, and on one host the whole judge (`up`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use coordinator::api::{self, ApiLimits, Judge0Config};
use coordinator::link::AgentHub;
use coordinator::metrics::Metrics;
use coordinator::cluster::api::{ClusterApi, PeerApi};
use coordinator::cluster::{LogStore, NodeConfig, Transport};
use coordinator::scheduler::{ClusterSetup, Scheduler, SchedulerConfig, system_clock};
use coordinator::store::{self, EmbeddedConfig, EmbeddedPostgres, Store};
use coordinator::tls::{ClusterTls, SERVER_NAME};

#[derive(Parser, Debug)]
#[command(version, about = "Judge cluster coordinator")]
// A flag given twice keeps the last value: `--config` writes the file's flags first, so
// the command line's own win.
#[command(args_override_self = true)]
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
    /// Membership of a running raft cluster (asked of its leader, found through any member).
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Adds a coordinator as a voter; start it first with `serve --join --node-id ID`
    /// and `--peer` for the members. It catches up from a snapshot.
    AddNode {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        id: u64,
        /// Its raft peer link (UDP).
        #[arg(long)]
        raft: SocketAddr,
        /// Its HTTP API.
        #[arg(long)]
        api: SocketAddr,
    },
    /// Removes a coordinator from the voters (then stop it).
    RemoveNode {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        id: u64,
    },
}

#[derive(clap::Args, Debug)]
struct AdminArgs {
    /// Any member's API.
    #[arg(long, default_value = "http://127.0.0.1:3001")]
    url: String,
    /// An admin's token. Without one, an admin session is signed with the JWT secret the
    /// coordinators share (JWT_SECRET, or `<data dir>/jwt-secret`).
    #[arg(long, env = "JUDGE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
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
    /// A TOML file of these flags, keys spelled as the long flags without dashes
    /// (`node-id = 2`, `raft-listen = "10.0.0.2:3200"`, `peer = ["1=10.0.0.1:3200,10.0.0.1:3001"]`).
    /// Flags on the command line override its values and add to its lists.
    #[arg(long)]
    config: Option<PathBuf>,
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
    /// This coordinator's raft node id (unique in the cluster, not 0).
    #[arg(long, default_value_t = 1)]
    node_id: u64,
    /// Another coordinator of the cluster: ID=RAFT_ADDR,API_ADDR (repeat for each). Without
    /// any, this coordinator is a cluster of one.
    #[arg(long = "peer", value_parser = parse_peer)]
    peers: Vec<Peer>,
    /// UDP address of the raft peer link (QUIC, mutual TLS under the cluster CA); needed
    /// with --peer.
    #[arg(long)]
    raft_listen: Option<SocketAddr>,
    /// Join a running cluster (through `coordinator cluster add-node`) instead of forming
    /// one with the --peer nodes: this node starts with no membership and learns it, and
    /// the state, from the leader's snapshot.
    #[arg(long)]
    join: bool,
    /// Take a snapshot of the judge state and compact the raft log after this many
    /// applied entries (0: never).
    #[arg(long, env = "RAFT_SNAPSHOT_EVERY", default_value_t = coordinator::cluster::node::DEFAULT_SNAPSHOT_EVERY)]
    snapshot_every: u64,
    /// Refuse new submissions (503) while this many wait in the queue: a backlog bound,
    /// so that a flood is refused at the door rather than judged hours late.
    #[arg(long, env = "MAX_QUEUED", default_value_t = SchedulerConfig::default().max_queued)]
    max_queued: usize,
    /// Lock the coordinator's memory as mapped at start (its code above all) in RAM:
    /// reclaim (page cache eviction, proactive pageout such as DAMON's) would otherwise
    /// drop code pages that a later request faults back from disk, milliseconds on the
    /// accept path. Costs about 20 MB of RAM held (the code). On by default; needs
    /// CAP_IPC_LOCK or a LimitMEMLOCK as large as the address space (the systemd unit
    /// sets infinity), and without either the coordinator runs unlocked, with a warning.
    #[arg(long, env = "LOCK_MEMORY", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    lock_memory: bool,
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


#[derive(Debug, Clone)]
struct Peer {
    id: u64,
    raft: SocketAddr,
    api: SocketAddr,
}

fn parse_peer(s: &str) -> Result<Peer, String> {
    let bad = || format!("{s:?}: want ID=RAFT_ADDR,API_ADDR (e.g. 2=127.0.0.1:3202,127.0.0.1:3002)");
    let (id, addrs) = s.split_once('=').ok_or_else(bad)?;
    let (raft, api) = addrs.split_once(',').ok_or_else(bad)?;
    let id: u64 = id.parse().map_err(|_| bad())?;
    if id == 0 {
        return Err(bad());
    }
    Ok(Peer { id, raft: raft.parse().map_err(|_| bad())?, api: api.parse().map_err(|_| bad())? })
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
    /// Coordinators to start on this host (1, 3 or 5). Above 1, each is a child process
    /// (APIs on --listen's port and the next ones, agent links on those + 100, raft on
    /// those + 200) with its own data dir under --data-dir, restarted when it dies, and
    /// one local agent that moves to the next coordinator when its own is unreachable.
    /// For trying the cluster out: the children run without a database.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=5))]
    nodes: u32,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match with_config_file(Cli::parse())?.command {
        Command::Agent(args) => sandbox_agent::cli::run(args),
        Command::IssueAgentCert { data_dir, agent_id, out } => {
            let tls = ClusterTls::load_or_create(&data_dir).context("loading the cluster CA")?;
            tls.issue_agent_cert(&agent_id, &out).context("issuing the agent certificate")?;
            println!("certificate for agent {agent_id} written to {}", out.display());
            Ok(())
        }
        Command::Problem(command) => problem_command(command),
        Command::Cluster(command) => cluster_command(command),
        Command::Serve(args) => tokio::runtime::Runtime::new()?.block_on(serve(args, None)),
        Command::Up(args) => {
            let local = LocalAgent { slots: args.slots, uid_base: args.uid_base, metrics_listen: args.agent_metrics_listen };
            if args.nodes > 1 {
                return tokio::runtime::Runtime::new()?.block_on(supervise(args.serve, args.nodes, local));
            }
            tokio::runtime::Runtime::new()?.block_on(serve(args.serve, Some(local)))
        }
    }
}

/// `serve` or `up` with `--config FILE`: parses the command line again with the file's
/// flags written right after the subcommand, so every flag is a key of the file with the
/// same checks, defaults and help, and the command line's own flags still win.
fn with_config_file(cli: Cli) -> anyhow::Result<Cli> {
    let path = match &cli.command {
        Command::Serve(args) => args.config.clone(),
        Command::Up(args) => args.serve.config.clone(),
        _ => None,
    };
    let Some(path) = path else { return Ok(cli) };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading the config file {}", path.display()))?;
    let flags = config_flags(&text, &ServeArgs::augment_args(clap::Command::new("serve")))
        .with_context(|| format!("in the config file {}", path.display()))?;
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The subcommand is the first argument: the top level has no options of its own.
    let at = argv.len().min(2);
    argv.splice(at..at, flags.into_iter().map(Into::into));
    Ok(Cli::try_parse_from(argv).unwrap_or_else(|e| e.exit()))
}

/// The flags a config file stands for: `key = value` is `--key=value`, a list repeats the
/// flag, `true` of a plain switch is `--key` (and `false` leaves it off). Keys that are no
/// flag of `command`, and lists for single-valued flags, are errors.
fn config_flags(text: &str, command: &clap::Command) -> anyhow::Result<Vec<String>> {
    use clap::ArgAction;
    let table: toml::Table = text.parse().context("not TOML")?;
    let known = || {
        command
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| !matches!(*l, "config" | "help" | "version"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut flags = Vec::new();
    for (key, value) in table {
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
            .filter(|a| !matches!(a.get_action(), ArgAction::Help | ArgAction::Version))
            .ok_or_else(|| anyhow::anyhow!("unknown key {key:?}; the keys are the flags of `serve`: {}", known()))?;
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let values = match value {
            toml::Value::Array(items) if matches!(arg.get_action(), ArgAction::Append) => items,
            toml::Value::Array(_) => anyhow::bail!("{key} takes one value, not a list"),
            one => vec![one],
        };
        for value in values {
            let text = match value {
                toml::Value::Boolean(on) if switch => {
                    if on {
                        flags.push(format!("--{key}"));
                    }
                    continue;
                }
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::String(s) => s,
                other => anyhow::bail!("{key}: want a string, number or boolean (or a list of them), not {}", other.type_str()),
            };
            flags.push(format!("--{key}={text}"));
        }
    }
    Ok(flags)
}

/// Locks every page mapped now (the binary, its libraries, the heap and stacks so far);
/// later allocations are not locked, so memory use is not pinned as it grows. Measured
/// on the raft bench (2 cores, DAMON paging out every 500 ms): the share of submissions
/// the coordinators answered within 10 ms at 2000/s went from 99.33–99.69 % to 99.89 %.
fn lock_memory() {
    // SAFETY: mlockall changes only how the kernel pages this process's memory; it
    // touches no Rust-visible state.
    if unsafe { libc::mlockall(libc::MCL_CURRENT) } != 0 {
        tracing::warn!(
            err = %std::io::Error::last_os_error(),
            "memory not locked (grant CAP_IPC_LOCK or raise LimitMEMLOCK; --lock-memory=false not to ask): \
             reclaim may page the coordinator's code out and stall requests while it faults back"
        );
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

fn cluster_command(command: ClusterCommand) -> anyhow::Result<()> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let (admin, path, method, body) = match command {
        ClusterCommand::AddNode { admin, id, raft, api } => {
            let body = serde_json::json!({ "id": id, "raft": raft.to_string(), "api": api.to_string() });
            (admin, "/api/cluster/nodes".to_owned(), reqwest::Method::POST, Some(body))
        }
        ClusterCommand::RemoveNode { admin, id } => (admin, format!("/api/cluster/nodes/{id}"), reqwest::Method::DELETE, None),
    };
    let token = match (&admin.token, &admin.jwt_secret) {
        (Some(token), _) => token.clone(),
        (None, secret) => {
            let file = admin.data_dir.join("jwt-secret");
            anyhow::ensure!(secret.is_some() || file.exists(), "no --token, no JWT_SECRET, and no {}", file.display());
            let key = api::jwt::JwtKey::load_or_create(secret.as_deref(), &file, Duration::from_secs(300))
                .context("the cluster's JWT secret")?;
            let admin = coordinator::store::auth::Principal {
                user_id: api::jwt::OPERATOR_USER_ID,
                name: "coordinator cluster".into(),
                role: coordinator::store::auth::Role::Admin,
            };
            key.issue(&admin, 0).0
        }
    };
    // Membership changes are made on the leader: find it through the member given.
    let base = admin.url.trim_end_matches('/');
    let cluster: serde_json::Value =
        client.get(format!("{base}/api/cluster")).send().and_then(|r| r.json()).context("asking the member for the cluster")?;
    let leader = cluster["leader"].as_u64().context("the cluster has no leader now; try again")?;
    let address = cluster["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"].as_u64() == Some(leader)))
        .and_then(|n| n["address"].as_str())
        .with_context(|| format!("no address for the leader, node {leader}"))?;
    let mut request = client.request(method, format!("http://{address}{path}")).bearer_auth(&token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let res = request.send().context("asking the leader")?;
    let status = res.status();
    let body: serde_json::Value = res.json().unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("refused ({status}): {}", body["error"]["message"].as_str().unwrap_or("no message"));
    }
    println!("{}", body["voters"]);
    Ok(())
}

struct LocalAgent {
    slots: Option<u32>,
    uid_base: u32,
    metrics_listen: SocketAddr,
}

async fn serve(args: ServeArgs, local: Option<LocalAgent>) -> anyhow::Result<()> {
    if args.lock_memory {
        lock_memory();
    }
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
    let raft_dir = args.data_dir.join("raft");
    let mut voters: Vec<u64> = args.peers.iter().map(|p| p.id).chain([args.node_id]).collect();
    voters.sort_unstable();
    if voters.windows(2).any(|w| w[0] == w[1]) || args.node_id == 0 {
        anyhow::bail!("raft node ids must be unique and not 0: {voters:?}");
    }
    if args.join {
        anyhow::ensure!(!args.peers.is_empty(), "--join needs --peer for the members");
        // No membership of its own: a node that is not a voter never campaigns, and the
        // leader's snapshot brings the real one.
        voters.clear();
    }
    let (log, recovery) = LogStore::open(&raft_dir, &voters).context("opening the raft log")?;
    tracing::info!(
        records = recovery.records,
        cut_bytes = recovery.truncated_bytes,
        snapshot = recovery.snapshot_index,
        "raft log opened"
    );
    let mut node = if args.peers.is_empty() {
        NodeConfig::single(args.node_id)
    } else {
        NodeConfig::cluster(args.node_id, voters)
    };
    node.snapshot_every = args.snapshot_every;
    let setup = ClusterSetup { node, store: log };
    let scheduler = Scheduler::start(
        Arc::new(hub.clone()),
        SchedulerConfig { max_queued: args.max_queued, ..SchedulerConfig::default() },
        system_clock(),
        metrics,
        setup,
    )
    .context("starting the raft node")?;
    if !args.peers.is_empty() {
        let listen = args.raft_listen.context("--raft-listen is needed with --peer")?;
        let peers: Vec<(u64, SocketAddr)> = args.peers.iter().map(|p| (p.id, p.raft)).collect();
        let transport = Transport::start(args.node_id, listen, &peers, &tls, scheduler.raft_inbox())
            .with_context(|| format!("starting the raft transport on {listen}"))?;
        scheduler.set_raft_transport(transport);
    }
    // The first receiver: it holds the completions of the log's replay too.
    let completions = scheduler.completions();
    let mut epoch = None;
    if let Some(store) = &store {
        // The cluster's stream: naming the cluster needs a leader (a quorum of the peers).
        let cluster = if args.join {
            // Not a member yet, so it cannot propose: the members know the name.
            cluster_id_of_peers(&args.peers).await?
        } else {
            scheduler.cluster_id(Duration::from_secs(120)).await.context("naming the cluster")?
        };
        let stream = store.cluster_stream(&cluster).await.context("the cluster's projection stream")?;
        tracing::info!(cluster = %cluster, stream, "projecting into the cluster's stream");
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
    if let Some(store) = &store {
        live.set_store(store.clone());
    }
    live.set_auth(api::Authn::new(options.auth.clone(), store.clone()));
    // The same caps (and the same per-caller budget of unfinished runs) as the REST API.
    live.set_run_caps(options.run_caps(&caps));
    if let Some(limiter) = options.limiter() {
        live.set_rate_limiter(limiter);
    }
    // Live data passes the runner (which keeps the returned values of the REST API's runs)
    // on its way to the WebSocket hub.
    let runner = coordinator::runner::Runner::new(scheduler.clone());
    runner.forward_to(live.clone());
    hub.set_live(runner.clone());
    let peer_apis = args.peers.iter().map(|p| PeerApi { id: p.id, api: p.api.to_string() }).collect();
    let mut options = options;
    options.cluster = Some(ClusterApi::new(scheduler.clone(), api_addr.to_string(), peer_apis));
    options.dashboard = epoch.map(|epoch| api::DashboardSetup { runner, epoch, limits: api::DashboardLimits::default() });
    // /ws first: the API router ends in a catch-all.
    let router = salvo::Router::new()
        .push(salvo::Router::with_path("ws").goal(live.handler()))
        .push(api::router_with_options(scheduler, spec, caps, Judge0Config::default(), store.clone(), options));
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
        Some(l) => Some(spawn_local_agent(&args.data_dir, &tls, &[hub.local_addr()], l)?),
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
                    agent = Some(spawn_local_agent(&args.data_dir, &tls, &[hub.local_addr()], l)?);
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

/// `up --nodes N`: N coordinators as children sharing one cluster CA, and one agent that
/// knows all of them (its link moves to the next when one is unreachable). A child that
/// dies is restarted, as systemd would.
async fn supervise(args: ServeArgs, nodes: u32, local: LocalAgent) -> anyhow::Result<()> {
    create_private_dir(&args.data_dir)?;
    let tls = ClusterTls::load_or_create_with_names(&args.data_dir, &args.tls_names).context("cluster TLS")?;
    let ip = args.listen.ip();
    let base = args.listen.port();
    let addr = |k: u32, offset: u16| SocketAddr::new(ip, base + offset + k as u16 - 1);
    let exe = std::env::current_exe().context("locating this binary")?;
    // The nodes are `serve`s: they get `up`'s access rules explicitly, and one session
    // secret, so a login on one node is good on all.
    let (options, _) = api_options(&args, true)?;
    let secret_file = args.data_dir.join("jwt-secret");
    if args.access.jwt_secret.is_none() {
        api::jwt::JwtKey::load_or_create(None, &secret_file, Duration::from_secs(args.access.session_ttl.max(1)))
            .context("the login session secret")?;
    }
    let a = &args.access;
    let mut access = vec![
        format!("--allow-anonymous={}", options.auth.allow_anonymous),
        format!("--session-ttl={}", a.session_ttl),
        format!("--rate-limit-window={}", a.rate_limit_window),
    ];
    access.extend(a.rate_limit_max.map(|v| format!("--rate-limit-max={v}")));
    access.extend(a.max_execution_time.map(|v| format!("--max-execution-time={v}")));
    access.extend(a.max_memory_usage.map(|v| format!("--max-memory-usage={v}")));
    access.extend(a.max_concurrent_executions.map(|v| format!("--max-concurrent-executions={v}")));
    access.extend(a.cors_origins.iter().map(|o| format!("--cors-origin={o}")));
    let mut children: Vec<ChildSpec> = Vec::new();
    for k in 1..=nodes {
        let dir = args.data_dir.join(format!("node{k}"));
        create_private_dir(&dir)?;
        // Every node's certificates come from the one cluster CA.
        let node_tls = dir.join("tls");
        create_private_dir(&node_tls)?;
        for file in ["ca.pem", "ca.key"] {
            std::fs::copy(args.data_dir.join("tls").join(file), node_tls.join(file))
                .with_context(|| format!("copying the cluster CA into {}", node_tls.display()))?;
        }
        let mut argv: Vec<String> = vec![
            "serve".into(),
            "--no-database".into(),
            format!("--data-dir={}", dir.display()),
            format!("--listen={}", addr(k, 0)),
            format!("--agent-listen={}", addr(k, 100)),
            format!("--raft-listen={}", addr(k, 200)),
            format!("--node-id={k}"),
        ];
        for j in (1..=nodes).filter(|&j| j != k) {
            argv.push(format!("--peer={j}={},{}", addr(j, 200), addr(j, 0)));
        }
        if let Some(rootfs) = &args.rootfs {
            argv.push(format!("--rootfs={}", rootfs.display()));
        }
        for name in &args.tls_names {
            argv.push(format!("--tls-name={name}"));
        }
        argv.extend(access.iter().cloned());
        // A secret given to `up` reaches the children through their environment (never
        // argv, which every user can read); else each node reads the one secret file.
        if a.jwt_secret.is_none() {
            std::fs::copy(&secret_file, dir.join("jwt-secret"))
                .with_context(|| format!("copying the session secret into {}", dir.display()))?;
        }
        children.push(ChildSpec {
            name: format!("coordinator {k}"),
            argv,
            jwt_secret: a.jwt_secret.clone(),
            child: None,
            restarts: 0,
        });
    }
    for spec in &mut children {
        spec.start(&exe)?;
    }
    println!(
        "judge cluster is up: {nodes} coordinators, APIs on {}",
        (1..=nodes).map(|k| format!("http://{}", addr(k, 0))).collect::<Vec<_>>().join(" ")
    );
    println!("cluster status: http://{}/api/cluster", addr(1, 0));
    let agent_links: Vec<SocketAddr> = (1..=nodes).map(|k| addr(k, 100)).collect();
    let mut agent = Some(spawn_local_agent(&args.data_dir, &tls, &agent_links, &local)?);
    let mut agent_restarts = 0u32;
    let signal = wait_for_signal();
    tokio::pin!(signal);
    enum Exit {
        Signal,
        Coordinator(usize, std::io::Result<std::process::ExitStatus>),
        Agent(std::io::Result<std::process::ExitStatus>),
    }
    loop {
        let exit = {
            let exits = children.iter_mut().enumerate().map(|(i, c)| Box::pin(async move { (i, c.wait().await) }));
            let any_child = futures_util::future::select_all(exits);
            let agent_exit = async {
                match agent.as_mut() {
                    Some(child) => child.wait().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut signal => Exit::Signal,
                ((i, status), _, _) = any_child => Exit::Coordinator(i, status),
                status = agent_exit => Exit::Agent(status),
            }
        };
        match exit {
            Exit::Signal => break,
            Exit::Coordinator(i, status) => {
                let spec = &mut children[i];
                tracing::error!(child = %spec.name, ?status, "coordinator exited; restarting it");
                spec.child = None;
                spec.restarts += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(spec.restarts.min(10)))).await;
                spec.start(&exe)?;
            }
            Exit::Agent(status) => {
                agent_restarts += 1;
                tracing::error!(?status, "local agent exited; restarting it");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(agent_restarts.min(10)))).await;
                agent = Some(spawn_local_agent(&args.data_dir, &tls, &agent_links, &local)?);
            }
        }
    }
    tracing::info!("stopping");
    if let Some(child) = agent.as_mut() {
        stop_child(child).await;
    }
    for spec in &mut children {
        if let Some(child) = spec.child.as_mut() {
            stop_child(child).await;
        }
    }
    Ok(())
}

/// A supervised coordinator child.
struct ChildSpec {
    name: String,
    argv: Vec<String>,
    jwt_secret: Option<String>,
    child: Option<tokio::process::Child>,
    restarts: u32,
}

impl ChildSpec {
    fn start(&mut self, exe: &Path) -> anyhow::Result<()> {
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(&self.argv).stdin(std::process::Stdio::null()).process_group(0).kill_on_drop(true);
        if let Some(secret) = &self.jwt_secret {
            cmd.env("JWT_SECRET", secret);
        }
        // SAFETY: runs in the forked child before exec and only calls prctl, which is
        // async-signal-safe; it allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                // Dies with us even on SIGKILL, like the local agent.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {}", self.name))?;
        tracing::info!(pid = child.id(), name = %self.name, "started");
        self.child = Some(child);
        Ok(())
    }

    async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        match self.child.as_mut() {
            Some(child) => child.wait().await,
            None => std::future::pending().await,
        }
    }
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
    coordinators: &[SocketAddr],
    local: &LocalAgent,
) -> anyhow::Result<tokio::process::Child> {
    let tls_dir = data_dir.join("agents").join("local");
    tls.issue_agent_cert("local", &tls_dir).context("issuing the local agent's certificate")?;
    let exe = std::env::current_exe().context("locating this binary")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("agent")
        .arg("--coordinator")
        .arg(coordinators.iter().map(SocketAddr::to_string).collect::<Vec<_>>().join(","))
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

/// The projection stream of this raft log. The log outlives restarts and replays its
/// completions after each, so the stream must too: a replayed completion is then a
/// duplicate of the (stream, submission id) key instead of a second history row. Kept
/// next to the log; a new stream only for a new log or a database that lacks it.
/// The cluster id, from the first member that answers (for a node joining a cluster).
async fn cluster_id_of_peers(peers: &[Peer]) -> anyhow::Result<String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        for peer in peers {
            let answer = client.get(format!("http://{}/api/cluster/self", peer.api)).send().await;
            if let Ok(r) = answer
                && let Ok(v) = r.json::<serde_json::Value>().await
                && let Some(id) = v["cluster_id"].as_str()
            {
                return Ok(id.to_owned());
            }
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "no member told the cluster id within 120 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn flags(text: &str) -> anyhow::Result<Vec<String>> {
        config_flags(text, &ServeArgs::augment_args(clap::Command::new("serve")))
    }

    fn serve_args(flags: &[String], command_line: &[&str]) -> ServeArgs {
        let argv = ["coordinator", "serve"].iter().map(|s| s.to_string()).chain(flags.iter().cloned());
        match Cli::try_parse_from(argv.chain(command_line.iter().map(|s| s.to_string()))).unwrap().command {
            Command::Serve(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn a_config_file_holds_serves_flags_and_the_command_line_wins() {
        let file = flags(
            r#"
            node-id = 2
            raft-listen = "10.0.0.2:3200"
            peer = ["1=10.0.0.1:3200,10.0.0.1:3001", "3=10.0.0.3:3200,10.0.0.3:3001"]
            no-database = true
            tls-name = ["judge.example.org"]
            rate-limit-max = 1000
            allow-anonymous = false
            "#,
        )
        .unwrap();
        let args = serve_args(&file, &[]);
        assert_eq!(args.node_id, 2);
        assert_eq!(args.raft_listen, Some("10.0.0.2:3200".parse().unwrap()));
        assert_eq!(args.peers.iter().map(|p| p.id).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(args.peers[1].api, "10.0.0.3:3001".parse::<SocketAddr>().unwrap());
        assert!(args.no_database);
        assert_eq!(args.tls_names, ["judge.example.org"]);
        assert_eq!(args.access.rate_limit_max, Some(1000));
        assert_eq!(args.access.allow_anonymous, Some(false));

        let args = serve_args(&file, &["--node-id", "5", "--peer", "4=10.0.0.4:3200,10.0.0.4:3001"]);
        assert_eq!(args.node_id, 5, "a single value: the command line's");
        assert_eq!(args.peers.len(), 3, "a list: the file's and the command line's");
    }

    #[test]
    fn config_mistakes_are_named() {
        let e = flags("node_id = 2").unwrap_err().to_string();
        assert!(e.contains("unknown key \"node_id\"") && e.contains("node-id"), "{e}");
        let e = flags("listen = [\"127.0.0.1:1\", \"127.0.0.1:2\"]").unwrap_err().to_string();
        assert!(e.contains("listen takes one value"), "{e}");
        let e = flags("[peer]\nid = 2").unwrap_err().to_string();
        assert!(e.contains("peer: want a string"), "{e}");
        assert!(flags("config = \"/etc/other.toml\"").is_err(), "no config file inside a config file");
        assert!(flags("help = true").is_err());
        // Values are checked by the flags' own parsers.
        let bad = flags("peer = [\"2=nowhere\"]").unwrap();
        assert!(Cli::try_parse_from(["coordinator", "serve"].into_iter().map(String::from).chain(bad)).is_err());
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let text = include_str!("../../deploy/config/coordinator.toml");
        let args = serve_args(&flags(text).unwrap(), &[]);
        assert_eq!(args.node_id, 1);
        assert_eq!(args.peers.iter().map(|p| p.id).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(args.raft_listen, Some("10.0.0.11:3200".parse().unwrap()));
        assert_eq!(args.data_dir, PathBuf::from("/var/lib/judge-cluster/coordinator"));
    }
}
