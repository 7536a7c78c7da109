//! Durable local file writes: write to a temporary name, fsync, rename into place, fsync the
//! directory. A crash at any point leaves either the old state or the complete new file.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The temporary name a file is written under before it is published.
pub fn temp_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".pgkeep.tmp");
    dest.with_file_name(name)
}

/// Fsyncs a directory, so that entries created or renamed in it survive a crash.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Writes `dest` atomically: `fill` writes the content into a temporary file, which is then
/// fsynced, renamed over `dest`, and the directory fsynced. On error the temporary is removed.
pub fn write_atomic<T>(
    dest: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<T>,
) -> io::Result<T> {
    let tmp = temp_path(dest);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let value = fill(&mut f)?;
        // The data must be on disk before the name points at it: otherwise a crash right after
        // the rename can leave a complete-looking file full of zeros.
        f.sync_all()?;
        std::fs::rename(&tmp, dest)?;
        fsync_dir(dest.parent().unwrap_or(Path::new(".")))?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Moves an already-durable file to `dest` (same file system) and makes the move durable.
pub fn rename_durable(from: &Path, dest: &Path) -> io::Result<()> {
    std::fs::rename(from, dest)?;
    fsync_dir(dest.parent().unwrap_or(Path::new(".")))
}

/// A writer that asks the kernel to start writing back each megabyte as soon as it is
/// written (as PostgreSQL does with its own files), so the final fsync finds little left to do.
pub struct WritebackWriter<'a> {
    file: &'a mut File,
    written: u64,
    flushed: u64,
}

impl<'a> WritebackWriter<'a> {
    pub fn new(file: &'a mut File) -> Self {
        WritebackWriter {
            file,
            written: 0,
            flushed: 0,
        }
    }
}

impl io::Write for WritebackWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.flushed >= 1 << 20 {
            start_writeback(self.file, self.flushed, self.written - self.flushed);
            self.flushed = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: start writeback of a range without waiting. Only
/// a hint: durability still comes from the fsync in `write_atomic`, so failures are ignored.
#[allow(unsafe_code)]
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a file descriptor that `file` keeps open for the call's
    // duration; it reads no memory of ours.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Bytes an unprivileged writer may still write on the file system holding `path`
/// (`statvfs`: available blocks times fragment size).
#[allow(unsafe_code)]
pub fn available_space(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path that outlives the call, and `st` points to memory
    // large enough for the struct the call fills in; it is read only after success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised the whole struct.
    let st = unsafe { st.assume_init() };
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// `syncfs(2)` on the file system holding the open directory `dir`: every dirty page and inode
/// of it reaches the disk. Its error report covers only failures since `dir` was opened, and
/// only on Linux 5.8 and later (`syncfs_reports_errors`).
#[allow(unsafe_code)]
pub fn syncfs(dir: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a descriptor `dir` keeps open; it reads no memory of ours.
    let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this kernel's syncfs reports writeback errors (Linux 5.8 and later; before, it
/// returned success even when writeback had failed).
pub fn syncfs_reports_errors() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut nums = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    (major, minor) >= (5, 8)
}

/// The device a path lives on (`st_dev`), to sync each file system once.
pub fn device_of(path: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.dev())
}

/// Writes `pages` one after another at `offset` with one `pwritev` per up to 1024 of them
/// (a delta's run of consecutive pages: one system call instead of one per 8 KiB page); a
/// short write is finished with plain positioned writes.
#[allow(unsafe_code)]
pub fn write_pages_at(file: &File, offset: u64, pages: &[&[u8]]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let mut offset = offset;
    for chunk in pages.chunks(1024) {
        let iov: Vec<libc::iovec> = chunk
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        let total: usize = chunk.iter().map(|p| p.len()).sum();
        let n = loop {
            // SAFETY: every iovec points into a page borrowed for the whole call, with its
            // length; pwritev only reads them, and `file` keeps the descriptor open.
            let n = unsafe {
                libc::pwritev(
                    file.as_raw_fd(),
                    iov.as_ptr(),
                    iov.len() as libc::c_int,
                    offset as libc::off_t,
                )
            };
            if n >= 0 {
                break n;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        let mut done = n as usize;
        let mut at = offset;
        for p in chunk {
            if done >= p.len() {
                done -= p.len();
            } else {
                file.write_all_at(&p[done..], at + done as u64)?;
                done = 0;
            }
            at += p.len() as u64;
        }
        offset += total as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn publishes_only_complete_files() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        write_atomic(&dest, |f| f.write_all(b"one")).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"one");
        let err = write_atomic(&dest, |f| {
            f.write_all(b"half")?;
            Err::<(), _>(io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&dest).unwrap(), b"one");
        assert!(!temp_path(&dest).exists());
    }

    #[test]
    fn available_space_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available_space(dir.path()).unwrap() > 0);
        assert!(available_space(&dir.path().join("missing")).is_err());
    }
}
