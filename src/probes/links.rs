//! Link state of the interfaces the service needs (the VIPs' and nova's public interface),
//! from rtnetlink events: no polling. A link is up when it is administratively up and has
//! carrier (`IFF_UP` and `IFF_LOWER_UP`), as `ip link` shows `state UP`.

use std::collections::BTreeMap;

use futures::StreamExt;
use rtnetlink::constants::RTMGRP_LINK;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use tokio::sync::mpsc;

use super::Verdict;
use crate::cluster::Probe;

/// Why the link probe cannot run.
#[derive(Debug, thiserror::Error)]
pub enum LinksError {
    /// The netlink socket could not be opened or bound to the link group.
    #[error("cannot listen to netlink link events: {0}")]
    Socket(#[from] std::io::Error),
}

/// Name and up-ness of a link message, if it names one of `watched`.
fn link_state(msg: &LinkMessage, watched: &[String]) -> Option<(String, bool)> {
    let name = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })?;
    if !watched.contains(&name) {
        return None;
    }
    let flags = msg.header.flags;
    Some((
        name,
        flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp),
    ))
}

/// Watches `interfaces` until the receiver is dropped; sends a verdict whenever the set of
/// down links changes (and one at start). A link that does not exist counts as down.
pub async fn watch(
    interfaces: Vec<String>,
    verdicts: mpsc::Sender<Verdict>,
) -> Result<(), LinksError> {
    let (mut conn, handle, mut messages) = rtnetlink::new_connection()?;
    conn.socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, RTMGRP_LINK))?;
    tokio::spawn(conn);

    let mut up: BTreeMap<String, bool> = interfaces.iter().map(|i| (i.clone(), false)).collect();
    let mut links = handle.link().get().execute();
    while let Some(Ok(msg)) = links.next().await {
        if let Some((name, is_up)) = link_state(&msg, &interfaces) {
            up.insert(name, is_up);
        }
    }
    let mut reported: Option<Vec<String>> = None;
    loop {
        let down: Vec<String> = up
            .iter()
            .filter(|(_, u)| !**u)
            .map(|(n, _)| n.clone())
            .collect();
        if reported.as_ref() != Some(&down) {
            let detail = if down.is_empty() {
                format!("links up: {}", interfaces.join(", "))
            } else {
                format!("links down: {}", down.join(", "))
            };
            let verdict = Verdict {
                probe: Probe::Links,
                ok: down.is_empty(),
                detail,
            };
            if verdicts.send(verdict).await.is_err() {
                return Ok(());
            }
            reported = Some(down);
        }
        let Some((message, _)) = messages.next().await else {
            return Ok(());
        };
        match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(msg)) => {
                if let Some((name, is_up)) = link_state(&msg, &interfaces) {
                    up.insert(name, is_up);
                }
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(msg)) => {
                if let Some((name, _)) = link_state(&msg, &interfaces) {
                    up.insert(name, false);
                }
            }
            _ => {}
        }
    }
}
