//! The event log behind `/events`: appended by the engine, read by time
//! range, pruned to a bounded size.

use std::collections::BTreeMap;

use rusqlite::params;

use crate::{json_column, to_json, Result, Tx};

/// An event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Unix nanos.
    pub time_nanos: i64,
    /// Docker's `Type`: `image`, `container`, `network`, …
    pub kind: String,
    /// Docker's `Action`: `pull`, `tag`, `untag`, `delete`, …
    pub action: String,
    /// Docker's `Actor.ID`.
    pub actor_id: String,
    /// Docker's `Actor.Attributes`.
    pub attributes: BTreeMap<String, String>,
}

/// A recorded event; `id` orders events with the same time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub time_nanos: i64,
    pub kind: String,
    pub action: String,
    pub actor_id: String,
    pub attributes: BTreeMap<String, String>,
}

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: row.get(0)?,
        time_nanos: row.get(1)?,
        kind: row.get(2)?,
        action: row.get(3)?,
        actor_id: row.get(4)?,
        attributes: json_column(row, 5)?,
    })
}

const EVENT_SELECT: &str = "SELECT id, time_nanos, type, action, actor_id, attributes FROM events";

impl Tx<'_> {
    /// Records an event; returns its id.
    pub fn append_event(&self, event: &NewEvent) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO events (time_nanos, type, action, actor_id, attributes) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                event.time_nanos,
                event.kind,
                event.action,
                event.actor_id,
                to_json(&event.attributes)?
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Events at or after `since_nanos`, oldest first.
    pub fn events_since(&self, since_nanos: i64) -> Result<Vec<Event>> {
        self.events_range(since_nanos, i64::MAX)
    }

    /// Events with `since_nanos <= time <= until_nanos`, oldest first.
    pub fn events_range(&self, since_nanos: i64, until_nanos: i64) -> Result<Vec<Event>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "{EVENT_SELECT} WHERE time_nanos >= ?1 AND time_nanos <= ?2 ORDER BY time_nanos, id"
            ))?
            .query_map([since_nanos, until_nanos], event_from_row)?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Keeps the newest `keep_newest` events; returns how many were removed.
    pub fn prune_events(&self, keep_newest: usize) -> Result<usize> {
        Ok(self.conn.execute(
            "DELETE FROM events WHERE id NOT IN \
             (SELECT id FROM events ORDER BY time_nanos DESC, id DESC LIMIT ?1)",
            [keep_newest as u64],
        )?)
    }
}
