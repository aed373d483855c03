//! The client's reader for the stream server functions' newline-delimited events.

use leptos::prelude::*;
use leptos::server_fn::codec::TextStream;
use tokenlens::StreamEvent;

use crate::record::{is_content, Control, Transcript};

/// How reading a stream ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `done` arrived.
    Done,
    /// `current()` turned false: the run was cancelled or replaced.
    Superseded,
    /// An error event, a transport error or a malformed line.
    Failed(String),
}

/// Reads newline-delimited events from a stream server function's response, handing each
/// to `on_event`, until `done`, an error, or `current()` turns false (dropping the stream
/// then ends the request on the server). Returns how it ended and what it read: the
/// content event lines and the seal, from which a sealed stream becomes a record.
pub async fn read_events(
    response: Result<TextStream, ServerFnError>,
    current: impl Fn() -> bool,
    mut on_event: impl FnMut(StreamEvent),
) -> (Outcome, Transcript) {
    use futures::StreamExt;
    let mut transcript = Transcript::default();
    let mut stream = match response {
        Ok(s) => s.into_inner(),
        Err(e) => return (Outcome::Failed(e.to_string()), transcript),
    };
    let mut buf = String::new();
    while let Some(chunk) = stream.next().await {
        if !current() {
            return (Outcome::Superseded, transcript);
        }
        match chunk {
            Ok(text) => buf.push_str(&text),
            Err(e) => return (Outcome::Failed(e.to_string()), transcript),
        }
        // Chunks may hold several lines or part of one.
        while let Some(pos) = buf.find('\n') {
            let line: String = buf.drain(..=pos).collect();
            let line = line.trim_end();
            let ev = match serde_json::from_str::<StreamEvent>(line) {
                Ok(ev) => ev,
                Err(e) => match serde_json::from_str::<Control>(line) {
                    Ok(Control::Sealed { model, seal }) => {
                        transcript.sealed = Some((model, seal));
                        continue;
                    }
                    Err(_) => {
                        let msg = format!("malformed event from the server: {e}");
                        return (Outcome::Failed(msg), transcript);
                    }
                },
            };
            match ev {
                StreamEvent::Done => return (Outcome::Done, transcript),
                StreamEvent::Error { message } => return (Outcome::Failed(message), transcript),
                ev => {
                    if is_content(&ev) {
                        transcript.events.push(line.to_string());
                    }
                    on_event(ev)
                }
            }
        }
    }
    let msg = "the connection closed before the result was complete".to_string();
    (Outcome::Failed(msg), transcript)
}
