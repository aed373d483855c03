//! Shared helpers: the default engine (loaded once), fixtures, comparisons.

use std::path::PathBuf;
use std::sync::OnceLock;
use tokenlens::Engine;

/// The default model, loaded once per test binary. Fails loudly if it was not fetched:
/// `scripts/fetch-models.sh` puts it in the cache.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::load(tokenlens::source::DEFAULT_MODEL).unwrap_or_else(|e| {
            panic!("default model unavailable ({e}); run scripts/fetch-models.sh")
        })
    })
}

/// The engine a fixture names: an alias, or a directory relative to the repo.
pub fn engine_for(model: &str) -> &'static Engine {
    use std::collections::HashMap;
    use std::sync::Mutex;
    if model == tokenlens::source::DEFAULT_MODEL {
        return engine();
    }
    static OTHERS: OnceLock<Mutex<HashMap<String, &'static Engine>>> = OnceLock::new();
    let mut map = OTHERS.get_or_init(Default::default).lock().unwrap();
    map.entry(model.to_string()).or_insert_with(|| {
        let is_alias = tokenlens::source::ALIASES.iter().any(|a| a.name == model);
        let path = root().join(model);
        let spec = if is_alias {
            model.to_string()
        } else if path.join("weights.gguf").is_file() {
            crate::gguf_vocab::complete_gguf(&path)
                .to_string_lossy()
                .into_owned()
        } else {
            path.to_string_lossy().into_owned()
        };
        let e = Engine::load(&spec).unwrap_or_else(|e| {
            panic!("loading {model}: {e} (aliases: run scripts/fetch-models.sh)")
        });
        Box::leak(Box::new(e))
    })
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn default_model_path() -> PathBuf {
    tokenlens::source::cache_dir()
        .join("models")
        .join(tokenlens::source::ALIASES[0].file)
}

/// max |a − b| / max |b|.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

fn ranks(v: &[f32]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (ties get average ranks).
pub fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn spearman_by_hand() {
    assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]) - 1.0).abs() < 1e-12);
    assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    assert_eq!(rel_err(&[1.0, 2.0], &[1.0, 4.0]), 0.5);
}

/// What every reference case names: its fixture, the model and the prompt.
#[derive(serde::Deserialize)]
pub struct Fixture {
    pub fixture: String,
    pub model: String,
    pub prompt: String,
    pub chat_template: bool,
    /// The prompt's token ids as the reference tokenized it.
    pub ids: Vec<u32>,
    /// The token the reference explained.
    pub target: u32,
}

impl Fixture {
    /// A request for the case's prompt, as its reference tokenized it.
    pub fn request(&self) -> tokenlens::ExplainRequest {
        let mut req = tokenlens::ExplainRequest::new(self.prompt.clone());
        req.chat_template = self.chat_template;
        // The references compute in f32.
        req.precision = tokenlens::Precision::F32;
        req
    }
}

/// The cases of the reference document `tests/fixtures/<name>`.
pub fn cases<C: serde::de::DeserializeOwned>(name: &str) -> Vec<C> {
    #[derive(serde::Deserialize)]
    struct Doc<C> {
        cases: Vec<C>,
    }
    let text = std::fs::read_to_string(root().join("tests/fixtures").join(name)).unwrap();
    serde_json::from_str::<Doc<C>>(&text).unwrap().cases
}
