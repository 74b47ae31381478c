//! The cluster's wire formats: revocation set members and published messages, plain
//! space-separated text with the free-form ID last, so any ID (even with spaces) survives.
//! Reading is strict: a number is ASCII digits only (no sign, no fraction, no exponent), every
//! field is present, and an ID is never empty; anything else is refused as a whole.

use std::time::{SystemTime, UNIX_EPOCH};

/// A whole number written as ASCII digits only, as drawbridge writes them; `None` for anything
/// else (`1.5`, `+1`, `1e9`, `inf`, an empty string, or more than fits).
pub(crate) fn strict_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn number(text: &str) -> Option<u64> {
    strict_u64(text.as_bytes())
}

/// A non-empty free-form field.
fn id(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// What a revocation stands against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One session, by `sid`.
    Sid,
    /// Every session a user began up to the cut-off.
    User,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Self::Sid => "s",
            Self::User => "u",
        }
    }

    fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "s" => Some(Self::Sid),
            "u" => Some(Self::User),
            _ => None,
        }
    }
}

/// One revocation as every replica keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Revocation {
    /// Session or user.
    pub(crate) kind: Kind,
    /// The `sid` or the user ID.
    pub(crate) id: String,
    /// When it was revoked (the user cut-off), Unix seconds.
    pub(crate) at: u64,
    /// Until when it is kept (Unix seconds): past it, no token it stands against verifies.
    pub(crate) until: u64,
}

impl Revocation {
    /// The sorted-set member (`until` is its score).
    pub(crate) fn member(&self) -> String {
        format!("{} {} {}", self.kind.tag(), self.at, self.id)
    }

    /// Reads a member back, with its score; `None` unless both are exactly what
    /// [`member`](Self::member) and a whole-second score make, with `at` no later than `until`.
    pub(crate) fn parse(member: &[u8], score: &[u8]) -> Option<Self> {
        let until = strict_u64(score)?;
        let member = std::str::from_utf8(member).ok()?;
        let mut parts = member.splitn(3, ' ');
        let kind = Kind::from_tag(parts.next()?)?;
        let at = number(parts.next()?)?;
        let id = id(parts.next()?)?;
        (at <= until).then_some(Self {
            kind,
            id,
            at,
            until,
        })
    }
}

/// A message on the events channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Event {
    /// A revocation, with when it was sent (Unix milliseconds) for the propagation metric.
    Revoked {
        revocation: Revocation,
        sent_ms: u64,
        origin: String,
    },
    /// Drop cached decisions: all, or one user's.
    Purged {
        user: Option<String>,
        origin: String,
    },
    /// Reload the revocation set now (a replica wrote what it learned while Redis was away).
    Resync { origin: String },
    /// A claim set session tokens name by `reference`, needed until `until` (Unix seconds): its
    /// bytes (compact JSON), so every replica holds it, even while Redis is away.
    ClaimSet {
        reference: String,
        until: u64,
        set: String,
        origin: String,
    },
}

impl Event {
    pub(super) fn encode(&self) -> String {
        match self {
            Self::Revoked {
                revocation: r,
                sent_ms,
                origin,
            } => {
                format!("r {origin} {sent_ms} {} {} {}", r.until, r.kind.tag(), r.at) + " " + &r.id
            }
            Self::Purged { user, origin } => match user {
                Some(user) => format!("p {origin} {user}"),
                None => format!("a {origin}"),
            },
            Self::Resync { origin } => format!("s {origin}"),
            Self::ClaimSet {
                reference,
                until,
                set,
                origin,
            } => format!("c {origin} {until} {reference} {set}"),
        }
    }

