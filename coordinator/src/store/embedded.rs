//! A private PostgreSQL for one coordinator (or one test binary), started from the
//! installed server binaries when no `DATABASE_URL` is given.
//!
//! Layout: the cluster lives in `<data dir>/postgres` (owned by the `postgres` user, mode
//! 0700), its log in `<data dir>/postgres.log` (root's, 0600). PostgreSQL refuses to run
//! as root, so a root coordinator runs `initdb` and `postgres` as the `postgres` OS user
//! (set on the child with `setuid`/`setgid`, no shell in between); an unprivileged
//! coordinator runs them as itself. It listens on a unix socket only
//! (`listen_addresses=''`) in a private directory, `<data dir>/postgres-run` (or a temp
//! dir when that path is too long for a socket), so the port number only names the
//! socket file and never collides with anything. Connections over
//! that socket are trusted: only root and `postgres` can enter the directory.
//!
//! The postmaster is our direct child rather than a daemon started by `pg_ctl`: a
//! keeper thread forks it and waits on it, and the child carries `PR_SET_PDEATHSIG`
//! (SIGINT, PostgreSQL's fast shutdown), so even a coordinator killed with SIGKILL takes
//! its database down with it. `stop` (and `Drop`) does what `pg_ctl stop -m fast` does:
//! SIGINT, then SIGQUIT (immediate) and SIGKILL if it takes too long.
//!
//! The `postgres` user must be able to walk down to the cluster: as root, the data dir is
//! made 0711 (traverse, no listing; everything secret below it has its own 0700/0600
//! mode), and every ancestor is checked, with an error naming the one that blocks
//! (`chmod o+x` it, pick another `--data-dir`, or give `--database-url`).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where Debian's PostgreSQL 15 server binaries are.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The OS user the server runs as.
pub const OS_USER: &str = "postgres";
/// The database superuser `initdb` creates, and the database the store uses.
pub const DB_USER: &str = "judge";
pub const DB_NAME: &str = "judge";
/// Names the socket file only (`.s.PGSQL.5432`); there is no TCP listener.
const PORT: u16 = 5432;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("PostgreSQL server binaries not found: {0} (install postgresql-15 or give --database-url)")]
    NoBinaries(PathBuf),
    #[error("the OS user {OS_USER:?} does not exist (install postgresql-15 or give --database-url)")]
    NoOsUser,
    #[error(
        "the {OS_USER:?} user cannot traverse {dir} (mode {mode:o}); the embedded database lives below it. \
         Allow it (chmod o+x {dir}), choose another --data-dir, or give --database-url"
    )]
    NotTraversable { dir: PathBuf, mode: u32 },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{0} failed ({1}); see {2}")]
    Tool(&'static str, String, PathBuf),
    #[error("PostgreSQL exited during start-up ({0}); see {1}")]
    Exited(String, PathBuf),
    #[error("PostgreSQL not ready after {0:?}; see {1}")]
    NotReady(Duration, PathBuf),
    #[error("{0} belongs to uid {1}, not to {OS_USER:?}; fix its ownership or remove it")]
    WrongOwner(PathBuf, u32),
}

#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// The coordinator's data dir; the cluster goes into `postgres/` below it.
    pub data_dir: PathBuf,
    pub bin_dir: PathBuf,
    /// Off for tests only: no fsync, so a throw-away cluster costs less disk time.
    pub durable: bool,
    pub ready_timeout: Duration,
}

impl EmbeddedConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> EmbeddedConfig {
        EmbeddedConfig {
            data_dir: data_dir.into(),
            bin_dir: PathBuf::from(DEFAULT_BIN_DIR),
            durable: true,
            ready_timeout: Duration::from_secs(30),
        }
    }
}

/// A running private PostgreSQL. Stopped by `stop` or on drop.
pub struct EmbeddedPostgres {
    socket_dir: PathBuf,
    /// Set when the socket dir had to go to the temp dir (a long data dir path).
    socket_tmp: Option<tempfile::TempDir>,
    cluster_dir: PathBuf,
    log_path: PathBuf,
    keeper: Option<Keeper>,
}

