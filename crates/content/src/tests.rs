//! Behaviour of the store as its users see it: what is under `blobs/` and
//! `ingest/` after each operation.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

use crate::{ContentStore, Digest, Error, OpenOptions};

fn store() -> (TempDir, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    (dir, store)
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn blobs(root: &Path) -> Vec<String> {
    names(&root.join("blobs/sha256"))
}

fn ingest(root: &Path) -> Vec<String> {
    names(&root.join("ingest"))
}

#[test]
fn put_and_read_back() {
    let (dir, store) = store();
    let digest = store.put_bytes(b"hello").unwrap();
    assert_eq!(digest, Digest::sha256_of(b"hello"));
    assert_eq!(blobs(dir.path()), vec![digest.hex().to_string()]);
    assert!(ingest(dir.path()).is_empty());
    assert!(store.exists(&digest));
    assert_eq!(store.size(&digest).unwrap(), 5);
    assert_eq!(store.read_blob(&digest).unwrap(), b"hello");
    let mut text = String::new();
    store
        .open_blob(&digest)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "hello");
    store.verify(&digest).unwrap();

    let other = store.put_bytes(b"world!").unwrap();
    let mut listed: Vec<_> = store
        .list()
        .unwrap()
        .map(|b| {
            let b = b.unwrap();
            (b.digest, b.size)
        })
        .collect();
    listed.sort();
    let mut want = vec![(digest, 5), (other, 6)];
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(store.total_size().unwrap(), 11);
}

#[test]
fn missing_blob_is_not_found() {
    let (_dir, store) = store();
    let digest = Digest::sha256_of(b"absent");
    assert!(!store.exists(&digest));
    assert!(matches!(store.open_blob(&digest), Err(Error::NotFound(d)) if d == digest));
    assert!(matches!(store.size(&digest), Err(Error::NotFound(_))));
    assert!(matches!(store.read_blob(&digest), Err(Error::NotFound(_))));
    assert!(!store.delete(&digest).unwrap());
}

#[test]
fn streamed_writer_verifies_expected_digest_and_size() {
    let (dir, store) = store();
    let data = vec![7u8; 300_000];
    let expected = Digest::sha256_of(&data);
    let mut writer = store
        .writer(Some(&expected), Some(data.len() as u64))
        .unwrap();
    for chunk in data.chunks(4096) {
        writer.write_all(chunk).unwrap();
    }
    assert_eq!(writer.offset(), 300_000);
    assert_eq!(writer.commit().unwrap(), expected);
    assert_eq!(store.read_blob(&expected).unwrap(), data);
    assert!(ingest(dir.path()).is_empty());
}

#[test]
fn digest_mismatch_leaves_nothing() {
    let (dir, store) = store();
    let expected = Digest::sha256_of(b"what the manifest said");
    let mut writer = store.writer(Some(&expected), None).unwrap();
    writer.write_all(b"what the registry sent").unwrap();
    let err = writer.commit().unwrap_err();
    let actual = Digest::sha256_of(b"what the registry sent");
    assert_eq!(
        err.to_string(),
        format!("digest mismatch: expected {expected}, got {actual}")
    );
    assert!(blobs(dir.path()).is_empty());
    assert!(ingest(dir.path()).is_empty());
    assert!(!store.exists(&actual));
}

#[test]
fn size_mismatch_leaves_nothing() {
    let (dir, store) = store();
    let mut writer = store.writer(None, Some(10)).unwrap();
    writer.write_all(b"short").unwrap();
    let err = writer.commit().unwrap_err();
    assert!(matches!(
        err,
        Error::SizeMismatch {
            expected: 10,
            actual: 5
        }
    ));
    assert_eq!(err.to_string(), "size mismatch: expected 10 bytes, got 5");
    assert!(blobs(dir.path()).is_empty());
    assert!(ingest(dir.path()).is_empty());

    let mut writer = store.writer(None, Some(3)).unwrap();
    let err = writer.write_all(b"too long").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    drop(writer);
    assert!(blobs(dir.path()).is_empty());
    assert!(ingest(dir.path()).is_empty());
}