    pub(super) fn decode(payload: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        let (tag, rest) = text.split_once(' ')?;
        match tag {
            "r" => {
                let mut parts = rest.splitn(6, ' ');
                let origin = id(parts.next()?)?;
                let sent_ms = number(parts.next()?)?;
                let until = number(parts.next()?)?;
                let kind = Kind::from_tag(parts.next()?)?;
                let at = number(parts.next()?)?;
                let id = id(parts.next()?)?;
                if at > until {
                    return None;
                }
                Some(Self::Revoked {
                    revocation: Revocation {
                        kind,
                        id,
                        at,
                        until,
                    },
                    sent_ms,
                    origin,
                })
            }
            "p" => {
                let (origin, user) = rest.split_once(' ')?;
                Some(Self::Purged {
                    user: Some(id(user)?),
                    origin: id(origin)?,
                })
            }
            "a" if !rest.contains(' ') => Some(Self::Purged {
                user: None,
                origin: id(rest)?,
            }),
            "s" if !rest.contains(' ') => Some(Self::Resync { origin: id(rest)? }),
            "c" => {
                let mut parts = rest.splitn(4, ' ');
                let origin = id(parts.next()?)?;
                let until = number(parts.next()?)?;
                let reference = id(parts.next()?)?;
                let set = id(parts.next()?)?;
                Some(Self::ClaimSet {
                    reference,
                    until,
                    set,
                    origin,
                })
            }
            _ => None,
        }
    }
}

/// Unix milliseconds now.
pub(super) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_round_trips_an_id_with_spaces() {
        let r = Revocation {
            kind: Kind::User,
            id: "alice smith 2".into(),
            at: 17,
            until: 99,
        };
        assert_eq!(Revocation::parse(r.member().as_bytes(), b"99"), Some(r));
        for (member, score) in [
            ("x 1 a", "2"),
            ("s nope a", "2"),
            ("s 1 a", "1.5"),
            ("s 1 a", "2.0"),
            ("s 1 a", "+2"),
            ("s 1 a", "-2"),
            ("s 1 a", "inf"),
            ("s 1 a", "1e9"),
            ("s 1 a", ""),
            ("s 1 a", "99999999999999999999999"),
            ("s 1.5 a", "2"),
            ("s +1 a", "2"),
            ("s 1 ", "2"),
            ("s 1", "2"),
            ("s 3 a", "2"),
            ("", "2"),
        ] {
            assert_eq!(
                Revocation::parse(member.as_bytes(), score.as_bytes()),
                None,
                "{member:?} {score:?}"
            );
        }
        assert_eq!(Revocation::parse(b"s 1 \xff\xfe", b"2"), None);
    }

    #[test]
    fn events_round_trip_and_garbage_is_refused() {
        let events = [
            Event::Revoked {
                revocation: Revocation {
                    kind: Kind::Sid,
                    id: "sid with space".into(),
                    at: 1,
                    until: 2,
                },
                sent_ms: 3,
                origin: "o".into(),
            },
            Event::Purged {
                user: Some("bob b".into()),
                origin: "o".into(),
            },
            Event::Purged {
                user: None,
                origin: "o".into(),
            },
            Event::Resync { origin: "o".into() },
            Event::ClaimSet {
                reference: "AAAA".into(),
                until: 99,
                set: r#"{"prm":{"r":true},"cli":{"name":"a b"}}"#.into(),
                origin: "o".into(),
            },
        ];
        for e in events {
            assert_eq!(Event::decode(e.encode().as_bytes()), Some(e));
        }
        for bad in [
            "",
            "r",
            "r o x 2 s 1 id",
            "z o",
            "r o 1 2 q 1 id",
            "\u{0}",
            "r o 1.5 2 s 1 id",
            "r o 1 2.5 s 1 id",
            "r o 1 2 s +1 id",
            "r o 1 2 s 1 ",
            "r o 1 2 s 3 id",
            "r  1 2 s 1 id",
            "c o 99 AAAA",
            "c o 99 AAAA ",
            "c o x AAAA {}",
            "c o 99  {}",
            "p o ",
            "p  u",
            "a ",
            "a o x",
            "s ",
        ] {
            assert_eq!(Event::decode(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
