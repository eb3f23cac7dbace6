//! What each WhatsApp error code means for capguard: the one table.
//!
//! capguard decides on `error.code` alone (never the HTTP status, title, href or subcode). Every
//! code on Meta's error-code page (grouped in docs/whatsapp.md#error-codes) has a row here naming its
//! [`FailureClass`], the [`Scope`] it hits and the [`Remedy`]; a code with no row is
//! [`FailureClass::Unknown`]: recorded with its raw code and never retried. 133010 is a recipient that
//! cannot be reached, not a sender problem: it ends that send but never halts a number (the doc says why).

use serde::Serialize;

/// The kind of failure, which decides what capguard does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The per-user marketing limit: the escalating ladder.
    PerUserCap,
    /// The user stopped marketing from this business: suppress until they resume.
    OptOut,
    /// The recipient cannot get the message (not on WhatsApp, holdout, blocked): no retry.
    Unreachable,
    /// Throttles and passing outages: a short, bounded backoff that is not a ladder attempt.
    Transient,
    /// Our request was wrong: a bug to fix, no retry.
    InvalidRequest,
    /// The template is wrong, paused or disabled.
    Template,
    /// The business number or account is broken: halt its sends and raise the alarm.
    Sender,
    /// A code not in the table: recorded with the raw code, no retry.
    Unknown,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerUserCap => "per_user_cap",
            Self::OptOut => "opt_out",
            Self::Unreachable => "unreachable",
            Self::Transient => "transient",
            Self::InvalidRequest => "invalid_request",
            Self::Template => "template",
            Self::Sender => "sender",
            Self::Unknown => "unknown",
        }
    }
}

/// What a failure reaches beyond the one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Message,
    User,
    Template,
    Sender,
}

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    /// Retry on the escalating ladder (marketing only).
    Ladder,
    /// Stop marketing to the recipient until a resume; cancel their pending retries.
    SuppressRecipient,
    /// Retry the same attempt after a short backoff, a bounded number of times.
    BackOff,
    /// Keep the template's sends waiting until the template is usable again.
    HoldTemplate,
    /// Stop every send from the phone number, keep its retries waiting, raise an alarm.
    HaltSender,
    /// Nothing more will be tried for this send.
    GiveUp,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub code: i64,
    pub class: FailureClass,
    pub scope: Scope,
    pub remedy: Remedy,
    pub meaning: &'static str,
}

use FailureClass as C;
use Remedy as R;
use Scope as S;

