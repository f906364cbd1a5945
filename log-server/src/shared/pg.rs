//! PostgreSQL for the shared driver: a connection pool whose schema is migrated on connect, the
//! integrator's lease (a session advisory lock on a connection of its own), and LISTEN/NOTIFY
//! with reconnection.
//!
//! Connections use TLS when the server offers it (rustls, through tokio-postgres-rustls), and
//! the server's certificate is always verified, against the CA certificates of the URL's
//! `sslrootcert=FILE` or else the Mozilla roots: `sslmode=disable` is plain TCP, `prefer` (the
//! default) TLS when the server offers it, `require` (also `verify-ca` and `verify-full`, as
//! libpq spells them) TLS or no connection ([`Db::connect_with_pool_size`]).
//!
//! No message from this module contains the password of the URL: the URL is shown with it
//! removed ([`Db::redacted_url`]).

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

/// A connection's stream: TLS or plain, as the connection negotiated it.
type PgStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// The pool's size when the caller does not choose one ([`Db::connect`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

/// The advisory lock key taken (transaction-scoped) while migrating: lease keys must differ.
/// ASCII "counters".
pub const MIGRATION_LOCK_KEY: i64 = 0x636f_756e_7465_7273;

/// A connection attempt gives up after this long when the URL sets no `connect_timeout`, so an
/// unreachable host is an error rather than a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Db::client`] waits for a free connection of a busy pool.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// Checking a pooled connection before handing it out: one that does not answer in time is
/// dropped (a half-open TCP connection would otherwise hang its next user).
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalive on every connection, so a peer that vanished without closing (a partition, a
/// dead host) is noticed in about 25 s rather than the kernel's 2 hours: the lease depends on it.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;
/// How long [`Lease::confirm`] waits for its round trip.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// The listener's reconnection backoff: the first delay, doubled up to the last.
const LISTEN_BACKOFF_FIRST: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Notices a [`Listener`] holds for a slow caller; past that it drops them and yields
/// [`Notice::Reconnected`] instead, so a stalled caller never stalls the connection.
const LISTEN_QUEUE: usize = 1024;

/// One step of the schema: applied once per database, in `version` order.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Its place in the order: positive, and increasing along the list given to
    /// [`Db::connect`]. Recorded in `schema_migrations`.
    pub version: i32,
    /// A short name, recorded beside the version and compared on every connect.
    pub name: &'static str,
    /// The statements, run as one batch inside the migration's transaction.
    pub sql: &'static str,
}

/// What went wrong talking to PostgreSQL. No variant's text contains the URL's password.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbError {
    /// The database could not be reached or refused the login (names the host and port), or
    /// the URL is not one this module can use.
    Connect(String),
    /// A statement failed, or the connection broke while running it.
    Query(String),
    /// The database's schema is not one this binary can use: newer than it knows, or a
    /// migration recorded under another name; or the binary's migration list is malformed.
    Schema(String),
    /// The pool gave no connection in time.
    Pool(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Connect(m) => write!(f, "cannot connect to PostgreSQL: {m}"),
            DbError::Query(m) => write!(f, "PostgreSQL query failed: {m}"),
            DbError::Schema(m) => write!(f, "PostgreSQL schema: {m}"),
            DbError::Pool(m) => write!(f, "PostgreSQL connection pool: {m}"),
        }
    }
}

impl std::error::Error for DbError {}

impl DbError {
    /// Whether the database could not be reached or the connection broke (as opposed to a
    /// statement the database refused): the operation may succeed when retried.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Connect(_) | DbError::Pool(_))
    }
}

