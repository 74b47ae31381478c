//! The session gate: where every door finds and admits a session, and what it admits besides.
//!
//! A session rides on one of four carriers, and every door that looks for one (the tunnel, the
//! forward-auth check, the login API) tries them in one order ([`Gate::session`]):
//!
//! 1. `Authorization: Bearer` with a token of ours (by issuer, [`Ours`]);
//! 2. a `drawbridge.bearer.<token>` `Sec-WebSocket-Protocol` entry;
//! 3. the session cookie;
//! 4. a single-use `?ticket=` (only where the door takes one: the tunnel);
//! 5. a bearer token of another issuer, last, so it never hides a session on another carrier.
//!
//! The first carrier present decides: its token is verified against the generation's session
//! keys and the revocation list, and a bad one is refused rather than passed over.
//!
//! The gate also owns the rest of what admits a tunnel, and the cluster sharing of each:
//! tickets (kept in the cluster store in cluster mode, so any replica redeems one, once),
//! Ditto access tokens learned from relayed logins, and revocations (written for the other
//! replicas, queued while the store is away).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;

use super::credentials::{self, SESSION_COOKIE, SessionRejected};
use super::known_tokens::{KnownToken, KnownTokens, SESSION_ID_PREFIX};
use super::revocation::Revocations;
use super::session::{Reference, SessionClaims, SessionError, Sessions, claim_sets};
use crate::audit;
use crate::clock::unix_now;
use crate::cluster::{Cluster, Entry, Kind, Revocation, strict_u64};

/// Cluster key kind of single-use tickets.
const TICKET_KIND: &str = "ticket";
/// Cluster key kind of learned Ditto access tokens.
const DITTO_KIND: &str = "ditto";
/// Most candidate tokens of one handshake looked up in the cluster store.
const MAX_SHARED_LOOKUPS: usize = 4;
/// Most tickets held locally at once.
const MAX_LOCAL_TICKETS: u64 = 1_000_000;

/// Where the session came from. Every carrier is removed before forwarding (`credentials::strip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// `Authorization: Bearer`.
    Authorization,
    /// A `drawbridge.bearer.<token>` protocol entry.
    Protocol,
    /// The session cookie.
    Cookie,
    /// A single-use `?ticket=`.
    Ticket,
}

/// A ticket held locally, with the lifetime it was issued with.
#[derive(Clone)]
struct Ticket {
    claims: Arc<SessionClaims>,
    ttl: Duration,
}

/// Each ticket lives for the `session.ticket_ttl_seconds` of the generation that issued it.
struct TicketLifetime;

impl moka::Expiry<String, Ticket> for TicketLifetime {
    fn expire_after_create(&self, _: &String, ticket: &Ticket, _: Instant) -> Option<Duration> {
        Some(ticket.ttl)
    }
}

/// What carries the session of a request, by the gate's one order.
enum Carried<'h> {
    /// A token on one of the carriers.
    Token(Cow<'h, str>, Carrier),
    /// The door's `?ticket=` (only where the door takes one).
    Ticket,
    /// Nothing.
    Nothing,
}

/// The first carrier present in `headers` (and the door's ticket, when `ticket`), in the gate's
/// one order: our bearer, a protocol entry, the cookie, the ticket, then a foreign bearer.
fn carried<'h>(sessions: &Sessions, headers: &'h HeaderMap, ticket: bool) -> Carried<'h> {
    let bearer = credentials::authorization_bearer(headers);
    let ours = credentials::Ours::new(sessions.issuer());
    if let Some(token) = bearer.filter(|t| ours.recognises(t)) {
        return Carried::Token(Cow::Borrowed(token), Carrier::Authorization);
    }
    if let Some(token) = credentials::protocol_entries(headers)
        .iter()
        .find_map(|p| credentials::protocol_bearer(p).map(str::to_owned))
    {
        return Carried::Token(Cow::Owned(token), Carrier::Protocol);
    }
    if let Some(token) = credentials::cookie(headers, SESSION_COOKIE) {
        return Carried::Token(Cow::Borrowed(token), Carrier::Cookie);
    }
    if ticket {
        return Carried::Ticket;
    }
    match bearer {
        Some(token) => Carried::Token(Cow::Borrowed(token), Carrier::Authorization),
        None => Carried::Nothing,
    }
}

