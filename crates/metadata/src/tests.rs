//! The store as the engine will use it: what is listed, resolved and refused.

use std::collections::BTreeMap;

use berth_content::Digest;
use rusqlite::Connection;
use serde_json::json;
use tempfile::TempDir;

use crate::schema::{current_version, has_table};
use crate::{
    Container, Error, ImageLayer, ImageManifest, MetadataStore, NewEvent, NewImage, Snapshot,
    MIGRATIONS,
};

fn d(s: &str) -> Digest {
    Digest::sha256_of(s.as_bytes())
}

fn store() -> (TempDir, MetadataStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = MetadataStore::open(dir.path().join("berth.db")).unwrap();
    (dir, store)
}

fn layer(name: &str, size: u64) -> ImageLayer {
    ImageLayer {
        diff_id: d(&format!("diff {name}")),
        chain_id: d(&format!("chain {name}")),
        blob_digest: Some(d(&format!("blob {name}"))),
        size,
    }
}

fn image(name: &str, layers: Vec<ImageLayer>) -> NewImage {
    NewImage {
        id: d(&format!("config {name}")),
        manifest_digest: Some(d(&format!("manifest {name}"))),
        created: Some("2024-05-01T12:00:00Z".to_string()),
        os: "linux".to_string(),
        architecture: "amd64".to_string(),
        variant: None,
        labels: BTreeMap::from([("maintainer".to_string(), name.to_string())]),
        parent_id: None,
        layers,
    }
}

const BUSYBOX: &str = "docker.io/library/busybox:latest";

#[test]
fn opens_in_wal_mode_at_the_current_version() {
    let (dir, store) = store();
    assert_eq!(store.schema_version().unwrap(), current_version() as u64);
    let conn = Connection::open(dir.path().join("berth.db")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = store
        .conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
}

#[test]
fn migrates_a_version_1_database_to_current() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    {
        let mut old = MetadataStore::open_at_version(&path, 1).unwrap();
        assert_eq!(old.schema_version().unwrap(), 1);
        assert!(!has_table(&old.conn, "containers"));
        old.insert_image(&image("busybox", vec![layer("a", 10)]))
            .unwrap();
        old.tag(BUSYBOX, &d("config busybox")).unwrap();
    }
    let mut store = MetadataStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as u64);
    assert!(has_table(&store.conn, "containers"));
    assert_eq!(
        store.resolve_reference(BUSYBOX).unwrap(),
        d("config busybox")
    );
    store
        .transaction(|tx| {
            tx.insert_container(&Container {
                id: "c".repeat(64),
                name: "web".to_string(),
                image_id: d("config busybox"),
                created_nanos: 1,
                config: json!({}),
                state: json!({}),
            })
        })
        .unwrap();
}

#[test]
fn refuses_a_database_from_a_newer_berth() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    drop(MetadataStore::open(&path).unwrap());
    let future = MIGRATIONS.len() as i64 + 1;
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE schema_version SET version = ?1", [future])
        .unwrap();
    let err = MetadataStore::open(&path).unwrap_err();
    assert!(matches!(err, Error::SchemaTooNew { found, .. } if found == future as u64));
    assert!(err.to_string().contains("newer"), "{err}");
    // Left untouched.
    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, future);
}

#[test]
fn insert_and_get_an_image() {
    let (_dir, mut store) = store();
    let new = image("busybox", vec![layer("a", 100), layer("b", 23)]);
    assert!(store.insert_image(&new).unwrap());
    assert!(
        !store.insert_image(&new).unwrap(),
        "second insert is a no-op"
    );
    let got = store.get_image(&new.id).unwrap();
    assert_eq!(got.id, new.id);
    assert_eq!(got.size, 123);
    assert_eq!(got.layers, new.layers);
    assert_eq!(got.labels, new.labels);
    assert_eq!(got.created.as_deref(), Some("2024-05-01T12:00:00Z"));
    assert_eq!(got.created_nanos, Some(1_714_564_800_000_000_000));
    assert_eq!(got.manifest_digest, new.manifest_digest);
    assert!(got.inserted_at > 0);
    assert!(got.tags.is_empty() && got.last_tagged_at.is_none());
    assert!(matches!(
        store.get_image(&d("nope")),
        Err(Error::NotFound { kind: "image", .. })
    ));
}

