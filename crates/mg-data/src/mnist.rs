//! MNIST from the four standard IDX files, gzip-compressed (detected by the magic bytes `1f 8b`) or raw.
//!
//! Files are looked up in a directory under their standard names (`train-images-idx3-ubyte`, …), with or
//! without a `.gz` suffix. Headers are checked: magic (2051 images, 2049 labels), count, 28×28 dimensions,
//! exact byte length, labels 0–9, and equal image and label counts.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// Magic number of an IDX images file (u8, 3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX labels file (u8, 1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Image side.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
/// Largest decompressed file accepted (the train images are 47,040,016 bytes).
const MAX_BYTES: u64 = 256 << 20;

/// One split: images (row-major u8, 0 background to 255 ink) and labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MnistSplit {
    images: Vec<u8>,
    labels: Vec<u8>,
}

impl MnistSplit {
    /// Builds a split from raw parts; `images.len()` must be `labels.len() · 784`.
    pub fn from_parts(images: Vec<u8>, labels: Vec<u8>) -> Self {
        assert_eq!(
            images.len(),
            labels.len() * PIXELS,
            "MnistSplit::from_parts: sizes disagree"
        );
        Self { images, labels }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `i`, 784 bytes row-major.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// Label of image `i` (0–9).
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Number of images per class 0..9.
    pub fn class_counts(&self) -> [usize; 10] {
        let mut c = [0; 10];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }
}

/// Both splits.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// 60,000 training images.
    pub train: MnistSplit,
    /// 10,000 test images.
    pub test: MnistSplit,
}

/// Loads the four files from `dir`.
pub fn load_dir(dir: &Path) -> Result<Mnist> {
    if !dir.is_dir() {
        return Err(DataError::MissingDir {
            path: dir.to_path_buf(),
            expected: "the MNIST IDX files train-images-idx3-ubyte[.gz] etc.".into(),
        });
    }
    Ok(Mnist {
        train: load_split(dir, "train")?,
        test: load_split(dir, "t10k")?,
    })
}

/// Loads one split (`prefix` = `train` or `t10k`) from `dir`.
pub fn load_split(dir: &Path, prefix: &str) -> Result<MnistSplit> {
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (n_images, images) = parse_images(&read_maybe_gzip(&images_path)?, &images_path)?;
    let labels = parse_labels(&read_maybe_gzip(&labels_path)?, &labels_path)?;
    if n_images != labels.len() {
        return Err(DataError::CountMismatch {
            images: images_path,
            n_images: n_images as u64,
            labels: labels_path,
            n_labels: labels.len() as u64,
        });
    }
    Ok(MnistSplit { images, labels })
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [
        format!("{stem}.gz"),
        stem.to_string(),
        stem.replacen("-idx", ".idx", 1),
    ] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DataError::MissingFile {
        path: dir.join(format!("{stem}.gz")),
        expected: format!("{stem}.gz or {stem} (IDX, gzip or raw)"),
    })
}

/// Reads a file, decompressing it if it starts with the gzip magic `1f 8b`.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_maybe_gzip(bytes, path)
}

/// Decompresses `bytes` if they start with the gzip magic, else returns them unchanged. `path` is for errors.
pub fn decode_maybe_gzip(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if bytes.len() < 2 || bytes[0] != 0x1f || bytes[1] != 0x8b {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .take(MAX_BYTES)
        .read_to_end(&mut out)
        .map_err(|source| DataError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(out)
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn bad(path: &Path, what: &'static str, found: u64, expected: impl Into<String>) -> DataError {
    DataError::BadIdx {
        path: path.to_path_buf(),
        what,
        found,
        expected: expected.into(),
    }
}

fn check_header(bytes: &[u8], path: &Path, magic: u32, header: usize) -> Result<usize> {
    if bytes.len() < header {
        return Err(bad(
            path,
            "file size",
            bytes.len() as u64,
            format!("at least a {header}-byte IDX header"),
        ));
    }
    let found = be_u32(bytes, 0);
    if found != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found,
            expected: magic,
        });
    }
    Ok(be_u32(bytes, 4) as usize)
}

