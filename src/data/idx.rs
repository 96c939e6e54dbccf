//! Reader for the IDX format (the format MNIST and its many look-alikes ship
//! in), plain or gzipped.
//!
//! An IDX file is a 4-byte magic (two zero bytes, an element-type byte, a
//! dimension-count byte), one big-endian u32 per dimension, then the
//! elements. Only unsigned-byte elements are supported, which covers image
//! and label files of every MNIST-style data set. The whole file is read into
//! memory and its length is checked against the header *before* anything is
//! allocated from header values, so a hostile header cannot trigger a huge
//! allocation and no input can panic the parser.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::{DataError, Dataset, Split};

/// IDX element type for unsigned bytes, the only one supported.
const TYPE_U8: u8 = 0x08;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Largest pixel value, mapped to 1.0.
const MAX_PIXEL: f32 = 255.0;

/// The four files of an IDX data set: (stem, kind), as in
/// `train-images-idx3-ubyte`.
const TRAIN_IMAGES: (&str, &str) = ("train-images", "idx3-ubyte");
const TRAIN_LABELS: (&str, &str) = ("train-labels", "idx1-ubyte");
const TEST_IMAGES: (&str, &str) = ("t10k-images", "idx3-ubyte");
const TEST_LABELS: (&str, &str) = ("t10k-labels", "idx1-ubyte");

/// The file names tried for one IDX file, in order: the standard
/// `stem-kind`, the dotted `stem.kind` some mirrors use, each plain or `.gz`.
pub(super) fn candidate_names((stem, kind): (&str, &str)) -> [String; 4] {
    [
        format!("{stem}-{kind}"),
        format!("{stem}-{kind}.gz"),
        format!("{stem}.{kind}"),
        format!("{stem}.{kind}.gz"),
    ]
}

/// Why the four files of a data set directory could not be located.
pub(super) enum LocateError {
    /// For each missing file, the names looked for.
    Missing(Vec<String>),
    /// One file is present under several candidate names (e.g. plain and `.gz`).
    Ambiguous { what: String, found: Vec<String> },
}

/// The one existing candidate for one file; `Err(Ok(names))` lists what was looked for when
/// there is none, `Err(Err(found))` the candidates when there are several (they may differ,
/// so picking one silently could train on the wrong data).
fn locate(dir: &Path, file: (&str, &str)) -> Result<PathBuf, Result<String, Vec<String>>> {
    let names = candidate_names(file);
    let found: Vec<&String> = names.iter().filter(|n| dir.join(n).is_file()).collect();
    match found.as_slice() {
        [one] => Ok(dir.join(one)),
        [] => Err(Ok(names.join(" / "))),
        many => Err(Err(many.iter().map(|s| s.to_string()).collect())),
    }
}

/// Paths of the four files of a split pair, in the order train images,
/// train labels, test images, test labels.
pub(super) struct IdxFiles {
    train_images: PathBuf,
    train_labels: PathBuf,
    test_images: PathBuf,
    test_labels: PathBuf,
}

/// Locates all four files; on failure returns, for each missing file, the
/// names looked for (so one error lists everything that is missing), or the
/// first file present under several names.
pub(super) fn locate_all(dir: &Path) -> Result<IdxFiles, LocateError> {
    let files = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];
    let found = files.map(|f| locate(dir, f));
    if let Some((f, Err(Err(many)))) = files
        .iter()
        .zip(&found)
        .find(|(_, r)| matches!(r, Err(Err(_))))
    {
        return Err(LocateError::Ambiguous {
            what: format!("{}-{}", f.0, f.1),
            found: many.clone(),
        });
    }
    let missing: Vec<String> = found
        .iter()
        .filter_map(|r| match r {
            Err(Ok(names)) => Some(names.clone()),
            _ => None,
        })
        .collect();
    match found {
        [Ok(train_images), Ok(train_labels), Ok(test_images), Ok(test_labels)] => Ok(IdxFiles {
            train_images,
            train_labels,
            test_images,
            test_labels,
        }),
        _ => Err(LocateError::Missing(missing)),
    }
}

