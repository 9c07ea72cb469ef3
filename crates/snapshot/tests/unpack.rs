//! Root tests of `unpack_layer`: every entry type with its metadata,
//! whiteouts in both forms, and hostile layers.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use berth_snapshot::{unpack_layer, Error, UnpackOptions, WhiteoutForm};
use common::{is_root, LayerTar, Scratch};
use sha2::{Digest, Sha256};
use tar::EntryType;

const OVERLAY: UnpackOptions = UnpackOptions {
    whiteouts: WhiteoutForm::Overlay,
};
const APPLY: UnpackOptions = UnpackOptions {
    whiteouts: WhiteoutForm::Apply,
};

fn unpack(
    tar: &[u8],
    dest: &Path,
    opts: UnpackOptions,
) -> berth_snapshot::Result<berth_snapshot::UnpackStats> {
    unpack_layer(tar, dest, &opts)
}

#[test]
fn every_entry_type_keeps_its_metadata() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let dest = s.sub("dest");
    // security.capability v2: cap_net_bind_service in permitted and effective.
    let cap: Vec<u8> = vec![1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let long_name = format!("deep/{}", "n".repeat(150));
    let mut t = LayerTar::new();
    t.dir("./", 0o755)
        .dir("deep/", 0o750)
        .raw("tmp", EntryType::Directory, 0o1777, (0, 0), None, b"", &[])
        .raw(
            "deep/suid",
            EntryType::Regular,
            0o4755,
            (1000, 1001),
            None,
            b"#!/bin/sh\n",
            &[],
        )
        .raw(
            "deep/ping",
            EntryType::Regular,
            0o755,
            (0, 0),
            None,
            b"elf",
            &[("security.capability", &cap), ("user.note", b"hello")],
        )
        .file(&long_name, b"long")
        .symlink("deep/link", "/etc/target")
        .hardlink("deep/hard", "deep/suid")
        .device("null", EntryType::Char, 1, 3)
        .device("loop0", EntryType::Block, 7, 0)
        .raw("fifo", EntryType::Fifo, 0o600, (5, 5), None, b"", &[]);
    let tar = t.finish();
    let stats = unpack(&tar, &dest, OVERLAY).expect("unpack");

    assert_eq!(stats.tar_bytes, tar.len() as u64);
    assert_eq!(
        stats.diff_id,
        format!("sha256:{}", hex::encode(Sha256::digest(&tar)))
    );
    assert_eq!(stats.entries, 11);

    let md = |p: &str| fs::symlink_metadata(dest.join(p)).expect(p);
    assert_eq!(md("tmp").mode() & 0o7777, 0o1777);
    let suid = md("deep/suid");
    assert_eq!(
        (suid.mode() & 0o7777, suid.uid(), suid.gid()),
        (0o4755, 1000, 1001)
    );
    assert_eq!(suid.mtime(), 1_600_000_000);
    assert_eq!(
        fs::read(dest.join("deep/suid")).expect("read"),
        b"#!/bin/sh\n"
    );
    assert_eq!(md("deep/hard").ino(), suid.ino());
    assert_eq!(
        xattr::get(dest.join("deep/ping"), "security.capability").expect("xattr"),
        Some(cap)
    );
    assert_eq!(
        xattr::get(dest.join("deep/ping"), "user.note").expect("xattr"),
        Some(b"hello".to_vec())
    );
    assert_eq!(fs::read(dest.join(&long_name)).expect("long"), b"long");
    assert_eq!(
        fs::read_link(dest.join("deep/link"))
            .expect("link")
            .to_str(),
        Some("/etc/target")
    );
    assert_eq!(md("deep/link").mtime(), 1_600_000_000);
    let null = md("null");
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (
            nix::sys::stat::major(null.rdev()),
            nix::sys::stat::minor(null.rdev())
        ),
        (1, 3)
    );
    assert_eq!((null.mode() & 0o7777, null.gid()), (0o660, 6));
    assert!(md("loop0").file_type().is_block_device());
    let fifo = md("fifo");
    assert!(fifo.file_type().is_fifo());
    assert_eq!((fifo.uid(), fifo.mode() & 0o777), (5, 0o600));
    // Directory times are set after their content was written.
    assert_eq!(md("deep").mtime(), 1_600_000_000);
    assert_eq!(md("deep").mode() & 0o7777, 0o750);
    assert_eq!(fs::metadata(&dest).expect("root").mtime(), 1_600_000_000);
}

