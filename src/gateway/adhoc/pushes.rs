//! `forget-pushes` on the gateway's JID: take out of the user's account what the gateway
//! put there (XEP-0356): its bookmarks of rooms and its contacts.

use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::stanza_error::StanzaError;
use tokio_xmpp::Stanza;

use super::{db_error, response, session_id, AdhocRequest};
use crate::gateway::privilege;
use crate::store::Store;

/// The command's node.
pub(super) const NODE: &str = "forget-pushes";

/// Take the gateway's bookmarks and contacts out of the requester's account: the removals
/// go into `out`, the answer says how many.
pub(super) async fn forget(
    store: &Store,
    request: &AdhocRequest,
    out: &mut Vec<Stanza>,
) -> Result<Element, StanzaError> {
    let session = session_id(&request.command);
    let user = request.requester.to_bare();
    let gateway = request.to.to_bare();
    let pushed = store.forget_pushes(user.as_str()).await.map_err(db_error)?;
    let (mut bookmarks, mut contacts) = (0, 0);
    for (kind, target) in &pushed {
        let Some(removal) = privilege::removal(&gateway, &user, kind, target) else {
            continue;
        };
        match kind.as_str() {
            "bookmark" => bookmarks += 1,
            _ => contacts += 1,
        }
        out.push(removal);
    }
    let note = format!(
        "Taken out of your account: {bookmarks} bookmark(s) and {contacts} contact(s) the gateway \
         had added. Rooms you join and people you write to through the gateway are added again."
    );
    Ok(response(NODE, &session, "completed", None, Some(&note)))
}
