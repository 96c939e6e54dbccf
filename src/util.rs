//! Small shared helpers: atomic writes of files and of whole output directories, and the
//! checks that let a command refuse an unusable output path before it starts any work.

use anyhow::{anyhow, bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The directory a file path lives in (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Permissions for a new file: those of the file it replaces, else `0o666` (the process's
/// umask then applies, as for any file a program creates).
#[cfg(unix)]
fn new_file_permissions(replacing: &Path) -> (std::fs::Permissions, bool) {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(replacing) {
        Ok(m) if m.is_file() => (m.permissions(), true),
        _ => (std::fs::Permissions::from_mode(0o666), false),
    }
}

/// Write a file so that readers see either the old or the new contents, never a torn one:
/// write a temporary file in the same directory, flush it to disk, then rename it over.
/// The new file gets the replaced file's permissions, or the usual ones under the umask
/// (not the temporary file's 0600). On any error no temporary file is left behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.is_dir() {
        bail!(
            "cannot write {}: it is a directory; give a file name (e.g. {})",
            path.display(),
            path.join("out.json").display()
        );
    }
    let dir = parent_of(path);
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let mut b = tempfile::Builder::new();
    b.prefix(".dfforge-").suffix(".tmp");
    #[cfg(unix)]
    let (perm, existed) = new_file_permissions(path);
    #[cfg(unix)]
    b.permissions(perm.clone());
    let mut tmp = b
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    #[cfg(unix)]
    if existed {
        // The umask narrowed the mode at creation; the replaced file's mode is wanted.
        tmp.as_file()
            .set_permissions(perm)
            .with_context(|| format!("cannot set the permissions of {}", path.display()))?;
    }
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    // On failure the PersistError owns the temporary file: drop it here (which deletes it)
    // rather than carrying it inside the error, which may never be dropped.
    tmp.persist(path).map_err(|e| {
        let err = e.error;
        drop(e.file);
        anyhow!(err).context(format!(
            "cannot move the new file into place at {}",
            path.display()
        ))
    })?;
    Ok(())
}

/// Is `dir` (an existing directory) writable? Probes by creating and deleting a temporary
/// file, which is what the later write does too.
fn check_writable_dir(dir: &Path) -> Result<()> {
    tempfile::Builder::new()
        .prefix(".dfforge-probe-")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| anyhow!("cannot write into {}: {e}", dir.display()))
}

/// The nearest ancestor of `path` (itself included) that exists.
fn existing_ancestor(path: &Path) -> PathBuf {
    let mut p = if path.is_absolute() {
        path.to_path_buf()
    } else {
        Path::new(".").join(path)
    };
    while !p.exists() {
        if !p.pop() {
            return PathBuf::from(".");
        }
    }
    p
}

/// Refuse, before any work, an output file that cannot be written: an existing directory, a
/// path under something that is not a directory, or a directory without write permission.
/// Creates nothing. `flag` names the option in the message (e.g. `--report`).
pub fn check_output_file(path: &Path, flag: &str) -> Result<()> {
    if path.as_os_str().is_empty() {
        bail!("{flag}: the path is empty; give a file name");
    }
    if path.is_dir() {
        bail!(
            "{flag} {}: it is a directory; give a file name (e.g. {})",
            path.display(),
            path.join("out.json").display()
        );
    }
    let dir = parent_of(path);
    let base = existing_ancestor(dir);
    if !base.is_dir() {
        bail!(
            "{flag} {}: {} is a file, not a directory",
            path.display(),
            base.strip_prefix(".").unwrap_or(&base).display()
        );
    }
    check_writable_dir(&base).with_context(|| format!("{flag} {}", path.display()))
}

/// Refuse, before any work, an output directory that cannot be written (an existing file,
/// a path under a file, no write permission). Creates nothing.
pub fn check_output_dir(dir: &Path, flag: &str) -> Result<()> {
    if dir.as_os_str().is_empty() {
        bail!("{flag}: the path is empty; give a directory");
    }
    if dir.exists() && !dir.is_dir() {
        bail!(
            "{flag} {}: it is a file, not a directory; give a directory",
            dir.display()
        );
    }
    let base = existing_ancestor(dir);
    if !base.is_dir() {
        bail!(
            "{flag} {}: {} is a file, not a directory",
            dir.display(),
            base.strip_prefix(".").unwrap_or(&base).display()
        );
    }
    check_writable_dir(&base).with_context(|| format!("{flag} {}", dir.display()))
}