#[test]
fn trailing_data_after_the_archive_is_hashed() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let mut tar = LayerTar::new();
    tar.file("a", b"x");
    let mut tar = tar.finish();
    tar.extend_from_slice(&[0u8; 4096]);
    let stats = unpack(&tar, &s.sub("d"), OVERLAY).expect("unpack");
    assert_eq!(
        stats.diff_id,
        format!("sha256:{}", hex::encode(Sha256::digest(&tar)))
    );
}

#[test]
fn overlay_form_whiteouts_become_devices_and_xattrs() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let dest = s.sub("d");
    let mut t = LayerTar::new();
    t.dir("etc", 0o755)
        .file("etc/.wh.gone", b"")
        .dir("opaque", 0o755)
        .file("opaque/.wh..wh..opq", b"")
        .file("opaque/kept", b"k")
        .file(".wh..wh.plnk", b"");
    unpack(&t.finish(), &dest, OVERLAY).expect("unpack");
    let wh = fs::symlink_metadata(dest.join("etc/gone")).expect("whiteout");
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!dest.join("etc/.wh.gone").exists());
    assert_eq!(
        xattr::get(dest.join("opaque"), "trusted.overlay.opaque").expect("xattr"),
        Some(b"y".to_vec())
    );
    assert!(dest.join("opaque/kept").exists());
    assert!(!dest.join(".wh..wh.plnk").exists());
}

#[test]
fn apply_form_whiteouts_delete_and_opaque_keeps_only_this_layer() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let dest = s.sub("d");
    let mut base = LayerTar::new();
    base.dir("etc", 0o755)
        .file("etc/gone", b"1")
        .file("etc/stays", b"2")
        .dir("var", 0o755)
        .dir("var/tree", 0o755)
        .file("var/tree/old", b"3")
        .dir("var/tree/sub", 0o755)
        .file("var/tree/sub/x", b"4");
    unpack(&base.finish(), &dest, APPLY).expect("base");
    let mut top = LayerTar::new();
    top.dir("etc", 0o755)
        .file("etc/.wh.gone", b"")
        .file("etc/.wh.never-existed", b"")
        .dir("var/tree", 0o755)
        .file("var/tree/new", b"5")
        .file("var/tree/.wh..wh..opq", b"")
        .file(".wh.nothing/.wh.x", b"");
    unpack(&top.finish(), &dest, APPLY).expect("top");
    assert!(!dest.join("etc/gone").exists());
    assert!(dest.join("etc/stays").exists());
    let mut left: Vec<_> = fs::read_dir(dest.join("var/tree"))
        .expect("list")
        .map(|e| e.expect("e").file_name().into_string().expect("utf8"))
        .collect();
    left.sort();
    assert_eq!(left, ["new"]);
}

#[test]
fn a_dir_replaces_a_file_and_a_file_replaces_a_dir() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let dest = s.sub("d");
    let mut a = LayerTar::new();
    a.file("x", b"file").dir("y", 0o755).file("y/inner", b"i");
    unpack(&a.finish(), &dest, APPLY).expect("a");
    let mut b = LayerTar::new();
    b.dir("x", 0o700).file("y", b"now a file");
    unpack(&b.finish(), &dest, APPLY).expect("b");
    assert!(dest.join("x").is_dir());
    assert_eq!(fs::read(dest.join("y")).expect("y"), b"now a file");
}

/// Unpacks the tar `build` makes (given the outside directory) into `dest` and checks it fails with the expected error
/// and wrote nothing in the sibling `outside` directory.
fn refused(build: impl Fn(&str) -> Vec<u8>, opts: UnpackOptions, check: impl Fn(&Error) -> bool) {
    let s = Scratch::new();
    let dest = s.sub("dest");
    let outside = s.sub("outside");
    fs::write(outside.join("passwd"), b"host").expect("write");
    let tar = build(&outside.to_string_lossy());
    let err = unpack(&tar, &dest, opts).expect_err("hostile layer was accepted");
    assert!(check(&err), "unexpected error: {err}");
    let mut left: Vec<_> = fs::read_dir(&outside)
        .expect("outside")
        .map(|e| e.expect("e").file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["passwd"], "something was written outside");
    assert_eq!(fs::read(outside.join("passwd")).expect("passwd"), b"host");
    println!("refused with: {err}");
}

