//! Layer snapshots, one per chain id. Who uses a snapshot is derived from
//! `image_layers` (and, later, containers), so there is no refcount to drift.

use berth_content::Digest;
use rusqlite::{params, OptionalExtension};

use crate::error::not_found;
use crate::{digest_column, optional_digest_column, Error, Result, Tx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub chain_id: Digest,
    /// The snapshot this one is stacked on; `None` for a base layer.
    pub parent: Option<Digest>,
    /// The snapshot's directory name under `snapshots/`.
    pub key: String,
    /// Bytes used by this layer alone.
    pub size: u64,
    /// Unix nanos.
    pub created_at: i64,
}

const SNAPSHOT_COLUMNS: &str = "chain_id, parent, key, size, created_at";

fn snapshot_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Snapshot> {
    Ok(Snapshot {
        chain_id: digest_column(row, 0)?,
        parent: optional_digest_column(row, 1)?,
        key: row.get(2)?,
        size: row.get(3)?,
        created_at: row.get(4)?,
    })
}

impl Tx<'_> {
    /// Records a snapshot; its parent must be recorded first. Returns `false`,
    /// changing nothing, if one with this chain id exists.
    pub fn insert_snapshot(&self, snapshot: &Snapshot) -> Result<bool> {
        if self.find_snapshot(&snapshot.chain_id)?.is_some() {
            return Ok(false);
        }
        if let Some(parent) = &snapshot.parent {
            if self.find_snapshot(parent)?.is_none() {
                return Err(not_found("parent snapshot", parent));
            }
        }
        let key_taken = self
            .conn
            .query_row(
                "SELECT chain_id FROM snapshots WHERE key = ?1",
                [&snapshot.key],
                |row| row.get::<_, String>(0),
            )
            .optional()?;
        if let Some(other) = key_taken {
            return Err(Error::Conflict(format!(
                "snapshot key {} is already used by {other}",
                snapshot.key
            )));
        }
        self.conn.execute(
            &format!("INSERT INTO snapshots ({SNAPSHOT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
            params![
                snapshot.chain_id.as_str(),
                snapshot.parent.as_ref().map(Digest::as_str),
                snapshot.key,
                snapshot.size,
                snapshot.created_at,
            ],
        )?;
        Ok(true)
    }

    fn find_snapshot(&self, chain_id: &Digest) -> Result<Option<Snapshot>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE chain_id = ?1"),
                [chain_id.as_str()],
                snapshot_from_row,
            )
            .optional()?)
    }

    pub fn get_snapshot(&self, chain_id: &Digest) -> Result<Snapshot> {
        self.find_snapshot(chain_id)?
            .ok_or_else(|| not_found("snapshot", chain_id))
    }

    /// All snapshots, ordered by chain id.
    pub fn list_snapshots(&self) -> Result<Vec<Snapshot>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {SNAPSHOT_COLUMNS} FROM snapshots ORDER BY chain_id"
            ))?
            .query_map([], snapshot_from_row)?
            .collect::<rusqlite::Result<_>>()?)
    }

    pub fn set_snapshot_size(&self, chain_id: &Digest, size: u64) -> Result<()> {
        let changed = self.conn.execute(
            "UPDATE snapshots SET size = ?2 WHERE chain_id = ?1",
            params![chain_id.as_str(), size],
        )?;
        if changed == 0 {
            return Err(not_found("snapshot", chain_id));
        }
        Ok(())
    }

    /// Snapshots no image layer uses and no snapshot is stacked on: the ones
    /// that can be removed now. Removing them may make their parents unused.
    pub fn unused_snapshots(&self) -> Result<Vec<Snapshot>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {SNAPSHOT_COLUMNS} FROM snapshots s \
                 WHERE NOT EXISTS (SELECT 1 FROM image_layers l WHERE l.chain_id = s.chain_id) \
                   AND NOT EXISTS (SELECT 1 FROM snapshots c WHERE c.parent = s.chain_id) \
                 ORDER BY chain_id"
            ))?
            .query_map([], snapshot_from_row)?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Forgets a snapshot; refused while an image uses it or a snapshot is
    /// stacked on it. Returns what was recorded (the caller removes the directory).
    pub fn delete_snapshot(&self, chain_id: &Digest) -> Result<Snapshot> {
        let snapshot = self.get_snapshot(chain_id)?;
        let users = self.images_using_chain(chain_id)?;
        if let Some(user) = users.first() {
            return Err(Error::Conflict(format!(
                "snapshot {chain_id} is used by image {}",
                user.short()
            )));
        }
        let children = self.digests(
            "SELECT chain_id FROM snapshots WHERE parent = ?1 ORDER BY chain_id",
            chain_id.as_str(),
        )?;
        if let Some(child) = children.first() {
            return Err(Error::Conflict(format!(
                "snapshot {chain_id} has snapshot {child} stacked on it"
            )));
        }
        self.conn.execute(
            "DELETE FROM snapshots WHERE chain_id = ?1",
            [chain_id.as_str()],
        )?;
        Ok(snapshot)
    }
}
