//! The job envelope parser: any bytes either parse or are refused with a `ParseError`, never a panic; what
//! parses survives the wire (parse → serialise → parse gives the same envelope), and so do the envelopes a
//! worker derives from it (a retry, an outage hand-back).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mediafleet_proto::Envelope;

fn round_trip(env: &Envelope, what: &str) {
    let bytes = env.to_bytes();
    let back = Envelope::parse(&bytes).unwrap_or_else(|e| {
        panic!(
            "{what}: a serialised envelope does not parse: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(
        &back,
        env,
        "{what}: parse → serialise → parse changed the envelope\n{}",
        String::from_utf8_lossy(&bytes)
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(env) = Envelope::parse(data) else {
        return;
    };
    // The typed job and the outage fields are read from untrusted JSON too.
    let job = env.job();
    let _ = env.outage_since();
    let retries = env.outage_retries();
    round_trip(&env, "parsed");

    let next = env.next_attempt();
    assert_eq!(next.attempt, env.attempt.saturating_add(1));
    assert_eq!(next.outage_retries(), 0);
    round_trip(&next, "next_attempt");

    let since = "2026-12-02T07:00:00Z"
        .parse()
        .expect("a fixed RFC 3339 time");
    let waiting = env.waiting_out_outage(since);
    assert_eq!(waiting.outage_retries(), retries.saturating_add(1));
    assert_eq!(waiting.outage_since(), Some(since));
    round_trip(&waiting, "waiting_out_outage");

    // A typed job built back into an envelope carries the same job.
    if let Ok(job) = job {
        let rebuilt = Envelope::new(env.media_id, &job);
        assert_eq!(rebuilt.job().as_ref(), Ok(&job), "Envelope::new → job()");
    }
});
