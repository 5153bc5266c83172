//! What every backend's dead-letter operations share: reading a dead body as an operator sees it, its stable
//! id, the body a redrive publishes, and the choice of which messages a redrive takes.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use mediafleet_proto::Envelope;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::DeadLetter;

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Redriven {
    /// Ids moved back to the work queue, in the order they were moved.
    pub moved: Vec<String>,
    /// Ids asked for that the DLQ does not hold (already redriven or purged, or never there).
    pub skipped: Vec<String>,
    /// Further copies of a moved id found in the same call, removed from the DLQ without being published
    /// again.
    pub duplicates: u64,
}

/// The stable id of a dead body: the envelope's `job_id` when it is an envelope, else `sha256-` and the first
/// 128 bits of the body's SHA-256 in hex.
pub fn dead_letter_id(body: &[u8]) -> String {
    match Envelope::parse(body) {
        Ok(env) => env.job_id.to_string(),
        Err(_) => hashed(body),
    }
}

fn hashed(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("sha256-{}", hex::encode(&digest[..16]))
}

impl DeadLetter {
    /// A dead letter from its raw body, the reason the backend kept and when it was dead-lettered.
    pub fn from_body(body: &[u8], reason: String, at: Option<DateTime<Utc>>) -> DeadLetter {
        let env = Envelope::parse(body).ok();
        DeadLetter {
            id: env
                .as_ref()
                .map_or_else(|| hashed(body), |e| e.job_id.to_string()),
            media_id: env.as_ref().map(|e| e.media_id.to_string()),
            kind: env.as_ref().map(|e| e.kind.clone()),
            attempts: env.as_ref().map_or(0, |e| e.attempt),
            reason,
            dead_lettered_at: at,
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }
}

/// The body a redrive publishes: an envelope with a full retry budget ([`Envelope::redriven`]), or the body
/// unchanged when it is not an envelope.
pub(crate) fn redrive_body(body: &[u8]) -> Vec<u8> {
    match Envelope::parse(body) {
        Ok(env) => env.redriven().to_bytes(),
        Err(_) => body.to_vec(),
    }
}

/// What a redrive does with one dead letter it met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Publish it to the work queue, then remove it from the DLQ.
    Move,
    /// Another copy of an id already moved in this call: remove it.
    Duplicate,
    /// Not asked for: leave it in the DLQ.
    Keep,
}

/// Chooses the messages of one redrive call as a backend meets them, and keeps the tally.
pub(crate) struct Picker {
    /// The ids asked for, in the caller's order; `None`: any.
    wanted: Option<Vec<String>>,
    limit: usize,
    moved: Vec<String>,
    moved_set: HashSet<String>,
    duplicates: u64,
}

impl Picker {
    pub(crate) fn new(ids: Option<&[String]>, limit: usize) -> Picker {
        Picker {
            wanted: ids.map(|ids| {
                let mut seen = HashSet::new();
                ids.iter().filter(|i| seen.insert(*i)).cloned().collect()
            }),
            limit,
            moved: Vec::new(),
            moved_set: HashSet::new(),
            duplicates: 0,
        }
    }

    /// The decision for a dead letter with this id. A `Move` is counted at once: a backend that fails to move
    /// it returns the error, and the tally is dropped with it.
    pub(crate) fn pick(&mut self, id: &str) -> Pick {
        if self.moved_set.contains(id) {
            self.duplicates += 1;
            return Pick::Duplicate;
        }
        let asked = match &self.wanted {
            Some(w) => w.iter().any(|x| x == id),
            None => true,
        };
        if !asked || self.moved.len() >= self.limit {
            return Pick::Keep;
        }
        self.moved.push(id.to_owned());
        self.moved_set.insert(id.to_owned());
        Pick::Move
    }

    /// Undoes `pick` for `id`: the backend found the message gone (another redrive or a purge took it first).
    pub(crate) fn lost(&mut self, pick: Pick, id: &str) {
        match pick {
            Pick::Move => {
                self.moved.retain(|m| m != id);
                self.moved_set.remove(id);
            }
            Pick::Duplicate => self.duplicates = self.duplicates.saturating_sub(1),
            Pick::Keep => {}
        }
    }

    /// Whether a backend that has to look at messages one by one should go on: until the limit is reached
    /// without ids, and through the whole DLQ with ids (so copies of a moved id are collapsed and an id
    /// that is not there is known to be absent).
    pub(crate) fn scan_on(&self) -> bool {
        match &self.wanted {
            None => self.moved.len() < self.limit,
            Some(_) => true,
        }
    }

    /// The tally: moved ids, and the ids asked for that were not found.
    pub(crate) fn finish(self) -> Redriven {
        let skipped = match self.wanted {
            Some(w) => w
                .into_iter()
                .filter(|id| !self.moved_set.contains(id))
                .collect(),
            None => Vec::new(),
        };
        Redriven {
            moved: self.moved,
            skipped,
            duplicates: self.duplicates,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediafleet_proto::envelope::CacheWarm;
    use mediafleet_proto::Job;

    #[test]
    fn ids_are_the_job_id_or_a_hash_of_the_body() {
        let env = Envelope::new(
            uuid::Uuid::now_v7(),
            &Job::CacheWarm(CacheWarm { version: 1 }),
        );
        let dl = DeadLetter::from_body(&env.to_bytes(), "r".into(), None);
        assert_eq!(dl.id, env.job_id.to_string());
        assert_eq!(dl.media_id, Some(env.media_id.to_string()));
        assert_eq!((dl.kind.as_deref(), dl.attempts), (Some("cache.warm"), 1));
        let junk = DeadLetter::from_body(b"{nope", "bad".into(), None);
        assert!(
            junk.id.starts_with("sha256-") && junk.id.len() == 39,
            "{}",
            junk.id
        );
        assert_eq!(junk.id, dead_letter_id(b"{nope"));
        assert_ne!(junk.id, dead_letter_id(b"{nope!"));
        assert_eq!((junk.media_id, junk.kind, junk.attempts), (None, None, 0));
        assert_eq!(redrive_body(b"{nope"), b"{nope");
    }

    #[test]
    fn the_picker_moves_each_id_once_and_reports_the_missing() {
        let ids = [
            "a".to_owned(),
            "b".to_owned(),
            "a".to_owned(),
            "z".to_owned(),
        ];
        let mut p = Picker::new(Some(&ids), usize::MAX);
        assert_eq!(p.pick("c"), Pick::Keep);
        assert_eq!(p.pick("a"), Pick::Move);
        assert_eq!(p.pick("a"), Pick::Duplicate);
        assert_eq!(p.pick("b"), Pick::Move);
        assert!(p.scan_on(), "with ids, the whole DLQ is looked at");
        let r = p.finish();
        assert_eq!(r.moved, ["a", "b"]);
        assert_eq!(r.skipped, ["z"]);
        assert_eq!(r.duplicates, 1);

        let mut p = Picker::new(None, 2);
        assert_eq!(p.pick("a"), Pick::Move);
        assert_eq!(p.pick("b"), Pick::Move);
        assert!(!p.scan_on(), "the limit is reached");
        assert_eq!(p.pick("c"), Pick::Keep);
        assert_eq!(p.pick("b"), Pick::Duplicate);
    }
}
