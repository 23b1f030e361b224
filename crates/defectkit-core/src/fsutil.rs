//! Small filesystem helpers shared by every module that writes files.
//!
//! Design rule 6: files are written atomically (temp file in the same directory, then
//! rename), so an interrupted run never leaves a half-written file behind.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// `p` joined to the current dir when it is relative (unchanged when that cannot be read).
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|c| c.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Path of the temporary sibling used while `path` is being written.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_string());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// The writer's pid in a temporary sibling's name (`.x.tmp-<pid>`, `x.tmp-<pid>.bpk`,
/// `x.partial-<pid>`, `x.old-<pid>`), if the name is one.
fn writer_pid(name: &str) -> Option<u32> {
    [".tmp-", ".partial-", ".old-"].iter().find_map(|marker| {
        let i = name.rfind(marker)?;
        let rest = &name[i + marker.len()..];
        let (digits, ext) = rest.split_once('.').unwrap_or((rest, ""));
        let ext_ok = ext.is_empty() || ext.bytes().all(|b| b.is_ascii_alphanumeric());
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && ext_ok)
            .then(|| digits.parse().ok())
            .flatten()
    })
}

/// Whether process `pid` exists (signal 0 probes without sending anything).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists; no memory is shared.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Remove the temporary files and folders in `dir` that were left by processes that no
/// longer exist (a kill, a power cut); those of running processes, this one included, stay.
/// Returns what was removed. Errors reading `dir` mean there is nothing to clean.
pub fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = writer_pid(&name.to_string_lossy()) else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        let gone = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        if gone.is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// Write `bytes` to `path` atomically: write a temporary sibling, flush it, rename it over
/// `path`. Parent directories are created. On error the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            fs::create_dir_all(parent)?;
        }
    }
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Like [`write_atomic`], with the content produced by a closure writing into a file.
/// Used for encoders (PNG, CSV) that want a `Write`.
pub fn write_atomic_with<F>(path: &Path, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut io::BufWriter<fs::File>) -> io::Result<()>,
{
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            fs::create_dir_all(parent)?;
        }
    }
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut writer = io::BufWriter::new(fs::File::create(&tmp)?);
        fill(&mut writer)?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary file left behind");
    }

    #[test]
    fn failed_fill_keeps_old_file_and_removes_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("interrupted"))
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temps_of_dead_writers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // A pid that cannot exist (above the kernel's pid_max) stands for a dead writer.
        let dead = 99_999_999u32;
        let mine = std::process::id();
        let stale_file = dir.path().join(format!(".a.json.tmp-{dead}"));
        let stale_dir = dir.path().join(format!("synthetic.partial-{dead}"));
        let stale_ckpt = dir.path().join(format!("last.tmp-{dead}.bpk"));
        fs::write(&stale_ckpt, b"x").unwrap();
        let live = dir.path().join(format!(".b.json.tmp-{mine}"));
        let normal = dir.path().join("c.tmp-notapid");
        fs::write(&stale_file, b"x").unwrap();
        fs::create_dir_all(stale_dir.join("bottle")).unwrap();
        fs::write(&live, b"x").unwrap();
        fs::write(&normal, b"x").unwrap();
        let mut removed = remove_stale_temps(dir.path());
        removed.sort();
        let mut want = vec![stale_file.clone(), stale_dir.clone(), stale_ckpt];
        want.sort();
        assert_eq!(removed, want);
        assert!(!stale_file.exists() && !stale_dir.exists());
        assert!(live.exists() && normal.exists());
    }
}