impl LocateError {
    /// The error for data set directory `dir`; `missing` builds the one for missing files.
    pub(super) fn into_data_error(
        self,
        dir: &Path,
        missing: impl FnOnce(Vec<String>) -> DataError,
    ) -> DataError {
        match self {
            LocateError::Missing(looked_for) => missing(looked_for),
            LocateError::Ambiguous { what, found } => DataError::AmbiguousFiles {
                dir: dir.to_path_buf(),
                what,
                found,
            },
        }
    }
}

/// Loads the IDX data set in `dir`, reporting missing files as
/// [`DataError::MissingFiles`].
pub(super) fn load_dir(dir: &Path, name: &str) -> Result<Dataset, DataError> {
    let files = locate_all(dir).map_err(|e| {
        e.into_data_error(dir, |looked_for| DataError::MissingFiles {
            dir: dir.to_path_buf(),
            looked_for,
        })
    })?;
    load_files(&files, name)
}

/// Loads and cross-checks the four located files.
pub(super) fn load_files(files: &IdxFiles, name: &str) -> Result<Dataset, DataError> {
    let (train, train_shape) = load_split(&files.train_images, &files.train_labels)?;
    let (test, test_shape) = load_split(&files.test_images, &files.test_labels)?;
    if train_shape != test_shape {
        return Err(DataError::ImageSizeMismatch {
            train_path: files.train_images.clone(),
            test_path: files.test_images.clone(),
            train_rows: train_shape.0,
            train_cols: train_shape.1,
            test_rows: test_shape.0,
            test_cols: test_shape.1,
        });
    }
    let max_label = train.labels.iter().chain(&test.labels).copied().max();
    Ok(Dataset {
        name: name.to_string(),
        width: train_shape.1,
        height: train_shape.0,
        classes: max_label.map_or(0, |m| m as usize + 1),
        train,
        test,
    })
}

/// Loads one split; returns it with its (rows, cols) image shape.
fn load_split(
    images_path: &Path,
    labels_path: &Path,
) -> Result<(Split, (usize, usize)), DataError> {
    let image_bytes = read_file(images_path)?;
    let (n, rows, cols, pixels) = parse_images(&image_bytes, images_path)?;
    let label_bytes = read_file(labels_path)?;
    let labels = parse_labels(&label_bytes, labels_path)?;
    if labels.len() != n {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            labels_path: labels_path.to_path_buf(),
            images: n,
            labels: labels.len(),
        });
    }
    let images = pixels.iter().map(|&p| f32::from(p) / MAX_PIXEL).collect();
    let labels = labels.iter().map(|&l| u32::from(l)).collect();
    Ok((Split::new(images, labels, rows * cols), (rows, cols)))
}

/// The most bytes one IDX file may have (after decompression): every data set is held in
/// memory, and a small gzip file can otherwise inflate into gigabytes.
pub const MAX_IDX_BYTES: u64 = 4 << 30;

/// Reads a file and transparently gunzips it if it starts with the gzip
/// magic (detected by content, not by name, so misnamed files still work).
pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |err| DataError::Io {
        path: path.to_path_buf(),
        action: "reading",
        err,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_IDX_BYTES {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            what: format!("it has {len} bytes"),
            limit: MAX_IDX_BYTES,
        });
    }
    let raw = std::fs::read(path).map_err(io)?;
    maybe_gunzip(raw, path)
}