#[test]
fn dotdot_names_are_refused() {
    if !is_root() {
        return;
    }
    refused(
        |_| {
            let mut t = LayerTar::new();
            t.file("../outside/x", b"evil");
            t.finish()
        },
        OVERLAY,
        |e| matches!(e, Error::ParentTraversal { entry } if entry == "../outside/x"),
    );
    refused(
        |_| {
            let mut t = LayerTar::new();
            t.dir("a", 0o755).file("a/../../outside/x", b"evil");
            t.finish()
        },
        APPLY,
        |e| matches!(e, Error::ParentTraversal { .. }),
    );
}

#[test]
fn absolute_names_are_refused() {
    if !is_root() {
        return;
    }
    refused(
        |o| {
            let mut t = LayerTar::new();
            t.file(&format!("{o}/x"), b"evil");
            t.finish()
        },
        OVERLAY,
        |e| matches!(e, Error::AbsolutePath { .. }),
    );
}

#[test]
fn writing_through_a_symlink_is_refused() {
    if !is_root() {
        return;
    }
    // A symlink in the layer pointing out, then an entry through it.
    refused(
        |o| {
            let mut t = LayerTar::new();
            t.symlink("a", o).file("a/passwd", b"evil");
            t.finish()
        },
        OVERLAY,
        |e| matches!(e, Error::SymlinkInPath { entry, symlink } if entry == "a/passwd" && symlink == "a"),
    );
    // The same with a relative link climbing out, and a directory entry.
    refused(
        |_| {
            let mut t = LayerTar::new();
            t.symlink("up", "../outside").dir("up/newdir", 0o755);
            t.finish()
        },
        APPLY,
        |e| matches!(e, Error::SymlinkInPath { .. }),
    );
    // A whiteout through a symlink must not delete outside either.
    refused(
        |_| {
            let mut t = LayerTar::new();
            t.symlink("w", "../outside").file("w/.wh.passwd", b"");
            t.finish()
        },
        APPLY,
        |e| matches!(e, Error::SymlinkInPath { .. }),
    );
}

#[test]
fn a_symlinked_parent_left_by_a_lower_layer_is_not_followed() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let dest = s.sub("dest");
    let outside = s.sub("outside");
    std::os::unix::fs::symlink(&outside, dest.join("etc")).expect("symlink");
    let mut t = LayerTar::new();
    t.dir("etc/sub", 0o755).file("etc/sub/passwd", b"evil");
    let err = unpack(&t.finish(), &dest, APPLY).expect_err("accepted");
    assert!(
        matches!(&err, Error::SymlinkInPath { symlink, .. } if symlink == "etc"),
        "{err}"
    );
    assert_eq!(fs::read_dir(&outside).expect("outside").count(), 0);
}

#[test]
fn hardlinks_to_outside_are_refused() {
    if !is_root() {
        return;
    }
    refused(
        |_| {
            let mut t = LayerTar::new();
            t.hardlink("pw", "../outside/passwd");
            t.finish()
        },
        OVERLAY,
        |e| matches!(e, Error::HardlinkOutside { .. }),
    );
    refused(
        |o| {
            let mut t = LayerTar::new();
            t.hardlink("pw", &format!("{o}/passwd"));
            t.finish()
        },
        OVERLAY,
        |e| matches!(e, Error::HardlinkOutside { .. }),
    );
    // Through a symlink in the layer.
    refused(
        |o| {
            let mut t = LayerTar::new();
            t.symlink("s", o).hardlink("pw", "s/passwd");
            t.finish()
        },
        OVERLAY,
        |e| matches!(e, Error::HardlinkOutside { .. }),
    );
    refused(
        |_| {
            let mut t = LayerTar::new();
            t.hardlink("pw", "missing");
            t.finish()
        },
        OVERLAY,
        |e| matches!(e, Error::HardlinkTargetMissing { .. }),
    );
}

#[test]
fn truncated_archives_fail_cleanly() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let mut t = LayerTar::new();
    t.file("big", &[7u8; 10_000]);
    let tar = t.finish();
    let err = unpack(&tar[..3000], &s.sub("d"), OVERLAY).expect_err("truncated accepted");
    assert!(matches!(err, Error::Archive { .. }), "{err}");
}
