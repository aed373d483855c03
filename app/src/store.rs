//! Permalink storage: snapshots under short content-addressed ids, in SQLite (a file in the
//! data directory, the default) or PostgreSQL (`DATABASE_URL`), through sqlx's `Any` driver
//! so one set of queries and migrations serves both.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::path::Path;

use crate::state::Snapshot;

/// Characters in an id: 72 bits of the SHA-256 of the stored JSON, URL-safe base64.
pub const ID_LEN: usize = 12;

/// Limits on what may be stored.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    /// Largest single snapshot, in bytes of JSON.
    pub max_item_bytes: u64,
    /// Total bytes of JSON all permalinks may take (None: no limit).
    pub max_total_bytes: Option<u64>,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            max_item_bytes: 32 << 20,
            max_total_bytes: None,
        }
    }
}

/// Why storing or loading failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The id cannot be one of ours.
    #[error("{0:?} is not a permalink id ({ID_LEN} characters of A-Z, a-z, 0-9, - and _)")]
    MalformedId(String),
    /// The snapshot is over the per-item limit.
    #[error("this view is too large to share ({}; this server stores views up to {})", crate::format::size(*.size), crate::format::size(*.limit))]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The storage quota is used up.
    #[error("permalink storage on this server is full ({} of {} used); existing links still work", crate::format::size(*.used), crate::format::size(*.limit))]
    QuotaReached {
        /// Bytes stored.
        used: u64,
        /// The quota.
        limit: u64,
    },
    /// A stored row does not parse (written by an incompatible version).
    #[error("stored view {id} cannot be read: {message}")]
    Corrupt {
        /// Which.
        id: String,
        /// Why.
        message: String,
    },
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The system's random source failed.
    #[error("no random bytes for a secret: {0}")]
    Random(String),
    /// The data directory cannot be made.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// Which.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Whether `id` has the shape of a permalink id.
pub fn is_valid_id(id: &str) -> bool {
    id.len() == ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The content address of a snapshot's JSON.
pub fn content_id(json: &[u8]) -> String {
    let digest = Sha256::digest(json);
    // 9 bytes are exactly 12 base64 characters, no padding.
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..9])
}

/// The permalink store.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    quota: Quota,
    backend: &'static str,
}

