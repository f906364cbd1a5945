//! A bucket: object storage (`s3://BUCKET/PREFIX`) or a directory (`file:///DIR`) holding a
//! log's tiles, entry bundles and checkpoint, written create-only and replaced only by
//! compare-and-swap. Used by the tile mirror ([`crate::mirror`]) and the shared driver
//! ([`crate::shared`]); `spec/tiles-mirror.md` says what is written and how.

use std::fmt;
use std::sync::Arc;

use futures_util::stream::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion,
};

use crate::storage::StorageError;

/// `Cache-Control` of full tiles and entry bundles.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of partial tiles and the checkpoint.
pub const NO_CACHE: &str = "no-cache";
/// Why a bucket cannot be used (by the tile mirror or the shared driver), or why writing to
/// it had to stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorError {
    /// The `--tiles` URL is not one that can be used.
    BadUrl(String),
    /// The bucket holds something this log must not overwrite: an object with other bytes
    /// than the log's, or a checkpoint of another log, ahead of this one or diverging from it.
    /// Writing stops.
    Conflict(String),
    /// The store failed (unreachable, refused, timed out): retried.
    Store(String),
    /// The log's own storage failed: retried.
    Log(String),
}

impl fmt::Display for MirrorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MirrorError::BadUrl(m) => write!(f, "--tiles: {m}"),
            // Said of the tile mirror and of the shared driver alike: they share the bucket.
            MirrorError::Conflict(m) => write!(f, "stopped: {m}"),
            MirrorError::Store(m) => write!(f, "bucket: {m}"),
            MirrorError::Log(m) => write!(f, "log storage: {m}"),
        }
    }
}

impl std::error::Error for MirrorError {}

impl From<StorageError> for MirrorError {
    fn from(e: StorageError) -> Self {
        MirrorError::Log(e.to_string())
    }
}

/// Where the mirror writes: an object store and the prefix of the log's paths in it.
#[derive(Clone, Debug)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// The URL as given, for messages.
    url: String,
    /// The store replaces objects by compare-and-swap and keeps `Cache-Control` and
    /// `Content-Type` (S3); a directory does neither.
    remote: bool,
}

