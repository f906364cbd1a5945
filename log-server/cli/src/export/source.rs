//! Where an export reads from: a running server over its public log API and the audit API (an
//! auditor's or the admin's token), or a stopped server's data directory (or a backup, which has
//! the same layout) opened directly.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use countersign_approvals::audit;
use countersign_log::storage::{decode_tree, Store, CF_META, META_TREE};
use countersign_log::tiles::{read_tile, TileRead, TileRef};
use countersign_verifier::export::{tile_path, EventRow};
use serde::Deserialize;

/// Statements and events asked for per page.
pub const PAGE: usize = 1000;

/// An export's source.
#[allow(clippy::large_enum_variant)] // one per export
pub enum Source {
    /// A running server.
    Remote {
        /// Its URL, without a trailing `/`.
        url: String,
        /// The auditor's or admin's bearer token.
        token: String,
        /// The HTTP client.
        http: reqwest::Client,
    },
    /// A stopped server's data directory, or a backup.
    Local {
        /// The directory.
        dir: PathBuf,
        /// The log's store, with the front end's column families.
        store: Store,
        /// The front end's records on it.
        ciba: countersign_approvals::store::CibaStore,
    },
}

/// A decision's statement, as the audit API gives it.
#[derive(Clone, Debug, Deserialize)]
pub struct StatementItem {
    /// The decision entry's index.
    pub index: u64,
    /// Its statement.
    pub statement: countersign_verifier::Statement,
    /// When its tokens were handed out (RFC 3339), if they were.
    pub token_issued_at: Option<String>,
}

#[derive(Deserialize)]
struct StatementsPage {
    statements: Vec<StatementItem>,
    next_index: Option<u64>,
}

#[derive(Deserialize)]
struct EventsPage {
    events: Vec<EventRow>,
    next: String,
}

/// A position in the audit event feed.
#[derive(Clone, Debug)]
pub enum Cursor {
    /// The feed's opaque cursor (a running server).
    Remote(Option<String>),
    /// The event sequence number to read after (a data directory).
    Local(Option<u64>),
}