/// Every documented code (docs/whatsapp.md#error-codes). Codes are unique (a test checks).
const TABLE: &[(i64, FailureClass, Scope, Remedy, &str)] = &[
    (
        131049,
        C::PerUserCap,
        S::User,
        R::Ladder,
        "not delivered to maintain healthy ecosystem engagement (per-user marketing limit)",
    ),
    (1026, C::PerUserCap, S::User, R::Ladder, "On-Premises receiver incapable (the On-Premises per-user limit)"),
    (131050, C::OptOut, S::User, R::SuppressRecipient, "user stopped marketing messages from this business"),
    (498, C::OptOut, S::User, R::SuppressRecipient, "On-Premises: user stopped marketing messages from this business"),
    (
        131026,
        C::Unreachable,
        S::User,
        R::GiveUp,
        "message undeliverable: not on WhatsApp, terms not accepted, or old client",
    ),
    (130472, C::Unreachable, S::User, R::GiveUp, "user is in a marketing experiment holdout"),
    (130497, C::Unreachable, S::User, R::GiveUp, "business is restricted from messaging users in this country"),
    (130403, C::Unreachable, S::User, R::GiveUp, "business blocked this user"),
    (133010, C::Unreachable, S::User, R::GiveUp, "phone number not registered"),
    (131056, C::Transient, S::User, R::BackOff, "pair rate limit: too many messages to this user"),
    (130429, C::Transient, S::Sender, R::BackOff, "throughput limit reached"),
    (131000, C::Transient, S::Message, R::BackOff, "something went wrong"),
    (131016, C::Transient, S::Sender, R::BackOff, "service temporarily unavailable"),
    (131057, C::Transient, S::Sender, R::BackOff, "account in maintenance mode"),
    (4, C::Transient, S::Sender, R::BackOff, "app API call rate limit"),
    (80007, C::Transient, S::Sender, R::BackOff, "WABA rate limit"),
    (1, C::Transient, S::Sender, R::BackOff, "API unknown error"),
    (2, C::Transient, S::Sender, R::BackOff, "API service temporarily down"),
    (2494100, C::Transient, S::Sender, R::BackOff, "account in maintenance mode (phone migration)"),
    (131047, C::InvalidRequest, S::Message, R::GiveUp, "more than 24 hours since the user last replied"),
    (131008, C::InvalidRequest, S::Message, R::GiveUp, "required parameter missing"),
    (131009, C::InvalidRequest, S::Message, R::GiveUp, "parameter value invalid"),
    (131021, C::InvalidRequest, S::Message, R::GiveUp, "sender and recipient are the same number"),
    (131051, C::InvalidRequest, S::Message, R::GiveUp, "unsupported message type"),
    (131052, C::InvalidRequest, S::Message, R::GiveUp, "user's media could not be downloaded (inbound)"),
    (131053, C::InvalidRequest, S::Message, R::GiveUp, "media upload failed"),
    (135000, C::InvalidRequest, S::Message, R::GiveUp, "generic user error with request parameters"),
    (100, C::InvalidRequest, S::Message, R::GiveUp, "invalid parameter"),
    (131055, C::InvalidRequest, S::Message, R::GiveUp, "Marketing Messages API: not a marketing message"),
    (134100, C::InvalidRequest, S::Message, R::GiveUp, "Marketing Messages API: not a marketing template"),
    (132018, C::InvalidRequest, S::Message, R::GiveUp, "Marketing Messages API: template parameter validation"),
    (470, C::InvalidRequest, S::Message, R::GiveUp, "On-Premises: outside the re-engagement window"),
    (132000, C::Template, S::Template, R::GiveUp, "template parameter count mismatch"),
    (132001, C::Template, S::Template, R::GiveUp, "template does not exist in this language or is not approved"),
    (132005, C::Template, S::Template, R::GiveUp, "translated template text too long"),
    (132007, C::Template, S::Template, R::GiveUp, "template content violates policy"),
    (132012, C::Template, S::Template, R::GiveUp, "template parameter format mismatch"),
    (132015, C::Template, S::Template, R::HoldTemplate, "template paused for low quality"),
    (132016, C::Template, S::Template, R::GiveUp, "template disabled"),
    (132068, C::Template, S::Template, R::GiveUp, "flow is blocked"),
    (132069, C::Template, S::Template, R::HoldTemplate, "flow is throttled"),
    (134101, C::Template, S::Template, R::HoldTemplate, "Marketing Messages API: template still syncing"),
    (131048, C::Sender, S::Sender, R::HaltSender, "spam rate limit: number restricted after blocks or reports"),
    (131064, C::Sender, S::Sender, R::HaltSender, "account messaging limit for template-classification violations"),
    (131005, C::Sender, S::Sender, R::HaltSender, "permission not granted or removed"),
    (131031, C::Sender, S::Sender, R::HaltSender, "business account locked"),
    (131037, C::Sender, S::Sender, R::HaltSender, "number needs an approved display name"),
    (131042, C::Sender, S::Sender, R::HaltSender, "payment method problem"),
    (131045, C::Sender, S::Sender, R::HaltSender, "phone number registration error"),
    (131063, C::Sender, S::Sender, R::HaltSender, "marketing templates disabled on Cloud API for this account"),
    (134102, C::Sender, S::Sender, R::HaltSender, "Marketing Messages API: template not eligible"),
    (368, C::Sender, S::Sender, R::HaltSender, "temporarily blocked for policy violations"),
    (0, C::Sender, S::Sender, R::HaltSender, "authentication failed"),
    (190, C::Sender, S::Sender, R::HaltSender, "access token expired"),
    (10, C::Sender, S::Sender, R::HaltSender, "permission denied"),
    (33, C::Sender, S::Sender, R::HaltSender, "business phone number deleted"),
];

/// Graph's permission errors are a range, not single codes.
const PERMISSION_RANGE: std::ops::RangeInclusive<i64> = 200..=299;

/// The row for `code`, or an `Unknown` classification that keeps the code.
pub fn classify(code: i64) -> Classification {
    if let Some(&(code, class, scope, remedy, meaning)) = TABLE.iter().find(|row| row.0 == code) {
        return Classification { code, class, scope, remedy, meaning };
    }
    if PERMISSION_RANGE.contains(&code) {
        return Classification {
            code,
            class: C::Sender,
            scope: S::Sender,
            remedy: R::HaltSender,
            meaning: "permission denied",
        };
    }
    Classification { code, class: C::Unknown, scope: S::Message, remedy: R::GiveUp, meaning: "unknown error code" }
}