/// Files to write into one directory: (file name, contents).
pub type DirFiles = Vec<(String, Vec<u8>)>;

/// One directory of a [`write_dirs_atomic`] transaction while it is staged.
struct Staged {
    dir: PathBuf,
    /// Holds the new files (and, once committed, the files they replaced).
    staging: tempfile::TempDir,
    names: Vec<String>,
    /// The staging directory was renamed to `dir` as a whole (it did not exist).
    moved: bool,
}

/// Write every file of every directory, completely or not at all.
///
/// Each directory's files are first written into a staging directory (a hidden sibling for
/// a new directory, a hidden subdirectory of an existing one), so a failure while writing
/// (no space, a name that is taken by a directory, no permission) leaves the targets as they
/// were. Then a new directory is renamed into place in one step, and the files of an
/// existing one are renamed over their old versions one by one, the old versions kept aside
/// until the end so that any failure there is rolled back. Files already in an existing
/// directory that are not written are left alone. Errors name the file. Groups naming the
/// same directory are merged (e.g. `gen --out D --testbench D`).
pub fn write_dirs_atomic(groups: Vec<(PathBuf, DirFiles)>) -> Result<()> {
    // Merge by absolute path.
    let mut merged: Vec<(PathBuf, PathBuf, DirFiles)> = Vec::new();
    for (dir, files) in groups {
        let abs = std::path::absolute(&dir).unwrap_or_else(|_| dir.clone());
        match merged.iter_mut().find(|(a, _, _)| *a == abs) {
            Some((_, _, fs)) => fs.extend(files),
            None => merged.push((abs, dir, files)),
        }
    }
    // Check everything before writing anything.
    for (_, dir, files) in &merged {
        check_output_dir(dir, "output directory")?;
        let mut seen = std::collections::BTreeSet::new();
        for (name, _) in files {
            let bad_name = name.is_empty()
                || name == "."
                || name == ".."
                || name.contains('/')
                || name.contains('\\');
            if bad_name {
                bail!("internal error: `{name}` is not a plain file name");
            }
            if !seen.insert(name.as_str()) {
                bail!(
                    "internal error: {name} would be written twice into {}",
                    dir.display()
                );
            }
            let target = dir.join(name);
            if let Ok(m) = std::fs::symlink_metadata(&target) {
                if !m.is_file() {
                    bail!(
                        "cannot write {}: it is a {}, not a file; remove it or choose another directory",
                        target.display(),
                        if m.is_dir() { "directory" } else { "special file or link" }
                    );
                }
            }
        }
    }
    // Stage.
    let mut created: Vec<PathBuf> = Vec::new();
    let mut staged: Vec<Staged> = Vec::new();
    let stage = |created: &mut Vec<PathBuf>, staged: &mut Vec<Staged>| -> Result<()> {
        for (_, dir, files) in &merged {
            let fresh = !dir.exists();
            let mut b = tempfile::Builder::new();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                b.permissions(std::fs::Permissions::from_mode(0o777));
            }
            let staging = if fresh {
                let parent = parent_of(dir);
                // Remember the directories made here, to remove them again on failure.
                let mut missing = Vec::new();
                let mut p = parent.to_path_buf();
                while !p.as_os_str().is_empty() && !p.exists() {
                    missing.push(p.clone());
                    if !p.pop() {
                        break;
                    }
                }
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create directory {}", parent.display()))?;
                created.extend(missing);
                let leaf = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "out".into());
                b.prefix(&format!(".{leaf}.dfforge-")).tempdir_in(parent)
            } else {
                b.prefix(".dfforge-staging-").tempdir_in(dir)
            }
            .with_context(|| format!("cannot create a staging directory for {}", dir.display()))?;
            for (name, bytes) in files {
                std::fs::write(staging.path().join(name), bytes)
                    .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
            }
            staged.push(Staged {
                dir: dir.clone(),
                staging,
                names: files.iter().map(|(n, _)| n.clone()).collect(),
                moved: false,
            });
        }
        Ok(())
    };
    let remove_created = |created: &[PathBuf]| {
        for d in created {
            let _ = std::fs::remove_dir(d); // only if still empty
        }
    };
    if let Err(e) = stage(&mut created, &mut staged) {
        drop(staged);
        remove_created(&created);
        return Err(e);
    }
    // Commit; every step is recorded so that a failure can be undone.
    enum Done {
        /// A fresh directory renamed into place.
        Dir(PathBuf),
        /// `target` replaced; its old version (if any) is at `old`.
        File {
            target: PathBuf,
            old: Option<PathBuf>,
        },
    }
    let mut done: Vec<Done> = Vec::new();
    let commit = |done: &mut Vec<Done>, staged: &mut Vec<Staged>| -> Result<()> {
        for s in staged.iter_mut() {
            // (Checked now: another group may have created it as its parent meanwhile.)
            if !s.dir.exists() {
                std::fs::rename(s.staging.path(), &s.dir).with_context(|| {
                    format!(
                        "cannot move the new files into place at {}",
                        s.dir.display()
                    )
                })?;
                s.moved = true;
                done.push(Done::Dir(s.dir.clone()));
                continue;
            }
            let aside = s.staging.path().join(".old");
            std::fs::create_dir(&aside)
                .with_context(|| format!("cannot create {}", aside.display()))?;
            for name in &s.names {
                let target = s.dir.join(name);
                let old = if target.exists() {
                    let o = aside.join(name);
                    std::fs::rename(&target, &o)
                        .with_context(|| format!("cannot replace {}", target.display()))?;
                    Some(o)
                } else {
                    None
                };
                let r = std::fs::rename(s.staging.path().join(name), &target);
                done.push(Done::File {
                    target: target.clone(),
                    old,
                });
                r.with_context(|| format!("cannot write {}", target.display()))?;
            }
        }
        Ok(())
    };
    if let Err(e) = commit(&mut done, &mut staged) {
        for d in done.into_iter().rev() {
            match d {
                Done::Dir(dir) => {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                Done::File { target, old } => {
                    let _ = std::fs::remove_file(&target);
                    if let Some(o) = old {
                        let _ = std::fs::rename(&o, &target);
                    }
                }
            }
        }
        drop(staged);
        remove_created(&created);
        return Err(e);
    }
    for s in staged {
        if s.moved {
            // Renamed into place: there is nothing left to delete.
            let _ = s.staging.keep();
        }
        // Otherwise dropping the staging directory deletes the replaced files kept aside.
    }
    Ok(())
}

