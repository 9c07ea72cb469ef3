//! Images with their layers, tags and repo digests.

use std::collections::{BTreeMap, HashMap};

use berth_content::Digest;
use rusqlite::{params, OptionalExtension};

use crate::error::not_found;
use crate::{
    digest_column, json_column, now_nanos, optional_digest_column, to_json, Error, Result, Tx,
};

/// One layer of an image, bottom first in [`Image::layers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayer {
    /// Digest of the uncompressed layer tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// Identity of the stack of layers up to this one: the snapshot it unpacks to.
    pub chain_id: Digest,
    /// Digest of the (compressed) blob as distributed, when known.
    pub blob_digest: Option<Digest>,
    /// Size of the unpacked layer in bytes.
    pub size: u64,
}

/// What [`Tx::insert_image`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImage {
    /// The image ID: the digest of its config blob.
    pub id: Digest,
    pub manifest_digest: Option<Digest>,
    /// The config's `created`, RFC 3339; some configs have none.
    pub created: Option<String>,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The image this one was committed or built from.
    pub parent_id: Option<Digest>,
    pub layers: Vec<ImageLayer>,
}

/// An image as recorded, with everything `docker images` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The image ID, which is also the digest of its config blob.
    pub id: Digest,
    pub manifest_digest: Option<Digest>,
    pub created: Option<String>,
    /// `created` as unix nanos.
    pub created_nanos: Option<i64>,
    /// Sum of the layers' sizes.
    pub size: u64,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub inserted_at: i64,
    pub last_tagged_at: Option<i64>,
    pub parent_id: Option<Digest>,
    pub layers: Vec<ImageLayer>,
    /// Tag references, sorted.
    pub tags: Vec<String>,
    /// `name@sha256:…` references, sorted.
    pub repo_digests: Vec<String>,
}

/// A manifest an image was pulled with, kept as a blob in the content store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    pub digest: Digest,
    pub media_type: String,
    /// The index (manifest list) it was chosen from, also kept.
    pub index_digest: Option<Digest>,
}

/// What [`Tx::delete_image`] removed, for the caller's events and snapshot clean-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedImage {
    pub id: Digest,
    pub untagged: Vec<String>,
    pub repo_digests: Vec<String>,
    pub layers: Vec<ImageLayer>,
}

const IMAGE_COLUMNS: &str = "id, manifest_digest, created, created_nanos, size, os, architecture, \
                             variant, labels, inserted_at, last_tagged_at, parent_id";

fn image_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Image> {
    Ok(Image {
        id: digest_column(row, 0)?,
        manifest_digest: optional_digest_column(row, 1)?,
        created: row.get(2)?,
        created_nanos: row.get(3)?,
        size: row.get(4)?,
        os: row.get(5)?,
        architecture: row.get(6)?,
        variant: row.get(7)?,
        labels: json_column(row, 8)?,
        inserted_at: row.get(9)?,
        last_tagged_at: row.get(10)?,
        parent_id: optional_digest_column(row, 11)?,
        layers: Vec::new(),
        tags: Vec::new(),
        repo_digests: Vec::new(),
    })
}

fn parse_created(created: &str) -> Result<i64> {
    let time = chrono::DateTime::parse_from_rfc3339(created).map_err(|e| Error::InvalidInput {
        what: "image creation time",
        input: created.to_string(),
        reason: format!("expected RFC 3339: {e}"),
    })?;
    time.timestamp_nanos_opt()
        .ok_or_else(|| Error::InvalidInput {
            what: "image creation time",
            input: created.to_string(),
            reason: "out of the representable range".to_string(),
        })
}

fn check_reference(reference: &str) -> Result<()> {
    if reference.is_empty()
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::InvalidInput {
            what: "reference",
            input: reference.to_string(),
            reason: "expected a normalized reference such as docker.io/library/busybox:latest"
                .to_string(),
        });
    }
    Ok(())
}

