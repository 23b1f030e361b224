//! Small filesystem helpers shared by every module that writes files.
//!
//! Design rule 6: files are written atomically (temp file in the same directory, then
//! rename), so an interrupted run never leaves a half-written file behind.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// Temporary paths this process is writing right now, for [`remove_own_temps`].
static OWN_TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A temporary file or folder this process is writing. While the guard lives the path is
/// registered, so that [`remove_own_temps`] (a second Ctrl-C, which ends the process at
/// once) can remove it; dropping the guard only unregisters it: the writer renames the
/// temporary into place or removes it itself.
#[derive(Debug)]
pub struct TempGuard {
    path: PathBuf,
}

impl TempGuard {
    /// Registers `path` as one of this process's temporaries.
    pub fn new(path: PathBuf) -> Self {
        OWN_TEMPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path.clone());
        Self { path }
    }

    /// Registers the [`temp_sibling`] of `path`.
    pub fn sibling(path: &Path) -> Self {
        Self::new(temp_sibling(path))
    }

    /// The registered path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        let mut temps = OWN_TEMPS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = temps.iter().rposition(|p| *p == self.path) {
            temps.swap_remove(i);
        }
    }
}

/// Remove every temporary this process is writing (see [`TempGuard`]); returns what was
/// removed. Called just before the process ends on a second Ctrl-C.
pub fn remove_own_temps() -> Vec<PathBuf> {
    remove_paths(registered_temps())
}

/// The temporaries registered now.
fn registered_temps() -> Vec<PathBuf> {
    OWN_TEMPS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Removes each file or folder of `paths`; returns those removed.
fn remove_paths(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    paths
        .into_iter()
        .filter(|p| {
            let gone = if p.is_dir() {
                fs::remove_dir_all(p)
            } else {
                fs::remove_file(p)
            };
            gone.is_ok()
        })
        .collect()
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

/// What [`remove_stale_temps`] did with one leftover of a dead process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleTemp {
    /// A temporary file or folder, removed.
    Removed(PathBuf),
    /// A previous output moved aside (`x.old-<pid>`) by a writer that died before its new
    /// output took the place: moved back to `to`, so nothing completed is lost.
    Restored {
        /// The leftover.
        from: PathBuf,
        /// Where it was, and is again.
        to: PathBuf,
    },
}

impl std::fmt::Display for StaleTemp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Removed(p) => write!(
                f,
                "removed {} (left by a process that no longer exists)",
                p.display()
            ),
            Self::Restored { from, to } => write!(
                f,
                "restored {} from {} (moved aside by a process that died before replacing it)",
                to.display(),
                from.display()
            ),
        }
    }
}

/// Clean up the temporary files and folders in `dir` that were left by processes that no
/// longer exist (a kill, a power cut); those of running processes, this one included, stay.
/// A previous output moved aside (`x.old-<pid>`) is put back when nothing took its place,
/// and removed when something did. Returns what was done; errors reading `dir` mean there
/// is nothing to clean.
pub fn remove_stale_temps(dir: &Path) -> Vec<StaleTemp> {
    let mut done = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return done;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = writer_pid(&name) else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        if let Some(target) = name.rfind(".old-").map(|i| dir.join(&name[..i])) {
            if fs::symlink_metadata(&target).is_err() && fs::rename(&path, &target).is_ok() {
                done.push(StaleTemp::Restored {
                    from: path,
                    to: target,
                });
                continue;
            }
        }
        let gone = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        if gone.is_ok() {
            done.push(StaleTemp::Removed(path));
        }
    }
    done
}

/// [`remove_stale_temps`], telling the user on stderr what was cleaned up and why. Every
/// verb calls it on the folders it writes into before it writes.
pub fn clear_stale_temps(dir: &Path) {
    for s in remove_stale_temps(dir) {
        eprintln!("{s}");
    }
}

/// Write `bytes` to `path` atomically: write a temporary sibling, flush it, rename it over
/// `path`. Parent directories are created. On error the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            fs::create_dir_all(parent)?;
        }
    }
    let guard = TempGuard::sibling(path);
    let tmp = guard.path();
    let result = (|| {
        let mut file = fs::File::create(tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
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
    let guard = TempGuard::sibling(path);
    let tmp = guard.path();
    let result = (|| {
        let mut writer = io::BufWriter::new(fs::File::create(tmp)?);
        fill(&mut writer)?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
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
    fn own_temps_are_registered_while_written_and_removable() {
        // Only this test's paths are removed: other tests of this process write temps too.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".x.json.tmp-1");
        let folder = dir.path().join("set.partial-1");
        fs::write(&file, b"x").unwrap();
        fs::create_dir_all(folder.join("a")).unwrap();
        let done = dir.path().join(".done.tmp-1");
        drop(TempGuard::new(done.clone()));
        let (g1, g2) = (TempGuard::new(file.clone()), TempGuard::new(folder.clone()));
        let mine: Vec<PathBuf> = registered_temps()
            .into_iter()
            .filter(|p| p.starts_with(dir.path()))
            .collect();
        assert_eq!(mine.len(), 2, "{mine:?}");
        assert!(mine.contains(&file) && mine.contains(&folder));
        let removed = remove_paths(mine);
        assert_eq!(removed.len(), 2);
        assert!(!file.exists() && !folder.exists());
        drop((g1, g2));
        assert!(!registered_temps().iter().any(|p| p.starts_with(dir.path())));
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
        // A previous output moved aside, once with its replacement in place, once without.
        let replaced = dir.path().join(format!("done.old-{dead}"));
        fs::create_dir_all(&replaced).unwrap();
        fs::create_dir_all(dir.path().join("done")).unwrap();
        let orphan = dir.path().join(format!("kept.old-{dead}"));
        fs::create_dir_all(orphan.join("inside")).unwrap();
        let mut removed: Vec<PathBuf> = Vec::new();
        let mut restored = Vec::new();
        for s in remove_stale_temps(dir.path()) {
            match s {
                StaleTemp::Removed(p) => removed.push(p),
                StaleTemp::Restored { from, to } => restored.push((from, to)),
            }
        }
        removed.sort();
        let mut want = vec![stale_file.clone(), stale_dir.clone(), stale_ckpt, replaced];
        want.sort();
        assert_eq!(removed, want);
        assert_eq!(restored, vec![(orphan, dir.path().join("kept"))]);
        assert!(dir.path().join("kept/inside").is_dir());
        assert!(!stale_file.exists() && !stale_dir.exists());
        assert!(live.exists() && normal.exists());
    }
}
