//! Reading files a user pointed us at: regular files only, within a size limit.
//!
//! A path named `*.so` or `agency.toml` can be anything: a FIFO (opening it for reading
//! blocks until a writer comes), a directory, `/dev/zero` behind a symbolic link (endless),
//! a dangling link or a link loop, or a sparse file of gigabytes. Each is refused with
//! one line naming what it is, before a byte is read: the file is opened non-blocking,
//! and its type and size are read from the open file, so a path swapped between a check
//! and the open cannot slip through.

use std::{
    fs::{File, Metadata},
    io::Read,
    path::Path,
};

/// Opens `path` for reading if it is a regular file (after following links) of at most
/// `limit` bytes; answers the file and its metadata, or why not.
///
/// ```no_run
/// let (file, metadata) = agency_loader::open_regular_file("agency.toml".as_ref(), 1 << 20)?;
/// # Ok::<(), String>(())
/// ```
pub fn open_regular_file(path: &Path, limit: u64) -> Result<(File, Metadata), String> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options
        .open(path)
        .map_err(|error| why_unopenable(path, &error))?;
    let metadata = file
        .metadata()
        .map_err(|e| format!("cannot be read: {e}"))?;
    if !metadata.is_file() {
        return Err(format!(
            "is {}, not a regular file",
            kind_of(&metadata.file_type())
        ));
    }
    if metadata.len() > limit {
        return Err(format!(
            "is {} bytes, over the limit of {} bytes for this kind of file",
            metadata.len(),
            limit
        ));
    }
    Ok((file, metadata))
}

/// Reads the whole of a regular file of at most `limit` bytes (see [`open_regular_file`]).
pub fn read_regular_file(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let (file, metadata) = open_regular_file(path, limit)?;
    read_all(file, metadata.len(), limit)
}

/// Reads what is left of `file`, expected to be `expected` bytes long; fails if it grew
/// past `limit` meanwhile.
pub(crate) fn read_all(file: File, expected: u64, limit: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(expected as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "grew past the limit of {limit} bytes while being read"
        ));
    }
    Ok(bytes)
}

/// Why `path` cannot be opened, naming dangling links and link loops.
fn why_unopenable(path: &Path, error: &std::io::Error) -> String {
    let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if !link {
        return format!("cannot be read: {error}");
    }
    let target = std::fs::read_link(path)
        .map(|t| t.display().to_string())
        .unwrap_or_default();
    #[cfg(unix)]
    let is_loop = error.raw_os_error() == Some(libc::ELOOP);
    #[cfg(not(unix))]
    let is_loop = false;
    if error.kind() == std::io::ErrorKind::NotFound {
        format!("is a symbolic link to {target:?}, which does not exist")
    } else if is_loop {
        format!("is a symbolic link to {target:?} that never reaches a file (a loop)")
    } else {
        format!("is a symbolic link to {target:?}, which cannot be read: {error}")
    }
}

/// "a directory", "a FIFO (named pipe)", ...
fn kind_of(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("agency-file-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = scratch("kinds");
        let regular = dir.join("regular");
        std::fs::write(&regular, "hello").unwrap();
        assert_eq!(read_regular_file(&regular, 5).unwrap(), b"hello");
        let refused = |path: &Path, limit| read_regular_file(path, limit).unwrap_err();
        assert!(refused(&regular, 4).contains("is 5 bytes, over the limit of 4"));
        assert!(refused(&dir, 9).contains("is a directory"));
        let fifo = dir.join("fifo");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        assert!(refused(&fifo, 9).contains("is a FIFO (named pipe)"));
        let zero = dir.join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(refused(&zero, 9).contains("is a character device"));
        let dangling = dir.join("dangling");
        std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
        assert!(refused(&dangling, 9).contains("which does not exist"));
        let looping = dir.join("loop");
        std::os::unix::fs::symlink(&looping, &looping).unwrap();
        assert!(refused(&looping, 9).contains("(a loop)"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
