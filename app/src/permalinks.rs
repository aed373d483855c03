//! The permalink database and the seal key it keeps, as the server sees them: connected or
//! not (yet). Models do not need the database, so a server whose database cannot be reached
//! at start still serves them; sharing and opening links say that the database is
//! unavailable, and a background task keeps trying to connect.

use crate::record::seal::SealKey;
use crate::store::{Quota, Store};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A connected database and the seal key read from it.
#[derive(Clone, Debug)]
pub struct Connected {
    /// The store.
    pub store: Store,
    /// The key every server on this database seals results with.
    pub seal: SealKey,
}

/// The database, once reachable.
#[derive(Clone, Debug)]
pub struct Permalinks {
    connected: Arc<RwLock<Option<Connected>>>,
    quota: Quota,
}

/// Why sharing cannot be done now.
pub const UNAVAILABLE: &str = "the permalink database cannot be reached right now, so views \
     cannot be shared or opened; the server keeps trying to connect, so try again later";

/// How long to wait between attempts: doubling from 1 s up to a minute.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(60);

impl Permalinks {
    /// Already connected.
    pub fn connected(store: Store, seal: SealKey) -> Self {
        let quota = store.quota();
        Permalinks {
            connected: Arc::new(RwLock::new(Some(Connected { store, seal }))),
            quota,
        }
    }

    /// Opens the database (`url`, or SQLite in `data_dir`) and reads the seal key. When that
    /// fails, logs why and returns at once, unconnected, with a task on the current Tokio
    /// runtime that retries until it succeeds.
    pub async fn open(url: Option<String>, data_dir: PathBuf, quota: Quota) -> Self {
        let p = Permalinks {
            connected: Arc::new(RwLock::new(None)),
            quota,
        };
        match connect(url.as_deref(), &data_dir, quota).await {
            Ok(c) => p.set(c),
            Err(e) => {
                tracing::error!("permalink database: {e}; serving the models without it, retrying");
                let retry = p.clone();
                tokio::spawn(async move {
                    let mut wait = FIRST_RETRY;
                    loop {
                        tokio::time::sleep(wait).await;
                        match connect(url.as_deref(), &data_dir, quota).await {
                            Ok(c) => {
                                retry.set(c);
                                return;
                            }
                            Err(e) => tracing::warn!("permalink database still unavailable: {e}"),
                        }
                        wait = (wait * 2).min(LAST_RETRY);
                    }
                });
            }
        }
        p
    }

    fn set(&self, c: Connected) {
        tracing::info!(backend = c.store.backend(), "permalink storage ready");
        if let Ok(mut slot) = self.connected.write() {
            *slot = Some(c);
        }
    }

    /// The database and key, or why there are none ([`UNAVAILABLE`]).
    pub fn get(&self) -> Result<Connected, &'static str> {
        self.connected
            .read()
            .ok()
            .and_then(|c| c.clone())
            .ok_or(UNAVAILABLE)
    }

    /// The storage limits (known without the database).
    pub fn quota(&self) -> Quota {
        self.quota
    }
}

async fn connect(
    url: Option<&str>,
    data_dir: &std::path::Path,
    quota: Quota,
) -> Result<Connected, String> {
    let store = Store::open(url, data_dir, quota)
        .await
        .map_err(|e| format!("opening it: {e}"))?;
    let secret = store
        .secret("seal")
        .await
        .map_err(|e| format!("reading the seal key: {e}"))?;
    Ok(Connected {
        seal: SealKey::new(secret)?,
        store,
    })
}