#[test]
fn dropped_writer_removes_its_temp_file() {
    let (dir, store) = store();
    let mut writer = store.writer(None, None).unwrap();
    writer.write_all(b"abandoned").unwrap();
    assert_eq!(ingest(dir.path()).len(), 1);
    drop(writer);
    assert!(ingest(dir.path()).is_empty());
    assert!(blobs(dir.path()).is_empty());
}

#[test]
fn committing_an_existing_blob_is_a_no_op() {
    let (dir, store) = store();
    let digest = store.put_bytes(b"same").unwrap();
    let mut writer = store.writer(Some(&digest), Some(4)).unwrap();
    writer.write_all(b"same").unwrap();
    assert_eq!(writer.commit().unwrap(), digest);
    assert_eq!(blobs(dir.path()).len(), 1);
    assert!(ingest(dir.path()).is_empty());
}

#[test]
fn concurrent_writers_of_the_same_blob() {
    let (dir, store) = store();
    let data: Arc<Vec<u8>> = Arc::new((0..200_000u32).map(|i| (i % 251) as u8).collect());
    let expected = Digest::sha256_of(&data);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let data = data.clone();
            let expected = expected.clone();
            thread::spawn(move || {
                let mut writer = store
                    .writer(Some(&expected), Some(data.len() as u64))
                    .unwrap();
                for chunk in data.chunks(1000) {
                    writer.write_all(chunk).unwrap();
                }
                writer.commit().unwrap()
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), expected);
    }
    assert_eq!(blobs(dir.path()), vec![expected.hex().to_string()]);
    assert!(ingest(dir.path()).is_empty());
    store.verify(&expected).unwrap();
}

#[test]
fn resumable_ingest_survives_a_crash_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = b"first half|second half".to_vec();
    let expected = Digest::sha256_of(&data);
    let size = Some(data.len() as u64);
    {
        let store = ContentStore::open(dir.path()).unwrap();
        let mut writer = store
            .writer_resumable("layer-1", Some(&expected), size)
            .unwrap();
        assert_eq!(writer.ref_name(), Some("layer-1"));
        writer.write_all(&data[..11]).unwrap();
        // The process "crashes": the writer and the store go away uncommitted.
    }
    let store = ContentStore::open(dir.path()).unwrap();
    assert!(blobs(dir.path()).is_empty());
    let status = store.ingests().unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].ref_name, "layer-1");
    assert_eq!(status[0].offset, 11);

    let mut writer = store
        .writer_resumable("layer-1", Some(&expected), size)
        .unwrap();
    assert_eq!(writer.offset(), 11);
    writer.write_all(&data[11..]).unwrap();
    assert_eq!(writer.commit().unwrap(), expected);
    assert_eq!(store.read_blob(&expected).unwrap(), data);
    assert!(ingest(dir.path()).is_empty());
    assert!(store.ingests().unwrap().is_empty());
}

#[test]
fn a_resumable_ref_has_one_writer_at_a_time() {
    let (_dir, store) = store();
    let first = store.writer_resumable("ref", None, None).unwrap();
    let err = store.writer_resumable("ref", None, None).unwrap_err();
    assert!(
        matches!(err, Error::IngestLocked(ref r) if r == "ref"),
        "{err}"
    );
    assert!(matches!(
        store.abort_ingest("ref"),
        Err(Error::IngestLocked(_))
    ));
    drop(first);
    store.writer_resumable("ref", None, None).unwrap();
    assert!(matches!(
        store.writer_resumable("", None, None),
        Err(Error::InvalidRef(_))
    ));
}

