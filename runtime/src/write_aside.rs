//! Output files written aside and renamed into place, so a failure or a crash never leaves a partial
//! file under the final name (a reader sees the old file, or none, or the whole new one).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The temporary name next to `path`: `<path>.<pid>.tmp` (the pid keeps two processes apart).
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    PathBuf::from(tmp)
}

/// Runs `write` on a buffered temporary file next to `path`, syncs it and renames it to `path`. When
/// `write` fails (its error is returned as is) or any step fails, the temporary file is removed.
pub fn write_aside<T, E: From<Error>>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    write_aside_checked(path, write, |_| Ok(()))
}

/// [`write_aside`] with a check of the finished, synced temporary file before the rename (`check` gets
/// its path): a file that does not validate never replaces anything. The writer may seek (model files
/// write their data first and the header last) and has a 1 MiB buffer.
pub fn write_aside_checked<T, E: From<Error>>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::result::Result<T, E>,
    check: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<T, E> {
    let tmp = temporary_path(path);
    let result = (|| {
        let file = File::create(&tmp).map_err(|source| Error::Io { path: tmp.clone(), source })?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let value = write(&mut out)?;
        let file = out.into_inner().map_err(|e| Error::Io { path: tmp.clone(), source: e.into_error() })?;
        file.sync_all().map_err(|source| Error::Io { path: tmp.clone(), source })?;
        drop(file);
        check(&tmp)?;
        std::fs::rename(&tmp, path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Ok(value)
    })();
    if result.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    result
}

/// `write_aside` of a byte buffer.
pub fn write_bytes_aside(path: &Path, bytes: &[u8]) -> Result<()> {
    write_aside(path, |out| out.write_all(bytes).map_err(|source| Error::Io { path: temporary_path(path), source }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("gaga-write-aside-{}-{name}", std::process::id()))
    }

    #[test]
    fn a_successful_write_replaces_the_file_and_leaves_no_temporary() {
        let path = scratch("ok");
        std::fs::write(&path, b"old").expect("seed");
        write_bytes_aside(&path, b"new contents").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"new contents");
        assert!(!temporary_path(&path).exists());
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary() {
        let path = scratch("fail");
        std::fs::write(&path, b"old").expect("seed");
        let r: Result<()> = write_aside(&path, |out| {
            out.write_all(b"half").map_err(|source| Error::Io { path: path.clone(), source })?;
            Err(Error::Other("frame 7: decoder failed".into()))
        });
        assert_eq!(r.expect_err("fails").to_string(), "frame 7: decoder failed");
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        assert!(!temporary_path(&path).exists());
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn a_written_file_that_fails_its_check_replaces_nothing() {
        let path = scratch("check");
        std::fs::write(&path, b"old").expect("seed");
        let r: Result<()> = write_aside_checked(
            &path,
            |out| out.write_all(b"truncated").map_err(|source| Error::Io { path: path.clone(), source }),
            |tmp| {
                // The check sees the complete, synced temporary file.
                assert_eq!(std::fs::read(tmp).expect("temporary readable"), b"truncated");
                Err(Error::Other("written file does not validate".into()))
            },
        );
        assert!(r.expect_err("check fails").to_string().contains("does not validate"));
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        assert!(!temporary_path(&path).exists());
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn an_unwritable_destination_is_an_error_naming_the_path() {
        let path = scratch("missing-dir").join("out.jsonl");
        let e = write_bytes_aside(&path, b"x").expect_err("no such directory");
        assert!(e.to_string().contains("missing-dir"), "{e}");
    }
}
