//! Blob upload sessions, kept on disk so they survive a restart: each is a
//! directory `<root>/uploads/<id>/` holding `session.json` (the repository)
//! and `data` (the bytes received so far). The offset is `data`'s length
//! and the running sha256 lives in memory; a session picked up after a
//! restart re-hashes `data` on its first PATCH or PUT. A `data` cut short by
//! a crash in the middle of a PATCH is still a prefix of what the client
//! sent: the client asks for the range (`GET`) and goes on from there, and
//! the final digest check catches anything else. Sessions idle for longer
//! than the purge age are removed, files and all.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{RegistryError, Result};
use crate::names::Digest;
use crate::storage::Storage;

/// registry:2 purges uploads a week old; a day keeps the disk tidier and is
/// still far longer than any client pauses between chunks.
pub const DEFAULT_PURGE_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

const SESSION_FILE: &str = "session.json";
const DATA_FILE: &str = "data";

#[derive(serde::Serialize, serde::Deserialize)]
struct SessionFile {
    repo: String,
}

pub struct Upload {
    pub repo: String,
    dir: PathBuf,
    pub offset: u64,
    /// None for a session picked up from disk until it is next written to.
    hasher: Option<Sha256>,
    file: Option<tokio::fs::File>,
    touched: SystemTime,
}