struct Keeper {
    pid: u32,
    stop_tx: mpsc::Sender<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedPostgres {
    /// Initializes the cluster on first use, starts the server and waits until it accepts
    /// connections. Blocking (≈ 0.5 s for a fresh cluster); call it before serving.
    pub fn start(config: &EmbeddedConfig) -> Result<EmbeddedPostgres, EmbeddedError> {
        let initdb = config.bin_dir.join("initdb");
        if !initdb.is_file() {
            return Err(EmbeddedError::NoBinaries(initdb));
        }
        let data_dir = fs::canonicalize(&config.data_dir).map_err(io("resolving", &config.data_dir))?;
        // PostgreSQL refuses to run as root: as root we hand it to the `postgres` user; a
        // coordinator running unprivileged (a systemd unit with User=) runs it as itself.
        let (uid, gid) = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name(OS_USER).ok().flatten().ok_or(EmbeddedError::NoOsUser)?;
            let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
            // Traverse-only for others: the postgres user must pass through to its
            // cluster. Listing stays refused, and the keys and job files below have their
            // own 0700/0600 modes.
            set_mode(&data_dir, 0o711)?;
            check_traversable(&data_dir, uid, gid)?;
            (uid, gid)
        } else {
            (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw())
        };

        let cluster_dir = data_dir.join("postgres");
        let log_path = data_dir.join("postgres.log");
        prepare_cluster_dir(&cluster_dir, uid, gid)?;
        if !cluster_dir.join("PG_VERSION").exists() {
            let started = Instant::now();
            let mut cmd = Command::new(&initdb);
            cmd.arg("-D")
                .arg(&cluster_dir)
                .args(["-U", DB_USER, "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"])
            .current_dir(&cluster_dir);
            if !config.durable {
                cmd.arg("--no-sync");
            }
            run_as(&mut cmd, uid, gid, &log_path, "initdb")?;
            tracing::info!(dir = %cluster_dir.display(), duration_ms = started.elapsed().as_millis() as u64, "initialized the embedded PostgreSQL cluster");
        }
        remove_stale_pid_file(&cluster_dir);

        // A fresh socket dir per start: short path (sun_path is 107 bytes), never a stale
        // socket, and removed when we stop.
        let (socket_dir, socket_tmp) = socket_dir(&data_dir)?;
        // Only the server's user (and root) may enter: connections over the socket are
        // trusted, so reaching the socket is the whole of the access control.
        nix::unistd::chown(&socket_dir, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(|e| EmbeddedError::Io { what: "chown", path: socket_dir.clone(), source: e.into() })?;
        set_mode(&socket_dir, 0o700)?;

        let log = open_log(&log_path)?;
        let log_err = log.try_clone().map_err(io("opening", &log_path))?;
        let mut cmd = Command::new(config.bin_dir.join("postgres"));
        cmd.arg("-D")
            .arg(&cluster_dir)
            .arg("-k")
            .arg(&socket_dir)
            .args(["-p", &PORT.to_string(), "-c", "listen_addresses=", "-c", "max_connections=100"])
            // No JIT: it needs writable+executable memory (refused under systemd's
            // MemoryDenyWriteExecute) and buys nothing for our short queries.
            .args(["-c", "jit=off"]);
        if !config.durable {
            cmd.args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
        }
        cmd.current_dir(&cluster_dir).stdin(Stdio::null()).stdout(log).stderr(log_err).env_clear().env("LC_ALL", "C.UTF-8");
        if nix::unistd::geteuid().is_root() {
            cmd.uid(uid).gid(gid);
        }
        // SAFETY: prctl is async-signal-safe and touches only this (child) process. It runs
        // after std's setuid (which would reset the death signal), just before exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let keeper = Keeper::spawn(cmd, log_path.clone())?;
        let mut pg = EmbeddedPostgres { socket_dir, socket_tmp, cluster_dir, log_path, keeper: Some(keeper) };
        if let Err(e) = pg.wait_ready(config) {
            pg.stop();
            return Err(e);
        }
        tracing::info!(socket = %pg.socket_dir().display(), "embedded PostgreSQL is up");
        Ok(pg)
    }

    /// The directory holding the server's unix socket (the `host` of a connection).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn port(&self) -> u16 {
        PORT
    }

    pub fn cluster_dir(&self) -> &Path {
        &self.cluster_dir
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.keeper.as_ref().map(|k| k.pid)
    }