#[test]
fn bad_image_input_changes_nothing() {
    let (_dir, mut store) = store();
    let mut bad = image("x", vec![layer("a", 1)]);
    bad.created = Some("yesterday".to_string());
    let err = store.insert_image(&bad).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    let mut orphan = image("y", vec![]);
    orphan.parent_id = Some(d("missing parent"));
    assert!(matches!(
        store.insert_image(&orphan),
        Err(Error::NotFound { .. })
    ));
    assert!(store.list_images().unwrap().is_empty());
}

#[test]
fn list_images_with_tags_digests_and_order() {
    let (_dir, mut store) = store();
    let mut old = image("old", vec![layer("base", 5)]);
    old.created = Some("2020-01-01T00:00:00+02:00".to_string());
    let new = image("new", vec![layer("base", 5), layer("top", 7)]);
    let mut undated = image("undated", vec![]);
    undated.created = None;
    for img in [&old, &new, &undated] {
        store.insert_image(img).unwrap();
    }
    store
        .transaction(|tx| {
            tx.tag("docker.io/library/new:2", &new.id)?;
            tx.tag("docker.io/library/new:1", &new.id)?;
            tx.add_repo_digest(
                &format!("docker.io/library/new@{}", d("manifest new")),
                &new.id,
            )
        })
        .unwrap();
    let list = store.list_images().unwrap();
    let ids: Vec<_> = list.iter().map(|i| i.id.clone()).collect();
    assert_eq!(
        ids,
        vec![new.id.clone(), old.id.clone(), undated.id.clone()]
    );
    assert_eq!(
        list[0].tags,
        vec!["docker.io/library/new:1", "docker.io/library/new:2"]
    );
    assert_eq!(list[0].repo_digests.len(), 1);
    assert_eq!(list[0].layers.len(), 2);
    assert_eq!(list[0].size, 12);
    assert!(list[0].last_tagged_at.is_some());
    assert!(list[1].tags.is_empty());
    assert_eq!(
        store
            .read(|tx| tx.images_using_chain(&d("chain base")))
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store
            .read(|tx| tx.images_using_chain(&d("chain top")))
            .unwrap(),
        vec![new.id]
    );
}

