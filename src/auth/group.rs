//! The group provider: several named providers behind one name, combined by a strategy.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;

use super::check::{Check, ProviderError};
use super::decision::{Allow, Decision};
use crate::config::auth::{GroupConfig, Strategy};

/// What a group asks of a member: the registry's provider, of whatever kind, answering a check.
pub(crate) trait Member: Send + Sync {
    /// Asks the member. Denials are `Ok(Decision::Deny)`; only failures are `Err`.
    fn ask<'a>(&'a self, check: &'a Check<'a>) -> BoxFuture<'a, Result<Decision, ProviderError>>;
}

pub(crate) struct GroupProvider<P> {
    strategy: Strategy,
    fallthrough_on_error: bool,
    members: Vec<(String, Arc<P>)>,
}

/// What the members said so far.
#[derive(Default)]
struct Tally {
    first_deny: Option<Decision>,
    first_error: Option<ProviderError>,
}

impl Tally {
    fn add(&mut self, r: Result<Decision, ProviderError>) {
        match r {
            Ok(d @ Decision::Deny(_)) => {
                self.first_deny.get_or_insert(d);
            }
            Err(e) => {
                self.first_error.get_or_insert(e);
            }
            Ok(Decision::Allow(_)) => {}
        }
    }

    /// No member allowed: an error wins over a denial, so a half-known answer is never cached.
    fn finish(self) -> Result<Decision, ProviderError> {
        match (self.first_error, self.first_deny) {
            (Some(e), _) => Err(e),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(ProviderError::Reply("group has no members")),
        }
    }
}

impl<P: Member> GroupProvider<P> {
    pub(crate) fn new(config: &GroupConfig, members: Vec<(String, Arc<P>)>) -> Self {
        Self {
            strategy: config.strategy,
            fallthrough_on_error: config.fallthrough_on_error,
            members,
        }
    }

    pub(crate) async fn check(&self, check: &Check<'_>) -> Result<Decision, ProviderError> {
        match self.strategy {
            Strategy::FirstSuccess => self.first_success(check).await,
            Strategy::All => self.all(check).await,
            Strategy::Ordered => self.ordered(check).await,
        }
    }

    /// Each member is asked under its own name, with the caller's app and token.
    async fn ask(name: &str, member: &P, check: &Check<'_>) -> Result<Decision, ProviderError> {
        let inner = Check {
            app: check.app,
            provider: name,
            token: check.token,
        };
        member.ask(&inner).await
    }

    /// All at once; the first allow wins and dropping the rest cancels their calls.
    async fn first_success(&self, check: &Check<'_>) -> Result<Decision, ProviderError> {
        let mut pending: FuturesUnordered<_> = self
            .members
            .iter()
            .map(|(name, member)| Self::ask(name, member, check))
            .collect();
        let mut tally = Tally::default();
        while let Some(r) = pending.next().await {
            if let Ok(allow @ Decision::Allow(_)) = r {
                return Ok(allow);
            }
            tally.add(r);
        }
        tally.finish()
    }

    /// Every member must allow: permissions intersect, the earliest expiry wins.
    async fn all(&self, check: &Check<'_>) -> Result<Decision, ProviderError> {
        let results = futures_util::future::join_all(
            self.members
                .iter()
                .map(|(name, member)| Self::ask(name, member, check)),
        )
        .await;
        let mut allows: Vec<Arc<Allow>> = Vec::with_capacity(results.len());
        let mut tally = Tally::default();
        for r in results {
            match r {
                Ok(Decision::Allow(a)) => allows.push(a),
                other => tally.add(other),
            }
        }
        if tally.first_error.is_some() || tally.first_deny.is_some() || allows.is_empty() {
            return tally.finish();
        }
        let mut combined = (*allows[0]).clone();
        for a in &allows[1..] {
            combined.permissions = Arc::new(combined.permissions.intersect(&a.permissions));
            combined.expires_at = combined.expires_at.min(a.expires_at);
        }
        Ok(Decision::Allow(Arc::new(combined)))
    }

    /// In turn; a denial falls through, an error too when `fallthrough_on_error`.
    async fn ordered(&self, check: &Check<'_>) -> Result<Decision, ProviderError> {
        let mut tally = Tally::default();
        for (name, member) in &self.members {
            match Self::ask(name, member, check).await {
                Ok(allow @ Decision::Allow(_)) => return Ok(allow),
                Err(e) if !self.fallthrough_on_error => return Err(e),
                other => tally.add(other),
            }
        }
        // Skipped errors only matter when no member gave a definite answer.
        match (tally.first_deny, tally.first_error) {
            (Some(d), _) => Ok(d),
            (None, Some(e)) => Err(e),
            (None, None) => Err(ProviderError::Reply("group has no members")),
        }
    }
}
