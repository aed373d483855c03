//! The store on SQLite, and on PostgreSQL when the test script has started one.
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
        against: None,
    }
}

/// Stores two snapshots and reads them back; returns the first one's id.
async fn round_trip(store: &Store) -> String {
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
    // A comparison keeps its second view.
    let pair = Snapshot {
        against: Some(Box::new(snapshot("second"))),
        ..snapshot("first")
    };
    let pair_id = store.put(&pair).await.expect("put a comparison");
    assert_ne!(pair_id, id);
    assert_eq!(store.get(&pair_id).await.expect("get"), Some(pair));
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
    id
}

#[tokio::test]
async fn sqlite_round_trip_and_quota() {
    let dir = std::env::temp_dir().join(format!("tokenlens-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(None, &dir, Quota::default())
        .await
        .expect("open");
    assert_eq!(store.backend(), "sqlite");
    let first = round_trip(&store).await;
    let (used, n) = store.usage().await.expect("usage");
    assert_eq!(n, 3, "two views and a comparison");
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
    assert!(tight.contains(&first).await.unwrap());
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

/// A snapshot whose explanation is `kb` kilobytes of events.
fn with_results(prompt: &str, kb: usize) -> Snapshot {
    let record = |kind: &str, n: usize| crate::record::Record {
        model: "m".into(),
        task: serde_json::from_str(&format!(
            r#"{{"kind": "{kind}", "request": {{"prompt": "{prompt}"}}}}"#
        ))
        .unwrap(),
        events: vec!["x".repeat(n)],
        seal: "s".into(),
    };
    Snapshot {
        answer: Some(record("generate", 100)),
        explanation: Some(record("explain", kb << 10)),
        ..snapshot(prompt)
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tokenlens-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A sealed result shared under many display settings is stored once: each variant costs its
/// view row (well under 2 KB here), not the 200 KB of results; each opens as it was shared.
#[tokio::test]
async fn a_view_variant_costs_its_row_not_its_results() {
    let dir = temp_dir("variants");
    let store = Store::open(None, &dir, Quota::default()).await.unwrap();
    let base = with_results("same", 200);
    store.put(&base).await.unwrap();
    let (used0, _) = store.usage().await.unwrap();
    assert!(used0 > 200 << 10, "{used0}");
    let mut ids = std::collections::HashSet::new();
    for i in 0..50 {
        let mut variant = base.clone();
        variant.view.display.gamma = 0.5 + i as f32 / 100.0;
        let id = store.put(&variant).await.unwrap();
        assert_eq!(store.get(&id).await.unwrap(), Some(variant));
        ids.insert(id);
    }
    assert_eq!(ids.len(), 50, "each variant has its own link");
    let (used, n) = store.usage().await.unwrap();
    assert_eq!(n, 51);
    let per_variant = (used - used0) / 50;
    assert!(per_variant < 2048, "{per_variant} bytes per variant");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Twelve different snapshots shared at once against a quota with room for three: exactly
/// three are stored and the total never passes the quota (the check and the inserts are one
/// transaction).
async fn quota_holds_under_concurrent_shares(store: &Store, url: Option<&str>, dir: &Path) {
    let item = {
        // A directory of its own: the SQLite and PostgreSQL variants run at the same time.
        let probe = temp_dir(if url.is_some() {
            "probe-pg"
        } else {
            "probe-sqlite"
        });
        let s = Store::open(None, &probe, Quota::default()).await.unwrap();
        s.put(&with_results("p00", 20)).await.unwrap();
        let (used, _) = s.usage().await.unwrap();
        let _ = std::fs::remove_dir_all(&probe);
        used
    };
    let (used0, _) = store.usage().await.unwrap();
    let limit = used0 + item * 7 / 2;
    let tight = Store::open(
        url,
        dir,
        Quota {
            max_item_bytes: 1 << 20,
            max_total_bytes: Some(limit),
        },
    )
    .await
    .unwrap();
    let shares = (0..12).map(|i| {
        let tight = tight.clone();
        async move { tight.put(&with_results(&format!("p{i:02}"), 20)).await }
    });
    let outcomes = futures::future::join_all(shares).await;
    let stored = outcomes.iter().filter(|r| r.is_ok()).count();
    for r in &outcomes {
        if let Err(e) = r {
            assert!(matches!(e, StoreError::QuotaReached { .. }), "{e}");
        }
    }
    let (used, _) = tight.usage().await.unwrap();
    assert_eq!(stored, 3, "{outcomes:?}");
    assert!(used <= limit, "{used} > {limit}");
}

#[tokio::test]
async fn sqlite_quota_holds_under_concurrent_shares() {
    let dir = temp_dir("concurrent");
    let store = Store::open(None, &dir, Quota::default()).await.unwrap();
    quota_holds_under_concurrent_shares(&store, None, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// On a database of its own, so that other tests' shares do not move the total.
#[tokio::test]
async fn postgres_quota_holds_under_concurrent_shares() {
    let Ok(url) = std::env::var("TOKENLENS_TEST_POSTGRES") else {
        eprintln!("TOKENLENS_TEST_POSTGRES not set: PostgreSQL not tested here");
        return;
    };
    let admin = Store::open(Some(&url), Path::new("."), Quota::default())
        .await
        .unwrap();
    let name = format!("quota_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&admin.pool)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin.pool)
        .await
        .unwrap();
    let own = format!("{}/{name}", url.rsplit_once('/').unwrap().0);
    let store = Store::open(Some(&own), Path::new("."), Quota::default())
        .await
        .unwrap();
    quota_holds_under_concurrent_shares(&store, Some(&own), Path::new(".")).await;
}

/// A view shared before results and views were stored apart (one row holding the whole
/// snapshot) still opens under its id.
#[tokio::test]
async fn views_stored_whole_by_the_earlier_format_open() {
    let dir = temp_dir("legacy");
    let store = Store::open(None, &dir, Quota::default()).await.unwrap();
    let body = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/permalinks/KcDZ9592xAFR.json"),
    )
    .unwrap();
    sqlx::query(
        "INSERT INTO permalinks (id, model, body, bytes, created_at) VALUES ($1, 'm', $2, $3, 0)",
    )
    .bind("KcDZ9592xAFR")
    .bind(&body)
    .bind(body.len() as i64)
    .execute(&store.pool)
    .await
    .unwrap();
    assert!(store.contains("KcDZ9592xAFR").await.unwrap());
    let shown = store.get("KcDZ9592xAFR").await.unwrap().expect("found");
    assert_eq!(shown, serde_json::from_str::<Snapshot>(&body).unwrap());
    // Shared again, it is stored the new way, under a new id, and opens the same.
    let id = store.put(&shown).await.unwrap();
    assert_ne!(id, "KcDZ9592xAFR");
    assert_eq!(store.get(&id).await.unwrap(), Some(shown));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A permalink stored by the 2026-12-04 format (taken from a browser test's SQLite store,
/// with that store's seal key) still opens: it parses, its seals verify and it replays.
/// And a view stored before a field existed takes that field's default.
#[test]
fn permalinks_of_earlier_formats_open() {
    use crate::record::seal::SealKey;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/permalinks");
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
