//! The operator's gRPC contract (`proto/`), generated at build time, with conversions to the
//! project's own types and the proto3 JSON form that grpcurl prints.

/// Package `wgtwo.sipbreakout.v1` (generated: its items are documented in the proto file).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod sipbreakout {
    /// Version 1 of the SIP Breakout API.
    pub mod v1 {
        tonic::include_proto!("wgtwo.sipbreakout.v1");
    }
}

/// Package `wgtwo.sms.v1` (generated: its items are documented in the proto file).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod sms {
    /// Version 1 of the SMS API.
    pub mod v1 {
        tonic::include_proto!("wgtwo.sms.v1");
    }
}

/// Package `wgtwo.common.v1` (generated).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod common {
    /// Version 1 of the common types.
    pub mod v1 {
        tonic::include_proto!("wgtwo.common.v1");
    }
}

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::types::{InvalidValue, Msisdn, Prefix, Registration, RouteType, SipsUri};
use sipbreakout::v1 as pb;

impl From<RouteType> for pb::RouteType {
    fn from(route: RouteType) -> Self {
        match route {
            RouteType::Loop => pb::RouteType::Loop,
            RouteType::LoopMo => pb::RouteType::LoopMo,
            RouteType::LoopMt => pb::RouteType::LoopMt,
            RouteType::Fork => pb::RouteType::Fork,
            RouteType::Fallback => pb::RouteType::Fallback,
            RouteType::Ingress => pb::RouteType::Ingress,
        }
    }
}

impl RouteType {
    /// Reads the wire enum; `None` for UNSPECIFIED or a number this build does not know.
    pub fn from_wire(value: i32) -> Option<Self> {
        match pb::RouteType::try_from(value).ok()? {
            pb::RouteType::Unspecified => None,
            pb::RouteType::Loop => Some(RouteType::Loop),
            pb::RouteType::LoopMo => Some(RouteType::LoopMo),
            pb::RouteType::LoopMt => Some(RouteType::LoopMt),
            pb::RouteType::Fork => Some(RouteType::Fork),
            pb::RouteType::Fallback => Some(RouteType::Fallback),
            pb::RouteType::Ingress => Some(RouteType::Ingress),
        }
    }
}

impl From<&Registration> for pb::Registration {
    fn from(registration: &Registration) -> Self {
        let prefix = |p: &Option<Prefix>| p.as_ref().map(|p| p.as_str().to_owned()).unwrap_or_default();
        pb::Registration {
            mobile_originating_prefix: prefix(&registration.mo_prefix),
            mobile_terminating_prefix: prefix(&registration.mt_prefix),
            sip_uri: registration.sip_uri.as_str().to_owned(),
            route_type: pb::RouteType::from(registration.route_type) as i32,
            phone_number: registration
                .phone_number
                .as_ref()
                .map(|number| common::v1::E164 { e164: number.as_str().to_owned() }),
        }
    }
}

/// Why a wire registration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireRegistrationError {
    /// A field held a value that does not validate.
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    /// `route_type` was UNSPECIFIED or unknown.
    #[error("route_type must be one of LOOP, LOOP_MO, LOOP_MT, FORK, FALLBACK, INGRESS (got {0})")]
    RouteType(i32),
}

impl TryFrom<&pb::Registration> for Registration {
    type Error = WireRegistrationError;
    fn try_from(wire: &pb::Registration) -> Result<Self, Self::Error> {
        let sip_uri = SipsUri::parse(&wire.sip_uri)?;
        let phone_number = match &wire.phone_number {
            Some(number) if !number.e164.is_empty() => Some(Msisdn::parse(&number.e164)?),
            _ => None,
        };
        let route_type =
            RouteType::from_wire(wire.route_type).ok_or(WireRegistrationError::RouteType(wire.route_type))?;
        Ok(Registration {
            phone_number,
            sip_uri,
            route_type,
            mo_prefix: Prefix::from_wire(&wire.mobile_originating_prefix)?,
            mt_prefix: Prefix::from_wire(&wire.mobile_terminating_prefix)?,
        })
    }
}

/// Converts the wire duration, treating a missing or negative one as zero.
pub fn duration_from_wire(duration: Option<&prost_types::Duration>) -> Option<Duration> {
    let duration = duration?;
    let seconds = u64::try_from(duration.seconds).unwrap_or(0);
    let nanos = u32::try_from(duration.nanos).unwrap_or(0);
    Some(Duration::new(seconds, nanos))
}