#[test]
fn resumable_mismatch_starts_over() {
    let (dir, store) = store();
    let expected = Digest::sha256_of(b"good");
    let mut writer = store.writer_resumable("r", Some(&expected), None).unwrap();
    writer.write_all(b"evil").unwrap();
    assert!(matches!(writer.commit(), Err(Error::DigestMismatch { .. })));
    assert!(ingest(dir.path()).is_empty());
    assert!(blobs(dir.path()).is_empty());
    let writer = store.writer_resumable("r", Some(&expected), None).unwrap();
    assert_eq!(writer.offset(), 0);
}

#[test]
fn resumable_partial_longer_than_expected_is_restarted() {
    let (_dir, store) = store();
    let mut writer = store.writer_resumable("r", None, None).unwrap();
    writer.write_all(b"0123456789").unwrap();
    drop(writer);
    let mut writer = store.writer_resumable("r", None, Some(4)).unwrap();
    assert_eq!(writer.offset(), 0);
    writer.write_all(b"abcd").unwrap();
    assert_eq!(writer.commit().unwrap(), Digest::sha256_of(b"abcd"));
}

#[test]
fn abort_ingest_drops_the_partial() {
    let (dir, store) = store();
    let mut writer = store.writer_resumable("r", None, None).unwrap();
    writer.write_all(b"partial").unwrap();
    drop(writer);
    assert!(store.abort_ingest("r").unwrap());
    assert!(!store.abort_ingest("r").unwrap());
    assert!(ingest(dir.path()).is_empty());
}

#[test]
fn open_removes_dead_temp_files_and_stale_partials() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let mut resumable = store.writer_resumable("old", None, None).unwrap();
    resumable.write_all(b"old partial").unwrap();
    drop(resumable);
    // A one-shot temp file left by a process that died (pid 0 is never a user process).
    fs::write(dir.path().join("ingest/tmp-0-3"), b"dead").unwrap();
    fs::write(dir.path().join("ingest/unrelated"), b"not ours").unwrap();
    let mut live = store.writer(None, None).unwrap();
    live.write_all(b"in flight").unwrap();

    // Default age: the partial is kept, the dead temp file goes, the live one stays.
    let reopened = ContentStore::open(dir.path()).unwrap();
    let left = ingest(dir.path());
    assert!(!left.contains(&"tmp-0-3".to_string()), "{left:?}");
    assert!(left.contains(&"unrelated".to_string()));
    assert_eq!(reopened.ingests().unwrap().len(), 1);
    assert_eq!(live.commit().unwrap(), Digest::sha256_of(b"in flight"));

    // With a zero age every partial no writer holds is stale.
    let held = reopened.writer_resumable("held", None, None).unwrap();
    let report = reopened.cleanup_ingest(Duration::ZERO).unwrap();
    assert_eq!(report.resumable, vec!["old".to_string()]);
    assert_eq!(report.temp_files, 0);
    let names: Vec<_> = reopened
        .ingests()
        .unwrap()
        .into_iter()
        .map(|s| s.ref_name)
        .collect();
    assert_eq!(names, vec!["held".to_string()]);
    drop(held);

    let options = OpenOptions {
        stale_after: Duration::ZERO,
    };
    ContentStore::open_with(dir.path(), &options).unwrap();
    assert_eq!(ingest(dir.path()), vec!["unrelated".to_string()]);
}

#[test]
fn delete_removes_and_respects_leases() {
    let (dir, store) = store();
    let digest = store.put_bytes(b"x").unwrap();
    let lease = store.lease();
    lease.pin(&digest);
    assert!(matches!(store.delete(&digest), Err(Error::Leased(_))));
    drop(lease);
    assert!(store.delete(&digest).unwrap());
    assert!(!store.delete(&digest).unwrap());
    assert!(blobs(dir.path()).is_empty());
}

