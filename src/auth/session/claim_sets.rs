//! Session claims by reference: the permissions and clientInfo of an HMAC-signed session token,
//! kept here (and in the cluster store) under a hash of their compact form, which the token names
//! in their place.
//!
//! A token only drawbridge verifies (`session.token_signing = "hmac"`) need not carry what
//! drawbridge can look up. Where the sets live at least as long as the tokens naming them, a token
//! carries `ref` (32 characters: the first 192 bits of a SHA-256 of the set's bytes) instead of
//! `prm` and `cli`:
//! - with an ephemeral session key, tokens die with the process, and so do the sets held here;
//! - in cluster mode, a set goes to the cluster store before the token naming it is handed out,
//!   kept there as long as any token naming it can be valid, and every replica reads it there.
//!
//! A standalone gateway with a `session.key_file` keeps them inline: its tokens outlive a
//! restart, and sets held in memory would not. So does every token signed with the session key
//! itself (`"key"`), which stays verifiable through the JWKS alone, and a set too small to gain
//! from a reference.
//!
//! A reference is the hash of what it names: a store can lose a set (its sessions then need a new
//! login) but not change one, since a set read back is hashed again and refused when it differs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::compact::{Grants, GrantsForm};
use crate::clock::unix_now;
use crate::permissions::Permissions;

/// Bytes of a reference: the first 192 bits of the set's SHA-256.
const REF_BYTES: usize = 24;
/// Prefix hashed before a set's bytes, so a reference names nothing but a claim set.
const HASH_CONTEXT: &[u8] = b"drawbridge claim set v1\0";
/// A set of at most this many bytes stays inline: `"ref":"<32 characters>"` would not be shorter.
const INLINE_MAX: usize = 40;
/// A set of more bytes stays inline: it would take too much of what is held here.
const SET_MAX: usize = 4096;
/// What the sets held here may weigh in all ([`weight`]): about that much memory.
const CAPACITY: u64 = 16 << 20;
/// How long a set is held (and kept in the cluster store) is rounded up to a multiple of this,
/// so logins naming one set renew its lifetime once per step, not on each login.
const STEP_SECS: u64 = 900;

/// A reference, as the token carries it once encoded.
pub(crate) type Reference = [u8; REF_BYTES];

/// One claim set: what it grants, the provider's clientInfo, and its bytes as stored and hashed.
#[derive(Debug)]
pub(crate) struct ClaimSet {
    pub(crate) permissions: Permissions,
    pub(crate) cli: Option<serde_json::Value>,
    text: Box<str>,
}

impl ClaimSet {
    /// The compact JSON the cluster store keeps and the reference hashes.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

/// The set as written: the token's own compact form of `prm` and `cli`.
#[derive(Serialize)]
struct Written<'a> {
    #[serde(skip_serializing_if = "Grants::absent")]
    prm: Option<Grants<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cli: Option<&'a serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Read {
    #[serde(default)]
    prm: Option<GrantsForm>,
    #[serde(default)]
    cli: Option<serde_json::Value>,
}

/// A set held here, until when (Unix seconds), and until when the cluster store has it.
struct Held {
    set: Arc<ClaimSet>,
    until: u64,
    published: u64,
}

/// Each set is held until the last token naming it expires.
struct HeldLifetime;

impl moka::Expiry<Reference, Arc<Held>> for HeldLifetime {
    fn expire_after_create(&self, _: &Reference, held: &Arc<Held>, _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(held.until.saturating_sub(unix_now())))
    }

    fn expire_after_update(
        &self,
        _: &Reference,
        held: &Arc<Held>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(Duration::from_secs(held.until.saturating_sub(unix_now())))
    }
}

/// What a set of `len` bytes costs here, roughly: its bytes, its parsed form, and the cache's
/// bookkeeping.
fn cost(len: usize) -> u32 {
    u32::try_from(len * 4 + 512).unwrap_or(u32::MAX)
}

fn weight(_: &Reference, held: &Arc<Held>) -> u32 {
    cost(held.set.text.len())
}

/// A set named by a new token: its reference, and the set to write to the cluster store first
/// when no earlier write covers `until`.
pub(crate) struct Named {
    pub(crate) reference: Reference,
    pub(crate) publish: Option<(Arc<ClaimSet>, u64)>,
}

/// The claim sets tokens name by reference, held until the last token naming each expires.
pub struct ClaimSets {
    sets: moka::sync::Cache<Reference, Arc<Held>>,
    /// The cluster store keeps the sets too: one held here may be dropped and read back.
    shared: bool,
}

impl std::fmt::Debug for ClaimSets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimSets")
            .field("shared", &self.shared)
            .field("held", &self.sets.entry_count())
            .finish()
    }
}

// === impl ClaimSets ===

impl ClaimSets {
    /// An empty store; `shared` when the cluster store keeps every set too.
    pub fn new(shared: bool) -> Self {
        Self {
            sets: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .weigher(weight)
                .expire_after(HeldLifetime)
                .build(),
            shared,
        }
    }

