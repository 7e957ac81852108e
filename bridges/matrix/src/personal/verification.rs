//! Emoji verification of a login's session by another of the user's sessions (Element on
//! their phone, say), in three steps of the "Verify this session" command: the gateway asks
//! the user's other sessions to verify this one; once one of them accepted, it starts the
//! comparison there (or accepts it, if the other session started it) and shows the user
//! the emoji; the user's answer confirms the comparison, or cancels it as a mismatch. Once
//! both sides confirmed, the other session signs this one with the user's cross-signing
//! key, and matrix-sdk asks it for the secrets it keeps (the cross-signing keys, the key
//! backup's key); with the self-signing key, this session can sign itself too.
//!
//! A request the other session makes (the user pressing "Verify" on the gateway's session
//! in Element) is not taken: nothing could show its emoji until the user asks here.

use std::time::Duration;

use causeway_bridge::{BridgeError, Emoji};
use futures::StreamExt;
use matrix_sdk::encryption::verification::{
    CancelInfo, SasState, SasVerification, Verification, VerificationRequest,
    VerificationRequestState,
};
use tokio::sync::Mutex;
use tokio::time::{timeout_at, Instant};

/// How long a step waits for the other session before answering that it has not gone on
/// yet: within what XMPP clients wait for an answer.
const STEP: Duration = Duration::from_secs(25);

/// How long the last step waits for the other session's confirmation, then for this
/// session to be signed.
const CONFIRMED: Duration = Duration::from_secs(15);
const SIGNED: Duration = Duration::from_secs(15);

/// A login's comparison under way, if any.
#[derive(Debug, Default)]
pub(crate) struct Comparison(Mutex<Option<Flow>>);

#[derive(Debug)]
enum Flow {
    /// The request went to the user's other sessions.
    Requested(VerificationRequest),
    /// One of them took it: the emoji comparison is under way.
    Comparing(SasVerification),
}

impl Flow {
    async fn cancel(self) {
        // Best effort: the other session times the flow out anyway.
        let _ = match self {
            Flow::Requested(request) => request.cancel().await,
            Flow::Comparing(sas) => sas.cancel().await,
        };
    }
}

impl Comparison {
    /// Ask the user's other sessions to verify this one, calling off a comparison under way.
    pub(crate) async fn request(&self, sdk: &matrix_sdk::Client) -> Result<(), BridgeError> {
        let own = sdk.user_id().expect("a logged-in client");
        let identity = sdk
            .encryption()
            .request_user_identity(own)
            .await
            .map_err(|e| BridgeError::Unreachable(format!("cannot fetch your keys: {e}")))?;
        let Some(identity) = identity else {
            return Err(BridgeError::Refused(
                "your account has no cross-signing keys yet: set up verification (secure \
                 backup) in Element first, then ask again"
                    .into(),
            ));
        };
        let request = identity.request_verification().await.map_err(|e| {
            BridgeError::Unreachable(format!("cannot send the verification request: {e}"))
        })?;
        let old = self.0.lock().await.replace(Flow::Requested(request));
        if let Some(old) = old {
            old.cancel().await;
        }
        Ok(())
    }

    /// The emoji to compare, once another session took the request and the keys are
    /// exchanged; `None` while that has not happened (within [`STEP`]).
    pub(crate) async fn emoji(&self) -> Result<Option<Vec<Emoji>>, BridgeError> {
        let deadline = Instant::now() + STEP;
        let mut flow = self.0.lock().await;
        let sas = match flow.take() {
            None => return Err(no_flow()),
            Some(Flow::Comparing(sas)) => sas,
            Some(Flow::Requested(request)) => match taken(&request, deadline).await {
                Ok(Some(sas)) => sas,
                Ok(None) => {
                    *flow = Some(Flow::Requested(request));
                    return Ok(None);
                }
                Err(e) => {
                    let _ = request.cancel().await;
                    return Err(e);
                }
            },
        };
        let shown = keys_exchanged(&sas, deadline).await;
        match &shown {
            Ok(_) => *flow = Some(Flow::Comparing(sas)),
            Err(_) => {
                let _ = sas.cancel().await;
            }
        }
        shown
    }

    /// The user's answer to the comparison: confirmed, the session is signed (within
    /// [`SIGNED`]); a mismatch cancels it.
    pub(crate) async fn confirm(
        &self,
        sdk: &matrix_sdk::Client,
        matching: bool,
    ) -> Result<(), BridgeError> {
        let sas = {
            let mut flow = self.0.lock().await;
            match flow.take() {
                Some(Flow::Comparing(sas)) => sas,
                // The emoji are not shown yet: the request stays as it is.
                other => {
                    *flow = other;
                    return Err(BridgeError::Invalid(
                        "no emoji were shown to compare yet: go back a step".into(),
                    ));
                }
            }
        };
        if !matching {
            let _ = sas.mismatch().await;
            return Err(BridgeError::Refused(
                "the emoji did not match, so the verification was called off and nothing \
                 was trusted: start again, or use your recovery key"
                    .into(),
            ));
        }
        sas.confirm()
            .await
            .map_err(|e| BridgeError::Unreachable(format!("cannot send the confirmation: {e}")))?;
        done(&sas).await?;
        signed(sdk).await
    }
}