/// Bytes of an IDX file whose header is `head` (at least the magic and the dimension
/// count, plus as many dimensions as it has), if `head` holds the whole header.
fn idx_len(head: &[u8]) -> Option<u128> {
    let nd = usize::from(*head.get(3)?);
    let dims = head.get(4..4 + 4 * nd)?;
    let body: u128 = dims
        .chunks_exact(4)
        .map(|c| u128::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .product();
    Some(4 + 4 * nd as u128 + body)
}

/// Returns `raw` unchanged, or its decompressed contents if it is gzip. Decompresses no
/// more than the IDX header inside announces (plus one byte, so that trailing garbage is
/// still seen) and never more than [`MAX_IDX_BYTES`]: a gzip bomb is an error, not an
/// exhausted machine.
pub(super) fn maybe_gunzip(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let gz = |err| DataError::Gzip {
        path: path.to_path_buf(),
        err,
    };
    let mut dec = MultiGzDecoder::new(raw.as_slice());
    let mut out = Vec::new();
    (&mut dec).take(4).read_to_end(&mut out).map_err(gz)?;
    if let Some(&nd) = out.get(3) {
        (&mut dec)
            .take(4 * u64::from(nd))
            .read_to_end(&mut out)
            .map_err(gz)?;
    }
    // A complete header bounds the rest; an incomplete one is reported by the parser.
    let Some(want) = idx_len(&out) else {
        return Ok(out);
    };
    if want > u128::from(MAX_IDX_BYTES) {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            what: format!("its header announces {want} bytes"),
            limit: MAX_IDX_BYTES,
        });
    }
    let rest = (want as u64 + 1).saturating_sub(out.len() as u64);
    (&mut dec).take(rest).read_to_end(&mut out).map_err(gz)?;
    Ok(out)
}

/// Parses an image file: returns (count, rows, cols, pixels).
pub(super) fn parse_images<'a>(
    bytes: &'a [u8],
    path: &Path,
) -> Result<(usize, usize, usize, &'a [u8]), DataError> {
    let (dims, body) = parse(bytes, path, 3, "images: count, rows, cols")?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    let what = if n == 0 {
        Some(format!(
            "contains no images (header says {n}×{rows}×{cols})"
        ))
    } else if rows == 0 || cols == 0 {
        Some(format!("images are {rows}×{cols} pixels"))
    } else {
        None
    };
    match what {
        Some(what) => Err(DataError::Empty {
            path: path.to_path_buf(),
            what,
        }),
        None => Ok((n, rows, cols, body)),
    }
}

/// Parses a label file: returns one byte per label.
pub(super) fn parse_labels<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a [u8], DataError> {
    parse(bytes, path, 1, "labels: count").map(|(_, body)| body)
}

/// Checks the header and exact length of an IDX u8 file with `want_dims`
/// dimensions; returns the dimensions and the element bytes.
fn parse<'a>(
    bytes: &'a [u8],
    path: &Path,
    want_dims: u8,
    role: &'static str,
) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let truncated = |expected: u128| DataError::Truncated {
        path: path.to_path_buf(),
        expected,
        found: bytes.len(),
    };
    let [z0, z1, type_byte, ndims] = match bytes.get(..4) {
        Some(&[a, b, c, d]) => [a, b, c, d],
        _ => return Err(truncated(4)),
    };
    if (z0, z1) != (0, 0) {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found: bytes[..2].to_vec(),
        });
    }
    if type_byte != TYPE_U8 {
        return Err(DataError::UnsupportedType {
            path: path.to_path_buf(),
            type_byte,
        });
    }
    if ndims != want_dims {
        return Err(DataError::WrongDims {
            path: path.to_path_buf(),
            expected: want_dims,
            found: ndims,
            role,
        });
    }
    let header_len = 4 + 4 * usize::from(ndims);
    let header = bytes
        .get(4..header_len)
        .ok_or_else(|| truncated(header_len as u128))?;
    let dims: Vec<usize> = header
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    // u128 cannot overflow: at most 3 factors below 2^32.
    let body_len: u128 = dims.iter().map(|&d| d as u128).product();
    let expected = header_len as u128 + body_len;
    let found = bytes.len() as u128;
    if found < expected {
        return Err(truncated(expected));
    }
    if found > expected {
        return Err(DataError::TrailingBytes {
            path: path.to_path_buf(),
            expected,
            found: bytes.len(),
        });
    }
    Ok((dims, &bytes[header_len..]))
}

