//! A finished job as the server streamed it, sealed by the server.
//!
//! A permalink shows results without recomputing them, so it must not show results the
//! server never computed. The server seals each job's stream: an HMAC (keyed by a secret
//! only the servers know) over the model, the request and every content event line exactly
//! as sent, appended as one last [`Control::Sealed`] line before `done`. The page keeps
//! the lines and the seal as a [`Record`]; sharing hands the records back, and the server
//! stores them only if every seal checks out. What a permalink shows is replayed from them.

use serde::{Deserialize, Serialize};
use tokenlens::{ExplainRequest, GenerateRequest, StepsRequest, StreamEvent};

/// What a job asks of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "request", rename_all = "snake_case")]
pub enum Task {
    /// Explain one token.
    Explain(ExplainRequest),
    /// Generate an answer.
    Generate(GenerateRequest),
    /// Explain every generated token.
    Steps(StepsRequest),
    /// A neuron's or head's card.
    Unit(tokenlens::UnitRequest),
    /// A neuron's top-activating corpus contexts.
    Contexts(tokenlens::ContextsRequest),
}

impl Task {
    /// Its name in logs.
    pub fn name(&self) -> &'static str {
        match self {
            Task::Explain(_) => "explain",
            Task::Generate(_) => "generate",
            Task::Steps(_) => "steps",
            Task::Unit(_) => "unit",
            Task::Contexts(_) => "contexts",
        }
    }

    /// The prompt it runs on.
    pub fn prompt(&self) -> &str {
        match self {
            Task::Explain(r) => &r.prompt,
            Task::Generate(r) => &r.prompt,
            Task::Steps(r) => &r.prompt,
            Task::Unit(r) => &r.prompt,
            Task::Contexts(_) => "",
        }
    }

    /// The text the server reads: the prompt, and a given answer after it.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Task::Generate(GenerateRequest {
                prompt,
                answer: Some(answer),
                ..
            }) => format!("{prompt}{answer}").into(),
            t => t.prompt().into(),
        }
    }

    /// Checks its settings' ranges before it is queued (the engine checks what needs the
    /// model, such as top-k against the vocabulary).
    pub fn check(&self) -> Result<(), String> {
        match self {
            Task::Explain(r) => r.check(),
            Task::Generate(r) => r.check(usize::MAX),
            Task::Steps(r) => r.check(),
            Task::Unit(r) => r.check(),
            Task::Contexts(_) => Ok(()),
        }
    }
}

/// Stream lines that are not engine events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    /// The job finished: the model that ran it and the seal over its request and events.
    Sealed {
        /// The model's name (a request may leave it empty for the default).
        model: String,
        /// URL-safe base64 of the HMAC-SHA256.
        seal: String,
    },
}

/// Whether an event is part of a job's result (what a record keeps and the seal covers):
/// progress, `done` and errors are not, nor the other candidates' explanations (what makes
/// picking one instant; picking one then runs, and seals, its own request), which would make
/// a stored view ten times larger.
pub fn is_content(ev: &StreamEvent) -> bool {
    !matches!(
        ev,
        StreamEvent::Stage { .. }
            | StreamEvent::Candidate { .. }
            | StreamEvent::Progress { .. }
            | StreamEvent::Queued { .. }
            | StreamEvent::Done
            | StreamEvent::Error { .. }
    )
}

/// A finished job: the model, the request, its content events as sent, and the seal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The model that ran it.
    pub model: String,
    /// What was asked.
    pub task: Task,
    /// Its content events, one JSON line each, byte for byte as the server sent them.
    pub events: Vec<String>,
    /// The server's seal over model, task and events.
    pub seal: String,
}

impl Record {
    /// The events, parsed.
    pub fn parsed(&self) -> impl Iterator<Item = Result<StreamEvent, String>> + '_ {
        self.events.iter().map(|line| {
            serde_json::from_str(line).map_err(|e| format!("a stored event does not parse: {e}"))
        })
    }
}

/// The lines of one stream as the page reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript {
    /// Content event lines, as received.
    pub events: Vec<String>,
    /// The closing seal: model and seal.
    pub sealed: Option<(String, String)>,
}