/// Parses an IDX images file: returns (count, pixels). `path` is for errors.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<(usize, Vec<u8>)> {
    let n = check_header(bytes, path, IMAGES_MAGIC, 16)?;
    for (at, what) in [(8, "rows"), (12, "columns")] {
        let d = be_u32(bytes, at);
        if d as usize != SIDE {
            return Err(bad(path, what, d as u64, SIDE.to_string()));
        }
    }
    let expected = 16 + n as u64 * PIXELS as u64;
    if bytes.len() as u64 != expected {
        return Err(bad(
            path,
            "file size",
            bytes.len() as u64,
            format!("{expected} bytes (16-byte header + {n} images × 784)"),
        ));
    }
    Ok((n, bytes[16..].to_vec()))
}

/// Parses an IDX labels file. `path` is for errors.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let n = check_header(bytes, path, LABELS_MAGIC, 8)?;
    let expected = 8 + n as u64;
    if bytes.len() as u64 != expected {
        return Err(bad(
            path,
            "file size",
            bytes.len() as u64,
            format!("{expected} bytes (8-byte header + {n} labels)"),
        ));
    }
    if let Some(&l) = bytes[8..].iter().find(|&&l| l > 9) {
        return Err(bad(path, "label", l as u64, "a class 0..=9"));
    }
    Ok(bytes[8..].to_vec())
}

/// Nearest-neighbour source indices for resizing `src` pixels to `dst`, as TF's legacy resize computes them:
/// `⌊i · (src / dst)⌋` in f32, no half-pixel offset. 28→3: 0 9 18; 28→6: 0 4 9 14 18 23;
/// 28→12: 0 2 4 7 9 11 14 16 18 21 23 25.
pub fn nearest_indices(src: usize, dst: usize) -> Vec<usize> {
    let scale = src as f32 / dst as f32;
    (0..dst)
        .map(|i| ((i as f32 * scale).floor() as usize).min(src - 1))
        .collect()
}

/// How pixel values are fed to a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelScale {
    /// Raw 0–255 (the reference).
    Raw,
    /// Divided by 255, in [0, 1].
    Unit,
}

impl PixelScale {
    /// Applies the scaling to one pixel.
    pub fn apply(self, v: u8) -> f32 {
        match self {
            PixelScale::Raw => v as f32,
            PixelScale::Unit => v as f32 / 255.0,
        }
    }
}

/// A 28×28 image resized (nearest, [`nearest_indices`]) to `dst`×`dst`, scaled, row-major.
pub fn resize(image: &[u8], dst: usize, scale: PixelScale) -> Vec<f32> {
    let idx = nearest_indices(SIDE, dst);
    let mut out = Vec::with_capacity(dst * dst);
    for &r in &idx {
        for &c in &idx {
            out.push(scale.apply(image[r * SIDE + c]));
        }
    }
    out
}

