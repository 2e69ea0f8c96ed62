//! Atomic writes: a file kiln saves is either the old one or the new one, never half of one.
//!
//! [`write_atomic`] writes `<file>.tmp` next to the target, flushes it to disk (`fsync`),
//! renames it over the target and flushes the directory, so a crash at any instant leaves the
//! old or the new file. A failed write removes its temporary file.
//!
//! Paths the user names (`--output`, `--out`, export targets) go through [`write_output`], which
//! respects what is already there:
//!
//! | what is at the path        | what happens                                             |
//! | -------------------------- | -------------------------------------------------------- |
//! | nothing, or a regular file | atomic write                                             |
//! | a symlink                  | atomic write of the file it points to; the link stays    |
//! | a character device, FIFO   | written directly (e.g. `/dev/stdout`), never replaced    |
//! | a directory, socket, ...   | an error naming the path                                 |

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io_err};

/// The temporary file that [`write_atomic`] writes before renaming: `<path>.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Write `bytes` to `path` through a temporary file, `fsync` and a rename (see the module
/// notes). Creates the parent directory. `path` must not be a symlink, device or directory
/// (use [`write_output`] for user-named paths).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = parent {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    let tmp = tmp_path(path);
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(&tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(path, e));
    }
    // The rename is durable once the directory entry is on disk.
    if let Ok(d) = std::fs::File::open(parent.unwrap_or(Path::new("."))) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// What is at a path, for [`write_output`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    Nothing,
    Regular,
    Stream,
    Other(&'static str),
}

fn existing(path: &Path) -> std::io::Result<Existing> {
    let m = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => return Err(e),
    };
    let t = m.file_type();
    if t.is_file() {
        return Ok(Existing::Regular);
    }
    if t.is_dir() {
        return Ok(Existing::Other("a directory"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() || t.is_fifo() {
            return Ok(Existing::Stream);
        }
        if t.is_block_device() {
            return Ok(Existing::Other("a block device"));
        }
        if t.is_socket() {
            return Ok(Existing::Other("a socket"));
        }
    }
    Ok(Existing::Other("not a regular file"))
}

/// The file a symlink chain at `path` ends in (relative links resolved against their
/// directory); `path` itself when it is not a link. A dangling link resolves to where it
/// points, so the file is created there.
fn resolve_links(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p).map_err(|e| io_err(&p, e))?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(io_err(path, "too many levels of symbolic links"))
}

/// Write `bytes` to a path the user named, `role` saying which (`--output`, ...) for errors.
/// Regular files are replaced atomically, symlinks are followed (the link is kept), character
/// devices and FIFOs are written directly, anything else is refused. See the module notes.
pub fn write_output(path: &Path, bytes: &[u8], role: &str) -> Result<()> {
    let target = resolve_links(path)?;
    let named = |msg: String| Error::Io {
        path: path.display().to_string(),
        msg: format!("{role}: {msg}"),
    };
    match existing(&target).map_err(|e| named(e.to_string()))? {
        Existing::Nothing | Existing::Regular => {
            write_atomic(&target, bytes).map_err(|e| named(e.to_string()))
        }
        Existing::Stream => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .map_err(|e| named(e.to_string()))?;
            f.write_all(bytes)
                .and_then(|_| f.flush())
                .map_err(|e| named(e.to_string()))
        }
        Existing::Other(what) => Err(named(format!(
            "{} is {what}; name a file to write",
            target.display()
        ))),
    }
}

/// Remove a `<file>.tmp` left behind next to `path` by a process killed mid-write. Returns
/// true when one was removed.
pub fn remove_stale_tmp(path: &Path) -> bool {
    let tmp = tmp_path(path);
    tmp.is_file() && std::fs::remove_file(&tmp).is_ok()
}
