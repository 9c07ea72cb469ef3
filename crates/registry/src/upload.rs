//! Blob upload sessions: an ingest file under `<root>/uploads/` and a running
//! sha256 of what was appended so far. Sessions live in memory only; a restart
//! forgets them and `Storage::open` removes their files. A session nobody
//! touched for `IDLE_LIMIT` is dropped, with its file, when a new one starts.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hasher as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{RegistryError, Result};
use crate::names::Digest;

/// registry:2 purges uploads idle for a week; a day keeps the disk tidier and
/// is still far longer than any client pauses between chunks.
const IDLE_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

pub struct Upload {
    pub repo: String,
    pub path: PathBuf,
    pub offset: u64,
    hasher: Sha256,
    file: tokio::fs::File,
    touched: Instant,
}

impl Upload {
    pub async fn create(repo: &str, path: PathBuf) -> Result<Upload> {
        let file = tokio::fs::File::create(&path).await?;
        Ok(Upload {
            repo: repo.to_owned(),
            path,
            offset: 0,
            hasher: Sha256::new(),
            file,
            touched: Instant::now(),
        })
    }

    /// Streams `body` onto the end of the ingest file; returns the bytes added.
    pub async fn append(&mut self, body: Body) -> Result<u64> {
        let mut stream = body.into_data_stream();
        let mut added = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                RegistryError::UploadInvalid(format!("reading the request body: {e}"))
            })?;
            self.file.write_all(&chunk).await?;
            self.hasher.update(&chunk);
            added += chunk.len() as u64;
        }
        self.offset += added;
        self.touched = Instant::now();
        Ok(added)
    }

    /// Flushes and fsyncs the ingest file and checks it against `expected`;
    /// on success the file is ready to be renamed into the store.
    pub async fn finish(self, expected: &Digest) -> Result<PathBuf> {
        self.file.sync_all().await?;
        let actual = Digest::from_hasher(self.hasher);
        if &actual != expected {
            let _ = tokio::fs::remove_file(&self.path).await;
            return Err(RegistryError::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(self.path)
    }

    pub async fn discard(self) {
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}

/// The sessions in progress, by id. Each is behind its own lock so requests on
/// different uploads never wait for each other.
#[derive(Default)]
pub struct Uploads {
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Upload>>>>>,
}

impl Uploads {
    pub fn insert(&self, id: String, upload: Upload) {
        let mut sessions = self.lock();
        // A session busy with a request is in use, whatever its age.
        sessions.retain(|_, session| match session.try_lock() {
            Ok(mut guard) => match guard.as_ref() {
                Some(upload) if upload.touched.elapsed() > IDLE_LIMIT => {
                    if let Some(upload) = guard.take() {
                        let _ = std::fs::remove_file(&upload.path);
                    }
                    false
                }
                _ => true,
            },
            Err(_) => true,
        });
        sessions.insert(id, Arc::new(tokio::sync::Mutex::new(Some(upload))));
    }

    pub fn get(&self, id: &str) -> Option<Arc<tokio::sync::Mutex<Option<Upload>>>> {
        self.lock().get(id).cloned()
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Option<Upload>>>>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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
