//! What `countersign serve` prints on standard error once it listens: the URLs to open (on the
//! public base URL the pages and passkeys are bound to, which is not the bound address when
//! that is a loopback IP), the labelled log key, and where the data and the admin token are.

use std::net::SocketAddr;
use std::path::Path;

/// What the banner tells.
#[derive(Debug)]
pub struct Banner<'a> {
    /// The address the listener is bound to.
    pub bound: SocketAddr,
    /// The front end's public base URL; `None` when serving the log alone.
    pub public_url: Option<&'a str>,
    /// The log's C2SP verifier key.
    pub vkey: &'a str,
    /// The data directory (absolute).
    pub data_dir: &'a Path,
    /// The admin token file.
    pub admin_token: &'a Path,
    /// Whether this start created the admin token.
    pub created_admin_token: bool,
    /// Whether the server speaks HTTPS (`--tls-cert`).
    pub tls: bool,
}

impl std::fmt::Display for Banner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.public_url {
            Some(base) => {
                writeln!(
                    f,
                    "countersign is serving on {base} (bound to {})",
                    self.bound
                )?;
                for (what, path) in [
                    ("start page", "/"),
                    ("approver inbox", "/approve"),
                    ("verify a bundle", "/verify"),
                    ("log browser", "/log"),
                    ("OpenID discovery", "/.well-known/openid-configuration"),
                ] {
                    writeln!(f, "  {what:<18}{base}{path}")?;
                }
            }
            None => {
                writeln!(
                    f,
                    "countersign is serving the log alone (no approval front end), bound to {}",
                    self.bound
                )?;
                let scheme = if self.tls { "https" } else { "http" };
                writeln!(
                    f,
                    "  {:<18}{scheme}://{}/checkpoint",
                    "checkpoint", self.bound
                )?;
            }
        }
        writeln!(f, "  log key (C2SP vkey): {}", self.vkey)?;
        writeln!(f, "  {:<18}{}", "data directory", self.data_dir.display())?;
        writeln!(
            f,
            "  {:<18}{}{}",
            "admin token",
            self.admin_token.display(),
            if self.created_admin_token {
                " (created now; the admin commands read it with --data-dir)"
            } else {
                ""
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_public_urls_and_the_bound_address() {
        let b = Banner {
            bound: "127.0.0.1:8080".parse().unwrap(),
            public_url: Some("http://localhost:8080"),
            vkey: "localhost/countersign+1234abcd+AQ",
            data_dir: Path::new("/srv/data"),
            admin_token: Path::new("/srv/data/admin.token"),
            created_admin_token: true,
            tls: false,
        }
        .to_string();
        assert!(b.starts_with(
            "countersign is serving on http://localhost:8080 (bound to 127.0.0.1:8080)\n"
        ));
        for line in [
            "  approver inbox    http://localhost:8080/approve\n",
            "  OpenID discovery  http://localhost:8080/.well-known/openid-configuration\n",
            "  log key (C2SP vkey): localhost/countersign+1234abcd+AQ\n",
            "  data directory    /srv/data\n",
            "  admin token       /srv/data/admin.token (created now;",
        ] {
            assert!(b.contains(line), "{line:?} in {b}");
        }
        let log_only = Banner {
            bound: "[::1]:9000".parse().unwrap(),
            public_url: None,
            vkey: "k",
            data_dir: Path::new("d"),
            admin_token: Path::new("d/admin.token"),
            created_admin_token: false,
            tls: false,
        };
        let text = log_only.to_string();
        assert!(text.contains("the log alone"), "{text}");
        assert!(text.contains("http://[::1]:9000/checkpoint"));
        assert!(!text.contains("/approve") && !text.contains("created now"));
        let tls = Banner {
            tls: true,
            ..log_only
        }
        .to_string();
        assert!(tls.contains("https://[::1]:9000/checkpoint"), "{tls}");
    }
}
