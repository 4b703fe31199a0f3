//! Crash-safe output: files are written under a temporary name, synced, and
//! renamed into place only once complete, so a failed run leaves nothing
//! half-written behind.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// An I/O failure, with the path it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {action}: {source}")]
pub struct FsError {
    pub path: PathBuf,
    pub action: &'static str,
    #[source]
    pub source: io::Error,
}

impl FsError {
    pub fn new(path: &Path, action: &'static str, source: io::Error) -> Self {
        Self {
            path: path.to_owned(),
            action,
            source,
        }
    }
}

fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `path` through `write`, atomically: a reader sees the old file or the complete new one.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), FsError> {
    let mut staging = Staging::new();
    staging.write(path, write)?;
    staging.commit()
}

/// A set of output files published together: each is written to a temporary
/// name; `commit` renames them all into place. Dropped without `commit`, it
/// removes the temporaries (and the directories it created).
#[derive(Default)]
pub struct Staging {
    pending: Vec<(PathBuf, PathBuf)>,
    created_dirs: Vec<PathBuf>,
}

impl Staging {
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates `dir` (and parents) if missing, remembering it for clean-up.
    pub fn create_dir(&mut self, dir: &Path) -> Result<(), FsError> {
        let mut missing = Vec::new();
        let mut cur = Some(dir);
        while let Some(d) = cur {
            if d.as_os_str().is_empty() || d.exists() {
                break;
            }
            missing.push(d.to_owned());
            cur = d.parent();
        }
        fs::create_dir_all(dir).map_err(|e| FsError::new(dir, "create directory", e))?;
        missing.reverse();
        self.created_dirs.extend(missing);
        Ok(())
    }

    /// Writes the future `path` to a temporary file and syncs it.
    pub fn write(
        &mut self,
        path: &Path,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), FsError> {
        if let Some(parent) = path.parent() {
            self.create_dir(parent)?;
        }
        let tmp = temp_name(path);
        let file = File::create(&tmp).map_err(|e| FsError::new(&tmp, "create", e))?;
        self.pending.push((tmp.clone(), path.to_owned()));
        let mut out = BufWriter::with_capacity(1 << 20, file);
        write(&mut out).map_err(|e| FsError::new(path, "write", e))?;
        let file = out
            .into_inner()
            .map_err(|e| FsError::new(path, "write", e.into_error()))?;
        file.sync_all().map_err(|e| FsError::new(path, "sync", e))
    }

    /// Renames every staged file into place and syncs the directories.
    pub fn commit(mut self) -> Result<(), FsError> {
        // Entries leave `pending` as they are renamed: on failure, Drop removes the rest.
        while !self.pending.is_empty() {
            let (tmp, dst) = self.pending.remove(0);
            if let Err(e) = fs::rename(&tmp, &dst) {
                self.pending.insert(0, (tmp, dst.clone()));
                return Err(FsError::new(&dst, "rename into place", e));
            }
            if let Some(dir) = dst.parent().filter(|d| !d.as_os_str().is_empty()) {
                // Durability of the rename; some filesystems refuse to sync a directory.
                let _ = File::open(dir).and_then(|d| d.sync_all());
            }
        }
        self.created_dirs.clear();
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        for (tmp, _) in &self.pending {
            let _ = fs::remove_file(tmp);
        }
        for dir in self.created_dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_staging_leaves_nothing_behind() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("a/b");
        {
            let mut s = Staging::new();
            s.write(&out.join("one.txt"), |w| w.write_all(b"1"))
                .unwrap();
            let err = s
                .write(&out.join("two.txt"), |_| Err(io::Error::other("boom")))
                .unwrap_err();
            assert!(err.to_string().contains("two.txt"), "{err}");
        }
        assert!(
            !root.path().join("a").exists(),
            "created directories are removed"
        );
    }

    #[test]
    fn commit_publishes_all_files() {
        let root = tempfile::tempdir().unwrap();
        let mut s = Staging::new();
        s.write(&root.path().join("x"), |w| w.write_all(b"x"))
            .unwrap();
        s.write(&root.path().join("y"), |w| w.write_all(b"y"))
            .unwrap();
        assert!(
            !root.path().join("x").exists(),
            "nothing visible before commit"
        );
        s.commit().unwrap();
        assert_eq!(fs::read(root.path().join("y")).unwrap(), b"y");
        let names: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "no temporaries left");
    }
}