/// [`write_dirs_atomic`] for one directory of text files.
pub fn write_dir_atomic(dir: &Path, files: &[(String, String)]) -> Result<()> {
    write_dirs_atomic(vec![(
        dir.to_path_buf(),
        files
            .iter()
            .map(|(n, t)| (n.clone(), t.as_bytes().to_vec()))
            .collect(),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/r.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    // Item 2 of issue 11: a report aimed at an existing directory failed, but left a
    // temporary file with the whole report next to it.
    #[test]
    fn atomic_write_onto_a_directory_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        std::fs::create_dir(&d).unwrap();
        let e = write_atomic(&d, b"report").unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        assert_eq!(names(dir.path()), vec!["d"]);
        assert!(names(&d).is_empty());
    }

    // Item 14 of issue 11: reports and plots were created 0600 whatever the umask.
    #[cfg(unix)]
    #[test]
    fn atomic_write_gives_new_files_the_usual_permissions_and_keeps_old_ones() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        write_atomic(&p, b"x").unwrap();
        // Whatever the umask, a file that others cannot read at all is not what the umask
        // of a test run (at most 077) gives for 0666 when the owner may read and write...
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        let probe = dir.path().join("probe");
        std::fs::write(&probe, b"").unwrap();
        let usual = std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
        // ...so compare with what std::fs::write gives under the same umask.
        assert_eq!(mode, usual, "mode {mode:o}, a plain file gets {usual:o}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"y").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "replacing keeps the mode");
    }

    #[test]
    fn output_checks_refuse_directories_files_and_unwritable_places() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        std::fs::create_dir(&d).unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"").unwrap();
        check_output_file(&d.join("r.json"), "--report").unwrap();
        check_output_file(&d.join("new/sub/r.json"), "--report").unwrap();
        let e = check_output_file(&d, "--report").unwrap_err().to_string();
        assert!(
            e.contains("--report") && e.contains("is a directory"),
            "{e}"
        );
        let e = check_output_file(&f.join("r.json"), "--report")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a file, not a directory"), "{e}");
        let e = check_output_dir(&f, "--out").unwrap_err().to_string();
        assert!(e.contains("--out") && e.contains("is a file"), "{e}");
        check_output_dir(&d.join("x/y"), "--out").unwrap();
        assert_eq!(
            names(dir.path()),
            vec!["d", "f"],
            "the checks create nothing"
        );
        assert!(names(&d).is_empty());
    }

    fn files(list: &[(&str, &str)]) -> DirFiles {
        list.iter()
            .map(|(n, t)| (n.to_string(), t.as_bytes().to_vec()))
            .collect()
    }

    // Item 3 of issue 11: `gen` wrote half of its files, then failed on a name taken by a
    // directory, naming the output directory rather than the file.
    #[test]
    fn dir_write_is_all_or_nothing_and_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let g = tmp.path().join("g");
        std::fs::create_dir_all(g.join("b.v")).unwrap();
        std::fs::write(g.join("keep.txt"), "mine").unwrap();
        let e = write_dirs_atomic(vec![(
            g.clone(),
            files(&[("a.v", "A"), ("b.v", "B"), ("c.v", "C")]),
        )])
        .unwrap_err()
        .to_string();
        assert!(e.contains("b.v") && e.contains("is a directory"), "{e}");
        assert_eq!(names(&g), vec!["b.v", "keep.txt"], "nothing written");
        // A fresh directory under fresh parents: all files, no staging left over.
        let n = tmp.path().join("n/m/out");
        write_dirs_atomic(vec![(n.clone(), files(&[("a.v", "A"), ("b.v", "B")]))]).unwrap();
        assert_eq!(names(&n), vec!["a.v", "b.v"]);
        assert_eq!(names(&tmp.path().join("n/m")), vec!["out"]);
        // Into an existing directory: replaces its files, keeps the others, leaves no
        // staging directory.
        std::fs::write(n.join("notes.txt"), "mine").unwrap();
        write_dirs_atomic(vec![
            (n.clone(), files(&[("a.v", "A2")])),
            (tmp.path().join("n/m/out/"), files(&[("c.v", "C")])),
        ])
        .unwrap();
        assert_eq!(names(&n), vec!["a.v", "b.v", "c.v", "notes.txt"]);
        assert_eq!(std::fs::read_to_string(n.join("a.v")).unwrap(), "A2");
        // Two new directories, one inside the other.
        let a = tmp.path().join("a");
        write_dirs_atomic(vec![
            (a.clone(), files(&[("x.v", "X")])),
            (a.join("tb"), files(&[("y.v", "Y")])),
        ])
        .unwrap();
        assert_eq!(names(&a), vec!["tb", "x.v"]);
        assert_eq!(names(&a.join("tb")), vec!["y.v"]);
        assert_eq!(names(tmp.path()), vec!["a", "g", "n"]);
    }

    #[cfg(unix)]
    #[test]
    fn dir_write_failure_while_staging_leaves_no_new_directories() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let ro = tmp.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        if tempfile::tempfile_in(&ro).is_ok() {
            return; // running as root: permissions do not stop writes
        }
        let e = write_dirs_atomic(vec![(ro.join("a/b"), files(&[("x.v", "X")]))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot write into"), "{e}");
        assert!(names(&ro).is_empty());
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
