//! The server's command line and the settings it resolves to (the demo defaults applied).

use app::ssr::Limits;
use app::store::Quota;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Serve the TokenLens viewer.
#[derive(Parser, Debug)]
#[command(name = "tokenlens-server", version, about)]
pub struct Args {
    /// Models to offer (alias, .gguf file or Hugging Face directory); repeat for several.
    /// The first is the default.
    #[arg(short, long = "model", default_value = tokenlens::source::DEFAULT_MODEL)]
    pub models: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000", env = "TOKENLENS_ADDR")]
    pub addr: SocketAddr,
    /// Directory with the built front end (pkg/, style.css), as `scripts/build-web.sh` makes it.
    #[arg(long, default_value = "target/site", env = "TOKENLENS_SITE")]
    pub site_root: PathBuf,
    /// Requests that may wait for the model worker before new ones are refused as busy.
    #[arg(long, default_value_t = 8)]
    pub queue: usize,
    /// Refuse prompts longer than this many tokens. Default: each model's context length, or
    /// on the CPU the longest prompt whose explanation fits in the memory available once it
    /// is loaded (attention's backward pass needs the square of the prompt per head).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", env = "TOKENLENS_DEVICE")]
    pub device: String,
    /// Weights and activations: f32 (exact gradients), bf16 or f16.
    #[arg(long, default_value = "f32", env = "TOKENLENS_DTYPE")]
    pub dtype: String,
    /// Memory all models' weights may take together (e.g. 16G). Each model is loaded dense
    /// while that fits in what is left (and in half the machine), with its weights as its file
    /// stores them (GGUF quantized blocks, bf16/f16 safetensors) and converted one matrix at a
    /// time otherwise, and skipped, with the reason
    /// in the model list, when even that does not fit. Default: the memory available at start
    /// less an eighth and 1 GiB.
    #[arg(long, env = "TOKENLENS_MAX_MEMORY")]
    pub max_memory: Option<String>,
    /// Where permalinks are stored (SQLite) when no database URL is given
    /// [default: $XDG_DATA_HOME/tokenlens or ~/.local/share/tokenlens].
    #[arg(long, env = "TOKENLENS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL (postgres://…) or SQLite (sqlite://…) database for permalinks, shared by
    /// every server instance behind one load balancer.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Hosted-demo mode: the limits below take demo defaults unless given (prompt 2000
    /// characters and 1024 tokens, answers 128 tokens, 20000 token-passes and 60 s per
    /// request, 2 requests running or waiting and 30 a minute per client, 1024 MB of
    /// permalinks).
    #[arg(long)]
    pub demo: bool,
    /// Refuse prompts longer than this many characters.
    #[arg(long)]
    pub max_prompt_chars: Option<usize>,
    /// Refuse answers (and all-steps matrices) longer than this many tokens.
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Refuse requests that would take more than this many token-passes (prompt tokens ×
    /// backward passes × steps; a generation counts its prompt and answer tokens) before
    /// queueing them.
    #[arg(long)]
    pub max_job_cost: Option<u64>,
    /// Stop a request that has run this many seconds (from when it was queued), with an
    /// error event.
    #[arg(long)]
    pub max_job_seconds: Option<u64>,
    /// Requests one client may have running or waiting at once; more get 429 with
    /// Retry-After.
    #[arg(long)]
    pub max_jobs_per_client: Option<usize>,
    /// Model requests and shares allowed per client per minute.
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// Megabytes all permalinks together may take; sharing stops with a message when full
    /// (existing links keep working) [default: 4096, or 1024 with --demo].
    #[arg(long)]
    pub share_quota_mb: Option<f64>,
    /// Shares allowed per client per minute, in every mode (0: no limit).
    #[arg(long, default_value_t = app::rate_limit::DEFAULT_SHARES_PER_MINUTE)]
    pub shares_per_minute: u32,
    /// Largest single shared view, in megabytes.
    #[arg(long, default_value_t = 32.0)]
    pub share_max_mb: f64,
    /// Identify clients by the right-most X-Forwarded-For address, the one the proxy
    /// appended (only behind a trusted proxy); IPv6 clients count per /64.
    #[arg(long)]
    pub trust_forwarded_for: bool,
    /// Connections open at once; past it, new ones wait in the kernel's backlog until one
    /// closes.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a connection has to send a request's headers before it is closed.
    #[arg(long, default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds without a byte in or out after which a connection is closed (a request under
    /// way finishes first).
    #[arg(long, default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Log lines as text, or as one JSON object per line (for log shippers); `RUST_LOG`
    /// sets the level (default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "TOKENLENS_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Args {
    /// The accept loop's limits.
    pub fn edge_limits(&self) -> crate::serve::EdgeLimits {
        crate::serve::EdgeLimits {
            max_connections: self.max_connections,
            header_timeout: std::time::Duration::from_secs(self.header_timeout_secs.max(1)),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs.max(1)),
        }
    }
}