    /// Connection settings for `tokio_postgres` / the pool.
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host_path(self.socket_dir()).port(PORT).user(DB_USER).dbname(DB_NAME);
        c
    }

    fn wait_ready(&mut self, config: &EmbeddedConfig) -> Result<(), EmbeddedError> {
        let started = Instant::now();
        let isready = config.bin_dir.join("pg_isready");
        loop {
            if let Some(k) = &self.keeper
                && let Some(status) = k.exited()
            {
                return Err(EmbeddedError::Exited(status, self.log_path.clone()));
            }
            // The socket appears once the postmaster listens; pg_isready then tells when
            // start-up (recovery included) is over.
            if self.socket_dir().join(format!(".s.PGSQL.{PORT}")).exists() {
                let ok = Command::new(&isready)
                    .arg("-q")
                    .arg("-h")
                    .arg(self.socket_dir())
                    .args(["-p", &PORT.to_string(), "-U", DB_USER, "-d", "postgres"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    break;
                }
            }
            if started.elapsed() > config.ready_timeout {
                return Err(EmbeddedError::NotReady(config.ready_timeout, self.log_path.clone()));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.ensure_database(config)
    }

    /// `initdb` makes only `postgres`; the store's database is created once.
    fn ensure_database(&self, config: &EmbeddedConfig) -> Result<(), EmbeddedError> {
        let psql = config.bin_dir.join("psql");
        let query = |sql: &str| {
            Command::new(&psql)
                .arg("-h")
                .arg(self.socket_dir())
                .args(["-p", &PORT.to_string(), "-U", DB_USER, "-d", "postgres", "-tAq", "-v", "ON_ERROR_STOP=1", "-c", sql])
                .stderr(Stdio::piped())
                .output()
                .map_err(io("running", &psql))
        };
        let out = query(&format!("SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"))?;
        if !out.status.success() {
            return Err(EmbeddedError::Tool("psql", String::from_utf8_lossy(&out.stderr).trim().to_owned(), self.log_path.clone()));
        }
        if String::from_utf8_lossy(&out.stdout).trim() != "1" {
            let out = query(&format!("CREATE DATABASE {DB_NAME}"))?;
            if !out.status.success() {
                return Err(EmbeddedError::Tool("createdb", String::from_utf8_lossy(&out.stderr).trim().to_owned(), self.log_path.clone()));
            }
        }
        Ok(())
    }

    /// Fast shutdown, like `pg_ctl stop -m fast`; waits for the server to exit. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut keeper) = self.keeper.take() {
            let (done_tx, done_rx) = mpsc::channel();
            if keeper.stop_tx.send(done_tx).is_ok() {
                let _ = done_rx.recv();
            }
            if let Some(t) = keeper.thread.take() {
                let _ = t.join();
            }
            tracing::info!("embedded PostgreSQL stopped");
        }
        if let Some(dir) = self.socket_tmp.take() {
            let _ = dir.close();
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Keeper {
    /// Forks the server on a thread of its own that lives exactly as long as the server:
    /// PDEATHSIG fires when the *thread* that forked exits, so it must not be a pooled one.
    fn spawn(mut cmd: Command, log_path: PathBuf) -> Result<Keeper, EmbeddedError> {
        let (pid_tx, pid_rx) = mpsc::channel::<Result<u32, std::io::Error>>();
        let (stop_tx, stop_rx) = mpsc::channel::<mpsc::Sender<()>>();
        let thread = std::thread::Builder::new()
            .name("postgres-keeper".into())
            .spawn(move || {
                let mut child = match cmd.spawn() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = pid_tx.send(Err(e));
                        return;
                    }
                };
                let _ = pid_tx.send(Ok(child.id()));
                keep(&mut child, &stop_rx);
            })
            .map_err(io("spawning a thread for", &log_path))?;
        match pid_rx.recv() {
            Ok(Ok(pid)) => Ok(Keeper { pid, stop_tx, thread: Some(thread) }),
            Ok(Err(e)) => Err(EmbeddedError::Io { what: "starting postgres, log", path: log_path, source: e }),
            Err(_) => Err(EmbeddedError::Exited("keeper thread died".into(), log_path)),
        }
    }

    /// Whether the server has exited on its own (a description of how), without reaping.
    fn exited(&self) -> Option<String> {
        match nix::sys::wait::waitid(
            nix::sys::wait::Id::Pid(nix::unistd::Pid::from_raw(self.pid as i32)),
            nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOHANG | nix::sys::wait::WaitPidFlag::WNOWAIT,
        ) {
            Ok(nix::sys::wait::WaitStatus::StillAlive) => None,
            Ok(status) => Some(format!("{status:?}")),
            Err(e) => Some(e.to_string()),
        }
    }
}

/// The keeper thread's life: wait for a stop request (answering it once the server is
/// gone) and notice if the server dies on its own.
fn keep(child: &mut Child, stop_rx: &mpsc::Receiver<mpsc::Sender<()>>) {
    loop {
        match stop_rx.recv_timeout(Duration::from_millis(500)) {
            Ok(done) => {
                shut_down(child);
                let _ = done.send(());
                return;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                shut_down(child);
                return;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Peek without reaping, so `Keeper::exited` can see it too.
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                let flags = nix::sys::wait::WaitPidFlag::WEXITED
                    | nix::sys::wait::WaitPidFlag::WNOHANG
                    | nix::sys::wait::WaitPidFlag::WNOWAIT;
                if let Ok(status) = nix::sys::wait::waitid(nix::sys::wait::Id::Pid(pid), flags)
                    && status != nix::sys::wait::WaitStatus::StillAlive
                {
                    tracing::error!(?status, "embedded PostgreSQL exited unexpectedly");
                    // Keep the thread (and the unreaped zombie) until asked to stop, so the
                    // pid is never reused under our feet.
                    if let Ok(done) = stop_rx.recv() {
                        let _ = child.wait();
                        let _ = done.send(());
                    } else {
                        let _ = child.wait();
                    }
                    return;
                }
            }
        }
    }
}

/// SIGINT (fast shutdown: disconnect clients, checkpoint), then SIGQUIT (immediate),
/// then SIGKILL, each after a pause; always reaps.
fn shut_down(child: &mut Child) {
    for (signal, wait) in [(libc::SIGINT, Duration::from_secs(30)), (libc::SIGQUIT, Duration::from_secs(5))] {
        // SAFETY: our own child, not yet reaped (we reap only below), so the pid is ours.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!(signal, "embedded PostgreSQL did not stop in time");
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> EmbeddedError + 'a {
    move |source| EmbeddedError::Io { what, path: path.to_owned(), source }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), EmbeddedError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io("chmod", path))
}