/// A learned token's shared value, `<accessExpiry, Unix seconds> <user>`, read strictly.
fn parse_learned_token(value: &[u8]) -> Option<(u64, String)> {
    let text = std::str::from_utf8(value).ok()?;
    let (expires_at, user) = text.split_once(' ')?;
    let expires_at = strict_u64(expires_at.as_bytes())?;
    (!user.is_empty()).then(|| (expires_at, user.to_owned()))
}

/// Finds and admits sessions, tickets and learned Ditto tokens; revokes sessions and users.
pub(crate) struct Gate {
    revocations: Revocations,
    tickets: moka::sync::Cache<String, Ticket>,
    ditto_tokens: KnownTokens,
    /// The link to the other replicas (`[cluster]`); `None` keeps everything local.
    cluster: Option<Arc<Cluster>>,
}

// === impl Gate ===

impl Gate {
    /// An empty gate for tokens that live at most `max_ttl`, sharing through `cluster` when set.
    pub(crate) fn new(max_ttl: Duration, cluster: Option<Arc<Cluster>>) -> Self {
        Self {
            revocations: Revocations::new(max_ttl),
            tickets: moka::sync::Cache::builder()
                .max_capacity(MAX_LOCAL_TICKETS)
                .expire_after(TicketLifetime)
                .build(),
            ditto_tokens: KnownTokens::new(),
            cluster,
        }
    }

    /// The revocation list.
    pub(crate) fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// Finds the session `headers` (and `ticket`, redeemed once, when the door takes one) carry,
    /// trying the carriers in the gate's one order, and admits it: verified by `sessions`, not
    /// revoked, not expired.
    ///
    /// # Errors
    /// [`SessionRejected::Required`] when no carrier holds a session, else why the one found
    /// opens nothing.
    pub(crate) async fn session(
        &self,
        sessions: &Sessions,
        headers: &HeaderMap,
        ticket: Option<&str>,
    ) -> Result<(Arc<SessionClaims>, Carrier), SessionRejected> {
        match carried(sessions, headers, ticket.is_some()) {
            Carried::Token(token, carrier) => {
                self.verify(sessions, &token).await.map(|c| (c, carrier))
            }
            Carried::Ticket => match self.redeem_ticket(ticket.unwrap_or_default()).await {
                Some(claims) if self.admit(&claims).is_ok() => Ok((claims, Carrier::Ticket)),
                _ => Err(SessionRejected::Ticket),
            },
            Carried::Nothing => Err(SessionRejected::Required),
        }
    }

