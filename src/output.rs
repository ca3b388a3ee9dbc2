//! Writing results: atomic file replacement and diffs for `--check`.

use std::io::{IsTerminal, Write};
use std::path::Path;

/// Writes `contents` to `path` atomically: a temporary file in the same
/// directory, fsynced, then renamed over `path`. A failure leaves any
/// existing file untouched.
///
/// - A symlink is followed: the file it points to is replaced, the link stays.
/// - An existing non-regular file (`/dev/null`, `/dev/stdout`, a FIFO) is
///   written in place. Renaming over it would replace a device node with a
///   regular file, which as root breaks the whole machine.
/// - The temporary file is created with `O_EXCL`, so a planted file or
///   symlink at that name is never followed.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let target = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => match std::fs::canonicalize(path) {
            Ok(t) => t,
            // A dangling link: create the file it names, as `cp` would.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let link = std::fs::read_link(path)?;
                match path.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                }
            }
            Err(e) => return Err(e),
        },
        _ => path.to_path_buf(),
    };
    let existing = match std::fs::metadata(&target) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if let Some(meta) = &existing {
        if meta.is_dir() {
            return Err(std::io::Error::other("the output path is a directory"));
        }
        if !meta.is_file() {
            let mut f = std::fs::OpenOptions::new().write(true).open(&target)?;
            return f.write_all(contents);
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
        // Keep the permissions of the file we replace.
        if let Some(meta) = &existing {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, &target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
pub fn stdout_color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}