/// What the flags and the demo defaults come to.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Limits on one request's prompt and answer.
    pub limits: Limits,
    /// Model requests and shares per client per minute (None: no limit).
    pub rate_per_minute: Option<u32>,
    /// Permalink storage limits.
    pub quota: Quota,
    /// Shares per client per minute (None: no limit).
    pub shares_per_minute: Option<u32>,
    /// Prompt tokens (None: each model's own limit).
    pub max_tokens: Option<usize>,
    /// Where SQLite permalinks live when no database URL is given.
    pub data_dir: PathBuf,
}

impl Args {
    /// The settings: each limit as given, else its demo default under `--demo`.
    pub fn settings(&self) -> Settings {
        let demo = |v: u64| self.demo.then_some(v);
        Settings {
            limits: Limits {
                max_prompt_chars: self.max_prompt_chars.or(demo(2000).map(|v| v as usize)),
                max_new_tokens: self.max_new_tokens.or(demo(128).map(|v| v as usize)),
                max_job_cost: self.max_job_cost.or(demo(20_000)),
                max_job_seconds: self.max_job_seconds.or(demo(60)),
                max_jobs_per_client: self.max_jobs_per_client.or(demo(2).map(|v| v as usize)),
            },
            rate_per_minute: self.rate_limit.or(demo(30).map(|v| v as u32)),
            quota: Quota {
                max_item_bytes: megabytes(self.share_max_mb),
                max_total_bytes: Some(megabytes(self.share_quota_mb.unwrap_or(if self.demo {
                    1024.0
                } else {
                    4096.0
                }))),
            },
            shares_per_minute: (self.shares_per_minute > 0).then_some(self.shares_per_minute),
            max_tokens: self.max_tokens.or(demo(1024).map(|v| v as usize)),
            data_dir: self.data_dir(),
        }
    }

    fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("tokenlens")
    }
}

fn megabytes(mb: f64) -> u64 {
    (mb.max(0.0) * 1048576.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_defaults_apply_only_where_no_flag_is_given() {
        let s = Args::parse_from(["tokenlens-server", "--demo", "--rate-limit", "5"]).settings();
        assert_eq!(s.limits.max_prompt_chars, Some(2000));
        assert_eq!(s.limits.max_new_tokens, Some(128));
        assert_eq!(s.rate_per_minute, Some(5));
        assert_eq!(s.quota.max_total_bytes, Some(1024 << 20));
        assert_eq!(s.max_tokens, Some(1024));
        assert_eq!(s.limits.max_job_cost, Some(20_000));
        assert_eq!(s.limits.max_job_seconds, Some(60));
        assert_eq!(s.limits.max_jobs_per_client, Some(2));
        let s = Args::parse_from(["tokenlens-server"]).settings();
        assert_eq!((s.rate_per_minute, s.max_tokens), (None, None));
        assert_eq!(s.quota.max_item_bytes, 32 << 20);
        // Storage is bounded in every mode.
        assert_eq!(s.quota.max_total_bytes, Some(4096 << 20));
        assert_eq!(s.shares_per_minute, Some(10));
        let s = Args::parse_from(["tokenlens-server", "--shares-per-minute", "0"]).settings();
        assert_eq!(s.shares_per_minute, None);
    }
}
