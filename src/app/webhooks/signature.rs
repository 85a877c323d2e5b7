//! The signature of an outbound webhook delivery, as Stripe and Slack sign theirs:
//! `X-Netia-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`
//! (HMAC per RFC 2104 with SHA-256; the key is the subscription's secret as UTF-8 text).
//!
//! A receiver recomputes the HMAC over the timestamp, a dot and the raw body exactly as received,
//! compares it with `v1` in constant time, and refuses a timestamp more than 5 minutes from its
//! clock (a replayed delivery). In Node:
//! `crypto.createHmac("sha256", secret).update(t + "." + rawBody).digest("hex")`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Netia-Signature";
/// The header that carries the delivery id (the same on every retry of one delivery).
pub const DELIVERY_HEADER: &str = "X-Netia-Delivery";
/// How far a receiver should accept a signature's timestamp from its clock, in seconds.
pub const TOLERANCE_SECONDS: i64 = 300;

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length (RFC 2104 §2): this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Netia-Signature` value of `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Whether `header` is a valid signature of `body` under `secret`, made within
/// [`TOLERANCE_SECONDS`] of `now` (unix seconds); the receiver's side of [`sign`], compared in
/// constant time.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = timestamp else { return false };
    now.abs_diff(t) <= TOLERANCE_SECONDS.unsigned_abs()
        && signatures
            .iter()
            .any(|given| mac(secret, t, body).verify_slice(given).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hex_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 (key "Jefe"), with the message written as "<t>.<body>".
        let header = sign("Jefe", 1, b"what do ya want for nothing?");
        let expected = {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
            m.update(b"1.what do ya want for nothing?");
            hex::encode(m.finalize().into_bytes())
        };
        assert_eq!(header, format!("t=1,v1={expected}"));
    }

    #[test]
    fn a_signature_verifies_only_its_body_secret_and_time() {
        let header = sign("whsec_1", 1_000, b"{\"a\":1}");
        assert!(verify("whsec_1", &header, b"{\"a\":1}", 1_000));
        assert!(verify("whsec_1", &header, b"{\"a\":1}", 1_000 + TOLERANCE_SECONDS));
        assert!(!verify("whsec_1", &header, b"{\"a\":1}", 1_000 + TOLERANCE_SECONDS + 1));
        assert!(!verify("whsec_1", &header, b"{\"a\":2}", 1_000));
        assert!(!verify("whsec_2", &header, b"{\"a\":1}", 1_000));
        assert!(!verify("whsec_1", "v1=00", b"{\"a\":1}", 1_000));
        assert!(!verify("whsec_1", "", b"{\"a\":1}", 1_000));
    }
}
