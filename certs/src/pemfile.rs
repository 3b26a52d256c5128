//! Small helpers to read and write PEM files with paths in every error.

use std::path::Path;

use crate::{Error, Result};

pub fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Writes a file; private keys (`secret = true`) are created with mode 0600 on Unix.
pub fn write(path: &Path, contents: &[u8], secret: bool) -> Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    // Write to a sibling temp file and rename, so a crash never leaves a half-written key.
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = secret;
        let mut f = opts.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(contents).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// All PEM blocks with the given tag, in order.
pub fn blocks(path: &Path, text: &str, tag: &str) -> Result<Vec<Vec<u8>>> {
    let all = pem::parse_many(text).map_err(|e| Error::bad_file(path, e))?;
    Ok(all
        .into_iter()
        .filter(|p| p.tag() == tag)
        .map(|p| p.contents().to_vec())
        .collect())
}

/// Exactly one PEM block with the given tag.
pub fn one_block(path: &Path, tag: &str) -> Result<Vec<u8>> {
    let text = read_to_string(path)?;
    let mut b = blocks(path, &text, tag)?;
    match b.len() {
        1 => Ok(b.remove(0)),
        0 => Err(Error::bad_file(path, format!("no PEM block '{tag}'"))),
        n => Err(Error::bad_file(
            path,
            format!("{n} PEM blocks '{tag}', expected one"),
        )),
    }
}

pub fn encode(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}
