//! Root tests of `SnapshotStore` on this machine: overlay and vfs give the
//! same trees, crashes leave nothing, diffs round-trip, long layer chains mount.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use berth_snapshot::{
    detect_driver, unpack_layer, Driver, Error, SnapshotKind, SnapshotStore, UnpackOptions,
    WhiteoutForm,
};
use common::{assert_same_tree, is_root, manifest, manifest_no_dir_times, LayerTar, Scratch};
use tar::EntryType;

const L1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const L2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const L3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

fn layers() -> [Vec<u8>; 3] {
    let mut a = LayerTar::new();
    a.dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0\n")
        .file("etc/removed", b"bye")
        .dir("usr", 0o755)
        .dir("usr/share", 0o755)
        .file("usr/share/a", b"a")
        .file("usr/share/b", b"b")
        .raw(
            "usr/bin-su",
            EntryType::Regular,
            0o4755,
            (0, 0),
            None,
            b"su",
            &[("user.k", b"v")],
        )
        .hardlink("usr/bin-su-link", "usr/bin-su")
        .symlink("bin", "usr")
        .device("null", EntryType::Char, 1, 3);
    let mut b = LayerTar::new();
    b.mtime += 100;
    b.dir("etc", 0o755)
        .file("etc/.wh.removed", b"")
        .file("etc/passwd", b"root:x:0:0\nuser:x:1000:1000\n")
        .dir("usr", 0o755)
        .dir("usr/share", 0o700)
        .file("usr/share/.wh..wh..opq", b"")
        .file("usr/share/c", b"c")
        .dir("opt", 0o755)
        .file("opt/tool", b"v1");
    let mut c = LayerTar::new();
    c.mtime += 200;
    c.file(".wh.opt", b"").dir("etc", 0o755).raw(
        "etc/shadow",
        EntryType::Regular,
        0o640,
        (0, 42),
        None,
        b"secret",
        &[],
    );
    [a.finish(), b.finish(), c.finish()]
}

fn stack(store: &SnapshotStore) {
    let [a, b, c] = layers();
    store.apply_layer(L1, None, &a[..]).expect("layer 1");
    store.apply_layer(L2, Some(L1), &b[..]).expect("layer 2");
    store.apply_layer(L3, Some(L2), &c[..]).expect("layer 3");
}

#[test]
fn overlay_is_detected_on_this_machine() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let probe = detect_driver(s.path());
    assert_eq!(probe.driver, Driver::Overlay, "{:?}", probe.fallback_reason);
    assert_eq!(
        fs::read_dir(s.path()).expect("list").count(),
        0,
        "probe left files"
    );
}

#[test]
fn three_layers_merge_the_same_with_overlay_and_vfs() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let mut trees = Vec::new();
    for driver in [Driver::Overlay, Driver::Vfs] {
        let store = SnapshotStore::open(s.path(), driver).expect("open");
        stack(&store);
        store.create_container("ctr", Some(L3)).expect("container");
        let merged = store.mount_container("ctr").expect("mount");
        let m = |p: &str| merged.join(p);
        assert_eq!(
            fs::read(m("etc/passwd")).expect("passwd"),
            b"root:x:0:0\nuser:x:1000:1000\n"
        );
        assert!(
            !m("etc/removed").exists(),
            "{driver:?}: whiteout not applied"
        );
        assert!(!m("opt").exists(), "{driver:?}: dir whiteout not applied");
        let mut share: Vec<_> = fs::read_dir(m("usr/share"))
            .expect("share")
            .map(|e| e.expect("e").file_name().into_string().expect("utf8"))
            .collect();
        share.sort();
        assert_eq!(share, ["c"], "{driver:?}: opaque dir shows lower content");
        assert_eq!(
            fs::metadata(m("usr/share"))
                .expect("share")
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert_eq!(fs::read(m("bin/bin-su")).expect("through symlink"), b"su");
        trees.push(manifest(&merged));
        store.remove_container("ctr").expect("remove container");
        assert!(!merged.exists());
    }
    assert_same_tree(&trees[0], &trees[1]);
}

