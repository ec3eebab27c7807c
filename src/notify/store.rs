//! Where topics and subscriptions are kept: one JSON document beside the
//! queues, replaced atomically (written aside, synced, renamed over, the
//! directory synced) on every change. Changes are rare next to messages,
//! and one small document is simple to inspect and to back up.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::NotifyError;
use super::topic::{SubscriptionRecord, TopicRecord};

const FILE: &str = "topics.json";

/// Everything the topic engine persists.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub topics: Vec<TopicRecord>,
    pub subscriptions: Vec<SubscriptionRecord>,
}

#[derive(Debug)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The store in `dir`, and what it holds (nothing, the first time).
    pub fn open(dir: &Path) -> Result<(Store, State), String> {
        let path = dir.join(FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok((Store { path }, state))
    }

    /// Replaces what is stored with `state`; durable when it returns.
    pub async fn save(&self, state: &State) -> Result<(), NotifyError> {
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| NotifyError::Internal(e.to_string()))?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || replace(&path, &bytes))
            .await
            .map_err(|e| NotifyError::Internal(e.to_string()))?
            .map_err(|e| NotifyError::Internal(format!("cannot save topics: {e}")))
    }
}

fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let aside = path.with_extension("json.new");
    let mut f = std::fs::File::create(&aside)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&aside, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_is_saved_is_what_opens() {
        let dir = tempfile::tempdir().unwrap();
        let (store, state) = Store::open(dir.path()).unwrap();
        assert_eq!(state, State::default());
        let mut state = State::default();
        state.topics.push(TopicRecord {
            name: "t".into(),
            attributes: Default::default(),
            tags: Default::default(),
        });
        store.save(&state).await.unwrap();
        assert_eq!(Store::open(dir.path()).unwrap().1, state);
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        assert!(Store::open(dir.path()).unwrap_err().contains("topics.json"));
    }
}