#[test]
fn many_images_list_in_few_queries() {
    let (_dir, mut store) = store();
    store
        .transaction(|tx| {
            for i in 0..1000 {
                let img = image(
                    &format!("img{i}"),
                    vec![layer("base", 1), layer(&format!("l{i}"), 2)],
                );
                tx.insert_image(&img)?;
                tx.tag(&format!("docker.io/library/img:{i}"), &img.id)?;
            }
            Ok::<_, Error>(())
        })
        .unwrap();
    let start = std::time::Instant::now();
    let list = store.list_images().unwrap();
    assert_eq!(list.len(), 1000);
    assert!(list
        .iter()
        .all(|i| i.tags.len() == 1 && i.layers.len() == 2));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn tag_moves_report_the_previous_image() {
    let (_dir, mut store) = store();
    let a = image("a", vec![]);
    let b = image("b", vec![]);
    store.insert_image(&a).unwrap();
    store.insert_image(&b).unwrap();
    assert_eq!(store.tag(BUSYBOX, &a.id).unwrap(), None);
    assert_eq!(
        store.tag(BUSYBOX, &a.id).unwrap(),
        None,
        "same image: nothing moved"
    );
    assert_eq!(store.tag(BUSYBOX, &b.id).unwrap(), Some(a.id.clone()));
    assert_eq!(store.resolve_reference(BUSYBOX).unwrap(), b.id);
    assert!(store.get_image(&a.id).unwrap().tags.is_empty());
    assert_eq!(store.untag(BUSYBOX).unwrap(), b.id);
    assert!(matches!(
        store.untag(BUSYBOX),
        Err(Error::NotFound { kind: "tag", .. })
    ));
    assert!(matches!(
        store.tag(BUSYBOX, &d("absent")),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.tag("bad ref", &a.id),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        store.resolve_reference(BUSYBOX),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn repo_digests_resolve_and_are_removed_with_the_image() {
    let (_dir, mut store) = store();
    let a = image("a", vec![]);
    store.insert_image(&a).unwrap();
    let by_digest = format!("docker.io/library/busybox@{}", d("manifest a"));
    store
        .transaction(|tx| tx.add_repo_digest(&by_digest, &a.id))
        .unwrap();
    assert_eq!(store.resolve_reference(&by_digest).unwrap(), a.id);
    let deleted = store.delete_image(&a.id, false).unwrap();
    assert_eq!(deleted.repo_digests, vec![by_digest.clone()]);
    assert!(matches!(
        store.resolve_reference(&by_digest),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn resolve_id_prefixes_and_ambiguity() {
    let (_dir, mut store) = store();
    // Find two images whose ids share a first hex character, and one that does not.
    let mut by_first: BTreeMap<char, Vec<NewImage>> = BTreeMap::new();
    for i in 0..40 {
        let img = image(&format!("i{i}"), vec![]);
        by_first
            .entry(img.id.hex().chars().next().unwrap())
            .or_default()
            .push(img);
    }
    let pair = by_first.values().find(|v| v.len() >= 2).unwrap().clone();
    for img in &pair[..2] {
        store.insert_image(img).unwrap();
    }
    let (x, y) = (&pair[0].id, &pair[1].id);
    assert_eq!(store.resolve_id(x.as_str()).unwrap(), *x);
    assert_eq!(store.resolve_id(x.hex()).unwrap(), *x);
    assert_eq!(store.resolve_id(x.short()).unwrap(), *x);
    assert_eq!(
        store.resolve_id(&format!("sha256:{}", y.short())).unwrap(),
        *y
    );
    let first = &x.hex()[..1];
    let err = store.resolve_id(first).unwrap_err();
    assert!(matches!(err, Error::Ambiguous { matches: 2, .. }), "{err}");
    assert!(err.to_string().contains("ambiguous"));
    let absent = by_first
        .keys()
        .find(|c| !first.starts_with(**c))
        .unwrap()
        .to_string();
    assert!(matches!(
        store.resolve_id(&absent),
        Err(Error::NotFound { .. })
    ));
    for bad in ["", "sha256:", "XYZ", "busybox", &"a".repeat(65)] {
        assert!(
            matches!(store.resolve_id(bad), Err(Error::InvalidInput { .. })),
            "{bad}"
        );
    }
}

#[test]
fn delete_image_policy() {
    let (_dir, mut store) = store();
    let parent = image("parent", vec![layer("a", 1)]);
    let mut child = image("child", vec![layer("a", 1), layer("b", 1)]);
    child.parent_id = Some(parent.id.clone());
    store.insert_image(&parent).unwrap();
    store.insert_image(&child).unwrap();
    store.tag(BUSYBOX, &child.id).unwrap();

    let err = store.delete_image(&parent.id, true).unwrap_err();
    assert!(
        matches!(err, Error::Conflict(ref m) if m.contains("child")),
        "{err}"
    );
    let err = store.delete_image(&child.id, false).unwrap_err();
    assert!(
        matches!(err, Error::Conflict(ref m) if m.contains(BUSYBOX)),
        "{err}"
    );
    assert_eq!(store.get_image(&child.id).unwrap().tags, vec![BUSYBOX]);

    let deleted = store.delete_image(&child.id, true).unwrap();
    assert_eq!(deleted.untagged, vec![BUSYBOX]);
    assert_eq!(deleted.layers.len(), 2);
    assert!(matches!(
        store.get_image(&child.id),
        Err(Error::NotFound { .. })
    ));
    assert!(store
        .read(|tx| tx.images_using_chain(&d("chain b")))
        .unwrap()
        .is_empty());
    assert_eq!(
        store.read(|tx| tx.dangling_images()).unwrap(),
        vec![parent.id.clone()]
    );
    store.delete_image(&parent.id, false).unwrap();
    assert!(matches!(
        store.delete_image(&parent.id, true),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn dangling_images_have_no_tags_and_no_children() {
    let (_dir, mut store) = store();
    let base = image("base", vec![]);
    let mut derived = image("derived", vec![]);
    derived.parent_id = Some(base.id.clone());
    let tagged = image("tagged", vec![]);
    for img in [&base, &derived, &tagged] {
        store.insert_image(img).unwrap();
    }
    store.tag(BUSYBOX, &tagged.id).unwrap();
    assert_eq!(
        store.read(|tx| tx.dangling_images()).unwrap(),
        vec![derived.id.clone()]
    );
    assert_eq!(
        store.read(|tx| tx.children(&base.id)).unwrap(),
        vec![derived.id]
    );
}

#[test]
fn an_aborted_transaction_leaves_nothing() {
    let (_dir, mut store) = store();
    let a = image("a", vec![layer("a", 1)]);
    let result: Result<(), Error> = store.transaction(|tx| {
        tx.insert_image(&a)?;
        tx.tag(BUSYBOX, &a.id)?;
        tx.append_event(&NewEvent {
            time_nanos: 1,
            kind: "image".into(),
            action: "load".into(),
            actor_id: a.id.to_string(),
            attributes: BTreeMap::new(),
        })?;
        assert_eq!(tx.list_images()?.len(), 1, "visible inside the transaction");
        Err(Error::Conflict(
            "simulated failure halfway through a load".into(),
        ))
    });
    assert!(matches!(result, Err(Error::Conflict(_))));
    assert!(store.list_images().unwrap().is_empty());
    assert!(store.events_since(0).unwrap().is_empty());
    assert!(store
        .read(|tx| tx.images_using_chain(&d("chain a")))
        .unwrap()
        .is_empty());
    assert!(matches!(
        store.resolve_reference(BUSYBOX),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_panicking_transaction_leaves_nothing() {
    let (_dir, mut store) = store();
    let a = image("a", vec![layer("a", 1)]);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: Result<(), Error> = store.transaction(|tx| {
            tx.insert_image(&a)?;
            panic!("crash in the middle");
        });
    }));
    assert!(outcome.is_err());
    assert!(store.list_images().unwrap().is_empty());
}

/// Callers can return their own error type from a transaction.
#[test]
fn transactions_carry_caller_errors() {
    #[derive(Debug)]
    enum EngineError {
        Store(Error),
        Policy,
    }
    impl From<Error> for EngineError {
        fn from(e: Error) -> Self {
            EngineError::Store(e)
        }
    }
    let (_dir, mut store) = store();
    let result: Result<(), EngineError> = store.transaction(|tx| {
        tx.insert_image(&image("a", vec![]))?;
        Err(EngineError::Policy)
    });
    assert!(matches!(result, Err(EngineError::Policy)));
    let result: Result<(), EngineError> = store.transaction(|tx| {
        tx.untag("docker.io/library/none:latest")?;
        Ok(())
    });
    assert!(matches!(
        result,
        Err(EngineError::Store(Error::NotFound { .. }))
    ));
    assert!(store.list_images().unwrap().is_empty());
}

#[test]
fn committed_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let a = image("a", vec![layer("a", 3)]);
    {
        let mut store = MetadataStore::open(&path).unwrap();
        store.insert_image(&a).unwrap();
        store.tag(BUSYBOX, &a.id).unwrap();
    }
    let store = MetadataStore::open(&path).unwrap();
    let got = store.get_image(&a.id).unwrap();
    assert_eq!(got.tags, vec![BUSYBOX]);
    assert_eq!(got.layers, a.layers);
}

#[test]
fn corrupt_rows_are_reported_as_corrupt() {
    let (_dir, mut store) = store();
    let a = image("a", vec![]);
    store.insert_image(&a).unwrap();
    store
        .conn
        .execute("UPDATE images SET labels = 'not json'", [])
        .unwrap();
    assert!(matches!(store.get_image(&a.id), Err(Error::Corrupt(_))));
    store
        .conn
        .execute(
            "UPDATE images SET labels = '{}', manifest_digest = 'sha256:short'",
            [],
        )
        .unwrap();
    assert!(matches!(store.list_images(), Err(Error::Corrupt(_))));
}

fn snapshot(name: &str, parent: Option<&str>) -> Snapshot {
    Snapshot {
        chain_id: d(&format!("chain {name}")),
        parent: parent.map(|p| d(&format!("chain {p}"))),
        key: format!("key-{name}"),
        size: 10,
        created_at: 1,
    }
}

#[test]
fn snapshots_and_their_users() {
    let (_dir, mut store) = store();
    store
        .transaction(|tx| {
            assert!(tx.insert_snapshot(&snapshot("a", None))?);
            assert!(!tx.insert_snapshot(&snapshot("a", None))?);
            tx.insert_snapshot(&snapshot("b", Some("a")))?;
            tx.insert_image(&image("img", vec![layer("a", 1), layer("b", 1)]))?;
            tx.set_snapshot_size(&d("chain b"), 99)
        })
        .unwrap();
    store
        .read(|tx| {
            assert_eq!(tx.get_snapshot(&d("chain b"))?.size, 99);
            assert_eq!(tx.list_snapshots()?.len(), 2);
            assert!(tx.unused_snapshots()?.is_empty());
            let err = tx
                .insert_snapshot(&snapshot("c", Some("missing")))
                .unwrap_err();
            assert!(matches!(
                err,
                Error::NotFound {
                    kind: "parent snapshot",
                    ..
                }
            ));
            let mut dup_key = snapshot("d", None);
            dup_key.key = "key-a".into();
            assert!(matches!(
                tx.insert_snapshot(&dup_key),
                Err(Error::Conflict(_))
            ));
            let err = tx.delete_snapshot(&d("chain a")).unwrap_err();
            assert!(
                matches!(err, Error::Conflict(ref m) if m.contains("used by image")),
                "{err}"
            );
            Ok::<_, Error>(())
        })
        .unwrap();
    store.delete_image(&d("config img"), false).unwrap();
    store
        .transaction(|tx| {
            // Only the top of the stack can go first.
            assert_eq!(
                tx.unused_snapshots()?,
                vec![snapshot_with_size("b", Some("a"), 99)]
            );
            let err = tx.delete_snapshot(&d("chain a")).unwrap_err();
            assert!(
                matches!(err, Error::Conflict(ref m) if m.contains("stacked")),
                "{err}"
            );
            tx.delete_snapshot(&d("chain b"))?;
            assert_eq!(tx.unused_snapshots()?.len(), 1);
            tx.delete_snapshot(&d("chain a"))?;
            assert!(matches!(
                tx.get_snapshot(&d("chain a")),
                Err(Error::NotFound { .. })
            ));
            Ok::<_, Error>(())
        })
        .unwrap();
}

fn snapshot_with_size(name: &str, parent: Option<&str>, size: u64) -> Snapshot {
    Snapshot {
        size,
        ..snapshot(name, parent)
    }
}

fn event(time: i64, action: &str) -> NewEvent {
    NewEvent {
        time_nanos: time,
        kind: "image".into(),
        action: action.into(),
        actor_id: d("config a").to_string(),
        attributes: BTreeMap::from([("name".to_string(), BUSYBOX.to_string())]),
    }
}

#[test]
fn events_append_range_and_prune() {
    let (_dir, mut store) = store();
    let first = store.append_event(&event(100, "pull")).unwrap();
    store.append_event(&event(200, "tag")).unwrap();
    store.append_event(&event(200, "untag")).unwrap();
    store.append_event(&event(300, "delete")).unwrap();
    let all = store.events_since(0).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].id, first);
    assert_eq!(all[0].attributes["name"], BUSYBOX);
    let actions =
        |events: Vec<crate::Event>| events.into_iter().map(|e| e.action).collect::<Vec<_>>();
    assert_eq!(
        actions(store.events_since(200).unwrap()),
        ["tag", "untag", "delete"]
    );
    assert_eq!(
        actions(store.events_range(150, 200).unwrap()),
        ["tag", "untag"]
    );
    assert!(store.events_range(301, 400).unwrap().is_empty());
    assert_eq!(store.prune_events(2).unwrap(), 2);
    assert_eq!(actions(store.events_since(0).unwrap()), ["untag", "delete"]);
    assert_eq!(store.prune_events(10).unwrap(), 0);
    let next = store.append_event(&event(400, "load")).unwrap();
    assert!(next > first, "ids never reused");
}

#[test]
fn containers_table() {
    let (_dir, mut store) = store();
    let img = image("a", vec![]);
    store.insert_image(&img).unwrap();
    let web = Container {
        id: "a".repeat(64),
        name: "web".into(),
        image_id: img.id.clone(),
        created_nanos: 5,
        config: json!({"Cmd": ["sh"]}),
        state: json!({"Status": "created"}),
    };
    store
        .transaction(|tx| {
            tx.insert_container(&web)?;
            let mut clash = web.clone();
            clash.id = "b".repeat(64);
            let err = tx.insert_container(&clash).unwrap_err();
            assert!(
                err.to_string().contains("\"/web\" is already in use"),
                "{err}"
            );
            clash.name = "db".into();
            tx.insert_container(&clash)?;
            assert!(matches!(
                tx.insert_container(&clash),
                Err(Error::Conflict(_))
            ));
            tx.set_container_state(&web.id, &json!({"Status": "running"}))?;
            assert!(matches!(
                tx.rename_container(&web.id, "db"),
                Err(Error::Conflict(_))
            ));
            tx.rename_container(&web.id, "front")?;
            Ok::<_, Error>(())
        })
        .unwrap();
    store
        .read(|tx| {
            let got = tx.container_by_name("front")?;
            assert_eq!(got.state, json!({"Status": "running"}));
            assert_eq!(got.config, web.config);
            assert_eq!(tx.list_containers()?.len(), 2);
            assert_eq!(tx.containers_using_image(&img.id)?.len(), 2);
            Ok::<_, Error>(())
        })
        .unwrap();
    store
        .transaction(|tx| tx.delete_container(&web.id))
        .unwrap();
    assert!(matches!(
        store.read(|tx| tx.get_container(&web.id)),
        Err(Error::NotFound {
            kind: "container",
            ..
        })
    ));
}

#[test]
fn a_second_connection_reads_while_one_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let mut writer = MetadataStore::open(&path).unwrap();
    let reader_path = path.clone();
    let reader = std::thread::spawn(move || {
        let reader = MetadataStore::open(&reader_path).unwrap();
        let mut seen = 0;
        while seen < 50 {
            let images = reader.list_images().unwrap();
            // Never half an image: every listed image has its layer and its tag.
            assert!(images
                .iter()
                .all(|i| i.layers.len() == 1 && i.tags.len() == 1));
            seen = images.len();
        }
    });
    for i in 0..50 {
        let img = image(&format!("c{i}"), vec![layer(&format!("c{i}"), 1)]);
        writer
            .transaction(|tx| {
                tx.insert_image(&img)?;
                tx.tag(&format!("docker.io/library/c:{i}"), &img.id)
            })
            .unwrap();
    }
    reader.join().unwrap();
}

#[test]
fn last_tag_time_can_be_restored() {
    let (_dir, mut store) = store();
    let new = image("busybox", vec![layer("a", 1)]);
    store.insert_image(&new).unwrap();
    store
        .transaction(|tx| -> Result<(), Error> {
            tx.tag("docker.io/library/busybox:latest", &new.id)?;
            tx.set_last_tagged_at(&new.id, None)
        })
        .unwrap();
    let got = store.get_image(&new.id).unwrap();
    assert_eq!(got.tags, vec!["docker.io/library/busybox:latest"]);
    assert!(got.last_tagged_at.is_none());
    assert!(matches!(
        store.transaction(|tx| tx.set_last_tagged_at(&d("nope"), Some(1))),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn pulled_manifests_are_kept_with_their_image_newest_first() {
    let (_dir, mut store) = store();
    let img = image("kept", vec![layer("k", 1)]);
    let first = ImageManifest {
        digest: d("manifest one"),
        media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
        index_digest: Some(d("index")),
    };
    let second = ImageManifest {
        digest: d("manifest two"),
        media_type: "application/vnd.docker.distribution.manifest.v2+json".to_string(),
        index_digest: None,
    };
    let missing =
        store.transaction(|tx| -> Result<(), Error> { tx.add_image_manifest(&img.id, &first) });
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
    store
        .transaction(|tx| -> Result<(), Error> {
            tx.insert_image(&img)?;
            tx.add_image_manifest(&img.id, &first)?;
            tx.add_image_manifest(&img.id, &second)
        })
        .unwrap();
    let kept = store.read(|tx| tx.image_manifests(&img.id)).unwrap();
    assert_eq!(kept.len(), 2);
    let keeping = store
        .read(|tx| tx.images_keeping_manifest(&first.digest))
        .unwrap();
    assert_eq!(keeping, vec![(img.id.clone(), first.clone())]);
    assert!(store
        .read(|tx| tx.images_keeping_manifest(&d("index")))
        .unwrap()
        .is_empty());
    let mut blobs = store.read(|tx| tx.manifest_blobs()).unwrap();
    blobs.sort();
    let mut want = vec![first.digest.clone(), second.digest.clone(), d("index")];
    want.sort();
    assert_eq!(blobs, want);
    store
        .transaction(|tx| -> Result<(), Error> {
            tx.delete_image(&img.id, true)?;
            Ok(())
        })
        .unwrap();
    assert!(store.read(|tx| tx.manifest_blobs()).unwrap().is_empty());
}