/// The multi-scale pyramid of an image: one resized copy per entry of `scales` (reference: 3, 6, 12).
pub fn pyramid(image: &[u8], scales: &[usize], scale: PixelScale) -> Vec<Vec<f32>> {
    scales.iter().map(|&s| resize(image, s, scale)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn idx_images(n: u32, rows: u32) -> Vec<u8> {
        let mut v = IMAGES_MAGIC.to_be_bytes().to_vec();
        v.extend(n.to_be_bytes());
        v.extend(rows.to_be_bytes());
        v.extend(28u32.to_be_bytes());
        v.extend((0..n as usize * rows as usize * 28).map(|i| (i % 251) as u8));
        v
    }

    fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut v = LABELS_MAGIC.to_be_bytes().to_vec();
        v.extend((labels.len() as u32).to_be_bytes());
        v.extend(labels);
        v
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mg-data-mnist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn resize_tables_match_the_reference() {
        assert_eq!(nearest_indices(28, 3), [0, 9, 18]);
        assert_eq!(nearest_indices(28, 6), [0, 4, 9, 14, 18, 23]);
        assert_eq!(
            nearest_indices(28, 12),
            [0, 2, 4, 7, 9, 11, 14, 16, 18, 21, 23, 25]
        );
        assert_eq!(nearest_indices(28, 24).len(), 24);
        assert_eq!(nearest_indices(28, 48)[47], 27);
        let img: Vec<u8> = (0..784).map(|i| (i % 256) as u8).collect();
        let p = pyramid(&img, &[3, 6, 12], PixelScale::Raw);
        let expect: Vec<f32> = [0, 9, 18]
            .iter()
            .flat_map(|r| [0, 9, 18].map(move |c| ((r * 28 + c) % 256) as f32))
            .collect();
        assert_eq!(p[0], expect);
        assert_eq!(p[2].len(), 144);
        assert_eq!(resize(&img, 3, PixelScale::Unit)[1], 9.0 / 255.0);
    }

    #[test]
    fn tiny_files_gzip_and_raw() {
        let d = temp_dir("tiny");
        std::fs::write(d.join("train-images-idx3-ubyte.gz"), gz(&idx_images(3, 28))).unwrap();
        std::fs::write(d.join("train-labels-idx1-ubyte"), idx_labels(&[1, 2, 9])).unwrap();
        std::fs::write(d.join("t10k-images-idx3-ubyte"), idx_images(1, 28)).unwrap();
        // A gzip file without the .gz name is detected by its magic bytes.
        std::fs::write(d.join("t10k-labels-idx1-ubyte"), gz(&idx_labels(&[7]))).unwrap();
        let m = load_dir(&d).unwrap();
        assert_eq!(m.train.len(), 3);
        assert_eq!(m.train.labels(), [1, 2, 9]);
        assert_eq!(m.train.image(1)[0], (784 % 251) as u8);
        assert_eq!(m.test.label(0), 7);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bad_files_name_the_file_and_the_expectation() {
        let p = Path::new("x/train-images-idx3-ubyte");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0, 0, 8], "at least a 16-byte IDX header"),
            (idx_labels(&[1; 10]), "expected 0x00000803"),
            (idx_images(2, 27), "rows: found 27, expected 28"),
            (idx_images(2, 28)[..100].to_vec(), "expected 1584 bytes"),
        ];
        for (bytes, needle) in cases {
            let e = parse_images(&bytes, p).unwrap_err().to_string();
            assert!(
                e.contains("x/train-images-idx3-ubyte") && e.contains(needle),
                "{e}"
            );
        }
        let lp = Path::new("y/labels");
        assert!(
            parse_labels(&idx_labels(&[3, 10]), lp)
                .unwrap_err()
                .to_string()
                .contains("label: found 10")
        );
        let mut g = gz(&idx_labels(&[1, 2, 3]));
        g.truncate(g.len() - 6);
        let e = decode_maybe_gzip(g, lp).unwrap_err().to_string();
        assert!(e.contains("y/labels") && e.contains("gzip"), "{e}");
        let mut g = gz(&idx_labels(&[1, 2, 3]));
        let mid = g.len() / 2;
        g[mid] ^= 0xff;
        g[mid + 1] ^= 0x55;
        assert!(decode_maybe_gzip(g, lp).is_err());
        let e = load_dir(Path::new("/nonexistent/mnist"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/mnist") && e.contains("expected"),
            "{e}"
        );
        // Count mismatch between images and labels.
        let d = temp_dir("mismatch");
        std::fs::write(d.join("train-images-idx3-ubyte"), idx_images(2, 28)).unwrap();
        std::fs::write(d.join("train-labels-idx1-ubyte"), idx_labels(&[1])).unwrap();
        let e = load_split(&d, "train").unwrap_err().to_string();
        assert!(e.contains("2 images") && e.contains("1 labels"), "{e}");
        let e = load_split(&d, "t10k").unwrap_err().to_string();
        assert!(e.contains("t10k-images-idx3-ubyte"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
