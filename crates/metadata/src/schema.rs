//! Schema versions. `MIGRATIONS[i]` takes a database from version `i` to
//! `i + 1`; a new schema change is a new entry at the end, never an edit.

use rusqlite::{Connection, TransactionBehavior};

use crate::{Error, Result};

pub const MIGRATIONS: &[&str] = &[
    // 1: images, their layers, tags, repo digests, layer snapshots, events.
    r#"
    CREATE TABLE images (
        id              TEXT PRIMARY KEY NOT NULL,  -- the config blob's digest
        manifest_digest TEXT,
        created         TEXT,                       -- RFC 3339, as the config says
        created_nanos   INTEGER,                    -- the same, for ordering and filters
        size            INTEGER NOT NULL,           -- sum of the layers' sizes
        os              TEXT NOT NULL,
        architecture    TEXT NOT NULL,
        variant         TEXT,
        labels          TEXT NOT NULL,              -- JSON object of strings
        inserted_at     INTEGER NOT NULL,           -- unix nanos
        last_tagged_at  INTEGER,
        parent_id       TEXT REFERENCES images(id)
    ) STRICT;
    CREATE INDEX images_parent ON images(parent_id);

    CREATE TABLE image_layers (
        image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position    INTEGER NOT NULL,
        diff_id     TEXT NOT NULL,
        chain_id    TEXT NOT NULL,
        blob_digest TEXT,
        size        INTEGER NOT NULL,
        PRIMARY KEY (image_id, position)
    ) STRICT;
    CREATE INDEX image_layers_chain ON image_layers(chain_id);

    CREATE TABLE tags (
        reference TEXT PRIMARY KEY NOT NULL,
        image_id  TEXT NOT NULL REFERENCES images(id),
        tagged_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX tags_image ON tags(image_id);

    CREATE TABLE repo_digests (
        reference TEXT PRIMARY KEY NOT NULL,
        image_id  TEXT NOT NULL REFERENCES images(id),
        added_at  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX repo_digests_image ON repo_digests(image_id);

    CREATE TABLE snapshots (
        chain_id   TEXT PRIMARY KEY NOT NULL,
        parent     TEXT REFERENCES snapshots(chain_id),
        key        TEXT NOT NULL UNIQUE,
        size       INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX snapshots_parent ON snapshots(parent);

    CREATE TABLE events (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        time_nanos INTEGER NOT NULL,
        type       TEXT NOT NULL,
        action     TEXT NOT NULL,
        actor_id   TEXT NOT NULL,
        attributes TEXT NOT NULL
    ) STRICT;
    CREATE INDEX events_time ON events(time_nanos);
    "#,
    // 2: containers; the containers issue fills config and state.
    r#"
    CREATE TABLE containers (
        id            TEXT PRIMARY KEY NOT NULL,
        name          TEXT NOT NULL UNIQUE,
        image_id      TEXT NOT NULL,
        created_nanos INTEGER NOT NULL,
        config        TEXT NOT NULL,
        state         TEXT NOT NULL
    ) STRICT;
    CREATE INDEX containers_image ON containers(image_id);
    "#,
    // 3: the manifests images were pulled with (their blobs are in the
    // content store), so a push sends them unchanged.
    r#"
    CREATE TABLE image_manifests (
        image_id     TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        digest       TEXT NOT NULL,   -- the manifest blob
        media_type   TEXT NOT NULL,
        index_digest TEXT,            -- the index blob it was chosen from
        added_at     INTEGER NOT NULL,
        PRIMARY KEY (image_id, digest)
    ) STRICT;
    "#,
];

/// The schema version this code writes.
pub fn current_version() -> usize {
    MIGRATIONS.len()
}

/// Brings the database to version `target` in one transaction: either every
/// missing migration runs or none does.
pub(crate) fn migrate(conn: &mut Connection, target: usize) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT",
    )?;
    let found = read_version(&tx)?;
    if found > MIGRATIONS.len() as u64 {
        return Err(Error::SchemaTooNew {
            found,
            known: MIGRATIONS.len() as u64,
        });
    }
    let found = found as usize;
    if found >= target {
        return Ok(());
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().take(target).skip(found) {
        tx.execute_batch(sql).map_err(|source| Error::Migration {
            version: index + 1,
            source,
        })?;
    }
    tx.execute("DELETE FROM schema_version", [])?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES (?1)",
        [target as u64],
    )?;
    tx.commit()?;
    Ok(())
}

pub(crate) fn read_version(conn: &Connection) -> Result<u64> {
    let rows: Vec<i64> = conn
        .prepare("SELECT version FROM schema_version")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    match rows.as_slice() {
        [] => Ok(0),
        [v] if *v >= 0 => Ok(*v as u64),
        _ => Err(Error::Corrupt(format!(
            "schema_version should hold one non-negative version, holds {rows:?}"
        ))),
    }
}

/// Whether the table exists; for tests of migrations.
#[cfg(test)]
pub(crate) fn has_table(conn: &Connection, name: &str) -> bool {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()
    .ok()
    .flatten()
    .is_some()
}
