//! `countersign serve --tls-cert FILE --tls-key FILE` (issue 16): HTTPS with a certificate a
//! test CA made here, the https:// public URL, plain HTTP refused, the certificate swapped on
//! SIGHUP (and kept when the new files are broken), and unusable files refused at start with
//! exit status 2 before anything is created.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::process::free_port;

/// A test CA and one localhost server certificate it issued.
struct Pki {
    ca_pem: String,
    leaf_pem: String,
    leaf_der: Vec<u8>,
    key_pem: String,
}

fn pki(name: &str) -> Pki {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, format!("{name} localhost"));
    let leaf_cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        leaf_pem: leaf_cert.pem(),
        leaf_der: leaf_cert.der().to_vec(),
        key_pem: key.serialize_pem(),
    }
}

/// `countersign serve` over TLS, its standard error in a file; killed when dropped.
struct TlsServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsServer {
    fn start(dir: &Path, cert: &Path, key: &Path) -> TlsServer {
        let port = free_port();
        let log = dir.join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(["serve", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        TlsServer { child, port, log }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn hup(&self) {
        let st = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// A fresh client (no pooled connection: each request makes a new handshake) trusting
    /// `cas`, reaching `localhost` at 127.0.0.1 only.
    fn client(&self, cas: &[&str]) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .tls_info(true)
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .resolve(
                "localhost",
                std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            );
        for ca in cas {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
        }
        b.build().unwrap()
    }

    /// The certificate a new connection is served (DER) and the discovery document.
    async fn served(&self, cas: &[&str]) -> Result<(Vec<u8>, serde_json::Value), String> {
        let r = self
            .client(cas)
            .get(format!(
                "https://localhost:{}/.well-known/openid-configuration",
                self.port
            ))
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let cert = r
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|t| t.peer_certificate())
            .map(<[u8]>::to_vec)
            .ok_or("no peer certificate")?;
        if r.status() != 200 {
            return Err(format!("status {}", r.status()));
        }
        Ok((cert, r.json().await.map_err(|e| e.to_string())?))
    }

    async fn wait_ready(&mut self, cas: &[&str]) -> (Vec<u8>, serde_json::Value) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(got) = self.served(cas).await {
                return got;
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("server exited ({st}):\n{}", self.stderr());
            }
            assert!(Instant::now() < deadline, "not ready:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until standard error holds `n` lines containing `what`.
    async fn wait_log(&self, what: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.stderr().matches(what).count() < n {
            assert!(
                Instant::now() < deadline,
                "no {what:?} in the log:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn write(path: &Path, text: &str) {
    // Written whole then renamed in, as a certificate manager does: the server never reads a
    // half-written file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn serves_https_and_swaps_its_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (one, two) = (pki("one"), pki("two"));
    write(&cert, &one.leaf_pem);
    write(&key, &one.key_pem);
    let mut s = TlsServer::start(dir.path(), &cert, &key);
    let both = [one.ca_pem.as_str(), two.ca_pem.as_str()];

    let (served, discovery) = s.wait_ready(&[&one.ca_pem]).await;
    assert_eq!(served, one.leaf_der);
    let base = format!("https://localhost:{}", s.port);
    assert_eq!(
        discovery["issuer"],
        base.as_str(),
        "the public URL is https"
    );
    assert_eq!(
        discovery["token_endpoint"],
        format!("{base}/token").as_str()
    );
    let banner = s.stderr();
    assert!(
        banner.contains(&format!("countersign is serving on {base} ")),
        "{banner}"
    );

    // Plain HTTP on the TLS port gets no answer; nor does a client that trusts another CA.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", s.port))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| !r.status().is_success()),
        "plain HTTP answered: {plain:?}"
    );
    assert!(s.served(&[&two.ca_pem]).await.is_err());

    // A renewed certificate (another CA, another key): new connections get it after SIGHUP.
    write(&cert, &two.leaf_pem);
    write(&key, &two.key_pem);
    assert_eq!(
        s.served(&both).await.unwrap().0,
        one.leaf_der,
        "not before SIGHUP"
    );
    s.hup();
    s.wait_log("TLS certificate and key reloaded", 1).await;
    assert_eq!(s.served(&both).await.unwrap().0, two.leaf_der);
    assert!(
        s.served(&[&one.ca_pem]).await.is_err(),
        "the old CA no longer vouches for what is served"
    );

    // A broken certificate file, then a key that is not the certificate's: each reload is
    // refused, logged, and the certificate served so far stays.
    write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    );
    s.hup();
    s.wait_log("TLS certificate not reloaded", 1).await;
    assert_eq!(s.served(&both).await.unwrap().0, two.leaf_der);
    write(&cert, &one.leaf_pem);
    s.hup();
    s.wait_log("TLS certificate not reloaded", 2).await;
    assert!(
        s.stderr().contains("is not the key of the certificate"),
        "{}",
        s.stderr()
    );
    assert_eq!(s.served(&both).await.unwrap().0, two.leaf_der);
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "SIGHUP did not stop the server"
    );

    // SIGTERM still stops it gracefully.
    let st = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status}: {}", s.stderr());
}

/// `countersign serve` with these TLS flags; its exit status and standard error, or panics
/// if it is still running after 20 s.
fn refused_start(dir: &Path, tls: &[PathBuf], flags: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_countersign"));
    cmd.args(["serve", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())]);
    for (flag, path) in flags.iter().zip(tls) {
        cmd.arg(flag).arg(path);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started with {flags:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn unusable_certificate_files_are_refused_at_start_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (one, two) = (pki("one"), pki("two"));
    std::fs::write(p("cert.pem"), &one.leaf_pem).unwrap();
    std::fs::write(p("key.pem"), &one.key_pem).unwrap();
    std::fs::write(p("other-key.pem"), &two.key_pem).unwrap();
    std::fs::write(p("garbage.pem"), "hello\n").unwrap();
    let both = ["--tls-cert", "--tls-key"];

    let cases: [(&str, [PathBuf; 2], &str); 4] = [
        (
            "missing key",
            [p("cert.pem"), p("absent.pem")],
            "cannot read the TLS private key",
        ),
        (
            "key of another certificate",
            [p("cert.pem"), p("other-key.pem")],
            "is not the key of the certificate",
        ),
        (
            "no certificate in the file",
            [p("key.pem"), p("key.pem")],
            "holds no PEM CERTIFICATE section",
        ),
        (
            "no key in the file",
            [p("cert.pem"), p("garbage.pem")],
            "holds no PEM private key",
        ),
    ];
    for (what, [cert, key], says) in &cases {
        let (code, err) = refused_start(dir.path(), &[cert.clone(), key.clone()], &both);
        assert_eq!(code, Some(2), "{what}: {err}");
        assert!(err.contains(says), "{what}: {err}");
        assert!(
            !p("data").exists(),
            "{what}: nothing created before the refusal"
        );
    }

    // Both flags or neither.
    let (code, err) = refused_start(dir.path(), &[p("cert.pem")], &["--tls-cert"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--tls-key"), "{err}");
    let (code, err) = refused_start(dir.path(), &[p("key.pem")], &["--tls-key"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--tls-cert"), "{err}");
    assert!(!p("data").exists());
}
