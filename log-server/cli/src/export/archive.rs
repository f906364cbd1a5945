//! Writing an archive's files: into a staging directory beside the target, each file hashed as
//! it is written, then `MANIFEST.json`, then renamed into place (or written as one tar file) so
//! that an interrupted export never leaves something that looks like a finished archive.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use countersign_verifier::export::Manifest;
use sha2::{Digest, Sha256};

/// The file that marks a staging directory as an unfinished export (safe to remove).
const PARTIAL_MARKER: &str = ".countersign-export-partial";

/// An archive being written.
pub struct ArchiveWriter {
    out: PathBuf,
    staging: PathBuf,
    tar: bool,
    files: BTreeMap<String, String>,
    bytes: u64,
    finished: bool,
}

impl Drop for ArchiveWriter {
    /// An export that stops on an error removes what it staged (one killed outright leaves the
    /// staging directory, marked, for the next export to the same place to remove).
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// Bytes a file may hold unsynced before the writer syncs them. An export of a busy server is
/// often written to the server's own disk: a large file left for the page cache to write back at
/// once stalls the server's own fsyncs behind it (on ext4, the journal commit waits for it), which
/// took the append p99 from 2.2 ms to 28 ms in `benches/export-load.sh`. Syncing as it goes keeps
/// that backlog small.
const SYNC_EVERY: u64 = 4 << 20;

/// A buffered file that syncs every [`SYNC_EVERY`] bytes.
struct Paced {
    w: BufWriter<File>,
    unsynced: u64,
}

impl Paced {
    fn new(f: File) -> Paced {
        Paced {
            w: BufWriter::with_capacity(1 << 16, f),
            unsynced: 0,
        }
    }

    /// Flushed and synced.
    fn finish(self) -> std::io::Result<()> {
        let f = self.w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
    }
}

impl Write for Paced {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.w.write(b)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY {
            self.unsynced = 0;
            self.w.flush()?;
            self.w.get_ref().sync_data()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// A file being written: hashed as it goes.
pub struct FileWriter {
    path: String,
    w: Paced,
    h: Sha256,
    n: u64,
}

impl FileWriter {
    /// Appends bytes.
    pub fn write(&mut self, b: &[u8]) -> anyhow::Result<()> {
        self.h.update(b);
        self.n += b.len() as u64;
        self.w
            .write_all(b)
            .with_context(|| format!("writing {}", self.path))
    }
}

impl ArchiveWriter {
    /// Starts an archive at `out` (a directory, or a tar file with `tar`), which must not exist.
    pub fn create(out: &Path, tar: bool) -> anyhow::Result<ArchiveWriter> {
        if out.exists() {
            bail!(
                "{} already exists: an export never overwrites; choose a new --out",
                out.display()
            );
        }
        let mut staging = out.as_os_str().to_owned();
        staging.push(".partial");
        let staging = PathBuf::from(staging);
        if staging.exists() {
            if staging.join(PARTIAL_MARKER).exists() {
                fs::remove_dir_all(&staging).with_context(|| {
                    format!("removing the unfinished export {}", staging.display())
                })?;
            } else {
                bail!(
                    "{} exists and is not an unfinished export: move it away",
                    staging.display()
                );
            }
        }
        fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
        fs::write(staging.join(PARTIAL_MARKER), b"")
            .with_context(|| format!("writing in {}", staging.display()))?;
        Ok(ArchiveWriter {
            out: out.to_owned(),
            staging,
            tar,
            files: BTreeMap::new(),
            bytes: 0,
            finished: false,
        })
    }

    /// Opens the archive file `path` (relative, `/`-separated) for writing.
    pub fn open(&mut self, path: &str) -> anyhow::Result<FileWriter> {
        let full = self.staging.join(path);
        if let Some(dir) = full.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let f = File::create(&full).with_context(|| format!("creating {}", full.display()))?;
        Ok(FileWriter {
            path: path.to_owned(),
            w: Paced::new(f),
            h: Sha256::new(),
            n: 0,
        })
    }

    /// Finishes a file: flushed, synced and listed with its hash.
    pub fn close(&mut self, f: FileWriter) -> anyhow::Result<()> {
        let FileWriter { path, w, h, n } = f;
        w.finish()
            .with_context(|| format!("writing and syncing {path}"))?;
        self.files.insert(path, hex::encode(h.finalize()));
        self.bytes += n;
        Ok(())
    }

    /// Writes a whole file.
    pub fn file(&mut self, path: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let mut f = self.open(path)?;
        f.write(bytes)?;
        self.close(f)
    }

    /// Bytes written so far (without the manifest).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The files written so far, with their hashes.
    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// Writes `MANIFEST.json` (its `files` set to what was written) and puts the archive in
    /// place. Returns its path.
    pub fn finish(mut self, mut manifest: Manifest) -> anyhow::Result<PathBuf> {
        manifest.files = self.files.clone();
        let text = serde_json::to_string_pretty(&manifest).context("writing the manifest")?;
        let mpath = self.staging.join("MANIFEST.json");
        fs::write(&mpath, format!("{text}\n")).context("writing MANIFEST.json")?;
        File::open(&mpath)
            .and_then(|f| f.sync_all())
            .context("syncing MANIFEST.json")?;
        fs::remove_file(self.staging.join(PARTIAL_MARKER)).context("finishing the export")?;
        if self.tar {
            let mut tmp = self.out.as_os_str().to_owned();
            tmp.push(".tar-partial");
            let tmp = PathBuf::from(tmp);
            let f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut b = tar::Builder::new(Paced::new(f));
            b.mode(tar::HeaderMode::Deterministic);
            let mut names: Vec<&String> = self.files.keys().collect();
            let manifest_name = "MANIFEST.json".to_owned();
            names.insert(0, &manifest_name);
            for name in names {
                b.append_path_with_name(self.staging.join(name), name)
                    .with_context(|| format!("adding {name} to the tar file"))?;
            }
            let w = b.into_inner().context("finishing the tar file")?;
            w.finish().context("writing and syncing the tar file")?;
            fs::rename(&tmp, &self.out)
                .with_context(|| format!("moving the tar file to {}", self.out.display()))?;
            fs::remove_dir_all(&self.staging).ok();
            self.finished = true;
        } else {
            fs::rename(&self.staging, &self.out).with_context(|| {
                format!("moving the archive into place at {}", self.out.display())
            })?;
            self.finished = true;
        }
        Ok(self.out.clone())
    }
}
