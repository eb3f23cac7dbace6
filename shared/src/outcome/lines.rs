//! [`Publish`] as JSON lines: each event's [`Outcome::envelope`] on a line of its own, appended to
//! a file or written to standard output (`capguard serve --events`).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use futures::future::BoxFuture;

use super::{Outcome, Publish, PublishError, Unpublished};

pub struct JsonLines {
    out: Mutex<Box<dyn Write + Send>>,
}

impl JsonLines {
    /// Appends to `path`, creating it.
    pub fn append_to(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self::to(Box::new(file)))
    }

    pub fn stdout() -> Self {
        Self::to(Box::new(std::io::stdout()))
    }

    pub fn to(out: Box<dyn Write + Send>) -> Self {
        Self { out: Mutex::new(out) }
    }
}

impl Publish for JsonLines {
    fn publish<'a>(&'a self, batch: &'a [Outcome]) -> BoxFuture<'a, Result<(), Unpublished>> {
        let mut text = String::new();
        for outcome in batch {
            text.push_str(&outcome.envelope().to_string());
            text.push('\n');
        }
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        // A line is written whole or the batch is kept: a partial write leaves a line that the
        // next flush writes again after a broken one, which a reader of JSON lines skips.
        let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        Box::pin(async move {
            written.map_err(|e| Unpublished { left: batch.to_vec(), error: PublishError(e.to_string()) })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{OutcomeKind, Outcomes};
    use crate::usecase::Tally;
    use chrono::DateTime;

    #[tokio::test]
    async fn each_event_is_one_json_line_appended_to_the_file() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "earlier\n").unwrap();
        let outcomes = Outcomes::publishing(std::sync::Arc::new(JsonLines::append_to(file.path()).unwrap()));
        let at = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        outcomes.emit(Outcome::opted_out("447400100127", at));
        outcomes.emit(
            Outcome::of_hold(OutcomeKind::SendsHeld, &crate::domain::hold::HoldKey::sender("1065"), at)
                .with_code(131042),
        );
        let mut tally = Tally::default();
        outcomes.flush(&mut tally).await;
        assert_eq!(tally.get("outcome_events"), 2);
        let text = std::fs::read_to_string(file.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "earlier", "appended, not overwritten");
        let held: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(held["detail-type"], "Sends Held");
        assert_eq!(held["detail"]["code"], 131042);
        assert_eq!(held["detail"]["phone_number_id"], "1065");
        assert_eq!(lines.len(), 3);
    }
}
