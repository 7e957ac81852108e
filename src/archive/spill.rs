//! The spill directory: where messages wait, on disk, while the database takes none.
//!
//! A spill is one file of JSON lines, written whole under a temporary name, synced and then
//! renamed, so a file with the final name is complete even after a crash. Names carry a
//! number one past the highest in the directory (`archive-<n>.jsonl`, twelve digits), not
//! the time, so replaying them in name order archives messages in the order they arrived
//! whatever the clock does. Rows the database refuses for what they hold go to
//! `rejected-<n>.jsonl` instead, which nothing replays: they are kept for an administrator,
//! not retried forever.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use crate::store::ArchivedMessage;

/// The spill directory of one archiver.
#[derive(Debug)]
pub(super) struct Spill {
    dir: PathBuf,
    /// The number of the last file written, once the directory has been looked at.
    last: Option<u64>,
}

/// What a spill file held.
pub(super) struct Spilled {
    pub(super) path: PathBuf,
    pub(super) messages: Vec<ArchivedMessage>,
}

impl Spill {
    pub(super) fn new(dir: PathBuf) -> Spill {
        Spill { dir, last: None }
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write messages to a new spill file; its path once it is safely on disk.
    pub(super) async fn write(&mut self, messages: &[ArchivedMessage]) -> io::Result<PathBuf> {
        self.write_named("archive", messages).await
    }

    /// Keep rows the database refused, for an administrator to look at.
    pub(super) async fn reject(&mut self, messages: &[ArchivedMessage]) -> io::Result<PathBuf> {
        self.write_named("rejected", messages).await
    }

    async fn write_named(
        &mut self,
        kind: &str,
        messages: &[ArchivedMessage],
    ) -> io::Result<PathBuf> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let last = match self.last {
            Some(last) => last,
            None => self.highest().await?,
        };
        let number = last + 1;
        let name = format!("{kind}-{number:012}.jsonl");
        let path = self.dir.join(&name);
        let partial = self.dir.join(format!(".{name}.partial"));
        let mut text = Vec::with_capacity(messages.len() * 256);
        for message in messages {
            serde_json::to_writer(&mut text, message)?;
            text.push(b'\n');
        }
        let written = async {
            let mut file = tokio::fs::File::create(&partial).await?;
            file.write_all(&text).await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&partial, &path).await
        };
        if let Err(e) = written.await {
            // A full disk: what was written of it only takes room.
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        self.last = Some(number);
        // The rename itself is durable once the directory is synced.
        tokio::fs::File::open(&self.dir).await?.sync_all().await?;
        Ok(path)
    }

    /// The highest number of the files in the directory (0 when none).
    async fn highest(&self) -> io::Result<u64> {
        let mut highest = 0;
        let mut entries = tokio::fs::read_dir(&self.dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let number = name
                .strip_prefix("archive-")
                .or_else(|| name.strip_prefix("rejected-"))
                .and_then(|rest| rest.split('.').next())
                .and_then(|n| n.parse::<u64>().ok());
            highest = highest.max(number.unwrap_or(0));
        }
        Ok(highest)
    }

    /// Whether any spill waits to be archived.
    pub(super) async fn any(&self) -> bool {
        !self.waiting().await.unwrap_or_default().is_empty()
    }

    /// The spill files waiting to be archived, oldest first (none when the directory is
    /// missing).
    pub(super) async fn waiting(&self) -> io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(files),
            Err(e) => return Err(e),
        };
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("archive-") && name.ends_with(".jsonl") {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }

    /// Read one spill file back.
    pub(super) async fn read(path: &Path) -> io::Result<Spilled> {
        let text = tokio::fs::read(path).await?;
        let mut messages = Vec::new();
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let message = serde_json::from_slice(line).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("line {}: {e}", n + 1))
            })?;
            messages.push(message);
        }
        Ok(Spilled {
            path: path.to_owned(),
            messages,
        })
    }

    /// A spill file that cannot be read is set aside under another name (so it is neither
    /// replayed again nor deleted); the new name.
    pub(super) async fn set_aside(path: &Path) -> io::Result<PathBuf> {
        let mut aside = path.as_os_str().to_owned();
        aside.push(".unreadable");
        let aside = PathBuf::from(aside);
        tokio::fs::rename(path, &aside).await?;
        Ok(aside)
    }
}
