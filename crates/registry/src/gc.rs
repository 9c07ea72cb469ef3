//! Online garbage collection: runs while the registry serves, with no
//! read-only window.
//!
//! Mark: every manifest a repository holds, tagged or not (clients pull by
//! digest, and an index's children and referrers are untagged), and every
//! blob such a manifest names (config, layers, an index's manifests).
//! A `subject` does not keep its target: referrers hang off an image, not the
//! other way round. Deleting a manifest (`DELETE /v2/<name>/manifests/<digest>`)
//! is how its blobs become garbage. With `delete_untagged`, a manifest is
//! kept only when tagged, named by a kept index, a referrer of a kept
//! manifest, or put within the grace period (a multi-platform push puts its
//! children before the index that tags them); the others are deleted first.
//!
//! Sweep: an unmarked blob is deleted only when its mtime is older than the
//! start of this run less the grace period. Requests set a blob's mtime when
//! a client may count on it (see `storage.rs`), so a push in flight — blobs
//! uploaded, manifest not yet put — keeps its blobs as long as it takes less
//! than the grace period between its last blob request and its manifest.
//! Upload sessions are not blobs until they finish, so they are never swept.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::names::Digest;
use crate::storage::Storage;
use crate::GcConfig;

/// What one run did (or, dry, would do).
#[derive(Debug, Default)]
pub struct GcReport {
    /// Blobs (manifests included) kept.
    pub marked: usize,
    pub removed: usize,
    pub bytes: u64,
    pub untagged_removed: usize,
    /// `sha256:<hex>` and size of each blob removed.
    pub removed_blobs: Vec<(String, u64)>,
    /// Repository and digest of each untagged manifest removed.
    pub removed_manifests: Vec<(String, String)>,
}

pub async fn run_periodically(storage: Arc<Storage>, config: GcConfig) {
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let storage = storage.clone();
        let collected = tokio::task::spawn_blocking(move || {
            collect(&storage, config.grace, config.delete_untagged, false)
        });
        match collected.await {
            Ok(Ok(report)) if report.removed + report.untagged_removed > 0 => tracing::info!(
                "garbage collection: removed {} untagged manifests; {} blobs in use, removed {} ({} bytes)",
                report.untagged_removed,
                report.marked,
                report.removed,
                report.bytes
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("garbage collection: {e}"),
            Err(e) => tracing::error!("garbage collection: {e}"),
        }
    }
}

/// One mark and sweep; `dry_run` reports what it would remove and removes
/// nothing.
pub fn collect(
    storage: &Storage,
    grace: Duration,
    delete_untagged: bool,
    dry_run: bool,
) -> std::io::Result<GcReport> {
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = GcReport::default();
    let marked = mark(
        storage,
        delete_untagged.then_some(cutoff),
        dry_run,
        &mut report,
    )?;
    report.marked = marked.len();
    for prefix in read_dir_names(&storage.root().join("blobs/sha256"))? {
        let dir = storage.root().join("blobs/sha256").join(&prefix);
        for hex in read_dir_names(&dir)? {
            if hex.starts_with(".tmp-") || marked.contains(&hex) {
                continue;
            }
            let path = dir.join(&hex);
            let _guard = storage.lock_blobs();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.modified()? < cutoff {
                if !dry_run {
                    std::fs::remove_file(&path)?;
                }
                report.removed += 1;
                report.bytes += meta.len();
                report
                    .removed_blobs
                    .push((format!("sha256:{hex}"), meta.len()));
            }
        }
    }
    if !dry_run {
        remove_dangling_layer_links(storage, cutoff)?;
    }
    Ok(report)
}

/// The hex digests of every blob some kept manifest of some repository
/// needs. With `untagged_cutoff`, untagged manifests not otherwise kept and
/// put before it are deleted on the way.
fn mark(
    storage: &Storage,
    untagged_cutoff: Option<SystemTime>,
    dry_run: bool,
    report: &mut GcReport,
) -> std::io::Result<HashSet<String>> {
    let mut marked = HashSet::new();
    let repositories = storage.root().join("repositories");
    for repo in repository_dirs(storage)? {
        let repo_name = repo
            .strip_prefix(&repositories)
            .unwrap_or(&repo)
            .to_string_lossy()
            .into_owned();
        let revisions = repo.join("_manifests/revisions");
        let mut manifests = HashMap::new();
        for hex in read_dir_names(&revisions)? {
            let Ok(digest) = Digest::parse(&format!("sha256:{hex}")) else {
                continue;
            };
            let manifest = std::fs::read(storage.blob_path(&digest))
                .ok()
                .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok())
                .unwrap_or_default();
            manifests.insert(hex, manifest);
        }
        if let Some(cutoff) = untagged_cutoff {
            let kept = kept_manifests(&repo, &manifests, cutoff)?;
            for hex in manifests.keys().filter(|hex| !kept.contains(*hex)) {
                let link = revisions.join(hex);
                let _guard = storage.lock_blobs();
                if modified_before(&link, cutoff)
                    && (dry_run || std::fs::remove_file(&link).is_ok())
                {
                    report.untagged_removed += 1;
                    report
                        .removed_manifests
                        .push((repo_name.clone(), format!("sha256:{hex}")));
                }
            }
            manifests.retain(|hex, _| kept.contains(hex));
        }
        for (hex, manifest) in manifests {
            marked.insert(hex);
            let named = ["layers", "manifests", "blobs"]
                .into_iter()
                .flat_map(|key| manifest[key].as_array().cloned().unwrap_or_default())
                .chain(std::iter::once(manifest["config"].clone()));
            for descriptor in named {
                if let Some(hex) = descriptor_hex(&descriptor) {
                    marked.insert(hex.to_owned());
                }
            }
        }
    }
    Ok(marked)
}