impl From<DbError> for crate::storage::StorageError {
    /// An unreachable database is [`StorageError::Unavailable`](crate::storage::StorageError::Unavailable)
    /// (a 503); anything else a storage failure.
    fn from(e: DbError) -> Self {
        if e.is_unavailable() {
            crate::storage::StorageError::Unavailable(e.to_string())
        } else {
            crate::storage::StorageError::Db(e.to_string())
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    /// A failed statement. tokio-postgres never puts the password in an error, so none is here.
    fn from(e: tokio_postgres::Error) -> Self {
        if e.is_closed() {
            // The connection broke under the statement: the database went away.
            DbError::Connect(describe(&e))
        } else {
            DbError::Query(describe(&e))
        }
    }
}

/// The whole of a tokio-postgres error: its `Display` says only the kind ("db error"), the
/// server's message and the I/O cause are in its sources.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The database of the shared driver: a pool of connections, and the settings to open the
/// dedicated connections of leases and listeners. Cheap to clone (all clones share the pool).
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    target: Arc<Target>,
}

/// Where the connections go, with what to say about it.
struct Target {
    config: Config,
    /// TLS for the connections (used when the server offers it or `sslmode` requires it).
    tls: MakeRustlsConnect,
    /// The URL without its password.
    redacted: String,
    /// `host:port` of each host, for connection errors.
    endpoints: String,
    /// Removed from any message built from a connection error, in case one ever echoes it.
    password: Option<String>,
}

impl Target {
    /// A connection error, naming where it tried to connect.
    fn connect_error(&self, e: &tokio_postgres::Error) -> DbError {
        let mut text = format!("at {} ({}): {}", self.endpoints, self.redacted, describe(e));
        if let Some(p) = self.password.as_deref().filter(|p| !p.is_empty()) {
            text = text.replace(p, "***");
        }
        DbError::Connect(text)
    }

    fn pool_error(&self, e: PoolError) -> DbError {
        match e {
            PoolError::Backend(e) => self.connect_error(&e),
            PoolError::Timeout(t) => DbError::Pool(format!(
                "timed out ({t:?}) waiting for a connection to {}",
                self.endpoints
            )),
            e => DbError::Pool(e.to_string()),
        }
    }

    /// A connection of its own, outside the pool.
    async fn connect(&self) -> Result<(Client, Connection<Socket, PgStream>), DbError> {
        self.config
            .connect(self.tls.clone())
            .await
            .map_err(|e| self.connect_error(&e))
    }
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("url", &self.target.redacted)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Connects (a pool of at most [`DEFAULT_MAX_CONNECTIONS`]), then migrates the schema: see
    /// [`Db::connect_with_pool_size`].
    pub async fn connect(url: &str, migrations: &[Migration]) -> Result<Db, DbError> {
        Db::connect_with_pool_size(url, migrations, DEFAULT_MAX_CONNECTIONS).await
    }

