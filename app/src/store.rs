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

    /// Answers when the database does (a readiness probe).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// "sqlite" or "postgresql".
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Bytes and shared views stored (views of every format).
    pub async fn usage(&self) -> Result<(u64, u64), StoreError> {
        let used: i64 = sqlx::query("SELECT bytes FROM storage_usage WHERE name = 'permalinks'")
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.try_get("bytes"))
            .transpose()?
            .unwrap_or(0);
        let row: AnyRow = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM views) + (SELECT COUNT(*) FROM permalinks) AS n",
        )
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok((used.max(0) as u64, n.max(0) as u64))
    }

    /// Stores a snapshot; returns its id. Each result is stored once under its content hash
    /// and the view as a small row naming them, so storing the same snapshot again returns
    /// the same id and takes no room, and a view that differs only in its settings takes only
    /// its own row. The quota is checked in the same transaction as the inserts.
    pub async fn put(&self, snapshot: &Snapshot) -> Result<String, StoreError> {
        let mut results: Vec<(String, String)> = Vec::new();
        let mut row = ViewRow::of(snapshot, &mut results)?;
        if let Some(b) = &snapshot.against {
            row.against = Some(Box::new(ViewRow::of(b, &mut results)?));
        }
        let body = to_json(&row)?;
        // In hash order, so that two shares of overlapping results lock them in one order;
        // a result shown twice (a comparison of two methods) is stored and counted once.
        results.sort();
        results.dedup();
        let size = (body.len() + results.iter().map(|(_, j)| j.len()).sum::<usize>()) as u64;
        if size > self.quota.max_item_bytes {
            return Err(StoreError::TooLarge {
                size,
                limit: self.quota.max_item_bytes,
            });
        }
        let id = content_id(body.as_bytes());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut tx = self.pool.begin().await?;
        let mut added = 0u64;
        for (hash, json) in &results {
            let inserted = sqlx::query(
                "INSERT INTO results (hash, body, bytes, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (hash) DO NOTHING",
            )
            .bind(hash)
            .bind(json)
            .bind(json.len() as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() > 0 {
                added += json.len() as u64;
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO views (id, model, body, bytes, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&id)
        .bind(&snapshot.view.model)
        .bind(&body)
        .bind(body.len() as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() > 0 {
            added += body.len() as u64;
        }
        if added > 0 {
            // The update's condition is the quota check: under PostgreSQL a concurrent share
            // waits for this row and then re-evaluates the condition on the new total.
            let limit = self
                .quota
                .max_total_bytes
                .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
            let counted = sqlx::query(
                "UPDATE storage_usage SET bytes = bytes + $1 \
                 WHERE name = 'permalinks' AND bytes <= $2 - $1",
            )
            .bind(added as i64)
            .bind(limit)
            .execute(&mut *tx)
            .await?;
            if counted.rows_affected() == 0 {
                tx.rollback().await?;
                let (used, _) = self.usage().await?;
                return Err(StoreError::QuotaReached {
                    used,
                    limit: self.quota.max_total_bytes.unwrap_or(u64::MAX),
                });
            }
        }
        tx.commit().await?;
        Ok(id)
    }

    /// The snapshot stored under `id`, if any.
    pub async fn get(&self, id: &str) -> Result<Option<Snapshot>, StoreError> {
        if !is_valid_id(id) {
            return Err(StoreError::MalformedId(id.to_string()));
        }
        let corrupt = |message: String| StoreError::Corrupt {
            id: id.to_string(),
            message,
        };
        if let Some(body) = self
            .body("SELECT body FROM views WHERE id = $1", id)
            .await?
        {
            let mut row: ViewRow =
                serde_json::from_str(&body).map_err(|e| corrupt(e.to_string()))?;
            let against = row.against.take();
            let mut snapshot = self.snapshot_of(row, &corrupt).await?;
            if let Some(b) = against {
                snapshot.against = Some(Box::new(self.snapshot_of(*b, &corrupt).await?));
            }
            return Ok(Some(snapshot));
        }
        // Views shared before 2026-12-04 are whole snapshots in one row.
        let Some(body) = self
            .body("SELECT body FROM permalinks WHERE id = $1", id)
            .await?
        else {
            return Ok(None);
        };
        serde_json::from_str(&body)
            .map(Some)
            .map_err(|e| corrupt(e.to_string()))
    }

    /// A view row with its records read from the results table (its comparison is the
    /// caller's).
    async fn snapshot_of(
        &self,
        row: ViewRow,
        corrupt: &impl Fn(String) -> StoreError,
    ) -> Result<Snapshot, StoreError> {
        let mut records: [Option<crate::record::Record>; 3] = Default::default();
        for (record, hash) in records
            .iter_mut()
            .zip([&row.answer, &row.explanation, &row.matrix])
        {
            let Some(hash) = hash else { continue };
            let json = self
                .body("SELECT body FROM results WHERE hash = $1", hash)
                .await?
                .ok_or_else(|| corrupt(format!("its result {hash} is missing")))?;
            *record = Some(serde_json::from_str(&json).map_err(|e| corrupt(e.to_string()))?);
        }
        let [answer, explanation, matrix] = records;
        Ok(Snapshot {
            view: row.view,
            answer,
            explanation,
            matrix,
            against: None,
        })
    }

    /// The `body` column of the row `query` selects by `key`.
    async fn body(&self, query: &'static str, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(query)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("body")).transpose()?)
    }

    /// Whether `id` is stored (false for malformed ids).
    pub async fn contains(&self, id: &str) -> Result<bool, StoreError> {
        if !is_valid_id(id) {
            return Ok(false);
        }
        for query in [
            "SELECT id AS body FROM views WHERE id = $1",
            "SELECT id AS body FROM permalinks WHERE id = $1",
        ] {
            if self.body(query, id).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A shared view as stored: its settings and the content hashes of the results it shows.
#[derive(serde::Serialize, serde::Deserialize)]
struct ViewRow {
    view: crate::state::ViewState,
    #[serde(default)]
    answer: Option<String>,
    #[serde(default)]
    explanation: Option<String>,
    #[serde(default)]
    matrix: Option<String>,
    /// A comparison's second view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    against: Option<Box<ViewRow>>,
}

impl ViewRow {
    /// The row of `snapshot`'s own view (not its comparison's), its records' JSON added to
    /// `results` under their hashes.
    fn of(snapshot: &Snapshot, results: &mut Vec<(String, String)>) -> Result<Self, StoreError> {
        let mut hash = |record: &Option<crate::record::Record>| -> Result<_, StoreError> {
            let Some(record) = record else {
                return Ok(None);
            };
            let json = to_json(record)?;
            let h = result_hash(&json);
            results.push((h.clone(), json));
            Ok(Some(h))
        };
        Ok(ViewRow {
            view: snapshot.view.clone(),
            answer: hash(&snapshot.answer)?,
            explanation: hash(&snapshot.explanation)?,
            matrix: hash(&snapshot.matrix)?,
            against: None,
        })
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        id: "(new)".into(),
        message: e.to_string(),
    })
}

/// A result's content address: its whole SHA-256 (results are never named in URLs).
fn result_hash(json: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(json.as_bytes()))
}

#[cfg(test)]
mod tests;