impl Source {
    /// A running server at `url`, with the token in `token_file`.
    pub fn remote(url: &str, token_file: &Path) -> anyhow::Result<Source> {
        let token = std::fs::read_to_string(token_file)
            .with_context(|| format!("reading the token file {}", token_file.display()))?;
        let token = token.trim().to_owned();
        if token.is_empty() {
            bail!("the token file {} is empty", token_file.display());
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .context("building the HTTP client")?;
        Ok(Source::Remote {
            url: url.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    /// A stopped server's data directory (or a backup). Refused while a server holds it.
    pub fn local(dir: &Path) -> anyhow::Result<Source> {
        let audit::OfflineData { log: store, ciba } =
            audit::open_data_dir(dir).with_context(|| {
                format!(
                    "opening the data directory {} (is a server still running on it? export \
                     from it with --url instead)",
                    dir.display()
                )
            })?;
        Ok(Source::Local {
            dir: dir.to_owned(),
            store,
            ciba,
        })
    }

    /// Fails fast, before anything is written, when the token may not read the audit API.
    pub async fn check_access(&self) -> anyhow::Result<()> {
        if let Source::Remote { .. } = self {
            self.get("/v1/audit/statements?from_index=0&to_index=0&limit=1", true)
                .await?;
        }
        Ok(())
    }

    /// Where the export reads from, for messages.
    pub fn describe(&self) -> String {
        match self {
            Source::Remote { url, .. } => url.clone(),
            Source::Local { dir, .. } => dir.display().to_string(),
        }
    }

    async fn get(&self, path: &str, auth: bool) -> anyhow::Result<reqwest::Response> {
        let Source::Remote { url, token, http } = self else {
            bail!("not a remote source");
        };
        let mut req = http.get(format!("{url}{path}"));
        if auth {
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("GET {url}{path}"))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let hint = match status.as_u16() {
                401 | 403 => " (the token must be an auditor's or the admin's)",
                _ => "",
            };
            bail!("GET {url}{path}: {status}{hint}: {}", body.trim());
        }
        Ok(resp)
    }

    /// The log's verifier key.
    pub async fn log_key(&self) -> anyhow::Result<String> {
        match self {
            Source::Remote { .. } => {
                let v: serde_json::Value = self.get("/v1/log/vkey", false).await?.json().await?;
                v["vkey"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("the server's /v1/log/vkey has no vkey"))
            }
            Source::Local { dir, .. } => {
                let p = dir.join(countersign_log::VKEY_FILE);
                Ok(std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .trim()
                    .to_owned())
            }
        }
    }

    /// The latest signed checkpoint.
    pub async fn checkpoint(&self) -> anyhow::Result<String> {
        match self {
            Source::Remote { .. } => Ok(self.get("/checkpoint", false).await?.text().await?),
            Source::Local { store, .. } => {
                let size = match store.get(CF_META, META_TREE)? {
                    Some(v) => decode_tree(&v)?.0,
                    None => bail!("the data directory holds no log yet"),
                };
                store
                    .checkpoint(size)?
                    .ok_or_else(|| anyhow!("no checkpoint is stored for the tree size {size}"))
            }
        }
    }

    /// A tile of the tree of `tree_size` leaves (hash tile for `Some(level)`, else an entry
    /// bundle) of `width` entries.
    pub async fn tile(
        &self,
        level: Option<u8>,
        index: u64,
        width: u64,
        tree_size: u64,
    ) -> anyhow::Result<Vec<u8>> {
        let path = tile_path(level, index, width);
        match self {
            Source::Remote { .. } => Ok(self
                .get(&format!("/{path}"), false)
                .await?
                .bytes()
                .await?
                .to_vec()),
            Source::Local { store, .. } => {
                let t = TileRef {
                    level,
                    index,
                    partial: (width < 256).then_some(width as u16),
                };
                let store = store.clone();
                let read = tokio::task::spawn_blocking(move || read_tile(&store, &t, tree_size))
                    .await
                    .context("tile read task")??;
                match read {
                    TileRead::Found(b) => Ok(b),
                    TileRead::NotFound => bail!("the store has no {path} at tree size {tree_size}"),
                }
            }
        }
    }

    /// The statements of the decisions in `[from, to)` with an evidence record, from `from` on,
    /// one page; and where the next page starts (`None`: no more).
    pub async fn statements(
        &self,
        from: u64,
        to: u64,
    ) -> anyhow::Result<(Vec<StatementItem>, Option<u64>)> {
        match self {
            Source::Remote { .. } => {
                let p: StatementsPage = self
                    .get(
                        &format!(
                            "/v1/audit/statements?from_index={from}&to_index={to}&limit={PAGE}"
                        ),
                        true,
                    )
                    .await?
                    .json()
                    .await
                    .context("reading /v1/audit/statements")?;
                Ok((p.statements, p.next_index))
            }
            Source::Local { ciba, .. } => {
                let items: Vec<StatementItem> = audit::statements(ciba, from, to, PAGE)?
                    .into_iter()
                    .map(|i| StatementItem {
                        index: i.index,
                        statement: i.statement,
                        token_issued_at: i.token_issued_at,
                    })
                    .collect();
                let next = if items.len() < PAGE {
                    None
                } else {
                    items.last().map(|i| i.index + 1)
                };
                Ok((items, next))
            }
        }
    }

    /// One page of the audit event feed after `cursor`, and the cursor after it.
    pub async fn events(&self, cursor: &Cursor) -> anyhow::Result<(Vec<EventRow>, Cursor)> {
        match (self, cursor) {
            (Source::Remote { .. }, Cursor::Remote(after)) => {
                let q = match after {
                    Some(a) => format!("/v1/audit/events?limit={PAGE}&after={a}"),
                    None => format!("/v1/audit/events?limit={PAGE}"),
                };
                let p: EventsPage = self
                    .get(&q, true)
                    .await?
                    .json()
                    .await
                    .context("reading /v1/audit/events")?;
                Ok((p.events, Cursor::Remote(Some(p.next))))
            }
            (Source::Local { ciba, .. }, Cursor::Local(after)) => {
                let (rows, next) = audit::events_after(ciba, *after, PAGE)?;
                Ok((rows, Cursor::Local(Some(next))))
            }
            _ => bail!("a cursor of another source"),
        }
    }

    /// The first cursor of the feed.
    pub fn first_cursor(&self) -> Cursor {
        match self {
            Source::Remote { .. } => Cursor::Remote(None),
            Source::Local { .. } => Cursor::Local(None),
        }
    }

    /// The relying party a running server names in its evidence (from the bundle of the
    /// request `request_id`).
    pub async fn relying_party_of(
        &self,
        request_id: &str,
    ) -> anyhow::Result<Option<countersign_verifier::RelyingParty>> {
        match self {
            Source::Remote { .. } => {
                let path = crate::admin_client::path_of(&["v1", "admin", "evidence", request_id])
                    .map_err(|e| anyhow!("{e}"))?;
                let b: countersign_verifier::EvidenceBundle = self
                    .get(&path, true)
                    .await?
                    .json()
                    .await
                    .context("reading an evidence bundle")?;
                Ok(Some(b.relying_party))
            }
            Source::Local { .. } => Ok(None),
        }
    }
}