    /// Whether the cluster store keeps the sets too, so they outlive this process.
    pub(crate) fn shared(&self) -> bool {
        self.shared
    }

    /// The reference a token minted now can carry for `permissions` and `cli`, held until at
    /// least `until` (the session's last possible expiry); `None` when the set stays inline: too
    /// small or too large for a reference, or (without the cluster store, where nothing held
    /// here may be dropped) no room left.
    pub(crate) fn name(
        &self,
        permissions: &Permissions,
        cli: Option<&serde_json::Value>,
        until: u64,
    ) -> Option<Named> {
        let text = serde_json::to_string(&Written {
            prm: Some(Grants(permissions)),
            cli,
        })
        .ok()?;
        if text.len() <= INLINE_MAX || text.len() > SET_MAX {
            return None;
        }
        let reference = hash(text.as_bytes());
        let until = held_until(until);
        let held = match self.sets.get(&reference).filter(|h| *h.set.text == *text) {
            Some(known) => self.hold(reference, &known.set, until, 0),
            None => {
                // Without the cluster store a set dropped here is lost: stop short of evicting.
                let room = CAPACITY - CAPACITY / 8;
                if !self.shared && self.sets.weighted_size() + u64::from(cost(text.len())) > room {
                    return None;
                }
                let set = Arc::new(ClaimSet {
                    permissions: permissions.clone(),
                    cli: cli.cloned(),
                    text: text.into_boxed_str(),
                });
                self.hold(reference, &set, until, 0)
            }
        };
        let publish =
            (self.shared && held.published < held.until).then(|| (held.set.clone(), held.until));
        Some(Named { reference, publish })
    }

    /// Notes that the cluster store keeps the set `reference` names until `until`.
    pub(crate) fn published(&self, reference: &Reference, until: u64) {
        if let Some(held) = self.sets.get(reference) {
            self.hold(*reference, &held.set, until, until);
        }
    }

    /// The set `reference` names, when held here.
    pub(crate) fn get(&self, reference: &Reference) -> Option<Arc<ClaimSet>> {
        self.sets.get(reference).map(|h| h.set.clone())
    }

    /// Holds a set read back from the cluster store for a token valid until `until`: `None` when
    /// `bytes` are not what `reference` names, or not a claim set.
    pub(crate) fn learn(
        &self,
        reference: &Reference,
        bytes: &[u8],
        until: u64,
    ) -> Option<Arc<ClaimSet>> {
        if hash(bytes) != *reference || bytes.len() > SET_MAX {
            return None;
        }
        // Read back from the store, which keeps it at least as long as the token that named it.
        let until = held_until(until);
        let set = match self.sets.get(reference) {
            Some(held) => held.set.clone(),
            None => {
                let text = std::str::from_utf8(bytes).ok()?;
                let read: Read = serde_json::from_str(text).ok()?;
                Arc::new(ClaimSet {
                    permissions: read.prm.map(Into::into).unwrap_or_default(),
                    cli: read.cli,
                    text: text.into(),
                })
            }
        };
        Some(self.hold(*reference, &set, until, until).set.clone())
    }

    /// Holds `set` under `reference` until at least `until`, noted as in the cluster store until
    /// at least `published`: a hold only ever grows, so a shorter one never cuts a set short.
    fn hold(
        &self,
        reference: Reference,
        set: &Arc<ClaimSet>,
        until: u64,
        published: u64,
    ) -> Arc<Held> {
        let (until, published) = match self.sets.get(&reference) {
            Some(held) if held.until >= until && held.published >= published => return held,
            Some(held) => (held.until.max(until), held.published.max(published)),
            None => (until, published),
        };
        let held = Arc::new(Held {
            set: set.clone(),
            until,
            published,
        });
        self.sets.insert(reference, held.clone());
        held
    }

    /// Sets held here (settled first), for tests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.sets.run_pending_tasks();
        self.sets.entry_count()
    }
}

/// `until` rounded up to the next step, at least a step from now.
fn held_until(until: u64) -> u64 {
    (until.max(unix_now()) / STEP_SECS + 1) * STEP_SECS
}

fn hash(bytes: &[u8]) -> Reference {
    let digest = Sha256::new()
        .chain_update(HASH_CONTEXT)
        .chain_update(bytes)
        .finalize();
    let mut reference = [0; REF_BYTES];
    reference.copy_from_slice(&digest[..REF_BYTES]);
    reference
}

/// A reference as a token and the cluster store name it.
pub(crate) fn encode(reference: &Reference) -> String {
    URL_SAFE_NO_PAD.encode(reference)
}

/// A reference as a token carries it; `None` for anything that is not one.
pub(crate) fn decode(text: &str) -> Option<Reference> {
    let mut reference = [0; REF_BYTES];
    match URL_SAFE_NO_PAD.decode_slice(text, &mut reference) {
        Ok(REF_BYTES) if text.len() == 32 => Some(reference),
        _ => None,
    }
}
