#![forbid(unsafe_code)]
//! The SQLite store of images, tags, layers, containers and events, with schema migrations.
//!
//! One database file (`<data-root>/berth.db`) in WAL mode. Every change that
//! touches several rows runs in one transaction, so a crash leaves either all
//! of it or none: no half image is ever listed. Policy (which image may be
//! removed, what a reference normalizes to) stays with the caller; this crate
//! records facts and refuses only what would break the store's own integrity.
//!
//! Use: [`MetadataStore::transaction`] for changes (and to group several),
//! [`MetadataStore::read`] for consistent multi-query reads; both hand the
//! closure a [`Tx`], which holds every typed operation. The most common ones
//! are also on `MetadataStore` directly.

mod containers;
mod error;
mod events;
mod images;
mod schema;
mod snapshots;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_content::Digest;
use rusqlite::{Connection, TransactionBehavior};

pub use containers::Container;
pub use error::Error;
pub use events::{Event, NewEvent};
pub use images::{DeletedImage, Image, ImageLayer, ImageManifest, NewImage};
pub use schema::{current_version, MIGRATIONS};
pub use snapshots::Snapshot;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long a writer waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An open metadata database. One connection; share it behind a mutex, or
/// open one store per thread (WAL lets readers run beside the writer).
pub struct MetadataStore {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for MetadataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataStore")
            .field("path", &self.path)
            .finish()
    }
}

impl MetadataStore {
    /// Opens or creates the database, and migrates it to the current schema.
    /// A database written by a newer berth is refused with
    /// [`Error::SchemaTooNew`] and left untouched.
    pub fn open(path: impl AsRef<Path>) -> Result<MetadataStore> {
        Self::open_at_version(path.as_ref(), current_version())
    }

    fn open_at_version(path: &Path, version: usize) -> Result<MetadataStore> {
        let open_error = |source| Error::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(open_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Corrupt(format!(
                "{} cannot use write-ahead logging (journal mode stays {mode})",
                path.display()
            )));
        }
        // FULL: a transaction reported committed survives power loss, not only a crash.
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
            .map_err(open_error)?;
        schema::migrate(&mut conn, version)?;
        Ok(MetadataStore {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u64> {
        schema::read_version(&self.conn)
    }

    /// Runs `f` in one write transaction: committed if `f` returns `Ok`,
    /// rolled back (nothing changed) if it returns `Err` or panics.
    pub fn transaction<T, E: From<Error>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(Error::from)?;
        let value = f(&Tx { conn: &tx })?;
        tx.commit().map_err(Error::from)?;
        Ok(value)
    }

    /// Runs `f` on one consistent snapshot of the database; nothing `f` does
    /// is kept.
    pub fn read<T, E: From<Error>>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, E>) -> Result<T, E> {
        let tx = self.conn.unchecked_transaction().map_err(Error::from)?;
        f(&Tx { conn: &tx })
    }

    pub fn insert_image(&mut self, image: &NewImage) -> Result<bool> {
        self.transaction(|tx| tx.insert_image(image))
    }

    pub fn get_image(&self, id: &Digest) -> Result<Image> {
        self.read(|tx| tx.get_image(id))
    }

    pub fn list_images(&self) -> Result<Vec<Image>> {
        self.read(|tx| tx.list_images())
    }

    pub fn resolve_reference(&self, reference: &str) -> Result<Digest> {
        self.read(|tx| tx.resolve_reference(reference))
    }

    pub fn resolve_id(&self, id_or_prefix: &str) -> Result<Digest> {
        self.read(|tx| tx.resolve_id(id_or_prefix))
    }

    pub fn tag(&mut self, reference: &str, id: &Digest) -> Result<Option<Digest>> {
        self.transaction(|tx| tx.tag(reference, id))
    }

    pub fn untag(&mut self, reference: &str) -> Result<Digest> {
        self.transaction(|tx| tx.untag(reference))
    }

    pub fn delete_image(&mut self, id: &Digest, force: bool) -> Result<DeletedImage> {
        self.transaction(|tx| tx.delete_image(id, force))
    }

    pub fn append_event(&mut self, event: &NewEvent) -> Result<i64> {
        self.transaction(|tx| tx.append_event(event))
    }

    pub fn events_since(&self, since_nanos: i64) -> Result<Vec<Event>> {
        self.read(|tx| tx.events_since(since_nanos))
    }

    pub fn events_range(&self, since_nanos: i64, until_nanos: i64) -> Result<Vec<Event>> {
        self.read(|tx| tx.events_range(since_nanos, until_nanos))
    }

    pub fn prune_events(&mut self, keep_newest: usize) -> Result<usize> {
        self.transaction(|tx| tx.prune_events(keep_newest))
    }
}

/// The operations, inside one transaction (see [`MetadataStore::transaction`]
/// and [`MetadataStore::read`]).
pub struct Tx<'c> {
    conn: &'c Connection,
}

/// Nanoseconds since the Unix epoch, the unit of every time this store keeps.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Reads a digest column; a malformed one is corruption.
pub(crate) fn digest_column(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Digest> {
    let text: String = row.get(idx)?;
    Digest::parse(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(crate) fn optional_digest_column(
    row: &rusqlite::Row<'_>,
    idx: usize,
) -> rusqlite::Result<Option<Digest>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|text| {
        Digest::parse(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
        })
    })
    .transpose()
}

/// Reads a JSON column into `T`; malformed JSON is corruption.
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    row: &rusqlite::Row<'_>,
    idx: usize,
) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(crate) fn to_json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::InvalidInput {
        what: "JSON value",
        input: String::new(),
        reason: e.to_string(),
    })
}

// Tests unwrap freely: a panic is how a test fails.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