#[test]
fn staged_layers_stay_invisible_until_committed_in_order() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let stacked = Scratch::new();
    for driver in [Driver::Overlay, Driver::Vfs] {
        let store = SnapshotStore::open(s.path(), driver).expect("open");
        let [a, b, c] = layers();
        // Overlay stages every layer before any parent exists; vfs needs
        // the parent committed first.
        store.stage_layer(L1, None, "p-1", &a[..]).expect("stage 1");
        if driver == Driver::Overlay {
            store
                .stage_layer(L3, Some(L2), "p-1", &c[..])
                .expect("stage 3");
            store
                .stage_layer(L2, Some(L1), "p-1", &b[..])
                .expect("stage 2");
        }
        assert!(!store.exists(L1), "a staged layer is visible");
        assert!(store.list().expect("list").is_empty());
        let err = store
            .commit_staged(L2, Some(L1), "p-1")
            .expect_err("committed before its parent");
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        store.commit_staged(L1, None, "p-1").expect("commit 1");
        if driver == Driver::Vfs {
            store
                .stage_layer(L2, Some(L1), "p-1", &b[..])
                .expect("stage 2");
        }
        store.commit_staged(L2, Some(L1), "p-1").expect("commit 2");
        if driver == Driver::Vfs {
            store
                .stage_layer(L3, Some(L2), "p-1", &c[..])
                .expect("stage 3");
        }
        // A second stager of the same layer loses quietly.
        store
            .stage_layer(L3, Some(L2), "p-2", &c[..])
            .expect("stage 3 again");
        store.commit_staged(L3, Some(L2), "p-1").expect("commit 3");
        store
            .commit_staged(L3, Some(L2), "p-2")
            .expect("commit 3 again");
        let leftovers: Vec<_> = fs::read_dir(store.dir())
            .expect("list")
            .map(|e| e.expect("e").file_name().into_string().expect("utf8"))
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // The same tree as layers applied one by one.
        let reference = SnapshotStore::open(stacked.path(), driver).expect("open");
        stack(&reference);
        reference
            .create_container("c", Some(L3))
            .expect("container");
        store.create_container("c", Some(L3)).expect("container");
        let want = manifest(&reference.mount_container("c").expect("mount"));
        let got = manifest(&store.mount_container("c").expect("mount"));
        reference.unmount_container("c").expect("unmount");
        store.unmount_container("c").expect("unmount");
        assert_eq!(want, got, "{driver:?}");
        reference.remove_container("c").expect("remove");
        store.remove_container("c").expect("remove");
        for id in [L3, L2, L1] {
            store.remove_layer(id).expect("remove");
            reference.remove_layer(id).expect("remove");
        }
        // A bad stage name is refused.
        assert!(store.stage_layer(L1, None, "../x", &a[..]).is_err());
    }
}

#[test]
fn a_crash_leaves_only_tmp_dirs_which_open_removes() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    for driver in [Driver::Overlay, Driver::Vfs] {
        let store = SnapshotStore::open(s.path(), driver).expect("open");
        let [a, ..] = layers();
        store.apply_layer(L1, None, &a[..]).expect("layer 1");
        // Killed between prepare and commit.
        let half = store.prepare_layer(L2, Some(L1)).expect("prepare");
        fs::write(half.join("partial"), b"x").expect("write");
        assert!(!store.exists(L2));
        drop(store);
        let store = SnapshotStore::open(s.path(), driver).expect("reopen");
        let leftovers: Vec<_> = fs::read_dir(store.dir())
            .expect("list")
            .map(|e| e.expect("e").file_name().into_string().expect("utf8"))
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let ids: Vec<_> = store
            .list()
            .expect("list")
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, [L1]);
        // A hostile layer fails and leaves nothing either.
        let mut evil = LayerTar::new();
        evil.file("../x", b"evil");
        let err = store
            .apply_layer(L2, Some(L1), &evil.finish()[..])
            .expect_err("accepted");
        assert!(matches!(err, Error::ParentTraversal { .. }), "{err}");
        assert!(!store.exists(L2));
        assert_eq!(
            fs::read_dir(store.dir())
                .expect("list")
                .filter(|e| e
                    .as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".tmp")))
                .count(),
            0
        );
    }
}

#[test]
fn layers_in_use_are_not_removed() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    for driver in [Driver::Overlay, Driver::Vfs] {
        let store = SnapshotStore::open(s.path(), driver).expect("open");
        stack(&store);
        store.create_container("c1", Some(L3)).expect("container");
        assert!(matches!(store.remove_layer(L2), Err(Error::InUse { users, .. }) if users == [L3]));
        assert!(
            matches!(store.remove_layer(L3), Err(Error::InUse { users, .. }) if users == ["c1"])
        );
        assert!(matches!(
            store.remove_layer("c1"),
            Err(Error::WrongKind { .. })
        ));
        assert!(matches!(
            store.apply_layer(L1, None, &b""[..]),
            Err(Error::AlreadyExists { .. })
        ));
        assert!(matches!(
            store.create_container("c2", Some("sha256:00")),
            Err(Error::NotFound { .. })
        ));
        assert!(store.usage(L1).expect("usage") > 0);
        assert_eq!(
            store.info("c1").expect("info").kind,
            SnapshotKind::Container
        );
        store.remove_container("c1").expect("rm c1");
        for id in [L3, L2, L1] {
            store.remove_layer(id).expect("rm layer");
        }
        assert!(store.list().expect("list").is_empty());
        if driver == Driver::Overlay {
            assert_eq!(fs::read_dir(store.dir().join("l")).expect("l").count(), 0);
        }
    }
}

