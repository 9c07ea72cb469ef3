//! Containers: identity and name here; config and state are JSON documents
//! whose shape belongs to the engine (the containers issue fills them).

use berth_content::Digest;
use rusqlite::{params, OptionalExtension};

use crate::error::not_found;
use crate::{digest_column, json_column, to_json, Error, Result, Tx};

#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// 64 hex characters.
    pub id: String,
    /// Unique, without Docker's leading `/`.
    pub name: String,
    pub image_id: Digest,
    /// Unix nanos.
    pub created_nanos: i64,
    pub config: serde_json::Value,
    pub state: serde_json::Value,
}

const CONTAINER_COLUMNS: &str = "id, name, image_id, created_nanos, config, state";

fn container_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Container> {
    Ok(Container {
        id: row.get(0)?,
        name: row.get(1)?,
        image_id: digest_column(row, 2)?,
        created_nanos: row.get(3)?,
        config: json_column(row, 4)?,
        state: json_column(row, 5)?,
    })
}

impl Tx<'_> {
    /// Records a container; its id and name must both be free.
    pub fn insert_container(&self, container: &Container) -> Result<()> {
        if self.find_container(&container.id)?.is_some() {
            return Err(Error::Conflict(format!(
                "container id {} is already in use",
                container.id
            )));
        }
        self.check_name_free(&container.name)?;
        self.conn.execute(
            &format!(
                "INSERT INTO containers ({CONTAINER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ),
            params![
                container.id,
                container.name,
                container.image_id.as_str(),
                container.created_nanos,
                to_json(&container.config)?,
                to_json(&container.state)?,
            ],
        )?;
        Ok(())
    }

    fn check_name_free(&self, name: &str) -> Result<()> {
        let holder = self
            .conn
            .query_row("SELECT id FROM containers WHERE name = ?1", [name], |row| {
                row.get::<_, String>(0)
            })
            .optional()?;
        match holder {
            Some(id) => Err(Error::Conflict(format!(
                "the container name \"/{name}\" is already in use by container {id}"
            ))),
            None => Ok(()),
        }
    }

    fn find_container(&self, id: &str) -> Result<Option<Container>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {CONTAINER_COLUMNS} FROM containers WHERE id = ?1"),
                [id],
                container_from_row,
            )
            .optional()?)
    }

    pub fn get_container(&self, id: &str) -> Result<Container> {
        self.find_container(id)?
            .ok_or_else(|| not_found("container", id))
    }

    pub fn container_by_name(&self, name: &str) -> Result<Container> {
        self.conn
            .query_row(
                &format!("SELECT {CONTAINER_COLUMNS} FROM containers WHERE name = ?1"),
                [name],
                container_from_row,
            )
            .optional()?
            .ok_or_else(|| not_found("container", name))
    }

    /// All containers, newest first.
    pub fn list_containers(&self) -> Result<Vec<Container>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {CONTAINER_COLUMNS} FROM containers ORDER BY created_nanos DESC, id"
            ))?
            .query_map([], container_from_row)?
            .collect::<rusqlite::Result<_>>()?)
    }

    pub fn set_container_state(&self, id: &str, state: &serde_json::Value) -> Result<()> {
        let changed = self.conn.execute(
            "UPDATE containers SET state = ?2 WHERE id = ?1",
            params![id, to_json(state)?],
        )?;
        if changed == 0 {
            return Err(not_found("container", id));
        }
        Ok(())
    }

    pub fn set_container_config(&self, id: &str, config: &serde_json::Value) -> Result<()> {
        let changed = self.conn.execute(
            "UPDATE containers SET config = ?2 WHERE id = ?1",
            params![id, to_json(config)?],
        )?;
        if changed == 0 {
            return Err(not_found("container", id));
        }
        Ok(())
    }

    pub fn rename_container(&self, id: &str, new_name: &str) -> Result<()> {
        let container = self.get_container(id)?;
        if container.name == new_name {
            return Ok(());
        }
        self.check_name_free(new_name)?;
        self.conn.execute(
            "UPDATE containers SET name = ?2 WHERE id = ?1",
            params![id, new_name],
        )?;
        Ok(())
    }

    /// Forgets a container; returns what was recorded.
    pub fn delete_container(&self, id: &str) -> Result<Container> {
        let container = self.get_container(id)?;
        self.conn
            .execute("DELETE FROM containers WHERE id = ?1", [id])?;
        Ok(container)
    }

    /// Ids of containers created from image `id`.
    pub fn containers_using_image(&self, id: &Digest) -> Result<Vec<String>> {
        self.strings(
            "SELECT id FROM containers WHERE image_id = ?1 ORDER BY id",
            id.as_str(),
        )
    }
}
