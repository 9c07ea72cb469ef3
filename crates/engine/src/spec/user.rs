//! `-u` and `--group-add` resolved against the image's /etc/passwd and
//! /etc/group, with the rules of runc's and dockerd's `user` package.
//!
//! The image is untrusted: both files are opened inside the rootfs with
//! openat2(RESOLVE_IN_ROOT), so a symlink (absolute or `..`) can never lead
//! to a host file, and only regular files of bounded size are read.

use std::io::Read;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

use super::SpecError;

/// Larger account files than this are refused rather than read.
const MAX_ACCOUNT_FILE: u64 = 16 * 1024 * 1024;
/// uids and gids are limited to 0..=2^31-1, as runc's `user` package does.
const MAX_ID: i64 = i32::MAX as i64;

#[derive(Clone, Debug, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: i64,
    gid: i64,
    home: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: i64,
    members: Vec<String>,
}

/// The image's user and group databases; `None` when the file is absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserDb {
    passwd: Option<Vec<PasswdEntry>>,
    group: Option<Vec<GroupEntry>>,
}

/// A resolved `-u`: ids and the supplementary groups the process gets
/// (its primary gid first, as dockerd lists them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

impl UserDb {
    /// Reads `<rootfs>/etc/passwd` and `<rootfs>/etc/group`, resolving every
    /// path component inside the rootfs.
    pub fn read_from_rootfs(rootfs: &Path) -> Result<UserDb, SpecError> {
        let root = nix::fcntl::open(
            rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SpecError::io(format!("open rootfs {}", rootfs.display()), e.into()))?;
        let passwd = read_in_root(&root, "etc/passwd")?;
        let group = read_in_root(&root, "etc/group")?;
        Ok(UserDb::from_contents(passwd.as_deref(), group.as_deref()))
    }

    /// Parses file contents; `None` stands for a missing file.
    pub fn from_contents(passwd: Option<&str>, group: Option<&str>) -> UserDb {
        UserDb {
            passwd: passwd.map(parse_passwd),
            group: group.map(parse_group),
        }
    }

    /// Resolves `user`, `user:group`, `uid`, `uid:gid`, `user:gid`, … (empty =
    /// uid 0) and adds the `--group-add` groups (names or numbers).
    pub fn resolve(&self, spec: &str, group_add: &[String]) -> Result<ExecUser, SpecError> {
        let (user_arg, group_arg) = match spec.split_once(':') {
            Some((u, g)) => (u, g.split(':').next().unwrap_or_default()),
            None => (spec, ""),
        };
        let uid_num = parse_id(user_arg);
        let gid_num = parse_id(group_arg);

        let mut uid = 0i64;
        let mut gid = 0i64;
        let mut home = "/".to_string();
        let mut matched_name: Option<&str> = None;
        let found = self.passwd.iter().flatten().find(|u| {
            if user_arg.is_empty() {
                u.uid == 0
            } else if let Some(n) = uid_num {
                u.uid == n
            } else {
                u.name == user_arg
            }
        });
        if let Some(u) = found {
            matched_name = Some(&u.name);
            uid = u.uid;
            gid = u.gid;
            home = u.home.clone();
        } else if !user_arg.is_empty() {
            let Some(n) = uid_num else {
                return Err(SpecError::User(format!(
                    "unable to find user {user_arg}: no matching entries in passwd file"
                )));
            };
            uid = in_range(n)?;
        }

        let mut supplementary = Vec::new();
        if !group_arg.is_empty() {
            let by_arg = self.group.iter().flatten().find(|g| match gid_num {
                Some(n) => g.gid == n,
                None => g.name == group_arg,
            });
            gid = match (by_arg, gid_num) {
                (Some(g), _) => g.gid,
                (None, Some(n)) => in_range(n)?,
                (None, None) => {
                    return Err(SpecError::User(format!(
                        "unable to find group {group_arg}: no matching entries in group file"
                    )))
                }
            };
        } else if let Some(name) = matched_name {
            supplementary = self
                .group
                .iter()
                .flatten()
                .filter(|g| g.members.iter().any(|m| m == name))
                .map(|g| g.gid)
                .collect();
        }

        let mut additional = vec![gid];
        additional.extend(supplementary);
        additional.extend(self.additional_groups(group_add)?);
        Ok(ExecUser {
            uid: to_u32(uid),
            gid: to_u32(gid),
            additional_gids: additional.into_iter().map(to_u32).collect(),
            home,
        })
    }