/// Changes a mounted container the ways users do.
fn change(root: &Path) {
    fs::write(root.join("etc/passwd"), b"changed\n").expect("modify");
    fs::write(root.join("etc/new"), b"new file").expect("add");
    fs::remove_file(root.join("etc/shadow")).expect("delete");
    fs::remove_dir_all(root.join("usr/share")).expect("delete dir");
    fs::create_dir(root.join("usr/share")).expect("recreate dir");
    fs::write(root.join("usr/share/fresh"), b"f").expect("fill");
    fs::set_permissions(root.join("usr/bin-su"), fs::Permissions::from_mode(0o755)).expect("chmod");
    symlink("/nowhere", root.join("dangling")).expect("symlink");
    fs::create_dir_all(root.join("var/lib/app")).expect("mkdir -p");
    fs::write(root.join("var/lib/app/data"), b"d").expect("data");
    fs::hard_link(
        root.join("var/lib/app/data"),
        root.join("var/lib/app/data2"),
    )
    .expect("link");
}

#[test]
fn a_container_diff_applied_on_its_parent_gives_the_merged_view() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    for driver in [Driver::Overlay, Driver::Vfs] {
        let store = SnapshotStore::open(s.path(), driver).expect("open");
        stack(&store);
        store.create_container("ctr", Some(L3)).expect("container");
        let merged = store.mount_container("ctr").expect("mount");
        change(&merged);
        let mut diff = Vec::new();
        store.write_diff("ctr", &mut diff).expect("diff");

        // Applied onto the parent's view built by unpacking its layers ...
        let applied = s.sub(&format!("applied-{}", driver.name()));
        let apply = UnpackOptions {
            whiteouts: WhiteoutForm::Apply,
        };
        for layer in layers().iter().chain([&diff]) {
            unpack_layer(&layer[..], &applied, &apply).expect("apply");
        }
        let want = manifest_no_dir_times(&merged);
        assert_same_tree(&want, &manifest_no_dir_times(&applied));

        // ... and committed as a layer of its own.
        let id = format!("sha256:{}", "4".repeat(64));
        store
            .apply_layer(&id, Some(L3), &diff[..])
            .expect("commit diff as layer");
        store.create_container("next", Some(&id)).expect("next");
        let next = store.mount_container("next").expect("mount next");
        assert_same_tree(&want, &manifest_no_dir_times(&next));
        for key in ["ctr", "next"] {
            store.remove_container(key).expect("rm");
        }
    }
}

/// Stacks `count` one-file layers and mounts a container on them.
/// `spec_fits`: whether the lower dirs fit a page as paths (short links)
/// for a runtime doing the mount; the store's own mount always works.
fn long_chain(root: &Path, count: usize, spec_fits: bool) {
    let store = SnapshotStore::open(root, Driver::Overlay).expect("open");
    let mut parent: Option<String> = None;
    for i in 0..count {
        let id = format!("sha256:{i:064x}");
        let mut t = LayerTar::new();
        t.file(&format!("f{i}"), format!("{i}").as_bytes());
        store
            .apply_layer(&id, parent.as_deref(), &t.finish()[..])
            .expect("layer");
        parent = Some(id);
    }
    store
        .create_container("ctr", parent.as_deref())
        .expect("container");
    match store.mount_spec("ctr") {
        Ok(spec) => {
            let lower = spec
                .options
                .iter()
                .find(|o| o.starts_with("lowerdir="))
                .expect("lowerdir");
            assert!(lower.contains("/l/"), "short links not used: {lower}");
            assert!(spec_fits);
        }
        Err(e) => assert!(
            !spec_fits && matches!(e, Error::TooManyLayers { .. }),
            "{e}"
        ),
    }
    let merged = store.mount_container("ctr").expect("mount");
    for i in 0..count {
        assert_eq!(
            fs::read(merged.join(format!("f{i}"))).expect("file"),
            format!("{i}").as_bytes()
        );
    }
    store.unmount_container("ctr").expect("unmount");
    store.unmount_container("ctr").expect("unmount twice");
}

#[test]
fn long_chains_mount_through_short_links() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    long_chain(s.path(), 45, true);
}

#[test]
fn very_long_chains_under_a_long_root_still_mount() {
    if !is_root() {
        return;
    }
    let s = Scratch::with_long_path(220);
    long_chain(&s.deepest(), 40, false);
}

/// The store's directory spreads its snapshots over the filesystem's block
/// groups (`chattr +T`) where the filesystem has that hint (ext2/3/4).
#[test]
fn the_store_directory_is_marked_as_a_top_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let probe = fs::File::open(tmp.path()).expect("open");
    if berth_sys::fs_flags::is_top_dir(&probe).is_err() {
        eprintln!(
            "skipped: the filesystem under {} has no inode flags",
            tmp.path().display()
        );
        return;
    }
    SnapshotStore::open(tmp.path(), Driver::Vfs).expect("open store");
    let dir = fs::File::open(tmp.path().join("vfs")).expect("open store dir");
    assert!(berth_sys::fs_flags::is_top_dir(&dir).expect("flags"));
    // The hint stays on the store, not on what is created in it.
    assert!(!berth_sys::fs_flags::is_top_dir(&probe).expect("flags"));
}