fn no_flow() -> BridgeError {
    BridgeError::Invalid("no verification is under way: run the command again".into())
}

fn cancelled(info: &CancelInfo) -> BridgeError {
    BridgeError::Refused(format!(
        "the verification was called off: {}",
        info.reason()
    ))
}

/// The comparison, once the other session took `request`: started here when that session
/// is merely ready, accepted when it started one. `None` while it has not taken it.
async fn taken(
    request: &VerificationRequest,
    deadline: Instant,
) -> Result<Option<SasVerification>, BridgeError> {
    let mut changes = request.changes();
    let mut state = request.state();
    loop {
        match state {
            VerificationRequestState::Created { .. }
            | VerificationRequestState::Requested { .. } => {}
            VerificationRequestState::Ready { .. } => {
                let started = request.start_sas().await.map_err(|e| {
                    BridgeError::Unreachable(format!("cannot start the comparison: {e}"))
                })?;
                return started.map(Some).ok_or_else(|| {
                    BridgeError::Refused("your other session cannot compare emoji".into())
                });
            }
            VerificationRequestState::Transitioned {
                verification: Verification::SasV1(sas),
                ..
            } => {
                if !sas.we_started() {
                    sas.accept().await.map_err(|e| {
                        BridgeError::Unreachable(format!("cannot take the comparison: {e}"))
                    })?;
                }
                return Ok(Some(sas));
            }
            VerificationRequestState::Transitioned { .. } => {
                return Err(BridgeError::Refused(
                    "your other session chose another way to verify: choose to compare emoji \
                     there"
                        .into(),
                ))
            }
            VerificationRequestState::Done => return Err(no_flow()),
            VerificationRequestState::Cancelled(info) => return Err(cancelled(&info)),
        }
        match timeout_at(deadline, changes.next()).await {
            Ok(Some(next)) => state = next,
            Ok(None) | Err(_) => return Ok(None),
        }
    }
}

/// The emoji, once both sides have each other's keys; `None` while they have not.
async fn keys_exchanged(
    sas: &SasVerification,
    deadline: Instant,
) -> Result<Option<Vec<Emoji>>, BridgeError> {
    let mut changes = sas.changes();
    let mut state = sas.state();
    loop {
        match &state {
            SasState::Cancelled(info) => return Err(cancelled(info)),
            SasState::KeysExchanged { .. } | SasState::Confirmed | SasState::Done { .. } => {
                let Some(emoji) = sas.emoji() else {
                    return Err(BridgeError::Refused(
                        "your other session compares numbers, not emoji: choose emoji there".into(),
                    ));
                };
                let emoji = emoji.iter().map(|e| Emoji {
                    symbol: e.symbol.into(),
                    name: e.description.into(),
                });
                return Ok(Some(emoji.collect()));
            }
            SasState::Created { .. } | SasState::Started { .. } | SasState::Accepted { .. } => {}
        }
        match timeout_at(deadline, changes.next()).await {
            Ok(Some(next)) => state = next,
            Ok(None) | Err(_) => return Ok(None),
        }
    }
}

/// Until the other session confirmed as well.
async fn done(sas: &SasVerification) -> Result<(), BridgeError> {
    let mut changes = sas.changes();
    let mut state = sas.state();
    let deadline = Instant::now() + CONFIRMED;
    loop {
        match &state {
            SasState::Done { .. } => return Ok(()),
            SasState::Cancelled(info) => return Err(cancelled(info)),
            _ => {}
        }
        match timeout_at(deadline, changes.next()).await {
            Ok(Some(next)) => state = next,
            Ok(None) | Err(_) => {
                let _ = sas.cancel().await;
                return Err(BridgeError::Refused(
                    "your other session did not confirm the emoji within 15 s: start again".into(),
                ));
            }
        }
    }
}

/// Until this session is signed with the user's cross-signing key: by the other session,
/// or by this one once it has the self-signing key from it.
async fn signed(sdk: &matrix_sdk::Client) -> Result<(), BridgeError> {
    let encryption = sdk.encryption();
    let deadline = Instant::now() + SIGNED;
    loop {
        let device = encryption.get_own_device().await.ok().flatten();
        if let Some(device) = device {
            if device.is_cross_signed_by_owner() {
                return Ok(());
            }
            let can_sign = encryption
                .cross_signing_status()
                .await
                .is_some_and(|status| status.has_self_signing);
            if can_sign {
                return device
                    .verify()
                    .await
                    .map_err(|e| BridgeError::Refused(format!("cannot sign this session: {e}")));
            }
        }
        if Instant::now() >= deadline {
            return Err(BridgeError::Refused(
                "the emoji matched, but no signature for this session came from your other \
                 session: verify with your recovery key instead"
                    .into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