    /// `--group-add`: a name or gid from /etc/group, else a number.
    fn additional_groups(&self, wanted: &[String]) -> Result<Vec<i64>, SpecError> {
        let mut gids: Vec<i64> = Vec::new();
        for want in wanted {
            let matched = self
                .group
                .iter()
                .flatten()
                .find(|g| g.name == *want || g.gid.to_string() == *want);
            let gid = match matched {
                Some(g) => g.gid,
                None => match want.parse::<i64>() {
                    Ok(n) => in_range(n)?,
                    Err(_) => {
                        return Err(SpecError::User(format!(
                            "Unable to find group {want}: no matching entries in group file"
                        )))
                    }
                },
            };
            if !gids.contains(&gid) {
                gids.push(gid);
            }
        }
        Ok(gids)
    }
}

/// `-u` (and the container's `--group-add`) resolved inside `rootfs`, as
/// the OCI process.user of the container or of an exec (dockerd resolves
/// `docker exec -u` the same way).
pub fn resolve_user(
    rootfs: &Path,
    user: &str,
    group_add: &[String],
) -> Result<oci_spec::runtime::User, SpecError> {
    let resolved = UserDb::read_from_rootfs(rootfs)?.resolve(user, group_add)?;
    oci_spec::runtime::UserBuilder::default()
        .uid(resolved.uid)
        .gid(resolved.gid)
        .additional_gids(resolved.additional_gids)
        .build()
        .map_err(super::oci_err)
}

/// Go's strconv.Atoi: optional sign, decimal digits, nothing else.
fn parse_id(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn in_range(id: i64) -> Result<i64, SpecError> {
    if (0..=MAX_ID).contains(&id) {
        Ok(id)
    } else {
        Err(SpecError::User(
            "uids and gids must be in range 0-2147483647".to_string(),
        ))
    }
}

/// Ids from the file that do not fit are read as 0 (as an unparsable field).
fn to_u32(id: i64) -> u32 {
    u32::try_from(id).unwrap_or(0)
}

fn lines(content: &str) -> impl Iterator<Item = Vec<&str>> {
    content
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(':').collect())
}

fn field<'a>(fields: &[&'a str], i: usize) -> &'a str {
    fields.get(i).copied().unwrap_or_default()
}

fn number(fields: &[&str], i: usize) -> i64 {
    parse_id(field(fields, i)).unwrap_or(0)
}

fn parse_passwd(content: &str) -> Vec<PasswdEntry> {
    lines(content)
        .map(|f| PasswdEntry {
            name: field(&f, 0).to_string(),
            uid: number(&f, 2),
            gid: number(&f, 3),
            home: field(&f, 5).to_string(),
        })
        .collect()
}

fn parse_group(content: &str) -> Vec<GroupEntry> {
    lines(content)
        .map(|f| GroupEntry {
            name: field(&f, 0).to_string(),
            gid: number(&f, 2),
            members: field(&f, 3).split(',').map(str::to_string).collect(),
        })
        .collect()
}