/// Where the server's socket goes: `<data dir>/postgres-run`, recreated empty at each
/// start (a killed server may leave its socket and lock file), so nothing accumulates
/// outside the data dir. A socket path is at most 107 bytes, so for a long data dir path
/// a fresh temp dir is used instead, removed at stop.
fn socket_dir(data_dir: &Path) -> Result<(PathBuf, Option<tempfile::TempDir>), EmbeddedError> {
    let in_data = data_dir.join("postgres-run");
    if in_data.join(format!(".s.PGSQL.{PORT}.lock")).as_os_str().len() < 100 {
        if in_data.exists() {
            fs::remove_dir_all(&in_data).map_err(io("removing", &in_data))?;
        }
        fs::create_dir(&in_data).map_err(io("creating", &in_data))?;
        return Ok((in_data, None));
    }
    let tmp = tempfile::Builder::new().prefix("judge-pg-").tempdir().map_err(io("creating", Path::new("socket dir")))?;
    Ok((tmp.path().to_owned(), Some(tmp)))
}

/// Every ancestor of `dir` (and `dir`) must let uid/gid search it.
fn check_traversable(dir: &Path, uid: u32, gid: u32) -> Result<(), EmbeddedError> {
    for d in dir.ancestors() {
        let meta = fs::metadata(d).map_err(io("reading", d))?;
        let mode = meta.mode() & 0o7777;
        let ok = if meta.uid() == uid {
            mode & 0o100 != 0
        } else if meta.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !ok {
            return Err(EmbeddedError::NotTraversable { dir: d.to_owned(), mode });
        }
    }
    Ok(())
}

/// Creates `<data dir>/postgres` for the server user; a half-initialized one (a killed
/// `initdb`, no PG_VERSION) is emptied so `initdb` can run again.
fn prepare_cluster_dir(dir: &Path, uid: u32, gid: u32) -> Result<(), EmbeddedError> {
    match fs::metadata(dir) {
        Ok(meta) => {
            if meta.uid() != uid {
                return Err(EmbeddedError::WrongOwner(dir.to_owned(), meta.uid()));
            }
            if !dir.join("PG_VERSION").exists() {
                tracing::warn!(dir = %dir.display(), "incomplete PostgreSQL cluster; initializing it again");
                fs::remove_dir_all(dir).map_err(io("removing", dir))?;
                return prepare_cluster_dir(dir, uid, gid);
            }
        }
        Err(_) => {
            fs::create_dir(dir).map_err(io("creating", dir))?;
            nix::unistd::chown(dir, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)))
                .map_err(|e| EmbeddedError::Io { what: "chown", path: dir.to_owned(), source: e.into() })?;
        }
    }
    set_mode(dir, 0o700)
}