/// The manifests of a repository that `--delete-untagged` keeps: tagged ones,
/// those put since `cutoff`, and, transitively, the children of kept indexes
/// and the referrers of kept manifests.
fn kept_manifests(
    repo: &Path,
    manifests: &HashMap<String, serde_json::Value>,
    cutoff: SystemTime,
) -> std::io::Result<HashSet<String>> {
    let tags = repo.join("_manifests/tags");
    let mut kept: HashSet<String> = HashSet::new();
    for tag in read_dir_names(&tags)? {
        if let Ok(text) = std::fs::read_to_string(tags.join(tag)) {
            if let Some(hex) = text.trim().strip_prefix("sha256:") {
                kept.insert(hex.to_owned());
            }
        }
    }
    let revisions = repo.join("_manifests/revisions");
    kept.extend(
        manifests
            .keys()
            .filter(|hex| !modified_before(&revisions.join(hex), cutoff))
            .cloned(),
    );
    loop {
        let mut more = Vec::new();
        for (hex, manifest) in manifests {
            if kept.contains(hex) {
                let children = manifest["manifests"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                more.extend(
                    children
                        .iter()
                        .filter_map(descriptor_hex)
                        .map(str::to_owned),
                );
            } else if descriptor_hex(&manifest["subject"]).is_some_and(|s| kept.contains(s)) {
                more.push(hex.clone());
            }
        }
        let before = kept.len();
        kept.extend(more);
        if kept.len() == before {
            return Ok(kept);
        }
    }
}

fn descriptor_hex(descriptor: &serde_json::Value) -> Option<&str> {
    descriptor["digest"].as_str()?.strip_prefix("sha256:")
}

/// Whether `path` exists and was last modified before `cutoff`.
fn modified_before(path: &Path, cutoff: SystemTime) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|m| m < cutoff)
}

/// Links in `_layers` to blobs no longer stored are dropped (when older than
/// the cutoff), so a repository does not list what it cannot serve.
fn remove_dangling_layer_links(storage: &Storage, cutoff: SystemTime) -> std::io::Result<()> {
    for repo in repository_dirs(storage)? {
        let layers = repo.join("_layers");
        for hex in read_dir_names(&layers)? {
            let Ok(digest) = Digest::parse(&format!("sha256:{hex}")) else {
                continue;
            };
            let link = layers.join(&hex);
            let _guard = storage.lock_blobs();
            if modified_before(&link, cutoff) && !storage.blob_path(&digest).exists() {
                let _ = std::fs::remove_file(&link);
            }
        }
    }
    Ok(())
}

/// Every directory under `repositories/` holding `_manifests` or `_layers`.
fn repository_dirs(storage: &Storage) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut repos = Vec::new();
    let mut pending = vec![storage.root().join("repositories")];
    while let Some(dir) = pending.pop() {
        let mut is_repo = false;
        for name in read_dir_names(&dir)? {
            if name == "_manifests" || name == "_layers" {
                is_repo = true;
            } else if dir.join(&name).is_dir() {
                pending.push(dir.join(name));
            }
        }
        if is_repo {
            repos.push(dir);
        }
    }
    Ok(repos)
}

/// Entry names of `dir`; none when it does not exist.
fn read_dir_names(dir: &Path) -> std::io::Result<Vec<String>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sha256_digest;

    fn backdate(path: &Path) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::open(path)
            .and_then(|f| f.set_modified(old))
            .expect("backdate");
    }

    #[tokio::test]
    async fn unreferenced_old_blobs_go_and_referenced_or_fresh_ones_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Storage::open(dir.path()).expect("open store");
        let mut blobs = Vec::new();
        for data in [&b"layer"[..], b"config", b"orphan", b"fresh orphan"] {
            let digest = sha256_digest(data);
            let ingest = store.upload_path(&crate::upload::random_id());
            std::fs::write(&ingest, data).expect("write ingest");
            store.commit_blob(&ingest, &digest).await.expect("commit");
            store.link_layer("r", &digest).await.expect("link");
            blobs.push(digest);
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "config": { "digest": blobs[1].to_string() },
            "layers": [{ "digest": blobs[0].to_string() }],
        })
        .to_string();
        let manifest_digest = sha256_digest(manifest.as_bytes());
        store
            .put_manifest("r", &manifest_digest, "x", manifest.as_bytes(), None)
            .await
            .expect("put manifest");
        for digest in blobs.iter().take(3).chain([&manifest_digest]) {
            backdate(&store.blob_path(digest));
        }
        let report = collect(&store, Duration::from_secs(60), false, false).expect("gc");
        assert_eq!(report.removed, 1, "{report:?}");
        assert!(!store.blob_path(&blobs[2]).exists(), "orphan kept");
        for digest in [&blobs[0], &blobs[1], &blobs[3], &manifest_digest] {
            assert!(store.blob_path(digest).exists(), "{digest} removed");
        }
        // A blob asked for again is fresh, and stays.
        backdate(&store.blob_path(&blobs[3]));
        assert!(store.has_layer("r", &blobs[3]).await.expect("has layer"));
        assert_eq!(
            collect(&store, Duration::from_secs(60), false, false)
                .expect("gc")
                .removed,
            0
        );
        // Without its manifest, the image's blobs go too.
        store
            .delete_manifest("r", &manifest_digest)
            .await
            .expect("delete");
        for digest in blobs.iter().take(2).chain([&manifest_digest, &blobs[3]]) {
            backdate(&store.blob_path(digest));
        }
        assert_eq!(
            collect(&store, Duration::from_secs(60), false, false)
                .expect("gc")
                .removed,
            4
        );
    }
}
