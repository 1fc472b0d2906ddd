//! Route sets (RFC 3261 §12.1 and §12.2.1.1): the proxies that asked to stay in a dialog's path
//! with Record-Route, and what a request inside the dialog carries because of them (its
//! Request-URI and Route headers) and where it goes first.

use super::message::header::{NameAddr, RecordRoute};
use super::message::{Headers, Uri};

/// A dialog's route set, in the order requests carry it (first: the next hop).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSet(Vec<NameAddr>);

/// What a request inside a dialog carries and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InDialogRoute {
    /// Its Request-URI: the remote target, or the first route for a strict router.
    pub request_uri: Uri,
    /// Its Route header values, in order.
    pub routes: Vec<String>,
    /// Where the request is sent: the first route, or the remote target when there is none.
    pub next_hop: Uri,
}

/// Every Record-Route value of `headers`, in order; values that do not parse are left out
/// (a route to nowhere cannot be followed anyway).
fn record_routes(headers: &Headers) -> Vec<NameAddr> {
    headers.parsed_all::<RecordRoute>().into_iter().map(|RecordRoute(route)| route).collect()
}

impl RouteSet {
    /// The route set of a UAS: the request's Record-Route values in order (RFC 3261 §12.1.1).
    pub fn of_uas(request: &Headers) -> Self {
        Self(record_routes(request))
    }

    /// The route set of a UAC: the response's Record-Route values in reverse order (§12.1.2).
    pub fn of_uac(response: &Headers) -> Self {
        let mut routes = record_routes(response);
        routes.reverse();
        Self(routes)
    }

    /// Whether no proxy asked to stay in the path.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The route values, in the order requests carry them.
    pub fn iter(&self) -> impl Iterator<Item = &NameAddr> {
        self.0.iter()
    }

    /// How a request to `remote_target` travels (RFC 3261 §12.2.1.1): behind a loose router
    /// (`lr`) the Request-URI is the remote target and every route goes in Route; a strict
    /// router takes the first route as Request-URI, the rest and then the remote target as Route.
    pub fn route(&self, remote_target: &Uri) -> InDialogRoute {
        let Some(first) = self.0.first() else {
            return InDialogRoute {
                request_uri: remote_target.clone(),
                routes: Vec::new(),
                next_hop: remote_target.clone(),
            };
        };
        let loose = first.uri.as_sip().is_some_and(|sip| sip.params.get("lr").is_some());
        if loose {
            return InDialogRoute {
                request_uri: remote_target.clone(),
                routes: self.0.iter().map(NameAddr::to_string).collect(),
                next_hop: first.uri.clone(),
            };
        }
        // Parameters a Request-URI may not carry (RFC 3261 §19.1.1 table 1): headers and `method`.
        let mut request_uri = first.uri.clone();
        if let Uri::Sip(sip) = &mut request_uri {
            sip.headers = None;
            sip.params.remove("method");
        }
        let mut routes: Vec<String> = self.0[1..].iter().map(NameAddr::to_string).collect();
        routes.push(format!("<{remote_target}>"));
        InDialogRoute { request_uri: request_uri.clone(), routes, next_hop: request_uri }
    }
}

/// Copies every Record-Route value of `request` into `response`, in order (RFC 3261 §12.1.1:
/// each response that creates a dialog carries them, so the caller learns the route set too).
pub fn copy_record_route(request: &Headers, response: &mut Headers) {
    for value in request.get_all("Record-Route") {
        response.push("Record-Route", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> Headers {
        let mut headers = Headers::new();
        for line in lines {
            headers.push("Record-Route", *line);
        }
        headers
    }

    fn uri(text: &str) -> Uri {
        Uri::parse(text).unwrap()
    }

    #[test]
    fn a_uas_keeps_the_order_and_a_uac_reverses_it() {
        let headers = headers(&["<sip:p1.example;lr>, <sip:p2.example;lr;ftag=x>", "<sips:p3.example:5061;lr>"]);
        let uas: Vec<String> = RouteSet::of_uas(&headers).iter().map(NameAddr::to_string).collect();
        assert_eq!(uas, ["<sip:p1.example;lr>", "<sip:p2.example;lr;ftag=x>", "<sips:p3.example:5061;lr>"]);
        let uac: Vec<String> = RouteSet::of_uac(&headers).iter().map(NameAddr::to_string).collect();
        assert_eq!(uac, ["<sips:p3.example:5061;lr>", "<sip:p2.example;lr;ftag=x>", "<sip:p1.example;lr>"]);
    }

    #[test]
    fn loose_routers_keep_the_remote_target_as_request_uri() {
        let set = RouteSet::of_uas(&headers(&["<sip:127.0.0.1:5080;transport=tcp;lr>", "<sip:10.0.0.1;lr>"]));
        let route = set.route(&uri("sip:tas@192.0.2.9:5061;transport=tls"));
        assert_eq!(route.request_uri, uri("sip:tas@192.0.2.9:5061;transport=tls"));
        assert_eq!(route.routes, ["<sip:127.0.0.1:5080;transport=tcp;lr>", "<sip:10.0.0.1;lr>"]);
        assert_eq!(route.next_hop, uri("sip:127.0.0.1:5080;transport=tcp;lr"));
    }

    #[test]
    fn a_strict_router_becomes_the_request_uri_and_the_target_the_last_route() {
        let set = RouteSet::of_uas(&headers(&["<sip:strict.example;method=INVITE?X=1>", "<sip:p2.example;lr>"]));
        let route = set.route(&uri("sip:bob@192.0.2.4"));
        assert_eq!(route.request_uri, uri("sip:strict.example"));
        assert_eq!(route.routes, ["<sip:p2.example;lr>", "<sip:bob@192.0.2.4>"]);
        assert_eq!(route.next_hop, uri("sip:strict.example"));
    }

    #[test]
    fn without_routes_the_request_goes_to_the_remote_target() {
        let route = RouteSet::default().route(&uri("sip:bob@192.0.2.4"));
        assert!(route.routes.is_empty());
        assert_eq!((route.request_uri.clone(), route.next_hop), (uri("sip:bob@192.0.2.4"), uri("sip:bob@192.0.2.4")));
        let mut response = Headers::new();
        copy_record_route(&headers(&["<sip:a;lr>", "<sip:b;lr>"]), &mut response);
        assert_eq!(response.get_all("Record-Route").collect::<Vec<_>>(), ["<sip:a;lr>", "<sip:b;lr>"]);
    }
}
