//! Properties of the upgrade head and token parsers on hostile input.

use proptest::prelude::*;

use super::*;
use crate::realtime::socket::admission::token;

fn head(subprotocol: &[u8]) -> Option<Head> {
    let mut bytes =
        b"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: "
            .to_vec();
    bytes.extend_from_slice(subprotocol);
    bytes.extend_from_slice(b"\r\n\r\n");
    parse_head(&bytes)
}

proptest! {
    /// Any bytes where a request head is expected: a head or nothing, never a panic.
    #[test]
    fn arbitrary_bytes_never_make_a_head_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_head(&bytes);
    }

    /// The token in `?token=` or the `authToken` subprotocol: whatever is sent, the token found
    /// is one the client sent (or none), never longer than what came.
    #[test]
    fn any_token_parameter_or_subprotocol_gives_a_token_or_none(
        query in ".{0,300}", subprotocol in prop::collection::vec(any::<u8>(), 0..300)
    ) {
        let params = HashMap::from([("token".to_owned(), query.clone())]);
        if let Some(head) = head(&subprotocol) {
            let found = token(&head, &params);
            if !query.is_empty() {
                prop_assert_eq!(found, Some(query));
            } else if let Some(found) = found {
                prop_assert!(found.len() <= subprotocol.len());
            }
        }
    }

    /// The subprotocol's base64 part, well formed or not.
    #[test]
    fn any_base64_bearer_subprotocol_is_decoded_or_ignored(encoded in "[A-Za-z0-9+/=_-]{0,200}") {
        let subprotocol = format!("phoenix, base64url.bearer.phx.{encoded}");
        let head = head(subprotocol.as_bytes()).expect("a well-formed head");
        let _ = token(&head, &HashMap::new());
    }
}
