//! The GET verification handshake Meta makes when a callback URL or verify token is set.
//!
//! `GET /webhook?hub.mode=subscribe&hub.verify_token=<ours>&hub.challenge=<random>` is answered with
//! 200 and the bare challenge as plain text; anything else is refused, and Meta then treats the
//! endpoint as unverified.

use subtle::ConstantTimeEq;

/// Why a handshake was refused (answer 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("hub.mode is {0:?}, not \"subscribe\"")]
    WrongMode(Option<String>),
    #[error("hub.verify_token does not match")]
    WrongToken,
    #[error("hub.challenge is missing")]
    MissingChallenge,
}

/// The three `hub.*` query parameters, however they arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandshakeQuery {
    pub mode: Option<String>,
    pub verify_token: Option<String>,
    pub challenge: Option<String>,
}

impl HandshakeQuery {
    /// Reads the parameters from a raw query string (`hub.mode=subscribe&…`), percent-decoded.
    pub fn from_query_string(query: &str) -> Self {
        Self::from_pairs(form_urlencoded::parse(query.trim_start_matches('?').as_bytes()))
    }

    /// Reads the parameters from already-decoded pairs, such as an event's query map.
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut query = Self::default();
        for (key, value) in pairs {
            let slot = match key.as_ref() {
                "hub.mode" => &mut query.mode,
                "hub.verify_token" => &mut query.verify_token,
                "hub.challenge" => &mut query.challenge,
                _ => continue,
            };
            *slot = Some(value.into());
        }
        query
    }

    /// The body to answer with: the bare challenge, if the mode and token are right.
    pub fn answer(self, verify_token: &str) -> Result<String, HandshakeError> {
        if self.mode.as_deref() != Some("subscribe") {
            return Err(HandshakeError::WrongMode(self.mode));
        }
        let given = self.verify_token.unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(verify_token.as_bytes())) || verify_token.is_empty() {
            return Err(HandshakeError::WrongToken);
        }
        self.challenge.ok_or(HandshakeError::MissingChallenge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matching_subscribe_answers_the_bare_challenge() {
        let query = HandshakeQuery::from_query_string(
            "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock",
        );
        assert_eq!(query.answer("meatyhamhock"), Ok("1158201444".to_owned()));
    }

    #[test]
    fn parameters_are_percent_decoded() {
        let query =
            HandshakeQuery::from_query_string("?hub.mode=subscribe&hub.verify_token=a%20b%2Bc&hub.challenge=x%3Dy");
        assert_eq!(query.answer("a b+c"), Ok("x=y".to_owned()));
    }

    #[test]
    fn a_wrong_token_is_refused() {
        let query = HandshakeQuery::from_query_string("hub.mode=subscribe&hub.challenge=1&hub.verify_token=guess");
        assert_eq!(query.answer("secret"), Err(HandshakeError::WrongToken));
    }

    #[test]
    fn a_missing_token_is_refused_even_against_an_empty_configured_one() {
        let query = HandshakeQuery::from_query_string("hub.mode=subscribe&hub.challenge=1");
        assert_eq!(query.clone().answer("secret"), Err(HandshakeError::WrongToken));
        assert_eq!(query.answer(""), Err(HandshakeError::WrongToken));
    }

    #[test]
    fn another_mode_is_refused() {
        let query = HandshakeQuery::from_pairs([
            ("hub.mode", "unsubscribe"),
            ("hub.verify_token", "t"),
            ("hub.challenge", "1"),
        ]);
        assert_eq!(query.answer("t"), Err(HandshakeError::WrongMode(Some("unsubscribe".into()))));
        assert_eq!(HandshakeQuery::default().answer("t"), Err(HandshakeError::WrongMode(None)));
    }

    #[test]
    fn a_missing_challenge_is_refused() {
        let query = HandshakeQuery::from_pairs([("hub.mode", "subscribe"), ("hub.verify_token", "t")]);
        assert_eq!(query.answer("t"), Err(HandshakeError::MissingChallenge));
    }
}