impl Transcript {
    /// The record of a sealed stream (None if it ended unsealed: cancelled or failed).
    pub fn into_record(self, task: Task) -> Option<Record> {
        let (model, seal) = self.sealed?;
        Some(Record {
            model,
            task,
            events: self.events,
            seal,
        })
    }
}

/// Sealing (server only: the key never leaves it).
#[cfg(feature = "ssr")]
pub mod seal {
    use super::{Record, Task};
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};

    type HmacSha256 = hmac::Hmac<sha2::Sha256>;

    /// The servers' shared secret.
    #[derive(Clone)]
    pub struct SealKey(Vec<u8>);

    impl std::fmt::Debug for SealKey {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("SealKey(…)")
        }
    }

    /// A seal being computed over a stream.
    pub struct Sealing(HmacSha256);

    impl SealKey {
        /// A key from secret bytes (at least 32).
        pub fn new(secret: Vec<u8>) -> Result<Self, String> {
            if secret.len() < 32 {
                return Err(format!(
                    "a seal key needs at least 32 bytes, not {}",
                    secret.len()
                ));
            }
            Ok(SealKey(secret))
        }

        /// Starts the seal of a job of `task` on `model`.
        pub fn start(&self, model: &str, task: &Task) -> Sealing {
            // Infallible: HMAC takes keys of any length.
            let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0)
                .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
            mac.update(b"tokenlens-seal-v1\n");
            // JSON strings and objects hold no raw newline, so newlines frame the parts.
            for part in [
                serde_json::to_string(model).unwrap_or_default(),
                serde_json::to_string(task).unwrap_or_default(),
            ] {
                mac.update(part.as_bytes());
                mac.update(b"\n");
            }
            Sealing(mac)
        }

        /// Whether `record`'s seal is this key's.
        pub fn verify(&self, record: &Record) -> bool {
            let Ok(seal) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&record.seal)
            else {
                return false;
            };
            let mut s = self.start(&record.model, &record.task);
            for line in &record.events {
                s.add(line);
            }
            s.0.verify_slice(&seal).is_ok()
        }
    }

    impl Sealing {
        /// Adds one content event line (without its newline).
        pub fn add(&mut self, line: &str) {
            self.0.update(line.as_bytes());
            self.0.update(b"\n");
        }

        /// The seal.
        pub fn finish(self) -> String {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0.finalize().into_bytes())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use tokenlens::GenerateRequest;

        fn record(key: &SealKey, events: &[&str]) -> Record {
            let task = Task::Generate(GenerateRequest::new("hi"));
            let mut s = key.start("m", &task);
            for e in events {
                s.add(e);
            }
            Record {
                model: "m".into(),
                task,
                events: events.iter().map(|e| e.to_string()).collect(),
                seal: s.finish(),
            }
        }

        #[test]
        fn a_seal_covers_model_task_and_every_event() {
            let key = SealKey::new(vec![7; 32]).unwrap();
            let r = record(&key, &[r#"{"type":"finished","stop":"end_of_turn"}"#]);
            assert!(key.verify(&r));
            // Another key, or any change to what the seal covers, fails.
            assert!(!SealKey::new(vec![8; 32]).unwrap().verify(&r));
            let changed = |f: &dyn Fn(&mut Record)| {
                let mut x = r.clone();
                f(&mut x);
                key.verify(&x)
            };
            assert!(!changed(&|x| x.model = "n".into()));
            assert!(!changed(
                &|x| x.task = Task::Generate(GenerateRequest::new("ho"))
            ));
            assert!(!changed(
                &|x| x.events[0] = x.events[0].replace("end_of", "max_")
            ));
            assert!(!changed(&|x| x.events.push("{}".into())));
            // Lines cannot be re-split to the same bytes.
            assert!(!changed(&|x| {
                x.events = vec![
                    r#"{"type":"finished","#.into(),
                    r#""stop":"end_of_turn"}"#.into(),
                ]
            }));
            assert!(!changed(&|x| x.seal = "AAAA".into()));
            assert!(!changed(&|x| x.seal = "not base64!".into()));
            assert!(SealKey::new(vec![1; 16]).is_err());
        }
    }
}