    /// Connects to `url` (`postgres://user:password@host:port/dbname?…` or libpq's
    /// `key=value` form) with a pool of at most `max` connections, then applies every
    /// migration of `migrations` the database lacks, in order, each in its own transaction
    /// holding the transaction-scoped advisory lock [`MIGRATION_LOCK_KEY`], so instances
    /// starting together apply each migration once. The table `schema_migrations (version,
    /// name, applied_at)` records them.
    ///
    /// TLS: `sslmode=disable` connects in plain TCP; `prefer` (the default) uses TLS when the
    /// server offers it; `require`, `verify-ca` and `verify-full` use TLS or fail. With TLS the
    /// server's certificate must chain to a CA of `sslrootcert=FILE` (PEM, in the URL as libpq
    /// names it) or, without one, to the Mozilla roots, and name the host connected to:
    /// `verify-full`'s checks, whichever mode asked for TLS.
    ///
    /// Errors: [`DbError::Connect`] when the URL is malformed, its `sslrootcert` file unusable,
    /// the database cannot be reached, refuses the login or fails the TLS checks (naming host
    /// and port, never the password);
    /// [`DbError::Schema`] when the list is not in increasing positive versions, when the
    /// database records a version this binary does not know (naming both versions), or a
    /// version under another name; [`DbError::Query`] when a migration fails (its transaction
    /// is rolled back, earlier ones stay).
    pub async fn connect_with_pool_size(
        url: &str,
        migrations: &[Migration],
        max: usize,
    ) -> Result<Db, DbError> {
        let (url, root_file) = tls_options(url);
        let url = url.as_str();
        let mut config: Config = url
            .parse()
            .map_err(|e| DbError::Connect(format!("invalid database URL: {}", describe(&e))))?;
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let tls = tls_connector(root_file.as_deref())?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("countersign");
        }
        config
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES);
        let target = Target {
            tls: tls.clone(),
            redacted: redact(url, &config),
            endpoints: endpoints(&config),
            password,
            config,
        };
        // Verified: a pooled connection answers an empty query before it is handed out, so
        // the pool replaces connections that died (a database restart, a terminated backend)
        // by itself.
        let manager = Manager::from_config(
            target.config.clone(),
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(RECYCLE_TIMEOUT))
            .build()
            .map_err(|e| DbError::Pool(e.to_string()))?;
        let db = Db {
            pool,
            target: Arc::new(target),
        };
        db.migrate(migrations).await?;
        Ok(db)
    }

    /// A connection from the pool, checked alive; back to the pool when dropped.
    ///
    /// Errors: [`DbError::Connect`] when a new connection cannot be opened,
    /// [`DbError::Pool`] when none is free in time.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        self.pool.get().await.map_err(|e| self.target.pool_error(e))
    }

    /// The URL given to [`Db::connect`] without its password, for logs and messages.
    pub fn redacted_url(&self) -> &str {
        &self.target.redacted
    }

    async fn migrate(&self, migrations: &[Migration]) -> Result<(), DbError> {
        let mut known = 0;
        for m in migrations {
            if m.version <= known {
                return Err(DbError::Schema(format!(
                    "migration {} ({}) does not follow version {known}: versions must be positive and increasing",
                    m.version, m.name
                )));
            }
            known = m.version;
        }
        let mut client = self.client().await?;
        {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
                .await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version int PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )",
            )
            .await?;
            let applied = tx
                .query(
                    "SELECT version, name FROM schema_migrations ORDER BY version",
                    &[],
                )
                .await?;
            for row in applied {
                let version: i32 = row.try_get(0)?;
                let name: String = row.try_get(1)?;
                match migrations.iter().find(|m| m.version == version) {
                    None => {
                        return Err(DbError::Schema(format!(
                            "the database is at schema version {version} ({name}), which this \
                             binary does not know (it knows versions up to {known}): run a newer \
                             binary"
                        )))
                    }
                    Some(m) if m.name != name => {
                        return Err(DbError::Schema(format!(
                            "schema version {version} is recorded as {name:?} but this binary \
                             calls it {:?}",
                            m.name
                        )))
                    }
                    Some(_) => {}
                }
            }
            tx.commit().await?;
        }
        for m in migrations {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
                .await?;
            // Another instance may have applied it while this one waited for the lock.
            let done = tx
                .query_opt(
                    "SELECT 1 FROM schema_migrations WHERE version = $1",
                    &[&m.version],
                )
                .await?
                .is_some();
            if done {
                tx.rollback().await?;
                continue;
            }
            tx.batch_execute(m.sql).await.map_err(|e| {
                DbError::Query(format!(
                    "migration {} ({}): {}",
                    m.version,
                    m.name,
                    describe(&e)
                ))
            })?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )
            .await?;
            tx.commit().await?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied schema migration"
            );
        }
        Ok(())
    }

    /// Tries to take the session advisory lock `key` on a connection of its own (not from the
    /// pool, so the lock lives exactly as long as that connection). `None` when another
    /// session holds it. The lock is released by [`Lease::release`], by dropping the
    /// [`Lease`], or by the database when the connection ends (the holder crashed).
    ///
    /// Errors: [`DbError::Connect`] when the connection cannot be opened, [`DbError::Query`]
    /// when the attempt fails.
    pub async fn try_lease(&self, key: i64) -> Result<Option<Lease>, DbError> {
        let (client, connection) = self.target.connect().await?;
        let (closed_tx, closed) = watch::channel(false);
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %describe(&e), "lease connection ended");
            }
            let _ = closed_tx.send(true);
        });
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1), pg_backend_pid()", &[&key])
            .await?;
        let taken: bool = row.try_get(0)?;
        let backend_pid: i32 = row.try_get(1)?;
        if !taken {
            return Ok(None);
        }
        Ok(Some(Lease {
            client,
            key,
            backend_pid,
            closed,
            _task: task,
        }))
    }

    /// A connection of its own, outside the pool, for session state that must outlive one
    /// statement (advisory locks held across statements). It closes when dropped.
    ///
    /// Errors: [`DbError::Connect`] when it cannot be opened.
    pub async fn dedicated(&self) -> Result<Dedicated, DbError> {
        let (client, connection) = self.target.connect().await?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %describe(&e), "dedicated connection ended");
            }
        });
        Ok(Dedicated {
            client,
            _task: AbortOnDrop(task),
        })
    }

    /// A connection of its own LISTENing on `channel`, reconnecting by itself when it is lost
    /// (see [`Listener::next`]). The channel name is taken as is (quoted, so case matters), as
    /// [`notify`] sends it.
    ///
    /// Errors: [`DbError::Connect`] when the first connection cannot be opened,
    /// [`DbError::Query`] when LISTEN fails; later failures are retried, not reported.
    pub async fn listen(&self, channel: &str) -> Result<Listener, DbError> {
        let sql = format!("LISTEN \"{}\"", channel.replace('"', "\"\""));
        let session = open_listen(&self.target, &sql).await?;
        let (tx, rx) = mpsc::channel(LISTEN_QUEUE);
        let task = tokio::spawn(pump(self.target.clone(), sql, session, tx));
        Ok(Listener { rx, task })
    }
}

