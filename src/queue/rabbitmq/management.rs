//! The one number AMQP cannot give: unacked (in-flight) messages, from the management HTTP API
//! (`rabbitmq-plugins enable rabbitmq_management`).

use std::time::Duration;

use crate::queue::QueueError;

/// `GET {base}/api/queues/{vhost}/{queue}` → `messages_unacknowledged`.
///
/// Credentials come from the management URL's user info, else from the AMQP URL's.
pub(super) async fn unacked(base: &str, amqp_url: &str, queue: &str) -> Result<u64, QueueError> {
    let (url, user, pass) = queue_url(base, amqp_url, queue)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| QueueError::Config(format!("management client: {e}")))?;
    let resp = client
        .get(url.clone())
        .basic_auth(user, Some(pass))
        .send()
        .await
        .map_err(|e| QueueError::Unavailable(format!("management API {url}: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        let err = format!("management API {url}: HTTP {status}");
        return Err(if status.is_server_error() {
            QueueError::Unavailable(err)
        } else {
            QueueError::Config(err)
        });
    }
    let v: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| QueueError::Backend(format!("management API {url}: {e}")))?;
    // A queue the broker has not sampled yet has no counters: treat as zero.
    Ok(v.get("messages_unacknowledged")
        .and_then(|n| n.as_u64())
        .unwrap_or(0))
}

/// The queue's management URL (user info stripped) and the credentials to send.
fn queue_url(
    base: &str,
    amqp_url: &str,
    queue: &str,
) -> Result<(url::Url, String, String), QueueError> {
    let bad = |what: &str, e: url::ParseError| QueueError::Config(format!("{what}: {e}"));
    let mut url = url::Url::parse(base).map_err(|e| bad("management url", e))?;
    let amqp = url::Url::parse(amqp_url).map_err(|e| bad("amqp url", e))?;
    let decode = |s: &str| percent_decode(s);
    let (user, pass) = if !url.username().is_empty() {
        (decode(url.username()), decode(url.password().unwrap_or("")))
    } else if !amqp.username().is_empty() {
        (
            decode(amqp.username()),
            decode(amqp.password().unwrap_or("")),
        )
    } else {
        ("guest".to_owned(), "guest".to_owned())
    };
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let vhost = match amqp.path().trim_start_matches('/') {
        "" => "/".to_owned(),
        v => decode(v),
    };
    url.path_segments_mut()
        .map_err(|_| QueueError::Config(format!("management url {base} cannot have a path")))?
        .pop_if_empty()
        .extend(["api", "queues", &vhost, queue]);
    Ok((url, user, pass))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::queue_url;

    #[test]
    fn builds_the_queue_url_with_an_encoded_vhost() {
        let (u, user, pass) = queue_url(
            "http://127.0.0.1:15672",
            "amqp://bob:s%40cret@h:5672/%2f",
            "p.image",
        )
        .unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:15672/api/queues/%2F/p.image");
        assert_eq!((user.as_str(), pass.as_str()), ("bob", "s@cret"));
        let (u, user, _) = queue_url("http://admin:x@m:15672/", "amqp://h/prod", "q").unwrap();
        assert_eq!(u.as_str(), "http://m:15672/api/queues/prod/q");
        assert_eq!(user, "admin");
    }
}
