//! The shared driver's PostgreSQL layer (`countersign_log::shared::pg`) against a real
//! PostgreSQL: migrations apply once, also when instances start together, and a newer schema
//! is refused; connection errors name the host but not the password; the lease is lost with
//! its connection and taken over by another session; the listener comes back after losing its
//! connection and says so; the pool replaces dead connections by itself; and all of it
//! survives a restart of the server.
//!
//! Each test has a database of its own on the server `COUNTERSIGN_TEST_DATABASE` names
//! (scripts/test.sh starts one with scripts/pg-server.sh); unset, the tests are skipped, except
//! under CI, where they fail.

use std::time::{Duration, Instant};

use countersign_log::shared::pg::{notify, Db, DbError, Lease, Migration, Notice};
use tokio::time::timeout;

use crate::pg_support::OwnServer;
use crate::pg_support::TestDb;

const WAIT: Duration = Duration::from_secs(5);
const KEY: i64 = 21;

const V1: Migration = Migration {
    version: 1,
    name: "entries",
    sql: "CREATE TABLE entries (id bigint PRIMARY KEY, body text NOT NULL);",
};
/// Not idempotent: applied twice, the second insert fails (and the count would show it).
const V2: Migration = Migration {
    version: 2,
    name: "first entry",
    sql: "INSERT INTO entries VALUES (0, 'genesis');
          CREATE TABLE cursor (one bool PRIMARY KEY DEFAULT true, size bigint NOT NULL);",
};
/// Slow, so that instances starting together overlap within it.
const V3: Migration = Migration {
    version: 3,
    name: "slow",
    sql: "SELECT pg_sleep(0.3); INSERT INTO cursor (size) VALUES (1);",
};