/// `url` without its password, for messages.
/// Takes what tokio-postgres does not parse out of a database URL (either form): the
/// `sslrootcert=FILE` option, returned apart, and libpq's `sslmode=verify-ca|verify-full`,
/// rewritten `require` (the certificate is verified in every TLS mode here). Every other option
/// is left byte for byte as it was (a quoted password with spaces included); a `key=value`
/// string that does not parse is returned as it is, for tokio-postgres to name the fault.
fn tls_options(url: &str) -> (String, Option<std::path::PathBuf>) {
    let verify = |mode: &str| matches!(mode, "verify-ca" | "verify-full");
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), None);
        };
        let mut root = None;
        let mut kept = Vec::new();
        for opt in query.split('&') {
            match opt.split_once('=') {
                Some(("sslrootcert", v)) => {
                    let path = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
                    root = Some(std::path::PathBuf::from(path.into_owned()));
                }
                Some(("sslmode", m)) if verify(m) => kept.push("sslmode=require"),
                _ => kept.push(opt),
            }
        }
        let out = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (out, root);
    }
    let Some(options) = kv_options(url) else {
        return (url.to_owned(), None);
    };
    let (mut out, mut root, mut at) = (String::with_capacity(url.len()), None, 0);
    for o in options {
        match (o.key, unquote(&url[o.value.clone()])) {
            ("sslrootcert", path) => {
                out.push_str(&url[at..o.all.start]);
                root = Some(std::path::PathBuf::from(path));
                at = o.all.end;
            }
            ("sslmode", mode) if verify(&mode) => {
                out.push_str(&url[at..o.value.start]);
                out.push_str("require");
                at = o.value.end;
            }
            _ => {}
        }
    }
    out.push_str(&url[at..]);
    (out, root)
}

/// One option of libpq's `key=value` connection string: its key, the bytes it spans, and the
/// bytes of its value (quotes included).
struct KvOption<'a> {
    key: &'a str,
    all: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
}

