//! Problem packages in and out of zip archives and directories, defensively: a package
//! comes from a user, so sizes are counted while decompressing (not taken from headers:
//! zip bombs lie), and paths that could leave the package (`..`, absolute) or links
//! (symlink entries, symlinks in a directory) are refused.

use std::io::{Read, Write};
use std::path::Path;

use super::package::{Files, PackageError};

/// Caps of one package.
#[derive(Debug, Clone, Copy)]
pub struct PackageCaps {
    pub max_files: usize,
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
}

impl Default for PackageCaps {
    fn default() -> Self {
        PackageCaps { max_files: 4096, max_file_bytes: 64 << 20, max_total_bytes: 256 << 20 }
    }
}

/// A package's files, and the name of the single top-level directory they were in, if
/// they were (zips of a problem directory usually are): it is the problem's short name.
pub struct Unpacked {
    pub root_name: Option<String>,
    pub files: Files,
}

/// Unpacks a zip archive.
pub fn read_zip(bytes: &[u8], caps: PackageCaps) -> Result<Unpacked, PackageError> {
    let bad = |m: String| PackageError::Unsafe(m);
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| bad(format!("not a zip archive: {e}")))?;
    if archive.len() > caps.max_files {
        return Err(PackageError::TooLarge(format!("{} entries, at most {} allowed", archive.len(), caps.max_files)));
    }
    let mut files = Files::new();
    let mut total = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| bad(format!("entry {i}: {e}")))?;
        let name = entry.name().map_err(|e| bad(format!("entry {i}: bad name: {e}")))?.into_owned();
        if entry.is_symlink() || entry.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000) {
            return Err(bad(format!("{name}: symbolic links are not allowed in a package")));
        }
        let path = clean_path(&name).map_err(|why| bad(format!("{name:?}: {why}")))?;
        if entry.is_dir() {
            continue;
        }
        if entry.encrypted() {
            return Err(bad(format!("{name}: encrypted entries are not supported")));
        }
        let mut content = Vec::new();
        // One byte over the cap tells a file at the cap apart from a larger one.
        let left = caps.max_file_bytes.min(caps.max_total_bytes - total);
        (&mut entry)
            .take(left + 1)
            .read_to_end(&mut content)
            .map_err(|e| bad(format!("{name}: cannot decompress: {e}")))?;
        if content.len() as u64 > left {
            return Err(PackageError::TooLarge(format!(
                "{name}: unpacks to more than {left} bytes (caps: {} per file, {} in all)",
                caps.max_file_bytes, caps.max_total_bytes
            )));
        }
        total += content.len() as u64;
        if files.insert(path.clone(), content).is_some() {
            return Err(bad(format!("{path}: appears twice")));
        }
    }
    Ok(strip_root(files))
}

/// A `/`-separated relative path without `.`, `..`, empty or absolute parts.
fn clean_path(name: &str) -> Result<String, &'static str> {
    if name.contains('\\') || name.contains('\0') {
        return Err("backslashes and NUL are not allowed in paths");
    }
    if name.starts_with('/') {
        return Err("absolute paths are not allowed");
    }
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.contains(&"..") {
        return Err("\"..\" is not allowed in paths");
    }
    if parts.is_empty() {
        return Err("empty path");
    }
    Ok(parts.join("/"))
}

/// Without `problem.yaml` at the top but with one directory holding everything, that
/// directory is the package.
fn strip_root(files: Files) -> Unpacked {
    if files.contains_key("problem.yaml") {
        return Unpacked { root_name: None, files };
    }
    let first = files.keys().next().and_then(|k| k.split_once('/')).map(|(d, _)| d.to_owned());
    match first {
        Some(root) if files.keys().all(|k| k.starts_with(&format!("{root}/"))) => {
            let files = files.into_iter().map(|(k, v)| (k[root.len() + 1..].to_owned(), v)).collect();
            Unpacked { root_name: Some(root), files }
        }
        _ => Unpacked { root_name: None, files },
    }
}

/// Reads a package directory; symbolic links anywhere in it are refused.
pub fn read_dir(dir: &Path, caps: PackageCaps) -> Result<Files, PackageError> {
    let mut files = Files::new();
    let mut total = 0u64;
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let entries = std::fs::read_dir(&path).map_err(|e| PackageError::Unsafe(format!("{}: {e}", path.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| PackageError::Unsafe(format!("{}: {e}", path.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let meta = std::fs::symlink_metadata(entry.path())
                .map_err(|e| PackageError::Unsafe(format!("{rel}: {e}")))?;
            if meta.file_type().is_symlink() {
                return Err(PackageError::Unsafe(format!("{rel}: symbolic links are not allowed in a package")));
            }
            if meta.is_dir() {
                stack.push((entry.path(), rel));
                continue;
            }
            if !meta.is_file() {
                return Err(PackageError::Unsafe(format!("{rel}: not a regular file")));
            }
            if files.len() >= caps.max_files {
                return Err(PackageError::TooLarge(format!("more than {} files", caps.max_files)));
            }
            if meta.len() > caps.max_file_bytes || total + meta.len() > caps.max_total_bytes {
                return Err(PackageError::TooLarge(format!("{rel}: {} bytes is over the package caps", meta.len())));
            }
            let content = std::fs::read(entry.path()).map_err(|e| PackageError::Unsafe(format!("{rel}: {e}")))?;
            total += content.len() as u64;
            files.insert(rel, content);
        }
    }
    Ok(files)
}

/// Packs files into a zip archive under the directory `root`.
pub fn write_zip(root: &str, files: &Files) -> std::io::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (path, content) in files {
        zip.start_file(format!("{root}/{path}"), options).map_err(std::io::Error::other)?;
        zip.write_all(content)?;
    }
    Ok(zip.finish().map_err(std::io::Error::other)?.into_inner())
}