impl Store {
    /// Opens (and migrates) the database at `url`, or `permalinks.sqlite` in `data_dir` when
    /// no URL is given.
    pub async fn open(
        url: Option<&str>,
        data_dir: &Path,
        quota: Quota,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let url = match url {
            Some(u) => u.to_string(),
            None => {
                std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
                    path: data_dir.display().to_string(),
                    source,
                })?;
                format!(
                    "sqlite://{}?mode=rwc",
                    data_dir.join("permalinks.sqlite").display()
                )
            }
        };
        let backend = if url.starts_with("postgres") {
            "postgresql"
        } else {
            "sqlite"
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == "sqlite" { 1 } else { 8 })
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(&url)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store {
            pool,
            quota,
            backend,
        })
    }

    /// The limits.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// The secret named `name`: made (32 random bytes) by the first server to ask, then the
    /// same for every server on this database.
    pub async fn secret(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| StoreError::Random(e.to_string()))?;
        let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        sqlx::query(
            "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(engine.encode(fresh))
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        let value: String = row.try_get("value")?;
        engine.decode(value).map_err(|e| StoreError::Corrupt {
            id: format!("secret {name}"),
            message: e.to_string(),
        })
    }

    /// "sqlite" or "postgresql".
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Bytes and rows stored.
    pub async fn usage(&self) -> Result<(u64, u64), StoreError> {
        let row: AnyRow = sqlx::query(
            "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS used, COUNT(*) AS n FROM permalinks",
        )
        .fetch_one(&self.pool)
        .await?;
        let used: i64 = row.try_get("used")?;
        let n: i64 = row.try_get("n")?;
        Ok((used.max(0) as u64, n.max(0) as u64))
    }

    /// Stores a snapshot; returns its id. Storing the same snapshot again returns the same
    /// id and takes no more room.
    pub async fn put(&self, snapshot: &Snapshot) -> Result<String, StoreError> {
        let json = serde_json::to_vec(snapshot).map_err(|e| StoreError::Corrupt {
            id: "(new)".into(),
            message: e.to_string(),
        })?;
        let size = json.len() as u64;
        if size > self.quota.max_item_bytes {
            return Err(StoreError::TooLarge {
                size,
                limit: self.quota.max_item_bytes,
            });
        }
        let id = content_id(&json);
        if self.exists(&id).await? {
            return Ok(id);
        }
        if let Some(limit) = self.quota.max_total_bytes {
            let (used, _) = self.usage().await?;
            if used + size > limit {
                return Err(StoreError::QuotaReached { used, limit });
            }
        }
        let body = String::from_utf8(json).map_err(|e| StoreError::Corrupt {
            id: id.clone(),
            message: e.to_string(),
        })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        sqlx::query(
            "INSERT INTO permalinks (id, model, body, bytes, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&id)
        .bind(&snapshot.view.model)
        .bind(body)
        .bind(size as i64)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    async fn exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT id FROM permalinks WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// The snapshot stored under `id`, if any.
    pub async fn get(&self, id: &str) -> Result<Option<Snapshot>, StoreError> {
        if !is_valid_id(id) {
            return Err(StoreError::MalformedId(id.to_string()));
        }
        let Some(row) = sqlx::query("SELECT body FROM permalinks WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let body: String = row.try_get("body")?;
        serde_json::from_str(&body)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                id: id.to_string(),
                message: e.to_string(),
            })
    }

    /// Whether `id` is stored (false for malformed ids).
    pub async fn contains(&self, id: &str) -> Result<bool, StoreError> {
        if !is_valid_id(id) {
            return Ok(false);
        }
        self.exists(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ViewState;

    fn snapshot(prompt: &str) -> Snapshot {
        Snapshot {
            view: ViewState {
                prompt: prompt.into(),
                ..ViewState::default()
            },
            answer: None,
            explanation: None,
            matrix: None,
        }
    }

    async fn round_trip(store: &Store) {
        let a = snapshot("first");
        let id = store.put(&a).await.expect("put");
        assert!(is_valid_id(&id), "{id}");
        assert_eq!(
            store.put(&a).await.expect("put again"),
            id,
            "content-addressed"
        );
        assert_eq!(store.get(&id).await.expect("get"), Some(a));
        let other = store.put(&snapshot("second")).await.expect("put");
        assert_ne!(other, id);
        // A secret is made once, then read back the same.
        let secret = store.secret("test").await.expect("secret");
        assert_eq!(secret.len(), 32);
        assert_eq!(store.secret("test").await.expect("secret again"), secret);
        assert_ne!(store.secret("other").await.expect("another"), secret);
        assert_eq!(store.get("AAAAAAAAAAAA").await.expect("get"), None);
        assert!(matches!(
            store.get("../etc").await,
            Err(StoreError::MalformedId(_))
        ));
    }

    #[tokio::test]
    async fn sqlite_round_trip_and_quota() {
        let dir = std::env::temp_dir().join(format!("tokenlens-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(None, &dir, Quota::default())
            .await
            .expect("open");
        assert_eq!(store.backend(), "sqlite");
        round_trip(&store).await;
        let (used, n) = store.usage().await.expect("usage");
        assert_eq!(n, 2);
        // A quota just above what is stored refuses the next one, with a clear message.
        let tight = Store::open(
            None,
            &dir,
            Quota {
                max_item_bytes: 1 << 20,
                max_total_bytes: Some(used + 10),
            },
        )
        .await
        .expect("reopen");
        let err = tight.put(&snapshot("third")).await.expect_err("over quota");
        assert!(
            err.to_string().contains("storage on this server is full"),
            "{err}"
        );
        // What was stored is still there after reopening, the secrets too.
        assert_eq!(
            tight.secret("test").await.unwrap(),
            store.secret("test").await.unwrap()
        );
        assert!(tight
            .contains(&content_id(
                &serde_json::to_vec(&snapshot("first")).unwrap()
            ))
            .await
            .unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Runs when the test script has started a PostgreSQL (`TOKENLENS_TEST_POSTGRES`).
    #[tokio::test]
    async fn postgres_round_trip() {
        let Ok(url) = std::env::var("TOKENLENS_TEST_POSTGRES") else {
            eprintln!("TOKENLENS_TEST_POSTGRES not set: PostgreSQL not tested here");
            return;
        };
        let store = Store::open(Some(&url), Path::new("."), Quota::default())
            .await
            .expect("open postgres");
        assert_eq!(store.backend(), "postgresql");
        round_trip(&store).await;
    }

    /// A permalink stored by the 2026-12-04 format (taken from a browser test's SQLite store,
    /// with that store's seal key) still opens: it parses, its seals verify and it replays.
    /// And a view stored before a field existed takes that field's default.
    #[test]
    fn permalinks_of_earlier_formats_open() {
        use crate::record::seal::SealKey;
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/permalinks");
        let body = std::fs::read_to_string(dir.join("KcDZ9592xAFR.json")).unwrap();
        let snapshot: Snapshot = serde_json::from_str(&body).expect("parses");
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode("vsCqFlzovV7E5WbRhKTZtceuloHAJcjqm8cuUhfKWOM")
            .unwrap();
        let seal = SealKey::new(key).unwrap();
        for r in [&snapshot.answer, &snapshot.explanation]
            .into_iter()
            .flatten()
        {
            assert!(seal.verify(r), "seal of {}", r.task.name());
        }
        let shown = snapshot.replay().expect("replays");
        assert!(shown.answer.is_some() && shown.explanation.is_some());
        // The oldest views held less: each missing field takes its default.
        let sparse: Snapshot =
            serde_json::from_str(r#"{"view": {"prompt": "Hi", "display": {"gamma": 0.5}}}"#)
                .expect("a sparse view parses");
        assert_eq!(sparse.view.prompt, "Hi");
        assert_eq!(sparse.view.display.gamma, 0.5);
        assert_eq!(sparse.view.method, ViewState::default().method);
        assert!(sparse.answer.is_none());
    }
}