/// The options of a `key=value` connection string, as libpq reads it: whitespace between
/// options and around `=`, a value either single-quoted (`\'` and `\\` escaped) or up to the
/// next whitespace. `None` if it does not parse.
fn kv_options(s: &str) -> Option<Vec<KvOption<'_>>> {
    let b = s.as_bytes();
    let skip_ws = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut out = Vec::new();
    let mut i = skip_ws(0);
    while i < b.len() {
        let start = i;
        while b
            .get(i)
            .is_some_and(|c| *c != b'=' && !c.is_ascii_whitespace())
        {
            i += 1;
        }
        let key = &s[start..i];
        i = skip_ws(i);
        if key.is_empty() || b.get(i) != Some(&b'=') {
            return None;
        }
        i = skip_ws(i + 1);
        let value_start = i;
        if b.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match b.get(i)? {
                    b'\\' => i += 2,
                    b'\'' => break i += 1,
                    _ => i += 1,
                }
            }
        } else {
            while let Some(c) = b.get(i).filter(|c| !c.is_ascii_whitespace()) {
                i += if *c == b'\\' { 2 } else { 1 };
            }
        }
        let end = i.min(b.len());
        out.push(KvOption {
            key,
            all: start..end,
            value: value_start..end,
        });
        i = skip_ws(end);
    }
    Some(out)
}

