//! Files that hold secrets: written owner-only (0600) and atomically, so no other user can read
//! them and no reader ever sees half a file; read with a clear error naming the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Writes `contents` to `path` readable by its owner only, replacing any older file at once.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = write_temp(path, contents)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Creates `path` with `contents`, readable by its owner only, unless it exists: then nothing
/// is written and `Ok(false)` says so. Two processes creating it at once agree on one content.
pub fn create_private(path: &Path, contents: &[u8]) -> std::io::Result<bool> {
    let tmp = write_temp(path, contents)?;
    // A hard link fails if the name exists, where a rename would replace it.
    let created = match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&tmp);
    created
}

/// A new file next to `path` (so a rename or link stays on one file system), mode 0600 from
/// its creation, holding `contents` on disk.
fn write_temp(path: &Path, contents: &[u8]) -> std::io::Result<PathBuf> {
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map_or_else(|| "oncolive".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::now_v7().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()
    });
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The secret kept in the file at `path` (`what` names it in errors), without the line ending
/// an editor or `echo` adds. An empty file is an error, never an empty secret.
pub fn read_secret(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} from {}", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!secret.is_empty(), "{} ({what}) is empty", path.display());
    Ok(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_files_are_owner_only_and_replaced_or_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.json");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);

        let secret = dir.path().join("secret");
        assert!(create_private(&secret, b"first").unwrap());
        assert!(!create_private(&secret, b"second").unwrap());
        assert_eq!(std::fs::read(&secret).unwrap(), b"first");
        #[cfg(unix)]
        assert_eq!(mode(&secret), 0o600);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_secret_file_loses_its_line_ending_and_may_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "p@ss word\r\n").unwrap();
        assert_eq!(read_secret(&path, "the secret").unwrap(), "p@ss word");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_secret(&path, "the secret").is_err());
        let missing = read_secret(&dir.path().join("none"), "the TURN secret").unwrap_err();
        assert!(format!("{missing:#}").contains("the TURN secret"));
    }
}