/// `(version, name)` of each recorded migration.
async fn recorded(db: &Db) -> Vec<(i32, String)> {
    db.client()
        .await
        .unwrap()
        .query(
            "SELECT version, name FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn count(db: &Db, table: &str) -> i64 {
    db.client()
        .await
        .unwrap()
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_in_order_and_again_is_a_no_op() {
    let Some(t) = TestDb::create().await else {
        return;
    };
    // An older binary first: only what it knows.
    let db = Db::connect(&t.url, &[V1]).await.unwrap();
    assert_eq!(recorded(&db).await, vec![(1, "entries".to_owned())]);
    assert_eq!(count(&db, "entries").await, 0);
    let first_applied: Vec<String> = db
        .client()
        .await
        .unwrap()
        .query(
            "SELECT applied_at::text FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // A newer one applies what is missing, and only that.
    let db = Db::connect(&t.url, &[V1, V2, V3]).await.unwrap();
    let all = vec![
        (1, "entries".to_owned()),
        (2, "first entry".to_owned()),
        (3, "slow".to_owned()),
    ];
    assert_eq!(recorded(&db).await, all);
    assert_eq!(count(&db, "entries").await, 1);
    assert_eq!(count(&db, "cursor").await, 1);
    // Again: nothing to do, nothing done.
    let again = Db::connect(&t.url, &[V1, V2, V3]).await.unwrap();
    assert_eq!(recorded(&again).await, all);
    assert_eq!(count(&again, "entries").await, 1);
    assert_eq!(count(&again, "cursor").await, 1);
    let v1_applied: String = again
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT applied_at::text FROM schema_migrations WHERE version = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v1_applied, first_applied[0]);
    t.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_once() {
    let Some(t) = TestDb::create().await else {
        return;
    };
    let all = [V1, V2, V3];
    let (a, b, c, d) = tokio::join!(
        Db::connect(&t.url, &all),
        Db::connect(&t.url, &all),
        Db::connect(&t.url, &all),
        Db::connect(&t.url, &all),
    );
    let (a, _b, _c, _d) = (a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap());
    assert_eq!(
        recorded(&a).await,
        vec![
            (1, "entries".to_owned()),
            (2, "first entry".to_owned()),
            (3, "slow".to_owned()),
        ]
    );
    assert_eq!(count(&a, "entries").await, 1);
    assert_eq!(count(&a, "cursor").await, 1);
    t.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_or_a_renamed_migration_is_refused() {
    let Some(t) = TestDb::create().await else {
        return;
    };
    Db::connect(&t.url, &[V1, V2, V3]).await.unwrap();
    let e = Db::connect(&t.url, &[V1, V2]).await.unwrap_err();
    assert!(matches!(e, DbError::Schema(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("schema version 3") && text.contains("up to 2"),
        "{text}"
    );
    let renamed = Migration {
        name: "genesis",
        ..V2
    };
    let e = Db::connect(&t.url, &[V1, renamed, V3]).await.unwrap_err();
    assert!(matches!(e, DbError::Schema(_)), "{e:?}");
    assert!(e.to_string().contains("\"genesis\""), "{e}");
    // Versions out of order are the binary's mistake, caught before touching the database.
    let e = Db::connect(&t.url, &[V2, V1]).await.unwrap_err();
    assert!(matches!(e, DbError::Schema(_)), "{e:?}");
    t.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_name_the_host_but_not_the_password() {
    // Nothing listens on port 1.
    let e = Db::connect("postgres://u:s3cret@127.0.0.1:1/x", &[V1])
        .await
        .unwrap_err();
    assert!(matches!(e, DbError::Connect(_)), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!format!("{e:?}").contains("s3cret"), "{e:?}");
    // The key=value form too, and a password in the query.
    for url in [
        "host=127.0.0.1 port=1 user=u password=s3cret dbname=x",
        "postgres://u@127.0.0.1:1/x?password=s3cret",
    ] {
        let e = Db::connect(url, &[]).await.unwrap_err();
        assert!(matches!(e, DbError::Connect(_)), "{e:?}");
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
    // An unusable CA file is named, before any connection.
    for (url, words) in [
        (
            "postgres://u:s3cret@127.0.0.1:1/x?sslmode=require&sslrootcert=/nonexistent/ca.pem",
            "sslrootcert /nonexistent/ca.pem",
        ),
        (
            "host=127.0.0.1 port=1 password=s3cret sslrootcert=/dev/null",
            "sslrootcert /dev/null: holds no PEM certificate",
        ),
    ] {
        let e = Db::connect(url, &[]).await.unwrap_err();
        assert!(matches!(e, DbError::Connect(_)), "{e:?}");
        assert!(e.to_string().contains(words), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
    let e = Db::connect("postgres://u:s3cret@127.0.0.1:notaport/x", &[])
        .await
        .unwrap_err();
    assert!(matches!(e, DbError::Connect(_)), "{e:?}");
    assert!(!e.to_string().contains("s3cret"), "{e}");

    // Connected (the test server trusts any password), the URL is shown without it.
    let Some(t) = TestDb::create().await else {
        return;
    };
    let mut with_password = url::Url::parse(&t.url).unwrap();
    with_password.set_password(Some("s3cret")).unwrap();
    let db = Db::connect(with_password.as_str(), &[]).await.unwrap();
    assert!(
        !db.redacted_url().contains("s3cret"),
        "{}",
        db.redacted_url()
    );
    assert!(db.redacted_url().contains(&t.name), "{}", db.redacted_url());
    assert!(!format!("{db:?}").contains("s3cret"), "{db:?}");
    t.drop_db().await;
}

/// Takes `KEY` on `db`, retrying until `WAIT` has passed.
async fn take_within(db: &Db, wait: Duration) -> Lease {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(l) = db.try_lease(KEY).await.unwrap() {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "the lease was not free within {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_lost_with_its_connection_and_taken_over() {
    let Some(t) = TestDb::create().await else {
        return;
    };
    let db_a = Db::connect(&t.url, &[]).await.unwrap();
    let db_b = Db::connect(&t.url, &[]).await.unwrap();
    let a = db_a.try_lease(KEY).await.unwrap().expect("a free lease");
    a.confirm().await.unwrap();
    assert!(db_b.try_lease(KEY).await.unwrap().is_none());
    // Another key is another lease.
    let other = db_b.try_lease(KEY + 1).await.unwrap().expect("another key");
    other.confirm().await.unwrap();
    // Its lost() stays pending while it holds.
    assert!(timeout(Duration::from_millis(200), a.lost()).await.is_err());

    // The holder's session ends as when its process is killed.
    let terminated: bool = t
        .admin()
        .await
        .query_one("SELECT pg_terminate_backend($1)", &[&a.backend_pid()])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);
    timeout(WAIT, a.lost())
        .await
        .expect("lost() did not resolve within 5 s");
    let b = take_within(&db_b, WAIT).await;
    b.confirm().await.unwrap();
    assert!(a.confirm().await.is_err());
    other.confirm().await.unwrap();

    // Released, it is free at once.
    b.release().await;
    let c = db_a.try_lease(KEY).await.unwrap().expect("released");
    c.confirm().await.unwrap();
    // Dropped, too (the connection closes).
    drop(c);
    take_within(&db_b, WAIT).await;
    t.drop_db().await;
}

/// The next notice within `WAIT`.
async fn heard(l: &mut countersign_log::shared::pg::Listener) -> Notice {
    timeout(WAIT, l.next())
        .await
        .expect("nothing heard within 5 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects_and_says_so() {
    let Some(t) = TestDb::create().await else {
        return;
    };
    let db = Db::connect(&t.url, &[]).await.unwrap();
    let mut l = db.listen("Checkpoint").await.unwrap();
    let client = db.client().await.unwrap();
    notify(&client, "other", "not for us").await.unwrap();
    notify(&client, "Checkpoint", "one").await.unwrap();
    notify(&client, "Checkpoint", "two").await.unwrap();
    assert_eq!(heard(&mut l).await, Notice::Payload("one".into()));
    assert_eq!(heard(&mut l).await, Notice::Payload("two".into()));
    // Only at commit.
    client.batch_execute("BEGIN").await.unwrap();
    notify(&client, "Checkpoint", "three").await.unwrap();
    assert!(timeout(Duration::from_millis(300), l.next()).await.is_err());
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(heard(&mut l).await, Notice::Payload("three".into()));

    for round in 0..2 {
        let pids: Vec<i32> = t
            .admin()
            .await
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
                &[&t.name],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(pids.len(), 1, "round {round}: {pids:?}");
        t.admin()
            .await
            .execute("SELECT pg_terminate_backend($1)", &[&pids[0]])
            .await
            .unwrap();
        assert_eq!(heard(&mut l).await, Notice::Reconnected, "round {round}");
        let payload = format!("after {round}");
        notify(&client, "Checkpoint", &payload).await.unwrap();
        assert_eq!(heard(&mut l).await, Notice::Payload(payload));
    }
    drop(l);
    // Dropped, the listener's connection goes.
    let deadline = Instant::now() + WAIT;
    loop {
        let n: i64 = t
            .admin()
            .await
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
                &[&t.name],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dropped listener's connection stays"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.drop_db().await;
}

/// A caller that falls more than the listener's queue (1024) behind is told to re-read state
/// rather than stalling the connection or growing without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_left_behind_drops_notices_and_says_so() {
    let Some(t) = TestDb::create().await else {
        return;
    };
    let db = Db::connect(&t.url, &[]).await.unwrap();
    let mut l = db.listen("many").await.unwrap();
    let client = db.client().await.unwrap();
    // One transaction: all delivered at its commit, in order.
    client
        .batch_execute("SELECT pg_notify('many', i::text) FROM generate_series(0, 1099) i")
        .await
        .unwrap();
    // All of them reach the listener before the caller reads.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..1024 {
        assert_eq!(heard(&mut l).await, Notice::Payload(i.to_string()));
    }
    assert_eq!(heard(&mut l).await, Notice::Reconnected);
    notify(&client, "many", "later").await.unwrap();
    assert_eq!(heard(&mut l).await, Notice::Payload("later".into()));
    t.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_replaces_dead_connections_by_itself() {
    let Some(t) = TestDb::create().await else {
        return;
    };
    let db = Db::connect(&t.url, &[V1]).await.unwrap();
    // Three connections in the pool, idle.
    let held = [
        db.client().await.unwrap(),
        db.client().await.unwrap(),
        db.client().await.unwrap(),
    ];
    for c in &held {
        c.query_one("SELECT 1", &[]).await.unwrap();
    }
    drop(held);
    assert_eq!(t.terminate_sessions().await, 3);
    // Every pooled connection is dead: each is replaced, at the first attempt.
    let started = Instant::now();
    let fresh = [
        db.client().await.unwrap(),
        db.client().await.unwrap(),
        db.client().await.unwrap(),
    ];
    for c in &fresh {
        c.query_one("SELECT count(*) FROM entries", &[])
            .await
            .unwrap();
    }
    assert!(started.elapsed() < WAIT, "{:?}", started.elapsed());
    drop(fresh);
    t.drop_db().await;
}

/// A restart of the server (scripts/pg-server.sh restart, same port): the lease is lost, the
/// listener says Reconnected and hears again, the pool serves again, the schema stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_comes_back_after_a_server_restart() {
    // Where the shared test server exists, so do PostgreSQL and the script.
    if crate::pg_support::server_url().is_none() {
        return;
    }
    let server = OwnServer::start();
    let url = server.url();
    let db = Db::connect(&url, &[V1, V2]).await.unwrap();
    let lease = db.try_lease(KEY).await.unwrap().expect("a free lease");
    let mut l = db.listen("restart").await.unwrap();
    let client = db.client().await.unwrap();
    notify(&client, "restart", "before").await.unwrap();
    assert_eq!(heard(&mut l).await, Notice::Payload("before".into()));
    drop(client);

    server.run("restart");
    timeout(WAIT, lease.lost())
        .await
        .expect("the lease outlived the server");
    assert!(lease.confirm().await.is_err());
    // The listener retries at most 5 s apart.
    assert_eq!(
        timeout(Duration::from_secs(10), l.next()).await.unwrap(),
        Notice::Reconnected
    );
    let client = db.client().await.unwrap();
    assert_eq!(count(&db, "entries").await, 1);
    notify(&client, "restart", "after").await.unwrap();
    assert_eq!(heard(&mut l).await, Notice::Payload("after".into()));
    let again = db
        .try_lease(KEY)
        .await
        .unwrap()
        .expect("free after the restart");
    again.confirm().await.unwrap();
}

/// A certificate authority and a certificate for 127.0.0.1 it signed, in PEM.
fn test_pki(name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} database CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]))];
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// Whether the session of `db`'s pooled connections is encrypted.
async fn encrypted(db: &Db) -> bool {
    let c = db.client().await.unwrap();
    c.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// TLS to the database (a server of the test's own, given a certificate from a test CA): used
/// when the server offers it, required when the URL says so, and never to a server whose
/// certificate does not chain to the CA the URL names (or, without one, to the Mozilla roots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_database_is_verified_and_required_when_asked() {
    if crate::pg_support::server_url().is_none() {
        return;
    }
    let server = OwnServer::start();
    let data = server.dir().join("data");
    let (ca, cert, key) = test_pki("trusted");
    let (other_ca, _, _) = test_pki("other");
    std::fs::write(data.join("server.crt"), cert).unwrap();
    std::fs::write(data.join("server.key"), key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for f in ["server.crt", "server.key"] {
        // The server runs as the owner of its data directory, and reads only a private key.
        let status = std::process::Command::new("chown")
            .arg("--reference")
            .arg(&data)
            .arg(data.join(f))
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::set_permissions(data.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let ca_file = server.dir().join("ca.pem");
    let other_file = server.dir().join("other-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    std::fs::write(&other_file, other_ca).unwrap();
    let base = server.url();
    let admin = crate::pg_support::connect(&format!("{base}?sslmode=disable")).await;
    // `server.crt` and `server.key` in the data directory are the server's defaults.
    admin
        .batch_execute("ALTER SYSTEM SET ssl = on")
        .await
        .unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    let with = |query: &str| {
        let mut u = url::Url::parse(&base).unwrap();
        u.set_query(Some(query));
        u.to_string()
    };
    let ca_q = format!("sslrootcert={}", ca_file.display());
    // The reload is asynchronous: wait until a new session is offered TLS.
    let deadline = Instant::now() + WAIT;
    let db = loop {
        if let Ok(db) = Db::connect(&with(&format!("sslmode=require&{ca_q}")), &[]).await {
            break db;
        }
        assert!(Instant::now() < deadline, "the server never offered TLS");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(encrypted(&db).await);
    // libpq's spellings, and TLS by default once the server offers it.
    for q in [
        format!("sslmode=verify-full&{ca_q}"),
        format!("sslmode=verify-ca&{ca_q}"),
        ca_q.clone(),
    ] {
        let db = Db::connect(&with(&q), &[]).await.unwrap();
        assert!(encrypted(&db).await, "{q}");
        // The dedicated sessions (leases, listeners) too.
        let lease = db.try_lease(KEY).await.unwrap().expect("a free lease");
        lease.confirm().await.unwrap();
    }
    // Another CA, or none (the Mozilla roots do not know the test CA): no connection.
    for q in [
        format!("sslmode=require&sslrootcert={}", other_file.display()),
        "sslmode=require".to_owned(),
        // Offered TLS, `prefer` does not fall back to plain text on a bad certificate.
        format!("sslrootcert={}", other_file.display()),
    ] {
        let e = Db::connect(&with(&q), &[]).await.unwrap_err();
        assert!(matches!(e, DbError::Connect(_)), "{q}: {e:?}");
        assert!(e.to_string().contains("certificate"), "{q}: {e}");
    }
    // Plain TCP when asked...
    let plain = Db::connect(&with("sslmode=disable"), &[]).await.unwrap();
    assert!(!encrypted(&plain).await);
    // ...until the server accepts only TLS sessions.
    let hba = data.join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    let tls_only: String = rules
        .lines()
        .map(|l| match l.strip_prefix("host ") {
            Some(rest) => format!("hostssl {rest}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    assert!(tls_only.contains("hostssl"), "{rules}");
    std::fs::write(&hba, tls_only).unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match Db::connect(&with("sslmode=disable"), &[]).await {
            Err(e) => {
                assert!(matches!(e, DbError::Connect(_)), "{e:?}");
                break;
            }
            Ok(_) => assert!(Instant::now() < deadline, "plain sessions still accepted"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let db = Db::connect(&with(&format!("sslmode=require&{ca_q}")), &[])
        .await
        .unwrap();
    assert!(encrypted(&db).await);
}
