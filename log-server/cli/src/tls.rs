//! Built-in TLS for `countersign serve --tls-cert FILE --tls-key FILE`: a PEM certificate chain
//! and its private key, served with rustls (ring provider), and swapped for the files' new
//! contents on SIGHUP without dropping a connection.
//!
//! WebAuthn needs a secure context outside localhost, and agents' SDKs (Auth0's among them)
//! assume `https://`: a reverse proxy is no longer required to run the server for real.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key could not be used. Each says which file and what to do.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file could not be read or holds a broken PEM section.
    Cert {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no `CERTIFICATE` section.
    NoCert {
        /// The file.
        path: PathBuf,
    },
    /// The key file could not be read, holds a broken PEM section, or no private key.
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refused the key (an unsupported type) or it is not the certificate's key.
    Unusable {
        /// The key file.
        path: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Cert { path, source } => write!(
                f,
                "cannot read the TLS certificate chain {}: {source} (give a PEM file with the \
                 server's certificate first, then its intermediates)",
                path.display()
            ),
            TlsError::NoCert { path } => write!(
                f,
                "{} holds no PEM CERTIFICATE section; --tls-cert takes the certificate chain, \
                 leaf first",
                path.display()
            ),
            TlsError::Key {
                path,
                source: rustls_pki_types::pem::Error::NoItemsFound,
            } => write!(
                f,
                "{} holds no PEM private key (PKCS#8 \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC \
                 PRIVATE KEY\")",
                path.display()
            ),
            TlsError::Key { path, source } => write!(
                f,
                "cannot read the TLS private key {}: {source}",
                path.display()
            ),
            TlsError::Unusable {
                path,
                source: rustls::Error::InconsistentKeys(_),
            } => write!(
                f,
                "the private key {} is not the key of the certificate given with --tls-cert",
                path.display()
            ),
            TlsError::Unusable { path, source } => write!(
                f,
                "the private key {} cannot be used for TLS: {source}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for TlsError {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain (leaf first) and its PEM private key (PKCS#8, PKCS#1 RSA or
/// SEC1 EC), and checks that the key is the leaf's.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_err = |source| TlsError::Cert {
        path: cert.to_owned(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(cert_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(cert_err)?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: cert.to_owned(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_owned(),
        source,
    })?;
    let certified = CertifiedKey::from_der(chain, private, &provider()).map_err(|source| {
        TlsError::Unusable {
            path: key.to_owned(),
            source,
        }
    })?;
    Ok(Arc::new(certified))
}

/// The server's certificate, read from its two files and read again on [`Self::reload`]. Each
/// handshake takes the current one; a reload swaps it whole, so a connection sees the old pair
/// or the new, never a mix.
#[derive(Debug)]
pub struct ReloadableCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// Reads the files ([`load`]).
    pub fn open(cert: &Path, key: &Path) -> Result<ReloadableCert, TlsError> {
        Ok(ReloadableCert {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(load(cert, key)?),
        })
    }

    /// Reads the files again. On error the certificate served so far stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let next = load(&self.cert, &self.key)?;
        let mut current = match self.current.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *current = next;
        Ok(())
    }

    fn get(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The acceptor of `serve --tls-cert/--tls-key`: TLS 1.2 and 1.3 with rustls' safe defaults, no
/// client certificates, HTTP/1.1 announced over ALPN (the only protocol the server speaks).
/// Fails only if the crypto provider supports none of those versions.
pub fn acceptor(cert: Arc<ReloadableCert>) -> Result<tokio_rustls::TlsAcceptor, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