#[test]
fn gc_keeps_referenced_and_leased_blobs() {
    let (dir, store) = store();
    let kept = store.put_bytes(b"referenced").unwrap();
    let leased = store.put_bytes(b"being pulled").unwrap();
    let garbage = store.put_bytes(b"garbage!").unwrap();
    let mut in_flight = store.writer(None, None).unwrap();
    in_flight.write_all(b"still arriving").unwrap();

    let lease = store.lease();
    lease.pin(&leased);
    // A second lease on the same digest: the first one's drop must not unpin it.
    let other = store.lease();
    other.pin(&leased);
    other.pin(&leased);
    assert_eq!(other.pinned(), vec![leased.clone()]);

    let keep: HashSet<Digest> = [kept.clone()].into();
    let report = store.gc(&keep).unwrap();
    assert_eq!(report.removed, vec![garbage]);
    assert_eq!(report.bytes_freed, 8);
    assert!(store.exists(&kept) && store.exists(&leased));
    let arrived = in_flight.commit().unwrap();
    assert!(store.exists(&arrived));

    drop(lease);
    assert!(store.gc(&keep).unwrap().removed.contains(&arrived));
    assert!(store.exists(&leased));
    drop(other);
    let report = store.gc(&keep).unwrap();
    assert_eq!(report.removed, vec![leased]);
    assert_eq!(blobs(dir.path()), vec![kept.hex().to_string()]);
}

#[test]
fn pinned_commits_survive_a_concurrent_gc() {
    let (_dir, store) = store();
    let gc_store = store.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc_stop = stop.clone();
    let collector = thread::spawn(move || {
        let keep = HashSet::new();
        let mut runs = 0;
        while !gc_stop.load(std::sync::atomic::Ordering::Relaxed) {
            gc_store.gc(&keep).unwrap();
            runs += 1;
        }
        runs
    });
    for i in 0..200u32 {
        let lease = store.lease();
        let data = i.to_le_bytes();
        let digest = if i % 2 == 0 {
            store.put_bytes_pinned(&data, &lease).unwrap()
        } else {
            let mut writer = store.writer(None, None).unwrap();
            writer.write_all(&data).unwrap();
            writer.commit_pinned(&lease).unwrap()
        };
        // The caller "records the reference" while holding the lease.
        assert_eq!(store.read_blob(&digest).unwrap(), data);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(collector.join().unwrap() > 0);
}

#[test]
fn verify_finds_a_damaged_blob() {
    let (dir, store) = store();
    let digest = store.put_bytes(b"intact").unwrap();
    fs::write(
        dir.path().join("blobs/sha256").join(digest.hex()),
        b"damaged",
    )
    .unwrap();
    let err = store.verify(&digest).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { ref expected, .. } if *expected == digest));
}

#[test]
fn list_skips_names_that_are_not_digests() {
    let (dir, store) = store();
    let digest = store.put_bytes(b"a").unwrap();
    fs::write(dir.path().join("blobs/sha256/README"), b"?").unwrap();
    fs::create_dir(dir.path().join("blobs/sha256").join("0".repeat(64))).unwrap();
    let listed: Vec<_> = store.list().unwrap().map(|b| b.unwrap().digest).collect();
    assert_eq!(listed, vec![digest]);
    assert!(store.gc(&HashSet::new()).unwrap().removed.len() == 1);
    assert!(dir.path().join("blobs/sha256/README").exists());
}

#[test]
fn adopted_files_are_moved_in_and_pinned() {
    let (dir, store) = store();
    let spooled = dir.path().join("spooled");
    fs::write(&spooled, b"layer bytes").unwrap();
    let digest = Digest::sha256_of(b"layer bytes");
    let lease = store.lease();
    store.adopt_file(&spooled, &digest, &lease).unwrap();
    assert!(!spooled.exists(), "moved, not copied");
    assert_eq!(store.read_blob(&digest).unwrap(), b"layer bytes");
    // Pinned: a gc keeping nothing leaves it while the lease lives.
    store.gc(&HashSet::new()).unwrap();
    assert!(store.exists(&digest));
    drop(lease);
    store.gc(&HashSet::new()).unwrap();
    assert!(!store.exists(&digest));
}
