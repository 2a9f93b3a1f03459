//! Retry timing: jittered exponential backoff and the `Retry-After` header.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::header::HeaderMap;

/// Backoff before retry number `retry` (0 for the first retry): the base
/// delay doubled per retry, capped at `max`, then drawn uniformly from its
/// upper half so that clients that failed together do not retry together.
pub(crate) fn backoff_delay(retry: u32, base: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(retry.min(16));
    let ceiling = base.saturating_mul(factor).min(max);
    let floor = ceiling / 2;
    if ceiling <= floor {
        return ceiling;
    }
    rand::rng().random_range(floor..=ceiling)
}

/// Reads the wait the server requests: `retry-after-ms` (sent by OpenAI)
/// or `Retry-After` as seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    if let Some(millis) =
        header_text(headers, "retry-after-ms").and_then(|text| text.parse::<f64>().ok())
    {
        return Duration::try_from_secs_f64(millis / 1000.0).ok();
    }
    parse_retry_after(header_text(headers, "retry-after")?, now)
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// Parses a `Retry-After` value (RFC 9110, section 10.2.3): a number of
/// seconds, or an IMF-fixdate such as `Wed, 21 Oct 2015 07:28:00 GMT`.
/// A date in the past means no wait.
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    // NOTE: the obsolete RFC 850 and asctime date forms are not recognised.
    let date = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((date - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2015-10-21T07:27:50Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after("7", now()), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0", now()), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now()),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn retry_after_http_date() {
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now()),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_invalid_values() {
        assert_eq!(parse_retry_after("soon", now()), None);
        assert_eq!(parse_retry_after("-3", now()), None);
    }

    #[test]
    fn retry_after_ms_header_preferred() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("5"));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));

        assert_eq!(
            retry_after(&headers, now()),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn backoff_doubles_within_jitter_bounds() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);

        for _ in 0..50 {
            let first = backoff_delay(0, base, max);
            let third = backoff_delay(2, base, max);
            let capped = backoff_delay(30, base, max);
            assert!(
                (Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first),
                "{first:?}"
            );
            assert!(
                (Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third),
                "{third:?}"
            );
            assert!(
                (Duration::from_millis(500)..=max).contains(&capped),
                "{capped:?}"
            );
        }
    }
}