/// A postmaster.pid left by a server that is gone (a killed coordinator whose server
/// could not shut down, a reboot). PostgreSQL clears one whose pid is dead, but not one
/// whose pid now belongs to an unrelated process; only remove it when no postgres
/// process of ours holds it.
fn remove_stale_pid_file(cluster_dir: &Path) {
    let pid_file = cluster_dir.join("postmaster.pid");
    let Ok(text) = fs::read_to_string(&pid_file) else { return };
    let Some(pid) = text.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) else {
        let _ = fs::remove_file(&pid_file);
        return;
    };
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let is_postgres = cmdline.split(|b| *b == 0).next().is_some_and(|argv0| argv0.ends_with(b"postgres"));
    let ours = String::from_utf8_lossy(&cmdline).contains(&*cluster_dir.to_string_lossy());
    if is_postgres && ours {
        // Still running (its coordinator died without taking it down): stop it, fast.
        tracing::warn!(pid, "a PostgreSQL server of this data dir is still running; stopping it");
        // SAFETY: plain kill(2) on a pid we just checked belongs to our cluster's postmaster.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    } else {
        tracing::warn!(pid, "removing a stale postmaster.pid");
        let _ = fs::remove_file(&pid_file);
    }
}

/// A process that exists and is not a zombie.
fn alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the parenthesized command name, which may itself hold ") ".
    stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
}

/// The server's log is root's and private: it may quote statements and their data.
fn open_log(path: &Path) -> Result<fs::File, EmbeddedError> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(io("opening", path))
}

/// Runs a one-shot tool as the server user, its output appended to the log.
fn run_as(cmd: &mut Command, uid: u32, gid: u32, log_path: &Path, what: &'static str) -> Result<(), EmbeddedError> {
    let log = open_log(log_path)?;
    let log_err = log.try_clone().map_err(io("opening", log_path))?;
    if nix::unistd::geteuid().is_root() {
        cmd.uid(uid).gid(gid);
    }
    let status = cmd
        .env_clear()
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .status()
        .map_err(io("running", Path::new(what)))?;
    if !status.success() {
        return Err(EmbeddedError::Tool(what, status.to_string(), log_path.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config(dir: &Path) -> EmbeddedConfig {
        let mut c = EmbeddedConfig::new(dir);
        c.durable = false;
        c
    }

    fn psql(pg: &EmbeddedPostgres, sql: &str) -> String {
        let out = Command::new(Path::new(DEFAULT_BIN_DIR).join("psql"))
            .arg("-h")
            .arg(pg.socket_dir())
            .args(["-U", DB_USER, "-d", DB_NAME, "-tAq", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    #[test]
    fn keeps_data_across_restarts_and_survives_a_stale_or_orphaned_server() {
        let dir = tempfile::tempdir().unwrap();
        let mut pg = EmbeddedPostgres::start(&config(dir.path())).unwrap();
        let meta = fs::metadata(pg.cluster_dir()).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(dir.path()).unwrap().mode() & 0o777, 0o711);
        psql(&pg, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)");
        let pid = pg.pid().unwrap() as i32;
        let socket = pg.socket_dir().to_owned();
        pg.stop();
        assert!(!alive(pid), "server still running after stop");
        assert!(socket.starts_with(fs::canonicalize(dir.path()).unwrap()), "{}", socket.display());
        assert_eq!(fs::metadata(&socket).unwrap().mode() & 0o777, 0o700);
        assert!(!socket.join(".s.PGSQL.5432").exists(), "socket left behind");

        // A postmaster.pid naming a dead process (a crash, a reboot).
        fs::write(dir.path().join("postgres/postmaster.pid"), format!("{}\n", i32::MAX - 1)).unwrap();
        let pg = EmbeddedPostgres::start(&config(dir.path())).unwrap();
        assert_eq!(psql(&pg, "SELECT x FROM kept"), "42");

        // A server whose coordinator died without stopping it (forgotten, so no stop):
        // the next start stops it and starts afresh.
        let orphan = pg.pid().unwrap() as i32;
        std::mem::forget(pg);
        let mut pg = EmbeddedPostgres::start(&config(dir.path())).unwrap();
        assert!(!alive(orphan), "the orphaned server was not stopped");
        assert_eq!(psql(&pg, "SELECT x FROM kept"), "42");
        pg.stop();
    }

    #[test]
    fn an_untraversable_parent_is_named_in_the_error() {
        let outer = tempfile::tempdir().unwrap();
        fs::set_permissions(outer.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let data = outer.path().join("data");
        fs::create_dir(&data).unwrap();
        let err = EmbeddedPostgres::start(&config(&data)).err().unwrap();
        match &err {
            EmbeddedError::NotTraversable { dir, .. } => assert_eq!(dir, &fs::canonicalize(outer.path()).unwrap()),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("chmod o+x"), "{err}");
    }

    #[test]
    fn missing_binaries_are_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.bin_dir = PathBuf::from("/nonexistent/bin");
        let err = EmbeddedPostgres::start(&c).err().unwrap();
        assert!(matches!(err, EmbeddedError::NoBinaries(_)), "{err:?}");
    }
}
