//! The client behind a request: its IP address, taken from the socket, or
//! from `X-Forwarded-For` only when the socket peer is a trusted proxy.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::dev::Payload;
use actix_web::http::header::USER_AGENT;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::{ready, Ready};
use ipnet::IpNet;

use crate::domain::ClientInfo;
use crate::errors::ApiError;

/// Walks `X-Forwarded-For` from the right (the hop nearest to us), skipping
/// trusted proxies; the first untrusted address is the client. A malformed
/// entry ends the walk at the last address known to be sound.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer;
    if !is_trusted(&client) {
        return client;
    }
    for hop in forwarded_for.rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

fn client_info(req: &HttpRequest) -> Result<ClientInfo, ApiError> {
    let state = super::app_state(req)?;
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip());
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let ip = client_ip(peer, forwarded.into_iter(), &state.trusted_proxies);
    let user_agent = req
        .headers()
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(ClientInfo::MAX_USER_AGENT).collect());
    Ok(ClientInfo { ip, user_agent })
}

impl FromRequest for ClientInfo {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(client_info(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let got = client_ip(
            ip("198.51.100.7"),
            ["1.2.3.4"].into_iter(),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(got, ip("198.51.100.7"));
        let got = client_ip(ip("198.51.100.7"), ["1.2.3.4"].into_iter(), &[]);
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn trusted_proxies_are_skipped_from_the_right() {
        let trusted = nets(&["10.0.0.0/8"]);
        // client spoofs a first entry; the real client is the one our proxy saw.
        let hops = ["6.6.6.6", "203.0.113.9", "10.0.0.2"];
        let got = client_ip(ip("10.0.0.1"), hops.into_iter(), &trusted);
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn malformed_or_missing_entries_fall_back_to_the_last_sound_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_ip(
            ip("10.0.0.1"),
            ["garbage", "10.0.0.3"].into_iter(),
            &trusted,
        );
        assert_eq!(got, ip("10.0.0.3"));
        let got = client_ip(ip("10.0.0.1"), std::iter::empty(), &trusted);
        assert_eq!(got, ip("10.0.0.1"));
        let got = client_ip(ip("10.0.0.1"), [" 2001:db8::1 "].into_iter(), &trusted);
        assert_eq!(got, ip("2001:db8::1"));
    }
}