#[cfg(test)]
#[path = "../../tests/common/fuzz.rs"]
mod fuzz_harness;

#[cfg(test)]
pub(super) mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;
    use proptest::prelude::*;

    use super::*;

    /// Encodes an IDX u8 file (test helper, mirrors the format spec).
    pub(crate) fn encode_idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, TYPE_U8, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// A small fake data set: 3 classes, 5 wide × 7 high.
    const ROWS: u32 = 7;
    const COLS: u32 = 5;

    fn images(n: u32, seed: u8) -> Vec<u8> {
        let len = (n * ROWS * COLS) as usize;
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        encode_idx(&[n, ROWS, COLS], &data)
    }

    fn labels(n: u32) -> Vec<u8> {
        let data: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
        encode_idx(&[n], &data)
    }

    /// Writes the four files, gzipping them if asked; returns their paths.
    fn write_set(dir: &Path, gz: bool) -> [PathBuf; 4] {
        let suffix = if gz { ".gz" } else { "" };
        let files = [
            ("train-images-idx3-ubyte", images(6, 1)),
            ("train-labels-idx1-ubyte", labels(6)),
            ("t10k-images-idx3-ubyte", images(4, 2)),
            ("t10k-labels-idx1-ubyte", labels(4)),
        ];
        files.map(|(name, bytes)| {
            let path = dir.join(format!("{name}{suffix}"));
            let bytes = if gz { gzip(&bytes) } else { bytes };
            std::fs::write(&path, bytes).unwrap();
            path
        })
    }

    fn check_round_trip(gz: bool) {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), gz);
        let ds = load_dir(dir.path(), "t").unwrap();
        assert_eq!((ds.width, ds.height, ds.classes, ds.dim()), (5, 7, 3, 35));
        assert_eq!((ds.train.len(), ds.test.len()), (6, 4));
        assert_eq!(ds.train.labels, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(ds.test.labels, vec![0, 1, 2, 0]);
        let raw = images(6, 1);
        let want: Vec<f32> = raw[16..].iter().map(|&p| f32::from(p) / 255.0).collect();
        assert_eq!(ds.train.images, want);
        assert_eq!(ds.train.image(1), &want[35..70]);
        assert!(ds.test.images.iter().all(|p| (0.0..=1.0).contains(p)));
    }

    #[test]
    fn round_trip_plain() {
        check_round_trip(false);
    }

    #[test]
    fn round_trip_gzip() {
        check_round_trip(true);
    }

    #[test]
    fn gzip_detected_by_content_and_dotted_names_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_set(dir.path(), false);
        // Gzipped bytes under the plain name, and a dotted name.
        std::fs::write(&paths[0], gzip(&images(6, 1))).unwrap();
        std::fs::rename(&paths[3], dir.path().join("t10k-labels.idx1-ubyte")).unwrap();
        let ds = load_dir(dir.path(), "t").unwrap();
        assert_eq!((ds.train.len(), ds.test.len()), (6, 4));
    }

    #[test]
    fn classes_come_from_both_splits() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_set(dir.path(), false);
        std::fs::write(&paths[3], encode_idx(&[4], &[0, 0, 9, 0])).unwrap();
        assert_eq!(load_dir(dir.path(), "t").unwrap().classes, 10);
    }

    #[test]
    fn missing_files_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_set(dir.path(), false);
        std::fs::remove_file(&paths[1]).unwrap();
        std::fs::remove_file(&paths[2]).unwrap();
        let err = load_dir(dir.path(), "t").unwrap_err();
        let DataError::MissingFiles { looked_for, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(looked_for.len(), 2);
        let msg = err.to_string();
        for name in [
            "train-labels-idx1-ubyte",
            "train-labels-idx1-ubyte.gz",
            "train-labels.idx1-ubyte",
            "t10k-images-idx3-ubyte.gz",
        ] {
            assert!(msg.contains(name), "{msg}");
        }
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(!msg.contains("t10k-labels"), "{msg}");
    }

    /// Replaces one file of a valid set and checks the error variant and
    /// that the message names the file.
    fn corrupt(which: usize, bytes: Vec<u8>) -> (DataError, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_set(dir.path(), false);
        std::fs::write(&paths[which], bytes).unwrap();
        let err = load_dir(dir.path(), "t").unwrap_err();
        let file = paths[which]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(err.to_string().contains(&file), "{err} should name {file}");
        (err, paths[which].clone())
    }

    #[test]
    fn bad_magic() {
        let mut b = images(6, 1);
        b[1] = 7;
        let (err, _) = corrupt(0, b);
        assert!(matches!(err, DataError::BadMagic { .. }), "{err:?}");
    }

    #[test]
    fn unsupported_type() {
        let mut b = labels(6);
        b[2] = 0x0D;
        let (err, _) = corrupt(1, b);
        assert!(
            matches!(
                err,
                DataError::UnsupportedType {
                    type_byte: 0x0D,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("0x0d"));
    }

    #[test]
    fn wrong_dims_when_swapped() {
        let (err, _) = corrupt(0, labels(6));
        assert!(
            matches!(
                err,
                DataError::WrongDims {
                    expected: 3,
                    found: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn truncated_body_and_header() {
        let mut b = images(6, 1);
        let full = b.len();
        b.truncate(full - 3);
        let (err, _) = corrupt(0, b);
        assert!(
            matches!(err, DataError::Truncated { expected, found, .. } if expected == full as u128 && found == full - 3),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .contains(&format!("expected {full} bytes, found {}", full - 3)));
        let (err, _) = corrupt(2, images(4, 2)[..9].to_vec());
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 16,
                    found: 9,
                    ..
                }
            ),
            "{err:?}"
        );
        let (err, _) = corrupt(3, vec![0, 0]);
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 4,
                    found: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn trailing_garbage() {
        let mut b = labels(4);
        b.push(0);
        let (err, _) = corrupt(3, b);
        assert!(
            matches!(
                err,
                DataError::TrailingBytes {
                    expected: 12,
                    found: 13,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let (err, _) = corrupt(1, labels(5));
        assert!(
            matches!(
                err,
                DataError::CountMismatch {
                    images: 6,
                    labels: 5,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("train-images-idx3-ubyte"));
    }

    #[test]
    fn test_size_differs_from_train() {
        let data = vec![0u8; 4 * 6 * 6];
        let (err, _) = corrupt(2, encode_idx(&[4, 6, 6], &data));
        assert!(
            matches!(
                err,
                DataError::ImageSizeMismatch {
                    train_rows: 7,
                    train_cols: 5,
                    test_rows: 6,
                    test_cols: 6,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("train-images-idx3-ubyte"));
    }

    #[test]
    fn empty_images() {
        let (err, _) = corrupt(0, encode_idx(&[0, 7, 5], &[]));
        assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
        let (err, _) = corrupt(0, encode_idx(&[6, 0, 5], &[]));
        assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
    }

    #[test]
    fn gzip_corruption() {
        let mut gz = gzip(&images(6, 1));
        let mid = gz.len() / 2;
        gz.truncate(mid);
        let (err, _) = corrupt(0, gz);
        assert!(matches!(err, DataError::Gzip { .. }), "{err:?}");
        let mut gz = gzip(&labels(6));
        let last = gz.len() - 6;
        gz[last] ^= 0xff; // CRC byte
        let (err, _) = corrupt(1, gz);
        assert!(matches!(err, DataError::Gzip { .. }), "{err:?}");
    }

    // Issue 11, item 14: with both a plain and a `.gz` file present, one was picked
    // silently (they may differ).
    #[test]
    fn a_file_present_under_two_names_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_set(dir.path(), false);
        let gz = dir.path().join("t10k-images-idx3-ubyte.gz");
        std::fs::write(&gz, gzip(&images(4, 9))).unwrap();
        let err = load_dir(dir.path(), "t").unwrap_err();
        assert!(matches!(err, DataError::AmbiguousFiles { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("t10k-images-idx3-ubyte and t10k-images-idx3-ubyte.gz")
                && msg.contains("remove or rename"),
            "{msg}"
        );
        // The dotted name counts as the same file too.
        std::fs::remove_file(&gz).unwrap();
        std::fs::copy(&paths[1], dir.path().join("train-labels.idx1-ubyte")).unwrap();
        let err = load_dir(dir.path(), "t").unwrap_err();
        assert!(matches!(err, DataError::AmbiguousFiles { .. }), "{err:?}");
    }

    // A small gzip file that inflates far beyond what its IDX header announces (or whose
    // header announces more than dfforge holds) is refused without inflating it all.
    #[test]
    fn gzip_bombs_are_refused_early() {
        let path = Path::new("bomb");
        // 64 MiB of zeros after a 3-label header: compresses to ~64 KiB.
        let mut body = encode_idx(&[3], &[0, 1, 2]);
        body.resize(body.len() + (64 << 20), 0);
        let gz = gzip(&body);
        assert!(gz.len() < 1 << 20);
        let t0 = std::time::Instant::now();
        let plain = maybe_gunzip(gz, path).unwrap();
        assert_eq!(
            plain.len(),
            8 + 3 + 1,
            "read no further than the header's length + 1"
        );
        let err = parse_labels(&plain, path).unwrap_err();
        assert!(matches!(err, DataError::TrailingBytes { .. }), "{err:?}");
        assert!(t0.elapsed().as_secs() < 5);
        // A header announcing more than MAX_IDX_BYTES.
        let big = gzip(&encode_idx(&[u32::MAX, 100, 100], &[]));
        let err = maybe_gunzip(big, path).unwrap_err();
        assert!(matches!(err, DataError::TooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains("announces"), "{err}");
    }

    #[test]
    fn huge_header_does_not_allocate() {
        let b = encode_idx(&[u32::MAX, u32::MAX, u32::MAX], &[1, 2, 3]);
        let err = parse_images(&b, Path::new("x")).unwrap_err();
        assert!(matches!(err, DataError::Truncated { .. }), "{err:?}");
    }

    /// Runs the whole per-file pipeline (gunzip + both parsers) on `bytes`; what it accepts
    /// must be consistent with the bytes.
    fn parse_any(bytes: Vec<u8>) {
        let t0 = std::time::Instant::now();
        let path = Path::new("fuzz");
        let n = bytes.len();
        if let Ok(plain) = maybe_gunzip(bytes, path) {
            if let Ok((count, rows, cols, px)) = parse_images(&plain, path) {
                assert!(count >= 1 && rows >= 1 && cols >= 1);
                assert_eq!(px.len(), count * rows * cols);
            }
            if let Ok(labels) = parse_labels(&plain, path) {
                assert!(labels.len() < plain.len());
            }
        }
        assert!(
            t0.elapsed().as_secs() < 2,
            "{n} bytes took {:?}",
            t0.elapsed()
        );
    }

    /// Four IDX files of a data set, each valid, mutated, truncated, swapped or gzipped.
    fn dataset_files() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let file = |valid: Vec<u8>| {
            (
                0u8..6,
                any::<usize>(),
                any::<u8>(),
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..16),
            )
                .prop_map(move |(op, i, b, gz, junk)| {
                    let mut f = valid.clone();
                    match op {
                        0 => {}
                        1 => {
                            let i = i % f.len();
                            f[i] = b;
                        }
                        2 => f.truncate(i % (f.len() + 1)),
                        3 => f.extend(junk),
                        4 => f = junk,
                        _ => {
                            // Another shape or count in the header.
                            let last = f.len() - 1;
                            let i = 4 + i % (f.len().min(16) - 4).max(1);
                            f[i.min(last)] = b;
                        }
                    }
                    if gz {
                        gzip(&f)
                    } else {
                        f
                    }
                })
        };
        (
            file(images(6, 1)),
            file(labels(6)),
            file(images(4, 2)),
            file(labels(4)),
        )
            .prop_map(|(a, b, c, d)| vec![a, b, c, d])
    }

    /// The shared fuzz harness (tests/common/fuzz.rs) at this module's count, no time limit.
    fn fuzz<S: Strategy>(
        name: &str,
        strategy: S,
        check: impl Fn(S::Value) -> Result<(), TestCaseError>,
    ) where
        S::Value: std::fmt::Debug,
    {
        super::fuzz_harness::fuzz(
            name,
            super::fuzz_harness::fuzz_cases(512),
            None,
            strategy,
            check,
        );
    }

    #[test]
    fn fuzz_idx_random_bytes() {
        fuzz(
            "idx random bytes",
            proptest::collection::vec(any::<u8>(), 0..200),
            |bytes| {
                parse_any(bytes);
                Ok(())
            },
        );
    }

    /// Whole data sets from disk: the four files, each possibly damaged; a load that
    /// succeeds gives a consistent data set.
    #[test]
    fn fuzz_idx_data_sets() {
        fuzz("idx data sets on disk", dataset_files(), |files| {
            let dir = tempfile::tempdir().unwrap();
            let names = [
                "train-images-idx3-ubyte",
                "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte",
            ];
            for (n, f) in names.iter().zip(&files) {
                std::fs::write(dir.path().join(n), f).unwrap();
            }
            if let Ok(ds) = load_dir(dir.path(), "fuzz") {
                prop_assert_eq!(ds.train.images.len(), ds.train.labels.len() * ds.dim());
                prop_assert_eq!(ds.test.images.len(), ds.test.labels.len() * ds.dim());
                prop_assert!(ds
                    .train
                    .labels
                    .iter()
                    .chain(&ds.test.labels)
                    .all(|&l| (l as usize) < ds.classes));
                prop_assert!(ds.train.images.iter().all(|p| (0.0..=1.0).contains(p)));
            }
            Ok(())
        });
    }

    #[test]
    fn fuzz_idx_random_headers() {
        fuzz(
            "idx random headers",
            (
                any::<u8>(),
                0u8..5,
                proptest::collection::vec(any::<u32>(), 0..5),
                proptest::collection::vec(any::<u8>(), 0..64),
            ),
            |(ty, nd, dims, tail)| {
                let mut b = vec![0, 0, ty, nd];
                for d in dims {
                    b.extend_from_slice(&d.to_be_bytes());
                }
                b.extend_from_slice(&tail);
                parse_any(b);
                Ok(())
            },
        );
    }

    #[test]
    fn fuzz_idx_truncations_are_errors() {
        fuzz(
            "idx truncations",
            (0usize..1000, any::<bool>()),
            |(cut, gz)| {
                let valid = images(6, 1);
                let valid = if gz { gzip(&valid) } else { valid };
                let cut = cut % valid.len();
                let path = Path::new("cut");
                let res = maybe_gunzip(valid[..cut].to_vec(), path)
                    .and_then(|plain| parse_images(&plain, path).map(|_| ()));
                prop_assert!(res.is_err());
                Ok(())
            },
        );
    }

    #[test]
    fn fuzz_idx_byte_flips() {
        fuzz(
            "idx byte flips",
            (0usize..1000, any::<u8>(), any::<bool>()),
            |(pos, val, gz)| {
                let valid = labels(6);
                let mut b = if gz { gzip(&valid) } else { valid };
                let pos = pos % b.len();
                b[pos] = val;
                parse_any(b);
                Ok(())
            },
        );
    }
}
