//! `biz_opaque_callback_data`: the tag capguard puts on every send so that a status webhook names
//! the send and attempt it belongs to, even when the wamid is not known yet (a send whose HTTP
//! answer was lost). The format is `send=<send id>;attempt=<n>;try=<k>`; `try` may be absent and
//! then means the attempt's first try.

use std::fmt;

/// The send, attempt and try a message belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallbackTag {
    pub send_id: String,
    pub attempt: u32,
    pub try_no: u32,
}

impl CallbackTag {
    /// Reads a tag capguard wrote; `None` for anything else (another system's data).
    pub fn parse(data: &str) -> Option<Self> {
        let mut send_id = None;
        let mut attempt = None;
        let mut try_no = Some(1);
        for part in data.split(';') {
            match part.split_once('=') {
                Some(("send", id)) if !id.is_empty() => send_id = Some(id.to_owned()),
                Some(("attempt", n)) => attempt = n.parse().ok().filter(|n| *n > 0),
                Some(("try", n)) => try_no = n.parse().ok().filter(|n| *n > 0),
                _ => {}
            }
        }
        Some(Self { send_id: send_id?, attempt: attempt?, try_no: try_no? })
    }
}

impl fmt::Display for CallbackTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "send={};attempt={};try={}", self.send_id, self.attempt, self.try_no)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_round_trips() {
        let tag = CallbackTag { send_id: "01HXAMPLE".into(), attempt: 3, try_no: 2 };
        assert_eq!(CallbackTag::parse(&tag.to_string()), Some(tag));
    }

    #[test]
    fn a_tag_without_a_try_is_the_first_try() {
        let tag = CallbackTag::parse("send=01HXAMPLE;attempt=2").unwrap();
        assert_eq!((tag.attempt, tag.try_no), (2, 1));
    }

    #[test]
    fn foreign_data_is_not_a_tag() {
        assert_eq!(CallbackTag::parse("campaign=spring24;attempt=2"), None);
        assert_eq!(CallbackTag::parse("send=abc;attempt=0"), None);
        assert_eq!(CallbackTag::parse("send=abc;attempt=two"), None);
        assert_eq!(CallbackTag::parse("send=abc;attempt=1;try=0"), None);
        assert_eq!(CallbackTag::parse(""), None);
    }
}