/// A `key=value` string's value as libpq reads it: outer single quotes removed, backslash
/// escapes undone.
fn unquote(v: &str) -> String {
    let inner = v
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(v);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// The TLS connector: rustls with ring, trusting the CA certificates of `root_file` (PEM), or
/// the Mozilla roots without one.
fn tls_connector(root_file: Option<&std::path::Path>) -> Result<MakeRustlsConnect, DbError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match root_file {
        Some(path) => {
            let unusable =
                |e: String| DbError::Connect(format!("sslrootcert {}: {e}", path.display()));
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| unusable(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| unusable(e.to_string()))?;
            if certs.is_empty() {
                return Err(unusable("holds no PEM certificate".into()));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| unusable(format!("not a CA certificate: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| DbError::Connect(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn redact(url: &str, config: &Config) -> String {
    if let Ok(mut u) = url::Url::parse(url) {
        if matches!(u.scheme(), "postgres" | "postgresql") {
            if u.password().is_some() {
                let _ = u.set_password(None);
            }
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .filter(|(k, _)| k != "password")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if pairs.is_empty() {
                u.set_query(None);
            } else {
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            return u.to_string();
        }
    }
    // libpq's key=value form, or a URL the url crate does not take (several hosts): rebuilt
    // from what was parsed.
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    format!(
        "postgres://{user}{}/{}",
        endpoints(config).replace(' ', ""),
        config.get_dbname().unwrap_or("")
    )
}

/// `host:port` of each host (libpq's defaults: port 5432, and one port for all hosts).
fn endpoints(config: &Config) -> String {
    let ports = config.get_ports();
    let port = |i: usize| match ports {
        [] => 5432,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(5432),
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| match h {
            Host::Tcp(name) => format!("{name}:{}", port(i)),
            #[cfg(unix)]
            Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port(i)),
        })
        .collect();
    if hosts.is_empty() {
        format!("localhost:{}", port(0))
    } else {
        hosts.join(", ")
    }
}

/// A session advisory lock held on a connection of its own: the integrator's lease. Dropping
/// it closes the connection, which releases the lock.
pub struct Lease {
    client: Client,
    key: i64,
    backend_pid: i32,
    /// Turns true (or its sender goes) when the connection has ended.
    closed: watch::Receiver<bool>,
    /// Drives the connection; ends with it.
    _task: JoinHandle<()>,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("backend_pid", &self.backend_pid)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// Resolves when the lease is lost: the connection holding the lock closed or failed
    /// (the database restarted or terminated the session, or the network dropped it; a peer
    /// that vanishes silently is noticed by TCP keepalive, in about 25 s). A holder that must
    /// not act on a lost lease also calls [`Lease::confirm`] before acting.
    pub async fn lost(&self) {
        let mut closed = self.closed.clone();
        // An error means the sender is gone: the connection's task ended, so the lease too.
        let _ = closed.wait_for(|c| *c).await;
    }

    /// Checks, with a round trip on the lease's own connection (5 s at most), that its session
    /// still holds the lock in `pg_locks`.
    ///
    /// Errors: [`DbError::Query`] when the connection is gone, the round trip fails or times
    /// out, or the lock is not held.
    pub async fn confirm(&self) -> Result<(), DbError> {
        if self.client.is_closed() {
            return Err(DbError::Query(format!(
                "lease {}: its connection is closed",
                self.key
            )));
        }
        // A bigint advisory key is stored as classid (high 32 bits) and objid (low 32 bits),
        // with objsubid 1.
        let bits = self.key as u64;
        let (high, low) = ((bits >> 32) as u32, bits as u32);
        let check = "SELECT EXISTS (SELECT 1 FROM pg_locks
                 WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND classid = $1 AND objid = $2 AND objsubid = 1)";
        let row = tokio::time::timeout(
            CONFIRM_TIMEOUT,
            self.client.query_one(check, &[&high, &low]),
        )
        .await
        .map_err(|_| {
            DbError::Query(format!(
                "lease {}: no answer in {CONFIRM_TIMEOUT:?}",
                self.key
            ))
        })??;
        if row.try_get::<_, bool>(0)? {
            Ok(())
        } else {
            Err(DbError::Query(format!(
                "lease {}: the lock is not held by this session",
                self.key
            )))
        }
    }

    /// The PostgreSQL backend process serving the lease's connection (`pg_backend_pid()`).
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// Releases the lock and closes the connection. Best effort: if the unlock cannot be
    /// sent, closing the connection releases the lock anyway.
    pub async fn release(self) {
        let key = [&self.key as &(dyn tokio_postgres::types::ToSql + Sync)];
        let unlock = self.client.execute("SELECT pg_advisory_unlock($1)", &key);
        if let Err(e) = tokio::time::timeout(CONFIRM_TIMEOUT, unlock).await {
            tracing::debug!(key = self.key, error = %e, "lease unlock timed out");
        }
    }
}

/// A connection of its own ([`Db::dedicated`]); closed when dropped.
#[derive(Debug)]
pub struct Dedicated {
    /// The connection's client (check [`Client::is_closed`] before trusting its session).
    pub client: Client,
    _task: AbortOnDrop,
}

#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Something a [`Listener`] heard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A notification's payload.
    Payload(String),
    /// Notifications may have been missed: the connection was lost and is LISTENing again,
    /// or the caller fell behind and notices were dropped. The caller must re-read the state
    /// the notifications are about.
    Reconnected,
}

/// A connection of its own LISTENing on one channel, reconnected by a task of its own. The
/// task stops when the listener is dropped.
#[derive(Debug)]
pub struct Listener {
    rx: mpsc::Receiver<Notice>,
    task: JoinHandle<()>,
}

impl Listener {
    /// The next notice. After a lost connection is re-established (retried after 100 ms,
    /// doubling to 5 s) it yields [`Notice::Reconnected`] first, because notifications sent
    /// meanwhile are lost and the caller must re-read state; payloads follow as they arrive.
    pub async fn next(&mut self) -> Notice {
        match self.rx.recv().await {
            Some(n) => n,
            // The task only ends when the listener is dropped (or panicked, which is a bug):
            // there is nothing more to hear.
            None => std::future::pending().await,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A LISTENing connection, with the payloads that arrived while LISTEN was answered.
type ListenSession = (Client, Connection<Socket, PgStream>, Vec<String>);

/// Connects and runs `sql` (the LISTEN), driving the connection meanwhile so that the
/// statement goes out and notifications are not lost.
async fn open_listen(target: &Target, sql: &str) -> Result<ListenSession, DbError> {
    let (client, mut connection) = target.connect().await?;
    let mut early = Vec::new();
    {
        let listen = client.batch_execute(sql);
        tokio::pin!(listen);
        loop {
            tokio::select! {
                r = &mut listen => {
                    r?;
                    break;
                }
                m = poll_fn(|cx| connection.poll_message(cx)) => match m {
                    Some(Ok(AsyncMessage::Notification(n))) => early.push(n.payload().to_owned()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(DbError::Query(describe(&e))),
                    None => return Err(DbError::Query("the connection closed during LISTEN".into())),
                },
            }
        }
    }
    Ok((client, connection, early))
}

/// The listener's task: forwards notifications of the session to `tx`, and when the
/// connection is lost opens another (backing off) and says [`Notice::Reconnected`].
async fn pump(target: Arc<Target>, sql: String, first: ListenSession, tx: mpsc::Sender<Notice>) {
    let mut session = Some(first);
    let mut delay = LISTEN_BACKOFF_FIRST;
    // A Reconnected is owed to the caller (after a reconnection, or notices dropped).
    let mut missed = false;
    loop {
        let (client, mut connection, early) = match session.take() {
            Some(s) => s,
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = tx.closed() => return,
                }
                delay = (delay * 2).min(LISTEN_BACKOFF_MAX);
                match open_listen(&target, &sql).await {
                    Ok(s) => {
                        tracing::info!(listen = %sql, "LISTEN connection re-established");
                        delay = LISTEN_BACKOFF_FIRST;
                        s
                    }
                    Err(e) => {
                        tracing::warn!(listen = %sql, error = %e, "LISTEN connection failed; retrying");
                        continue;
                    }
                }
            }
        };
        let deliver = |payload: String, missed: &mut bool| -> bool {
            if *missed {
                // Dropped: the Reconnected still owed makes the caller re-read state.
                return true;
            }
            match tx.try_send(Notice::Payload(payload)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    *missed = true;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        };
        if missed {
            match tx.try_send(Notice::Reconnected) {
                Ok(()) => missed = false,
                Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        for payload in early {
            if !deliver(payload, &mut missed) {
                return;
            }
        }
        loop {
            tokio::select! {
                m = poll_fn(|cx| connection.poll_message(cx)) => match m {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if !deliver(n.payload().to_owned(), &mut missed) {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(listen = %sql, error = %describe(&e), "LISTEN connection lost");
                        break;
                    }
                    None => {
                        tracing::warn!(listen = %sql, "LISTEN connection closed");
                        break;
                    }
                },
                permit = tx.reserve(), if missed => match permit {
                    Ok(p) => {
                        p.send(Notice::Reconnected);
                        missed = false;
                    }
                    Err(_) => return,
                },
                _ = tx.closed() => return,
            }
        }
        drop(client);
        // Everything the caller has not heard about since the connection was lost.
        missed = true;
    }
}

/// Sends `payload` to the listeners of `channel` (`SELECT pg_notify($1, $2)`): delivered when
/// the client's transaction, if any, commits.
///
/// Errors: [`DbError::Query`] when the statement fails (a payload of 8000 bytes or more is
/// refused by PostgreSQL).
pub async fn notify(client: &Client, channel: &str, payload: &str) -> Result<(), DbError> {
    client
        .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tls_options_are_taken_out_and_everything_else_is_left_as_it_was() {
        let (url, root) = tls_options(
            "postgres://u:p@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem&options=a+b",
        );
        assert_eq!(url, "postgres://u:p@h/db?sslmode=require&options=a+b");
        assert_eq!(root.unwrap(), std::path::Path::new("/etc/ca x.pem"));
        assert_eq!(
            tls_options("postgresql://h/db?sslrootcert=/ca.pem"),
            ("postgresql://h/db".into(), Some("/ca.pem".into()))
        );
        for same in ["postgres://h/db", "postgres://h/db?sslmode=verify-fullish"] {
            assert_eq!(tls_options(same), (same.into(), None));
        }
        // The key=value form: spacing, quotes and escapes of the other options untouched.
        let kv = r"host=h password='a  b\' c' sslrootcert = '/my ca.pem' sslmode='verify-ca'";
        let (out, root) = tls_options(kv);
        assert_eq!(out, r"host=h password='a  b\' c'  sslmode=require");
        assert_eq!(root.unwrap(), std::path::Path::new("/my ca.pem"));
        let config: Config = out.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"a  b' c"[..]));
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        // Nothing to take out, or not parseable: returned as it is.
        for same in [
            "host=h  port=5 dbname='x y'",
            "host=h 'oops",
            "host=h password='open",
        ] {
            assert_eq!(tls_options(same), (same.into(), None));
        }
    }
}
