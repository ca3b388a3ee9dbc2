//! Writing results: atomic file replacement and diffs for `--check`.

use std::io::{IsTerminal, Write};
use std::path::Path;

/// Writes `contents` to `path` atomically: a temporary file in the same
/// directory, fsynced, then renamed over `path`. A failure leaves any
/// existing file untouched.
///
/// - Our own stdout or stderr, by any name (`/dev/stdout`, `/proc/self/fd/1`,
///   or the file it is redirected to), is written to directly: replacing
///   the file would discard what the shell appended to it before and after.
/// - A symlink is followed, as the kernel's `fs.protected_symlinks` allows:
///   not one owned by another user in a sticky, world-writable directory
///   such as `/tmp`, and not a dangling one (`cp` refuses those too).
/// - A FIFO or character device (`/dev/null`) is written in place: renaming
///   over a device node would replace it with a regular file, which as root
///   breaks the whole machine. A FIFO nobody reads is an error, not a hang.
///   Directories and block devices are refused.
/// - The temporary file is created with `O_EXCL`, so a planted file or
///   symlink at that name is never followed.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(mut stream) = standard_stream(path) {
        stream.write_all(contents)?;
        return stream.flush();
    }
    let target = follow_link(path)?;
    let existing = match std::fs::metadata(&target) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if let Some(meta) = &existing {
        if !meta.is_file() {
            return open_in_place(&target, meta.file_type())?.write_all(contents);
        }
    }
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = target
        .file_name()
        .ok_or_else(|| std::io::Error::other("the output path names no file"))?;
    let (tmp, mut f) = create_temp(dir, file_name)?;
    let result = (|| {
        f.write_all(contents)?;
        f.sync_all()?;
        // Keep the owner and permissions of the file we replace. The owner
        // only where we may change it (root); elsewhere the file becomes
        // ours, as an editor's save makes it. Owner first: chown clears
        // set-id bits.
        if let Some(meta) = &existing {
            use std::os::unix::fs::MetadataExt;
            let _ = std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()));
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, &target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The message for a failed `-o FILE`: what, where and what to do.
pub fn write_error(path: &Path, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let parent_missing = path
        .parent()
        .is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir());
    let help = match e.kind() {
        ErrorKind::NotFound if parent_missing => {
            "create the directory first, or pass -o a path in an existing one"
        }
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
            "pass -o a path you may write to"
        }
        _ => "pass -o the path of a regular file, or leave -o out to print to stdout",
    };
    format!(
        "cannot write {}: {e}\n  help: {help}",
        crate::escape::quoted_path(path)
    )
}

/// Our stdout or stderr when `path` is the same file (same device and
/// inode), so writes go through the open descriptor and its offset.
fn standard_stream(path: &Path) -> Option<Box<dyn Write>> {
    use std::os::fd::AsFd;
    if same_file(path, std::io::stdout().as_fd()) {
        return Some(Box::new(std::io::stdout()));
    }
    if same_file(path, std::io::stderr().as_fd()) {
        return Some(Box::new(std::io::stderr()));
    }
    None
}

/// Whether `path` names the file open on `fd` (same device and inode).
pub fn same_file(path: &Path, fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(meta), Ok(owned)) = (std::fs::metadata(path), fd.try_clone_to_owned()) else {
        return false;
    };
    std::fs::File::from(owned)
        .metadata()
        .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
}

/// The file `path` names, through a symlink the kernel would follow.
fn follow_link(path: &Path) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let link = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => m,
        _ => return Ok(path.to_path_buf()),
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir_meta = std::fs::metadata(dir)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let shared = dir_meta.mode() & 0o1002 == 0o1002;
    if shared && link.uid() != euid && link.uid() != dir_meta.uid() {
        return Err(std::io::Error::other(
            "it is a symlink owned by another user in a shared directory; not following it (as the kernel's fs.protected_symlinks does)",
        ));
    }
    std::fs::canonicalize(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            std::io::Error::other("it is a dangling symlink; not writing through it")
        } else {
            e
        }
    })
}

/// Opens an existing non-regular file for writing in place.
fn open_in_place(target: &Path, kind: std::fs::FileType) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    if kind.is_dir() {
        return Err(std::io::Error::other("it is a directory"));
    }
    if kind.is_block_device() {
        return Err(std::io::Error::other(
            "it is a block device; refusing to write a manifest onto it",
        ));
    }
    if !kind.is_fifo() {
        return std::fs::OpenOptions::new().write(true).open(target);
    }
    // A blocking open of a FIFO waits for a reader forever.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(target)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) {
                std::io::Error::other("it is a FIFO that no process is reading")
            } else {
                e
            }
        })?;
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(f)
}

/// Creates `.NAME.egressgen-PID-N.tmp` in `dir` with `O_EXCL`, trying a few
/// names in case one is taken.
fn create_temp(
    dir: &Path,
    file_name: &std::ffi::OsStr,
) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let mut last = None;
    for n in 0..16 {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".egressgen-{}-{n}.tmp", std::process::id()));
        let tmp = dir.join(tmp_name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary file name")))
}

/// A unified diff from `old` (named `old_name`) to `new`, coloured when
/// `color` is set.
pub fn unified_diff(old_name: &str, old: &str, new_name: &str, new: &str, color: bool) -> String {
    let diff = similar::TextDiff::from_lines(old, new);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string();
    if !color {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.split_inclusive('\n') {
        let (start, end) = if line.starts_with("+++") || line.starts_with("---") {
            ("\x1b[1m", "\x1b[0m")
        } else if line.starts_with('+') {
            ("\x1b[32m", "\x1b[0m")
        } else if line.starts_with('-') {
            ("\x1b[31m", "\x1b[0m")
        } else if line.starts_with("@@") {
            ("\x1b[36m", "\x1b[0m")
        } else {
            ("", "")
        };
        let body = line.strip_suffix('\n').unwrap_or(line);
        out.push_str(start);
        out.push_str(body);
        out.push_str(end);
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Colour stdout only on a terminal, and never when `NO_COLOR` is set.
/// Writes `text` to stdout and flushes it. A reader that has gone away
/// (`egressgen schema | head -1`) is not an error: the output was not
/// wanted any more, so it ends quietly instead of failing or panicking as
/// `print!` does.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

pub fn stdout_color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block device is refused before anything is opened, so a typo such
    /// as `-o /dev/sda` cannot write a manifest onto a disk. Only metadata
    /// of an existing device is read here.
    #[test]
    fn block_devices_are_refused_before_opening() {
        use std::os::unix::fs::FileTypeExt;
        let Some(dev) = std::fs::read_dir("/dev")
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| e.file_type().is_ok_and(|t| t.is_block_device()))
        else {
            eprintln!("skipped: no block device in /dev");
            return;
        };
        let kind = dev.file_type().unwrap();
        let err = open_in_place(&dev.path(), kind).unwrap_err();
        assert!(err.to_string().contains("block device"), "{err}");
    }
}
