//! Files that ship inside the binary, so that an installed `maxi` (`cargo install`) has its
//! main job without the source tree: the bundled configs, the MNIST test set and the MNIST
//! models, and the CIFAR-10 ResNet-8 with the one image its configs explain (provenance and
//! licences in `fixtures/README.md`, which ships too).
//!
//! [`materialize`] writes them once per version into a cache folder laid out like the source
//! tree (`configs/`, `fixtures/mnist/`), so relative paths in the configs keep working.

use std::io::Write;
use std::path::{Path, PathBuf};

use maxi_core::{MaxiError, Result};

/// One bundled file: its path relative to the source tree's root and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Path relative to the root, e.g. `configs/mnist_pp.toml`.
    pub path: &'static str,
    /// The file's contents.
    pub bytes: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),+ $(,)?) => {
        /// Every bundled file.
        pub const ASSETS: &[Asset] = &[
            $(Asset { path: $path, bytes: include_bytes!(concat!("../../../", $path)) },)+
        ];
    };
}

assets![
    "configs/mnist_pp.toml",
    "configs/mnist_pn.toml",
    "configs/cifar10_lime.toml",
    "configs/cifar10_pp_segments.toml",
    "fixtures/README.md",
    "fixtures/mnist/mnist_cnn.onnx",
    "fixtures/mnist/mnist_ae.onnx",
    "fixtures/mnist/t10k-images-idx3-ubyte.gz",
    "fixtures/mnist/t10k-labels-idx1-ubyte.gz",
    "fixtures/cifar10/resnet8_cifar10_nhwc.onnx",
    "fixtures/cifar10/labels.txt",
    "fixtures/cifar10/foolbox20/cifar10_test00000_cat.png",
];

/// The gzipped MNIST test images (IDX3).
pub const MNIST_TEST_IMAGES_GZ: &[u8] =
    include_bytes!("../../../fixtures/mnist/t10k-images-idx3-ubyte.gz");
/// The gzipped MNIST test labels (IDX1).
pub const MNIST_TEST_LABELS_GZ: &[u8] =
    include_bytes!("../../../fixtures/mnist/t10k-labels-idx1-ubyte.gz");

/// The config of the main job (`maxi explain` without `--config`), relative to the root.
pub const MAIN_JOB_CONFIG: &str = "configs/mnist_pp.toml";

/// The bundled file at `path` (relative to the root), if any.
pub fn asset(path: &str) -> Option<&'static [u8]> {
    ASSETS.iter().find(|a| a.path == path).map(|a| a.bytes)
}

/// FNV-1a over every asset's path and bytes: names the cache folder, so that a binary with
/// other assets never reads stale files.
fn fingerprint() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for a in ASSETS {
        for b in a.path.bytes().chain(a.bytes.iter().copied()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The folder the assets are written to: `$XDG_CACHE_HOME/maxi/…`, else `$HOME/.cache/maxi/…`,
/// else the system's temporary folder.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir);
    base.join("maxi").join(format!(
        "bundled-{}-{:016x}",
        env!("CARGO_PKG_VERSION"),
        fingerprint()
    ))
}

fn write_if_missing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == bytes.len() as u64) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // written beside the target and renamed: another process never sees half a file
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Writes the bundled files into [`cache_dir`] (those not already there) and returns that
/// folder.
pub fn materialize() -> Result<PathBuf> {
    let root = cache_dir();
    for a in ASSETS {
        write_if_missing(&root.join(a.path), a.bytes).map_err(|e| {
            MaxiError::Other(format!(
                "cannot write the bundled file {} into {}: {e}; set XDG_CACHE_HOME to a writable folder",
                a.path,
                root.display()
            ))
        })?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_match_the_source_tree_and_materialize_once() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for a in ASSETS {
            let on_disk = std::fs::read(src.join(a.path)).expect("source file");
            assert_eq!(on_disk, a.bytes, "{}", a.path);
        }
        assert!(asset(MAIN_JOB_CONFIG).is_some());
        let tmp = std::env::temp_dir().join(format!("maxi-bundled-test-{}", std::process::id()));
        // SAFETY: tests in this crate do not read XDG_CACHE_HOME concurrently.
        unsafe { std::env::set_var("XDG_CACHE_HOME", &tmp) };
        let root = materialize().expect("materialize");
        assert!(root.starts_with(&tmp));
        for a in ASSETS {
            assert_eq!(std::fs::read(root.join(a.path)).expect("written"), a.bytes);
        }
        // a second call writes nothing new and gives the same folder
        assert_eq!(materialize().expect("again"), root);
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