/// Reads `rel` inside the directory `root` as if it were `/`: `..` and
/// symlinks (absolute ones too) stay inside it. `None` when it does not exist.
fn read_in_root(root: &std::os::fd::OwnedFd, rel: &str) -> Result<Option<String>, SpecError> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(root, rel, how) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(None),
        Err(e) => return Err(SpecError::io(format!("open /{rel} in the image"), e.into())),
    };
    let st =
        fstat(&fd).map_err(|e| SpecError::io(format!("stat /{rel} in the image"), e.into()))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(SpecError::User(format!(
            "/{rel} in the image is not a regular file"
        )));
    }
    let mut data = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_ACCOUNT_FILE + 1)
        .read_to_end(&mut data)
        .map_err(|e| SpecError::io(format!("read /{rel} in the image"), e))?;
    if data.len() as u64 > MAX_ACCOUNT_FILE {
        return Err(SpecError::User(format!(
            "/{rel} in the image is larger than {MAX_ACCOUNT_FILE} bytes"
        )));
    }
    Ok(Some(String::from_utf8_lossy(&data).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                          app:x:1000:1000:App:/home/app:/bin/sh\n\
                          \n\
                          nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\n\
                         bin:x:1:root,daemon\n\
                         audio:x:29:app\n\
                         video:x:44:app,root\n\
                         app:x:1000:\n\
                         staff:x:50:\n";

    fn db() -> UserDb {
        UserDb::from_contents(Some(PASSWD), Some(GROUP))
    }

    fn resolve(spec: &str) -> ExecUser {
        db().resolve(spec, &[]).expect(spec)
    }

    #[test]
    fn default_is_root_with_its_groups() {
        let u = resolve("");
        assert_eq!((u.uid, u.gid), (0, 0));
        assert_eq!(u.additional_gids, [0, 1, 44]);
        assert_eq!(u.home, "/root");
    }

    #[test]
    fn names_numbers_and_groups() {
        let u = resolve("app");
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (1000, 1000, vec![1000, 29, 44])
        );
        let u = resolve("1000");
        assert_eq!((u.uid, u.gid), (1000, 1000));
        // An explicit group replaces the primary gid and drops membership groups.
        let u = resolve("app:staff");
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (1000, 50, vec![50])
        );
        let u = resolve("app:4242");
        assert_eq!((u.uid, u.gid), (1000, 4242));
        // A uid without an entry is fine: gid 0, no groups.
        let u = resolve("4000");
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (4000, 0, vec![0])
        );
        let u = resolve("4000:4001");
        assert_eq!((u.uid, u.gid), (4000, 4001));
        assert_eq!(resolve("daemon").home, "/usr/sbin");
    }

    #[test]
    fn unknown_names_are_refused_like_dockerd() {
        let err = db().resolve("foo", &[]).expect_err("foo").to_string();
        assert_eq!(
            err,
            "unable to find user foo: no matching entries in passwd file"
        );
        let err = db()
            .resolve("app:nogroup", &[])
            .expect_err("group")
            .to_string();
        assert_eq!(
            err,
            "unable to find group nogroup: no matching entries in group file"
        );
        let err = db().resolve("-5", &[]).expect_err("range").to_string();
        assert_eq!(err, "uids and gids must be in range 0-2147483647");
        // No passwd file at all: names cannot be found, numbers are fine.
        let empty = UserDb::default();
        assert!(empty.resolve("app", &[]).is_err());
        assert_eq!(empty.resolve("7:8", &[]).expect("numeric").gid, 8);
    }

    #[test]
    fn group_add_by_name_or_number() {
        let u = db()
            .resolve(
                "app",
                &["audio".into(), "50".into(), "777".into(), "staff".into()],
            )
            .expect("group-add");
        assert_eq!(u.additional_gids, [1000, 29, 44, 29, 50, 777]);
        let err = db()
            .resolve("", &["nosuch".into()])
            .expect_err("unknown group")
            .to_string();
        assert_eq!(
            err,
            "Unable to find group nosuch: no matching entries in group file"
        );
    }

    fn rootfs_with_etc() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("rootfs/etc")).expect("etc");
        dir
    }

    #[test]
    fn reads_the_files_inside_the_rootfs() {
        let dir = rootfs_with_etc();
        let rootfs = dir.path().join("rootfs");
        std::fs::write(rootfs.join("etc/passwd.real"), PASSWD).expect("passwd");
        // A symlink that stays inside the rootfs is followed there.
        symlink("/etc/passwd.real", rootfs.join("etc/passwd")).expect("symlink");
        std::fs::write(rootfs.join("etc/group"), GROUP).expect("group");
        let db = UserDb::read_from_rootfs(&rootfs).expect("read");
        assert_eq!(db.resolve("app", &[]).expect("app").uid, 1000);
    }

    #[test]
    fn symlinks_out_of_the_rootfs_do_not_read_host_files() {
        for target in ["ABS", "../../../../../../../../outside/passwd"] {
            let dir = rootfs_with_etc();
            let outside = dir.path().join("outside");
            std::fs::create_dir(&outside).expect("outside");
            std::fs::write(outside.join("passwd"), "foo:x:4321:4321::/:/bin/sh\n")
                .expect("host file");
            let rootfs = dir.path().join("rootfs");
            let target = if target == "ABS" {
                outside.join("passwd")
            } else {
                target.into()
            };
            symlink(&target, rootfs.join("etc/passwd")).expect("symlink");
            let db = UserDb::read_from_rootfs(&rootfs).expect("read");
            let err = db
                .resolve("foo", &[])
                .expect_err("host user must not be seen");
            assert_eq!(
                err.to_string(),
                "unable to find user foo: no matching entries in passwd file"
            );
        }
    }

    #[test]
    fn special_files_are_refused() {
        let dir = rootfs_with_etc();
        let rootfs = dir.path().join("rootfs");
        nix::unistd::mkfifo(&rootfs.join("etc/passwd"), Mode::from_bits_truncate(0o644))
            .expect("fifo");
        let err = UserDb::read_from_rootfs(&rootfs).expect_err("fifo");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        std::fs::remove_file(rootfs.join("etc/passwd")).expect("rm");
        std::fs::create_dir(rootfs.join("etc/passwd")).expect("dir");
        assert!(UserDb::read_from_rootfs(&rootfs).is_err());
    }
}