impl Tx<'_> {
    /// Records an image and its layers together. Returns `false`, changing
    /// nothing, if an image with this id is already recorded (the id is the
    /// config's digest, which fixes the layers).
    pub fn insert_image(&self, image: &NewImage) -> Result<bool> {
        if self.image_exists(&image.id)? {
            return Ok(false);
        }
        let created_nanos = image.created.as_deref().map(parse_created).transpose()?;
        if let Some(parent) = &image.parent_id {
            if !self.image_exists(parent)? {
                return Err(not_found("parent image", parent));
            }
        }
        let size: u64 = image.layers.iter().map(|l| l.size).sum();
        self.conn.execute(
            &format!("INSERT INTO images ({IMAGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, ?11)"),
            params![
                image.id.as_str(),
                image.manifest_digest.as_ref().map(Digest::as_str),
                image.created,
                created_nanos,
                size,
                image.os,
                image.architecture,
                image.variant,
                to_json(&image.labels)?,
                now_nanos(),
                image.parent_id.as_ref().map(Digest::as_str),
            ],
        )?;
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO image_layers (image_id, position, diff_id, chain_id, blob_digest, size) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (position, layer) in image.layers.iter().enumerate() {
            insert.execute(params![
                image.id.as_str(),
                position as u64,
                layer.diff_id.as_str(),
                layer.chain_id.as_str(),
                layer.blob_digest.as_ref().map(Digest::as_str),
                layer.size,
            ])?;
        }
        Ok(true)
    }

    pub fn image_exists(&self, id: &Digest) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM images WHERE id = ?1", [id.as_str()], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    pub fn get_image(&self, id: &Digest) -> Result<Image> {
        self.load_images(Some(id))?
            .pop()
            .ok_or_else(|| not_found("image", id))
    }

    /// Every image, newest `created` first (images without one last), with
    /// layers, tags and repo digests.
    pub fn list_images(&self) -> Result<Vec<Image>> {
        self.load_images(None)
    }

    // Four queries whatever the number of images: `docker images` on
    // thousands of images must stay fast.
    fn load_images(&self, only: Option<&Digest>) -> Result<Vec<Image>> {
        let only = only.map(Digest::as_str);
        let mut images: Vec<Image> = self
            .conn
            .prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE ?1 IS NULL OR id = ?1 \
                 ORDER BY created_nanos DESC NULLS LAST, id"
            ))?
            .query_map([only], image_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        let index: HashMap<Digest, usize> = images
            .iter()
            .enumerate()
            .map(|(i, image)| (image.id.clone(), i))
            .collect();
        let position = |id: &Digest| {
            index
                .get(id)
                .copied()
                .ok_or_else(|| Error::Corrupt(format!("row refers to unknown image {id}")))
        };

        let mut layers = self.conn.prepare_cached(
            "SELECT image_id, diff_id, chain_id, blob_digest, size FROM image_layers \
             WHERE ?1 IS NULL OR image_id = ?1 ORDER BY image_id, position",
        )?;
        let rows = layers.query_map([only], |row| {
            Ok((
                digest_column(row, 0)?,
                ImageLayer {
                    diff_id: digest_column(row, 1)?,
                    chain_id: digest_column(row, 2)?,
                    blob_digest: optional_digest_column(row, 3)?,
                    size: row.get(4)?,
                },
            ))
        })?;
        for row in rows {
            let (id, layer) = row?;
            images[position(&id)?].layers.push(layer);
        }

        for (table, tags) in [("tags", true), ("repo_digests", false)] {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT image_id, reference FROM {table} WHERE ?1 IS NULL OR image_id = ?1 ORDER BY reference"
            ))?;
            let rows = stmt.query_map([only], |row| {
                Ok((digest_column(row, 0)?, row.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (id, reference) = row?;
                let image = &mut images[position(&id)?];
                if tags {
                    image.tags.push(reference);
                } else {
                    image.repo_digests.push(reference);
                }
            }
        }
        Ok(images)
    }

    /// The image a tag or repo digest reference points to. The reference is
    /// compared as given: normalize it first.
    pub fn resolve_reference(&self, reference: &str) -> Result<Digest> {
        for table in ["tags", "repo_digests"] {
            let found = self
                .conn
                .query_row(
                    &format!("SELECT image_id FROM {table} WHERE reference = ?1"),
                    [reference],
                    |row| digest_column(row, 0),
                )
                .optional()?;
            if let Some(id) = found {
                return Ok(id);
            }
        }
        Err(not_found("image", reference))
    }

    /// The image whose id is, or starts with, `id_or_prefix` (`sha256:` is
    /// optional, so `abc123def456` short ids work). Several matches are
    /// [`Error::Ambiguous`].
    ///
    /// Docker's order for a name given by a user is: the normalized
    /// reference first ([`Tx::resolve_reference`]), then the id prefix.
    pub fn resolve_id(&self, id_or_prefix: &str) -> Result<Digest> {
        let hex = id_or_prefix.strip_prefix("sha256:").unwrap_or(id_or_prefix);
        if hex.is_empty()
            || hex.len() > 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::InvalidInput {
                what: "image id",
                input: id_or_prefix.to_string(),
                reason: "expected 1 to 64 lowercase hex characters, optionally after sha256:"
                    .to_string(),
            });
        }
        // Every id in range [sha256:<hex>, sha256:<hex>g) starts with <hex>: 'g' sorts after all hex digits.
        let low = format!("sha256:{hex}");
        let high = format!("sha256:{hex}g");
        let matches: Vec<Digest> = self
            .conn
            .prepare_cached("SELECT id FROM images WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT 2")?
            .query_map([&low, &high], |row| digest_column(row, 0))?
            .collect::<rusqlite::Result<_>>()?;
        match matches.as_slice() {
            [] => Err(not_found("image", id_or_prefix)),
            [id] => Ok(id.clone()),
            _ => {
                let count: u64 = self.conn.query_row(
                    "SELECT COUNT(*) FROM images WHERE id >= ?1 AND id < ?2",
                    [&low, &high],
                    |row| row.get(0),
                )?;
                Err(Error::Ambiguous {
                    kind: "image",
                    prefix: id_or_prefix.to_string(),
                    matches: count as usize,
                })
            }
        }
    }

    /// Points `reference` at image `id`. Returns the image it pointed to
    /// before when the tag moved (so the caller can emit `untag` for it);
    /// `None` when the tag is new or already pointed at `id`.
    pub fn tag(&self, reference: &str, id: &Digest) -> Result<Option<Digest>> {
        self.point(Table::Tags, reference, id)
    }

    /// Sets (or clears) when the image was last tagged: a load restores the
    /// value it had before, as dockerd's load does not count as tagging.
    pub fn set_last_tagged_at(&self, id: &Digest, at: Option<i64>) -> Result<()> {
        let changed = self.conn.execute(
            "UPDATE images SET last_tagged_at = ?2 WHERE id = ?1",
            params![id.as_str(), at],
        )?;
        if changed == 0 {
            return Err(not_found("image", id));
        }
        Ok(())
    }

    /// Removes a tag; returns the image it pointed to.
    pub fn untag(&self, reference: &str) -> Result<Digest> {
        self.unpoint(Table::Tags, reference)
    }

    /// Records a `name@sha256:…` reference for image `id`, as [`Tx::tag`] does.
    pub fn add_repo_digest(&self, reference: &str, id: &Digest) -> Result<Option<Digest>> {
        self.point(Table::RepoDigests, reference, id)
    }

    /// Records that image `id` was pulled with `manifest` (again: it becomes
    /// the newest).
    pub fn add_image_manifest(&self, id: &Digest, manifest: &ImageManifest) -> Result<()> {
        if !self.image_exists(id)? {
            return Err(not_found("image", id));
        }
        self.conn.execute(
            "INSERT INTO image_manifests (image_id, digest, media_type, index_digest, added_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (image_id, digest) DO UPDATE SET media_type = ?3, index_digest = ?4, added_at = ?5",
            params![
                id.as_str(),
                manifest.digest.as_str(),
                manifest.media_type,
                manifest.index_digest.as_ref().map(Digest::as_str),
                now_nanos(),
            ],
        )?;
        Ok(())
    }

    /// The manifests image `id` was pulled with, newest first.
    pub fn image_manifests(&self, id: &Digest) -> Result<Vec<ImageManifest>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT digest, media_type, index_digest FROM image_manifests \
             WHERE image_id = ?1 ORDER BY added_at DESC, digest",
        )?;
        let rows = statement.query_map([id.as_str()], |row| {
            Ok(ImageManifest {
                digest: digest_column(row, 0)?,
                media_type: row.get(1)?,
                index_digest: optional_digest_column(row, 2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The images that keep manifest `digest` (pulled with it), with the
    /// index each got it through; newest first.
    pub fn images_keeping_manifest(&self, digest: &Digest) -> Result<Vec<(Digest, ImageManifest)>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT image_id, digest, media_type, index_digest FROM image_manifests \
             WHERE digest = ?1 ORDER BY added_at DESC, image_id",
        )?;
        let rows = statement.query_map([digest.as_str()], |row| {
            Ok((
                digest_column(row, 0)?,
                ImageManifest {
                    digest: digest_column(row, 1)?,
                    media_type: row.get(2)?,
                    index_digest: optional_digest_column(row, 3)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Every manifest and index blob an image keeps.
    pub fn manifest_blobs(&self) -> Result<Vec<Digest>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT digest FROM image_manifests UNION \
             SELECT index_digest FROM image_manifests WHERE index_digest IS NOT NULL",
        )?;
        let rows = statement.query_map([], |row| digest_column(row, 0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn remove_repo_digest(&self, reference: &str) -> Result<Digest> {
        self.unpoint(Table::RepoDigests, reference)
    }

    fn point(&self, table: Table, reference: &str, id: &Digest) -> Result<Option<Digest>> {
        check_reference(reference)?;
        if !self.image_exists(id)? {
            return Err(not_found("image", id));
        }
        let name = table.name();
        let previous = self
            .conn
            .query_row(
                &format!("SELECT image_id FROM {name} WHERE reference = ?1"),
                [reference],
                |row| digest_column(row, 0),
            )
            .optional()?;
        if previous.as_ref() == Some(id) {
            return Ok(None);
        }
        let now = now_nanos();
        self.conn.execute(
            &format!(
                "INSERT INTO {name} (reference, image_id, {time}) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (reference) DO UPDATE SET image_id = excluded.image_id, {time} = excluded.{time}",
                time = table.time_column()
            ),
            params![reference, id.as_str(), now],
        )?;
        if table == Table::Tags {
            self.conn.execute(
                "UPDATE images SET last_tagged_at = ?2 WHERE id = ?1",
                params![id.as_str(), now],
            )?;
        }
        Ok(previous)
    }

    fn unpoint(&self, table: Table, reference: &str) -> Result<Digest> {
        let name = table.name();
        self.conn
            .query_row(
                &format!("DELETE FROM {name} WHERE reference = ?1 RETURNING image_id"),
                [reference],
                |row| digest_column(row, 0),
            )
            .optional()?
            .ok_or_else(|| not_found(table.kind(), reference))
    }

    /// Tag references of an image, sorted.
    pub fn tags_of(&self, id: &Digest) -> Result<Vec<String>> {
        self.strings(
            "SELECT reference FROM tags WHERE image_id = ?1 ORDER BY reference",
            id.as_str(),
        )
    }

    /// Removes an image with its layers, tags and repo digests.
    ///
    /// Refused ([`Error::Conflict`]) while the image has tags unless `force`,
    /// and always while other images name it as their parent. Whether
    /// containers using it should block the removal is the caller's call
    /// ([`Tx::containers_using_image`]).
    pub fn delete_image(&self, id: &Digest, force: bool) -> Result<DeletedImage> {
        let image = self.get_image(id)?;
        let children = self.children(id)?;
        if !children.is_empty() {
            return Err(Error::Conflict(format!(
                "image {} has dependent child images",
                id.short()
            )));
        }
        if !force && !image.tags.is_empty() {
            return Err(Error::Conflict(format!(
                "image {} is referenced by {} (must be forced)",
                id.short(),
                image.tags.join(", ")
            )));
        }
        self.conn
            .execute("DELETE FROM tags WHERE image_id = ?1", [id.as_str()])?;
        self.conn.execute(
            "DELETE FROM repo_digests WHERE image_id = ?1",
            [id.as_str()],
        )?;
        // Layers go with the image (ON DELETE CASCADE).
        self.conn
            .execute("DELETE FROM images WHERE id = ?1", [id.as_str()])?;
        Ok(DeletedImage {
            id: image.id,
            untagged: image.tags,
            repo_digests: image.repo_digests,
            layers: image.layers,
        })
    }

    /// Images whose parent is `id`.
    pub fn children(&self, id: &Digest) -> Result<Vec<Digest>> {
        self.digests(
            "SELECT id FROM images WHERE parent_id = ?1 ORDER BY id",
            id.as_str(),
        )
    }

    /// Images with a layer whose chain id is `chain_id`: the users of that snapshot.
    pub fn images_using_chain(&self, chain_id: &Digest) -> Result<Vec<Digest>> {
        self.digests(
            "SELECT DISTINCT image_id FROM image_layers WHERE chain_id = ?1 ORDER BY image_id",
            chain_id.as_str(),
        )
    }

    /// Images without tags that no other image has as parent (`docker images
    /// --filter dangling=true`, `docker image prune`).
    pub fn dangling_images(&self) -> Result<Vec<Digest>> {
        let ids = self
            .conn
            .prepare_cached(
                "SELECT id FROM images i \
                 WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE t.image_id = i.id) \
                   AND NOT EXISTS (SELECT 1 FROM images c WHERE c.parent_id = i.id) \
                 ORDER BY id",
            )?
            .query_map([], |row| digest_column(row, 0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    pub(crate) fn digests(&self, sql: &str, param: &str) -> Result<Vec<Digest>> {
        Ok(self
            .conn
            .prepare_cached(sql)?
            .query_map([param], |row| digest_column(row, 0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn strings(&self, sql: &str, param: &str) -> Result<Vec<String>> {
        Ok(self
            .conn
            .prepare_cached(sql)?
            .query_map([param], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Table {
    Tags,
    RepoDigests,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Tags => "tags",
            Table::RepoDigests => "repo_digests",
        }
    }

    fn time_column(self) -> &'static str {
        match self {
            Table::Tags => "tagged_at",
            Table::RepoDigests => "added_at",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Table::Tags => "tag",
            Table::RepoDigests => "repo digest",
        }
    }
}