/// Every code with a row of its own, for documentation and tests.
pub fn documented_codes() -> impl Iterator<Item = i64> {
    TABLE.iter().map(|row| row.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Meta's error codes, read code by code (docs/whatsapp.md#error-codes): (code, how soon a retry can
    /// help, the scope it hits), with 133010 scoped to the user as decided above.
    /// `soon` → transient (or template when the scope is the template), `never` → by scope.
    const FACTS: &[(i64, &str, &str)] = &[
        (131049, "escal", "U"),
        (1026, "escal", "U"),
        (131050, "optout", "U"),
        (498, "optout", "U"),
        (131026, "never", "U"),
        (131047, "never", "M"),
        (131048, "never", "S"),
        (131056, "soon", "U"),
        (130429, "soon", "S"),
        (131064, "never", "S"),
        (131000, "soon", "M"),
        (131005, "never", "S"),
        (131008, "never", "M"),
        (131009, "never", "M"),
        (131016, "soon", "S"),
        (131021, "never", "M"),
        (131031, "never", "S"),
        (131037, "never", "S"),
        (131042, "never", "S"),
        (131045, "never", "S"),
        (131051, "never", "M"),
        (131052, "never", "M"),
        (131053, "never", "M"),
        (131057, "soon", "S"),
        (131063, "never", "S"),
        (130472, "never", "U"),
        (130497, "never", "U"),
        (130403, "never", "U"),
        (132000, "never", "T"),
        (132001, "never", "T"),
        (132005, "never", "T"),
        (132007, "never", "T"),
        (132012, "never", "T"),
        (132015, "soon", "T"),
        (132016, "never", "T"),
        (132068, "never", "T"),
        (132069, "soon", "T"),
        (133010, "never", "U"),
        (135000, "never", "M"),
        (368, "never", "S"),
        (4, "soon", "S"),
        (80007, "soon", "S"),
        (0, "never", "S"),
        (190, "never", "S"),
        (10, "never", "S"),
        (200, "never", "S"),
        (250, "never", "S"),
        (299, "never", "S"),
        (100, "never", "M"),
        (1, "soon", "S"),
        (2, "soon", "S"),
        (33, "never", "S"),
        (2494100, "soon", "S"),
        (131055, "never", "M"),
        (134100, "never", "M"),
        (134101, "soon", "T"),
        (134102, "never", "S"),
        (132018, "never", "M"),
        (470, "never", "M"),
    ];

    fn expected(class: &str, scope: &str) -> FailureClass {
        match (class, scope) {
            ("escal", _) => C::PerUserCap,
            ("optout", _) => C::OptOut,
            ("soon", "T") | ("never", "T") => C::Template,
            ("soon", _) => C::Transient,
            ("never", "U") => C::Unreachable,
            ("never", "M") => C::InvalidRequest,
            ("never", "S") => C::Sender,
            other => panic!("no class for {other:?}"),
        }
    }

    #[test]
    fn every_code_on_the_facts_sheet_has_its_class() {
        for &(code, class, scope) in FACTS {
            assert_eq!(classify(code).class, expected(class, scope), "code {code}");
        }
    }

    #[test]
    fn every_row_of_the_table_is_on_the_facts_sheet() {
        for code in documented_codes() {
            assert!(FACTS.iter().any(|f| f.0 == code), "code {code} has a row but no fact");
        }
    }

    #[test]
    fn codes_are_unique() {
        let mut codes: Vec<i64> = documented_codes().collect();
        codes.sort_unstable();
        let before = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), before);
    }

    #[test]
    fn the_cap_codes_take_the_ladder_and_opt_outs_suppress() {
        assert_eq!(classify(131049).remedy, R::Ladder);
        assert_eq!(classify(1026).remedy, R::Ladder);
        assert_eq!(classify(131050).remedy, R::SuppressRecipient);
    }

    #[test]
    fn the_remedy_follows_the_class() {
        for code in documented_codes().chain([200, 299, 999_999]) {
            let row = classify(code);
            let allowed: &[Remedy] = match row.class {
                C::PerUserCap => &[R::Ladder],
                C::OptOut => &[R::SuppressRecipient],
                C::Transient => &[R::BackOff],
                C::Template => &[R::GiveUp, R::HoldTemplate],
                C::Sender => &[R::HaltSender],
                C::Unreachable | C::InvalidRequest | C::Unknown => &[R::GiveUp],
            };
            assert!(allowed.contains(&row.remedy), "code {code}: {row:?}");
        }
    }

    #[test]
    fn paused_templates_are_held_not_dropped() {
        assert_eq!(classify(132015).remedy, R::HoldTemplate);
        assert_eq!(classify(132016).remedy, R::GiveUp);
    }

    #[test]
    fn an_unknown_code_is_kept_and_never_retried() {
        let row = classify(987_654);
        assert_eq!((row.code, row.class, row.remedy), (987_654, C::Unknown, R::GiveUp));
    }
}