impl Bucket {
    /// Opens `url`: `s3://BUCKET[/PREFIX]` (credentials, region and endpoint from the standard
    /// `AWS_*` environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint; path-style requests)
    /// or `file:///DIR` (created if missing).
    pub fn open(url: &str) -> Result<Bucket, MirrorError> {
        let parsed =
            url::Url::parse(url).map_err(|e| MirrorError::BadUrl(format!("{url:?}: {e}")))?;
        let bad = |m: &str| MirrorError::BadUrl(format!("{url:?}: {m}"));
        match parsed.scheme() {
            scheme @ ("s3" | "gs" | "az") => {
                let name = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad(&format!("no bucket name ({scheme}://BUCKET/PREFIX)")))?;
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(bad("a query or fragment is not part of a bucket path"));
                }
                let store: Arc<dyn ObjectStore> = match scheme {
                    "s3" => Arc::new(
                        AmazonS3Builder::from_env()
                            .with_bucket_name(name)
                            // Path-style requests (`ENDPOINT/BUCKET/KEY`), which every
                            // S3-compatible store answers.
                            .with_virtual_hosted_style_request(false)
                            .build()
                            .map_err(|e| bad(&e.to_string()))?,
                    ),
                    // Credentials from GOOGLE_SERVICE_ACCOUNT (a key file), GOOGLE_APPLICATION_
                    // CREDENTIALS or the instance's metadata server; conditional writes on the
                    // object generation.
                    "gs" => Arc::new(
                        GoogleCloudStorageBuilder::from_env()
                            .with_bucket_name(name)
                            .build()
                            .map_err(|e| bad(&e.to_string()))?,
                    ),
                    // The account from AZURE_STORAGE_ACCOUNT_NAME, credentials from AZURE_*;
                    // conditional writes on the ETag.
                    _ => Arc::new(
                        MicrosoftAzureBuilder::from_env()
                            .with_container_name(name)
                            .build()
                            .map_err(|e| bad(&e.to_string()))?,
                    ),
                };
                let prefix = ObjectPath::parse(parsed.path().trim_matches('/'))
                    .map_err(|e| bad(&e.to_string()))?;
                Ok(Bucket {
                    store,
                    prefix,
                    url: url.to_owned(),
                    remote: true,
                })
            }
            "file" => {
                if parsed.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(bad("a file URL names a local directory: file:///DIR"));
                }
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| bad("not a local directory path"))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| bad(&format!("cannot create {}: {e}", dir.display())))?;
                let store = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| bad(&e.to_string()))?
                    .with_automatic_cleanup(true);
                Ok(Bucket {
                    store: Arc::new(store),
                    prefix: ObjectPath::default(),
                    url: url.to_owned(),
                    remote: false,
                })
            }
            other => Err(bad(&format!(
                "unsupported scheme {other:?}: use s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, \
                 az://CONTAINER/PREFIX or file:///DIR"
            ))),
        }
    }

    /// Whether the store replaces objects by compare-and-swap (S3); a directory does not.
    pub(crate) fn compare_and_swap(&self) -> bool {
        self.remote
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bytes of the object at `rel` (relative to the bucket's prefix), or `None` if there
    /// is none. The bucket is not trusted: a reader checks what it gets.
    pub async fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, MirrorError> {
        let path = self.path(rel);
        let read = match self.store.get(&path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(MirrorError::Store(format!("reading {path}: {e}"))),
        };
        match read.bytes().await {
            Ok(b) => Ok(Some(b.to_vec())),
            // Removed between the request and the read of its body (a partial tile).
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(MirrorError::Store(format!("reading {path}: {e}"))),
        }
    }

    fn path(&self, rel: &str) -> ObjectPath {
        self.prefix
            .parts()
            .chain(ObjectPath::from(rel).parts())
            .collect()
    }

    fn options(&self, mode: PutMode, cache: &str, content_type: &str) -> PutOptions {
        let mut attributes = Attributes::new();
        if self.remote {
            attributes.insert(Attribute::CacheControl, cache.to_owned().into());
            attributes.insert(Attribute::ContentType, content_type.to_owned().into());
        }
        PutOptions {
            mode,
            attributes,
            ..PutOptions::default()
        }
    }

    /// Writes `bytes` at `rel` unless it is there: the same bytes already there are accepted,
    /// other bytes are a [`MirrorError::Conflict`] naming the object.
    pub(crate) async fn create(
        &self,
        rel: &str,
        bytes: Vec<u8>,
        cache: &str,
    ) -> Result<(), MirrorError> {
        let path = self.path(rel);
        let opts = self.options(PutMode::Create, cache, "application/octet-stream");
        // A reference-counted view of the bytes: kept for the comparison below without a copy.
        let payload = PutPayload::from(bytes);
        match self.store.put_opts(&path, payload.clone(), opts).await {
            Ok(_) => Ok(()),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                let there = self
                    .store
                    .get(&path)
                    .await
                    .map_err(|e| MirrorError::Store(format!("reading {path}: {e}")))?
                    .bytes()
                    .await
                    .map_err(|e| MirrorError::Store(format!("reading {path}: {e}")))?;
                let ours: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
                if there.as_ref() == ours.as_slice() {
                    Ok(())
                } else {
                    Err(MirrorError::Conflict(format!(
                        "{} already holds {path} with other bytes than this log's ({} bytes, \
                         the log's are {}): the bucket was altered or is another log's",
                        self.url,
                        there.len(),
                        ours.len()
                    )))
                }
            }
            Err(e) => Err(MirrorError::Store(format!("writing {path}: {e}"))),
        }
    }

    /// Removes the partial tiles stored under `rel` (`<tile>.p/<W>`), now that it is full.
    pub(crate) async fn remove_partials(&self, rel: &str) -> Result<(), MirrorError> {
        let prefix = self.path(&format!("{rel}.p"));
        let found: Vec<ObjectPath> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| MirrorError::Store(format!("listing {prefix}: {e}")))?;
        for p in found {
            match self.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(MirrorError::Store(format!("removing {p}: {e}"))),
            }
        }
        Ok(())
    }

    /// The checkpoint object and its version, if there is one.
    pub(crate) async fn checkpoint(&self) -> Result<Option<(Vec<u8>, UpdateVersion)>, MirrorError> {
        let path = self.path("checkpoint");
        match self.store.get(&path).await {
            Ok(r) => {
                let version = UpdateVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                };
                let b = r
                    .bytes()
                    .await
                    .map_err(|e| MirrorError::Store(format!("reading {path}: {e}")))?;
                Ok(Some((b.to_vec(), version)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(MirrorError::Store(format!("reading {path}: {e}"))),
        }
    }

    /// Replaces the checkpoint: created if `current` is `None`, else only if it is still
    /// `current` (compare-and-swap; a directory renames over it). The new object's version, or
    /// `Ok(None)` if another writer changed it first.
    pub(crate) async fn put_checkpoint(
        &self,
        note: &str,
        current: Option<UpdateVersion>,
    ) -> Result<Option<UpdateVersion>, MirrorError> {
        let path = self.path("checkpoint");
        let mode = match current {
            None => PutMode::Create,
            Some(v) if self.remote => PutMode::Update(v),
            Some(_) => PutMode::Overwrite,
        };
        let opts = self.options(mode, NO_CACHE, "text/plain; charset=utf-8");
        match self
            .store
            .put_opts(&path, PutPayload::from(note.as_bytes().to_vec()), opts)
            .await
        {
            Ok(r) => Ok(Some(UpdateVersion {
                e_tag: r.e_tag,
                version: r.version,
            })),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(None),
            Err(e) => Err(MirrorError::Store(format!("writing {path}: {e}"))),
        }
    }
}