/// Converts to the wire duration.
pub fn duration_to_wire(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

/// The proto3 JSON form of an upsert answer, as grpcurl prints it.
pub fn upsert_response_json(response: &pb::UpsertRegistrationResponse) -> Value {
    let mut object = status_json(response.status_code, &response.error_message);
    if let Some(ttl) = &response.time_to_live {
        object.insert("timeToLive".into(), Value::String(duration_json(ttl)));
    }
    Value::Object(object)
}

/// The proto3 JSON form of a delete answer, as grpcurl prints it.
pub fn delete_response_json(response: &pb::DeleteRegistrationResponse) -> Value {
    Value::Object(status_json(response.status_code, &response.error_message))
}

/// The proto3 JSON form of a registration (camelCase names, enum names, default values left out).
pub fn registration_json(registration: &pb::Registration) -> Value {
    let mut object = Map::new();
    let mut put = |name: &str, value: &str| {
        if !value.is_empty() {
            object.insert(name.into(), Value::String(value.into()));
        }
    };
    put("mobileOriginatingPrefix", &registration.mobile_originating_prefix);
    put("mobileTerminatingPrefix", &registration.mobile_terminating_prefix);
    put("sipUri", &registration.sip_uri);
    if registration.route_type != 0 {
        object.insert(
            "routeType".into(),
            enum_json(registration.route_type, |v| pb::RouteType::try_from(v).ok().map(|r| r.as_str_name())),
        );
    }
    if let Some(number) = &registration.phone_number {
        object.insert("phoneNumber".into(), json!({ "e164": number.e164 }));
    }
    Value::Object(object)
}

fn status_json(status_code: i32, error_message: &str) -> Map<String, Value> {
    let mut object = Map::new();
    if status_code != 0 {
        let name = enum_json(status_code, |v| pb::StatusCode::try_from(v).ok().map(|s| s.as_str_name()));
        object.insert("statusCode".into(), name);
    }
    if !error_message.is_empty() {
        object.insert("errorMessage".into(), Value::String(error_message.into()));
    }
    object
}

/// proto3 JSON writes known enum values by name and unknown ones as their number.
fn enum_json(value: i32, name: impl Fn(i32) -> Option<&'static str>) -> Value {
    match name(value) {
        Some(name) => Value::String(name.into()),
        None => Value::from(value),
    }
}

/// proto3 JSON duration: seconds with 0, 3, 6 or 9 fractional digits and an `s`.
fn duration_json(duration: &prost_types::Duration) -> String {
    let sign = if duration.seconds < 0 || duration.nanos < 0 { "-" } else { "" };
    let seconds = duration.seconds.unsigned_abs();
    let nanos = duration.nanos.unsigned_abs();
    if nanos == 0 {
        format!("{sign}{seconds}s")
    } else if nanos % 1_000_000 == 0 {
        format!("{sign}{seconds}.{:03}s", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{sign}{seconds}.{:06}s", nanos / 1_000)
    } else {
        format!("{sign}{seconds}.{nanos:09}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn json_matches_grpcurl() {
        let ok = pb::UpsertRegistrationResponse {
            status_code: pb::StatusCode::Ok as i32,
            error_message: String::new(),
            time_to_live: Some(prost_types::Duration { seconds: 3600, nanos: 0 }),
        };
        assert_eq!(upsert_response_json(&ok).to_string(), r#"{"statusCode":"STATUS_CODE_OK","timeToLive":"3600s"}"#);
        let refused = pb::DeleteRegistrationResponse {
            status_code: pb::StatusCode::NotAcceptable as i32,
            error_message: "Secure SIP domain name required".into(),
        };
        assert_eq!(
            delete_response_json(&refused).to_string(),
            r#"{"errorMessage":"Secure SIP domain name required","statusCode":"STATUS_CODE_NOT_ACCEPTABLE"}"#
        );
        assert_eq!(duration_json(&prost_types::Duration { seconds: 1, nanos: 500_000_000 }), "1.500s");
        assert_eq!(duration_json(&prost_types::Duration { seconds: 0, nanos: 1 }), "0.000000001s");
    }

    /// Field numbers are the contract: check the encoded bytes, not just the generated names.
    #[test]
    fn wire_bytes_use_the_documented_field_numbers() {
        let registration = Registration {
            phone_number: Some(Msisdn::parse("+47").unwrap()),
            sip_uri: SipsUri::parse("sips:a.b").unwrap(),
            route_type: RouteType::LoopMt,
            mo_prefix: Some(Prefix::parse("1").unwrap()),
            mt_prefix: Some(Prefix::parse("2").unwrap()),
        };
        let request = pb::UpsertRegistrationRequest { registration: Some((&registration).into()) };
        let bytes = request.encode_to_vec();
        let inner: Vec<u8> = [
            vec![0x0a, 1, b'1'], // 1: mobile_originating_prefix
            vec![0x12, 1, b'2'], // 2: mobile_terminating_prefix
            vec![0x1a, 8],       // 3: sip_uri
            b"sips:a.b".to_vec(),
            vec![0x20, 5],          // 4: route_type = ROUTE_TYPE_LOOP_MT (5)
            vec![0x2a, 5, 0x0a, 3], // 5: phone_number { 1: e164 }
            b"+47".to_vec(),
        ]
        .concat();
        let mut expected = vec![0x0a, inner.len() as u8];
        expected.extend(inner);
        assert_eq!(bytes, expected);

        let numbers: Vec<i32> = RouteType::ALL.iter().map(|r| pb::RouteType::from(*r) as i32).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
        assert_eq!(pb::StatusCode::NotAcceptable as i32, 2);

        let response = pb::UpsertRegistrationResponse {
            status_code: 1,
            error_message: "x".into(),
            time_to_live: Some(prost_types::Duration { seconds: 60, nanos: 0 }),
        };
        assert_eq!(response.encode_to_vec(), [0x08, 1, 0x12, 1, b'x', 0x1a, 2, 0x08, 60]);
    }

    /// The SMS API's field and enum numbers, as ../shared/spec/sms-api.md states them.
    #[test]
    fn sms_wire_bytes_use_the_documented_numbers() {
        use sms::v1::{
            send_message_response::SendStatus, MessageClass, SendMessageResponse, SendTextToSubscriberRequest,
        };
        let request = SendTextToSubscriberRequest {
            content: "hi".into(),
            to_subscriber: "+47".into(),
            from_address: "VM".into(),
            delivery_deadline: Some(prost_types::Duration { seconds: 60, nanos: 0 }),
        };
        let expected: Vec<u8> = [
            vec![0x0a, 2],
            b"hi".to_vec(), // 1: content
            vec![0x12, 3],
            b"+47".to_vec(), // 2: to_subscriber
            vec![0x1a, 2],
            b"VM".to_vec(),          // 3: from_address
            vec![0x22, 2, 0x08, 60], // 4: delivery_deadline { 1: seconds }
        ]
        .concat();
        assert_eq!(request.encode_to_vec(), expected);
        let response = SendMessageResponse {
            message_id: "m".into(),
            status: SendStatus::Error as i32,
            description: "d".into(),
            num_fragments: 2,
        };
        assert_eq!(response.encode_to_vec(), [0x0a, 1, b'm', 0x10, 3, 0x1a, 1, b'd', 0x20, 2]);
        let statuses = [SendStatus::Unspecified, SendStatus::Ok, SendStatus::Reject, SendStatus::Error];
        assert_eq!(statuses.map(|status| status as i32), [0, 1, 2, 3]);
        assert_eq!(MessageClass::TeSpecific as i32, 4);
    }

    #[test]
    fn registration_round_trips() {
        let registration = Registration {
            phone_number: Some(Msisdn::parse("+4799990000").unwrap()),
            sip_uri: SipsUri::parse("sips:tas.example.com:5061").unwrap(),
            route_type: RouteType::Fork,
            mo_prefix: None,
            mt_prefix: Some(Prefix::parse("22").unwrap()),
        };
        let wire = pb::Registration::from(&registration);
        assert_eq!(Registration::try_from(&wire), Ok(registration));
        let unspecified = pb::Registration { route_type: 0, ..wire };
        assert_eq!(Registration::try_from(&unspecified), Err(WireRegistrationError::RouteType(0)));
    }
}