impl Upload {
    /// A new session directory under `uploads`.
    pub async fn create(uploads: &Path, id: &str, repo: &str) -> Result<Upload> {
        let dir = uploads.join(id);
        tokio::fs::create_dir(&dir).await?;
        let made = async {
            let session = serde_json::to_vec(&SessionFile {
                repo: repo.to_owned(),
            })
            .map_err(std::io::Error::other)?;
            tokio::fs::write(dir.join(SESSION_FILE), session).await?;
            tokio::fs::File::create(dir.join(DATA_FILE)).await
        }
        .await;
        match made {
            Ok(file) => Ok(Upload {
                repo: repo.to_owned(),
                dir,
                offset: 0,
                hasher: Some(Sha256::new()),
                file: Some(file),
                touched: SystemTime::now(),
            }),
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                Err(e.into())
            }
        }
    }

    /// A session a previous run left in `dir`; none when it is not one.
    fn load(dir: &Path) -> Option<Upload> {
        let session: SessionFile =
            serde_json::from_slice(&std::fs::read(dir.join(SESSION_FILE)).ok()?).ok()?;
        crate::names::check_name(&session.repo).ok()?;
        let meta = std::fs::metadata(dir.join(DATA_FILE)).ok()?;
        Some(Upload {
            repo: session.repo,
            dir: dir.to_path_buf(),
            offset: meta.len(),
            hasher: None,
            file: None,
            touched: meta.modified().unwrap_or_else(|_| SystemTime::now()),
        })
    }

    fn data_path(&self) -> PathBuf {
        self.dir.join(DATA_FILE)
    }

    /// Opens a session picked up from disk for appending, hashing what it
    /// holds so far.
    async fn ready(&mut self) -> Result<()> {
        if self.hasher.is_some() && self.file.is_some() {
            return Ok(());
        }
        let path = self.data_path();
        let (hasher, offset) = tokio::task::spawn_blocking(move || {
            use std::io::Read as _;
            let mut hasher = Sha256::new();
            let mut file = std::fs::File::open(&path)?;
            let mut buf = vec![0u8; 1 << 20];
            let mut offset = 0u64;
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                offset += n as u64;
            }
            Ok::<_, std::io::Error>((hasher, offset))
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        let file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(self.data_path())
            .await?;
        self.hasher = Some(hasher);
        self.offset = offset;
        self.file = Some(file);
        Ok(())
    }

    /// Streams `body` onto the end of the ingest file; returns the bytes
    /// added. Past `limit` bytes in all it stops with `BlobTooLarge` (the
    /// caller discards the session).
    pub async fn append(&mut self, body: Body, limit: Option<u64>) -> Result<u64> {
        self.ready().await?;
        let (Some(file), Some(hasher)) = (self.file.as_mut(), self.hasher.as_mut()) else {
            unreachable!("ready opens the file and the hasher");
        };
        let mut stream = body.into_data_stream();
        let mut added = 0;
        let mut result = Ok(());
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    result = Err(RegistryError::UploadInvalid(format!(
                        "reading the request body: {e}"
                    )));
                    break;
                }
            };
            if let Some(limit) = limit {
                if self.offset + added + chunk.len() as u64 > limit {
                    result = Err(RegistryError::BlobTooLarge(limit));
                    break;
                }
            }
            if let Err(e) = file.write_all(&chunk).await {
                result = Err(e.into());
                break;
            }
            hasher.update(&chunk);
            added += chunk.len() as u64;
        }
        self.offset += added;
        self.touched = SystemTime::now();
        // Bytes written before a failure are in the file, and the offset
        // says so; a client can ask for the range and go on.
        result.map(|()| added)
    }

    /// Fsyncs the ingest file, checks it against `expected` and moves it
    /// into the store; the session's directory goes either way.
    pub async fn finish(mut self, store: &Storage, expected: &Digest) -> Result<()> {
        let result = self.commit(store, expected).await;
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
        result
    }

    async fn commit(&mut self, store: &Storage, expected: &Digest) -> Result<()> {
        self.ready().await?;
        let (Some(file), Some(hasher)) = (self.file.take(), self.hasher.take()) else {
            unreachable!("ready opens the file and the hasher");
        };
        file.sync_all().await?;
        drop(file);
        let actual = Digest::from_hasher(hasher);
        if &actual != expected {
            return Err(RegistryError::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        store.commit_blob(&self.data_path(), expected).await
    }

    pub async fn discard(self) {
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
    }
}

type Session = Arc<tokio::sync::Mutex<Option<Upload>>>;

/// The sessions in progress, by id. Each is behind its own lock so requests on
/// different uploads never wait for each other.
pub struct Uploads {
    dir: PathBuf,
    purge_after: Duration,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Uploads {
    /// The sessions a previous run left under `dir`; anything else there
    /// (an unfinished session directory, a file) is removed.
    pub fn load(dir: &Path, purge_after: Duration) -> std::io::Result<Uploads> {
        let mut sessions = HashMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let id = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let upload = (is_id(&id) && entry.file_type()?.is_dir())
                .then(|| Upload::load(&path))
                .flatten();
            match upload {
                Some(upload) => {
                    sessions.insert(id, Arc::new(tokio::sync::Mutex::new(Some(upload))));
                }
                None if entry.file_type()?.is_dir() => {
                    let _ = std::fs::remove_dir_all(&path);
                }
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(Uploads {
            dir: dir.to_path_buf(),
            purge_after,
            sessions: Mutex::new(sessions),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn purge_after(&self) -> Duration {
        self.purge_after
    }

    pub fn insert(&self, id: String, upload: Upload) {
        self.lock()
            .insert(id, Arc::new(tokio::sync::Mutex::new(Some(upload))));
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        self.lock().get(id).cloned()
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Removes the sessions nobody touched for the purge age; returns how
    /// many. A session busy with a request is in use, whatever its age.
    pub fn purge(&self) -> usize {
        let now = SystemTime::now();
        let mut gone = Vec::new();
        self.lock().retain(|_, session| match session.try_lock() {
            Ok(mut guard) => match guard.as_ref() {
                Some(upload)
                    if now
                        .duration_since(upload.touched)
                        .is_ok_and(|idle| idle > self.purge_after) =>
                {
                    gone.extend(guard.take().map(|upload| upload.dir));
                    false
                }
                Some(_) => true,
                None => false,
            },
            Err(_) => true,
        });
        for dir in &gone {
            let _ = std::fs::remove_dir_all(dir);
        }
        gone.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Purges idle sessions every so often (a tenth of the purge age, between
/// a second and an hour).
pub async fn purge_periodically(uploads: Arc<Uploads>) {
    let every =
        (uploads.purge_after() / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let uploads = uploads.clone();
        match tokio::task::spawn_blocking(move || uploads.purge()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("removed {n} upload sessions idle for too long"),
            Err(e) => tracing::error!("purging upload sessions: {e}"),
        }
    }
}

fn is_id(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// 32 hex digits nobody can guess: a hash, keyed by the process's random
/// `RandomState`, of a counter and the time.
pub fn random_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = std::collections::hash_map::RandomState::new();
    let mut parts = [0u64; 2];
    for (i, part) in parts.iter_mut().enumerate() {
        let mut hasher = state.build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_usize(i);
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        *part = hasher.finish();
    }
    format!("{:016x}{:016x}", parts[0], parts[1])
}