    /// The session token `headers` carry on the first carrier present, in the gate's one order,
    /// for a door that takes no ticket; not yet verified.
    pub(crate) fn token<'h>(
        sessions: &Sessions,
        headers: &'h HeaderMap,
    ) -> Option<(Cow<'h, str>, Carrier)> {
        match carried(sessions, headers, false) {
            Carried::Token(token, carrier) => Some((token, carrier)),
            Carried::Ticket | Carried::Nothing => None,
        }
    }

    /// Admits claims verified earlier (their signature checked under this generation's keys):
    /// not expired by now, not revoked since.
    ///
    /// # Errors
    /// [`SessionRejected::Expired`] or [`SessionRejected::Revoked`].
    pub(crate) fn admit(&self, claims: &SessionClaims) -> Result<(), SessionRejected> {
        if claims.exp <= unix_now() {
            return Err(SessionRejected::Expired);
        }
        if self.revocations.is_revoked(claims) {
            return Err(SessionRejected::Revoked);
        }
        audit::note_user(&claims.sub);
        Ok(())
    }

    /// Verifies one session token by `sessions` and checks the revocation list. A claim set the
    /// token names by reference and this replica does not hold is read from the cluster store.
    ///
    /// # Errors
    /// [`SessionRejected::Revoked`], [`SessionRejected::Expired`], [`SessionRejected::Invalid`],
    /// or [`SessionRejected::LoginExpired`] when the claim set the token names is found nowhere.
    pub(crate) async fn verify(
        &self,
        sessions: &Sessions,
        token: &str,
    ) -> Result<Arc<SessionClaims>, SessionRejected> {
        match sessions.verify(token) {
            Err(SessionError::UnknownClaims { reference, until }) => {
                self.read_claim_set(sessions, &reference, until).await;
                self.admit_verified(sessions.verify(token))
            }
            verified => self.admit_verified(verified),
        }
    }

    /// [`Self::verify`] with the claim sets held here only: what answers without waiting.
    ///
    /// # Errors
    /// As [`Self::verify`].
    pub(crate) fn verify_held(
        &self,
        sessions: &Sessions,
        token: &str,
    ) -> Result<Arc<SessionClaims>, SessionRejected> {
        self.admit_verified(sessions.verify(token))
    }

    fn admit_verified(
        &self,
        verified: Result<SessionClaims, SessionError>,
    ) -> Result<Arc<SessionClaims>, SessionRejected> {
        match verified {
            Ok(claims) if self.revocations.is_revoked(&claims) => Err(SessionRejected::Revoked),
            Ok(claims) => {
                audit::note_user(&claims.sub);
                Ok(Arc::new(claims))
            }
            Err(SessionError::Expired) => Err(SessionRejected::Expired),
            Err(SessionError::UnknownClaims { .. }) => Err(SessionRejected::LoginExpired),
            Err(_) => Err(SessionRejected::Invalid),
        }
    }

    /// Reads the claim set `reference` names from the cluster store into `sessions`' sets, held
    /// until `until`; what is there and not the set the reference names is counted and skipped.
    async fn read_claim_set(&self, sessions: &Sessions, reference: &Reference, until: u64) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let id = claim_sets::encode(reference);
        let Some(bytes) = cluster.get_claim_set(&id).await else {
            tracing::debug!("a session names a claim set the cluster store does not hold");
            return;
        };
        if sessions
            .claim_sets()
            .learn(reference, &bytes, until)
            .is_none()
        {
            cluster.bad_entry(
                Entry::ClaimSet,
                &cluster.claim_set_key(&id),
                &bytes,
                "not the claim set its reference names",
            );
        }
    }

    // --- tickets ---

    /// A single-use ticket standing for `claims` for `ttl`. In cluster mode it is kept in the
    /// cluster store only (any replica may redeem it, once); while that is away, locally.
    pub(crate) async fn issue_ticket(&self, claims: Arc<SessionClaims>, ttl: Duration) -> String {
        let bytes: [u8; 24] = rand::random();
        let ticket =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
        if let Some(cluster) = &self.cluster
            && let Ok(json) = serde_json::to_vec(&*claims)
            && cluster.put(TICKET_KIND, &ticket, &json, ttl).await
        {
            return ticket;
        }
        self.tickets.insert(ticket.clone(), Ticket { claims, ttl });
        ticket
    }

    /// Redeems a ticket once, here or (atomically, `GETDEL`) in the cluster store; a second use
    /// anywhere finds nothing.
    async fn redeem_ticket(&self, ticket: &str) -> Option<Arc<SessionClaims>> {
        if let Some(held) = self.tickets.remove(ticket) {
            return Some(held.claims);
        }
        let cluster = self.cluster.as_ref()?;
        let json = cluster.take(TICKET_KIND, ticket).await?;
        match serde_json::from_slice::<SessionClaims>(&json) {
            Ok(claims) if !claims.sid.is_empty() && !claims.sub.is_empty() => {
                Some(Arc::new(claims))
            }
            _ => {
                // The ticket is a credential: the log names it by a digest only.
                let digest = hex::encode(KnownTokens::key(ticket));
                let key = cluster.key(TICKET_KIND, &format!("sha256:{}", &digest[..16]));
                cluster.bad_entry(Entry::Ticket, &key, b"", "not a session's claims");
                None
            }
        }
    }

    // --- learned Ditto access tokens ---

    /// Remembers a Ditto access token from a relayed login success, here and for the other
    /// replicas (by its SHA-256, until its `accessExpiry`), written before this returns so
    /// another replica finds it as soon as the client has the token.
    pub(crate) async fn learn_ditto_token(&self, token: &str, known: KnownToken) {
        if let Some(cluster) = &self.cluster {
            let ttl = known.expires_at.saturating_sub(unix_now());
            let id = hex::encode(KnownTokens::key(token));
            let value = format!("{} {}", known.expires_at, known.user);
            cluster
                .put(DITTO_KIND, &id, value.as_bytes(), Duration::from_secs(ttl))
                .await;
        }
        self.ditto_tokens.learn(token, known);
    }

    /// The learned Ditto access token a websocket handshake carries (learned here, or by another
    /// replica, then remembered here too), unless a re-check found its login denied.
    ///
    /// # Errors
    /// [`SessionRejected::UnknownAccessToken`] when none is known, or its session is revoked.
    pub(crate) async fn ditto_token(
        &self,
        headers: &HeaderMap,
    ) -> Result<Arc<KnownToken>, SessionRejected> {
        match self.find_ditto_token(headers).await {
            // A token whose login a re-check found denied opens nothing, here or on any replica.
            Some(known) if !self.revocations.is_sid_revoked(&known.sid) => Ok(known),
            _ => Err(SessionRejected::UnknownAccessToken),
        }
    }

    async fn find_ditto_token(&self, headers: &HeaderMap) -> Option<Arc<KnownToken>> {
        if let Some(known) = self.ditto_tokens.find(headers) {
            return Some(known);
        }
        let cluster = self.cluster.as_ref()?;
        // A handful of lookups at most, however many cookies the handshake carries.
        for token in KnownTokens::candidates(headers)
            .into_iter()
            .take(MAX_SHARED_LOOKUPS)
        {
            let id = hex::encode(KnownTokens::key(token));
            let Some(value) = cluster.get(DITTO_KIND, &id).await else {
                continue;
            };
            let Some((expires_at, user)) = parse_learned_token(&value) else {
                let key = cluster.key(DITTO_KIND, &id);
                cluster.bad_entry(
                    Entry::LearnedToken,
                    &key,
                    &value,
                    "not `<unix seconds> <user>`",
                );
                continue;
            };
            let sid = KnownTokens::session_id(token);
            self.ditto_tokens.learn(
                token,
                KnownToken {
                    user,
                    expires_at,
                    sid,
                },
            );
            if let Some(known) = self.ditto_tokens.get(token) {
                return Some(known);
            }
        }
        None
    }

    /// Forgets the learned token of session `sid`, here and in the cluster store.
    pub(crate) fn forget_ditto_token(&self, sid: &str) {
        self.ditto_tokens.forget_session(sid);
        if let (Some(cluster), Some(id)) =
            (self.cluster.clone(), sid.strip_prefix(SESSION_ID_PREFIX))
        {
            let id = id.to_owned();
            tokio::spawn(async move { cluster.remove(DITTO_KIND, &id).await });
        }
    }

    // --- revocations ---

    /// Revokes the session `claims` came from (every token of it, not only this one), here and
    /// for the other replicas; returns until when (Unix seconds) the revocation is kept.
    pub(crate) fn revoke_session(&self, claims: &SessionClaims) -> u64 {
        let until = self.revocations.revoke_session(claims);
        self.share(Kind::Sid, &claims.sid, until);
        until
    }

    /// Revokes a session known only by its ID, here and for the other replicas.
    pub(crate) fn revoke_sid(&self, sid: &str) -> u64 {
        let until = self.revocations.revoke_sid(sid);
        self.share(Kind::Sid, sid, until);
        until
    }

    /// Revokes every current session of `user`, here and for the other replicas (whose shared
    /// decisions for the user go too).
    pub(crate) fn revoke_user(&self, user: &str) -> u64 {
        let until = self.revocations.revoke_user(user);
        self.share(Kind::User, user, until);
        until
    }

    /// A revocation another replica made: applied here; false when it was known already.
    pub(crate) fn apply_revocation(&self, r: &Revocation) -> bool {
        if !self.revocations.apply(r) {
            return false;
        }
        if r.kind == Kind::Sid {
            self.ditto_tokens.forget_session(&r.id);
        }
        true
    }

    /// Hands a revocation just made here to the other replicas (written with its real end and
    /// published; queued while the cluster store is away).
    fn share(&self, kind: Kind, id: &str, until: u64) {
        if let Some(cluster) = self.cluster.clone() {
            let revocation = Revocation {
                kind,
                id: id.to_owned(),
                at: unix_now(),
                until,
            };
            tokio::spawn(async move {
                let user = (revocation.kind == Kind::User).then(|| revocation.id.clone());
                cluster.revoke(revocation).await;
                if let Some(user) = user {
                    // The user's shared decisions go too, as the local ones did.
                    cluster.purge(Some(&user)).await;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, header};

    fn sessions() -> Sessions {
        let config: crate::config::Config = crate::config::Config::from_toml(
            "[upstream]\nurl = \"http://127.0.0.1:1\"\n",
            &crate::config::System,
        )
        .unwrap();
        Sessions::from_config(&config.auth.session).unwrap()
    }

    fn mint(sessions: &Sessions, user: &str) -> String {
        let allow = crate::auth::Allow {
            user_id: user.to_owned(),
            expires_at: unix_now() + 600,
            permissions: crate::auth::Permissions::default().into(),
            client_info: None,
            metadata: None,
            profile: None,
        };
        sessions.mint(&allow, "app", "prv").unwrap().token
    }

    fn headers(pairs: &[(header::HeaderName, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[tokio::test]
    async fn carriers_are_tried_in_one_order_and_the_first_present_decides() {
        let gate = Gate::new(Duration::from_secs(3600), None);
        let sessions = sessions();
        let (a, p, c) = (
            mint(&sessions, "auth"),
            mint(&sessions, "proto"),
            mint(&sessions, "cookie"),
        );
        let bearer = |t: &str| (header::AUTHORIZATION, format!("Bearer {t}"));
        let proto = |t: &str| {
            (
                header::SEC_WEBSOCKET_PROTOCOL,
                format!("drawbridge.bearer.{t}"),
            )
        };
        let cookie = |t: &str| (header::COOKIE, format!("{SESSION_COOKIE}={t}"));
        let found = |h: HeaderMap| {
            let gate = &gate;
            let sessions = &sessions;
            async move { gate.session(sessions, &h, None).await }
        };
        let all = headers(&[bearer(&a), proto(&p), cookie(&c)]);
        let (claims, carrier) = found(all).await.unwrap();
        assert_eq!(
            (claims.sub.as_str(), carrier),
            ("auth", Carrier::Authorization)
        );
        let (claims, carrier) = found(headers(&[proto(&p), cookie(&c)])).await.unwrap();
        assert_eq!((claims.sub.as_str(), carrier), ("proto", Carrier::Protocol));
        // A bearer token of another issuer is tried last: it does not hide the cookie.
        let foreign = headers(&[bearer("x.eyJpc3MiOiJvdGhlciJ9.y"), cookie(&c)]);
        let (claims, carrier) = found(foreign).await.unwrap();
        assert_eq!((claims.sub.as_str(), carrier), ("cookie", Carrier::Cookie));
        // Alone, it is tried, and refused.
        let foreign = headers(&[bearer("x.eyJpc3MiOiJvdGhlciJ9.y")]);
        assert_eq!(found(foreign).await.unwrap_err(), SessionRejected::Invalid);
        // The first carrier present decides: a bad protocol entry is not passed over.
        let bad_first = headers(&[proto("not-a-token"), cookie(&c)]);
        assert_eq!(
            found(bad_first).await.unwrap_err(),
            SessionRejected::Invalid
        );
        assert_eq!(
            found(HeaderMap::new()).await.unwrap_err(),
            SessionRejected::Required
        );
    }

    #[tokio::test]
    async fn a_ticket_opens_once_and_never_after_its_session_is_revoked() {
        let gate = Gate::new(Duration::from_secs(3600), None);
        let sessions = sessions();
        let claims = Arc::new(sessions.verify(&mint(&sessions, "u")).unwrap());
        let ticket = gate
            .issue_ticket(claims.clone(), Duration::from_secs(30))
            .await;
        let none = HeaderMap::new();
        let (found, carrier) = gate.session(&sessions, &none, Some(&ticket)).await.unwrap();
        assert_eq!((found.sub.as_str(), carrier), ("u", Carrier::Ticket));
        let again = gate.session(&sessions, &none, Some(&ticket)).await;
        assert_eq!(again.unwrap_err(), SessionRejected::Ticket);

        let ticket = gate
            .issue_ticket(claims.clone(), Duration::from_secs(30))
            .await;
        gate.revoke_session(&claims);
        let revoked = gate.session(&sessions, &none, Some(&ticket)).await;
        assert_eq!(revoked.unwrap_err(), SessionRejected::Ticket);
    }
}
