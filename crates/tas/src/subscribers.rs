//! Subscribers between the shape of the config file (`[[subscriber]]`) and the rows of the
//! store: the behaviours go into the store as JSON of the config's shape and come back checked
//! as the config's are.

use thiserror::Error;

use crate::config::SubscriberConfig;
use store::SubscriberRow;

/// A stored subscriber the TAS cannot use.
#[derive(Debug, Error)]
pub enum SubscriberRowError {
    /// A behaviour's JSON does not read as a behaviour.
    #[error("subscriber {number}: its {direction} behaviour in the database is not valid: {source}")]
    Behaviour {
        /// The subscriber.
        number: String,
        /// `mo` or `mt`.
        direction: &'static str,
        /// The JSON reader's error.
        #[source]
        source: serde_json::Error,
    },
    /// The behaviours could not be written as JSON.
    #[error("subscriber {number}: its behaviours cannot be written for the database: {source}")]
    Unwritable {
        /// The subscriber.
        number: String,
        /// The JSON writer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The behaviour reads, but makes no sense (as a config file with it would be refused).
    #[error("subscriber {number}: {reason}")]
    Invalid {
        /// The subscriber.
        number: String,
        /// What is wrong.
        reason: String,
    },
}

/// The row the store keeps for `subscriber`.
pub fn to_row(subscriber: &SubscriberConfig) -> Result<SubscriberRow, serde_json::Error> {
    let json = |behaviour: &Option<crate::call::action::BehaviourConfig>| {
        behaviour.as_ref().map(serde_json::to_string).transpose()
    };
    Ok(SubscriberRow {
        phone_number: subscriber.phone_number.clone(),
        route_type: subscriber.route_type,
        mo_prefix: subscriber.mo_prefix.clone(),
        mt_prefix: subscriber.mt_prefix.clone(),
        mo_behaviour: json(&subscriber.mo)?,
        mt_behaviour: json(&subscriber.mt)?,
    })
}

/// The row for `subscriber`, checked as the TAS will read it back (so nothing is written that
/// an instance would refuse to serve).
pub fn checked_row(subscriber: &SubscriberConfig) -> Result<SubscriberRow, SubscriberRowError> {
    let row = to_row(subscriber)
        .map_err(|source| SubscriberRowError::Unwritable { number: subscriber.phone_number.to_string(), source })?;
    from_row(row.clone())?;
    Ok(row)
}

/// The subscriber a stored row describes, its behaviours checked.
pub fn from_row(row: SubscriberRow) -> Result<SubscriberConfig, SubscriberRowError> {
    let number = row.phone_number.to_string();
    let read = |json: Option<String>, direction: &'static str| {
        json.map(|json| serde_json::from_str(&json)).transpose().map_err(|source| SubscriberRowError::Behaviour {
            number: number.clone(),
            direction,
            source,
        })
    };
    let subscriber = SubscriberConfig {
        phone_number: row.phone_number,
        route_type: row.route_type,
        mo_prefix: row.mo_prefix,
        mt_prefix: row.mt_prefix,
        mo: read(row.mo_behaviour, "mo")?,
        mt: read(row.mt_behaviour, "mt")?,
    };
    subscriber.check().map_err(|reason| SubscriberRowError::Invalid { number, reason })?;
    Ok(subscriber)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_goes_into_a_row_and_comes_back_the_same() {
        let config: crate::config::ServeConfig = toml::from_str(
            r#"
            tas = { sip_uri = "sips:tas.example.com" }
            core = { endpoint = "https://core.example.com" }
            [[subscriber]]
            phone_number = "+4799990001"
            route_type = "loop"
            mo_prefix = "11"
            mt_prefix = "22"
            mo = "reject 486"
            mt = { action = "forward +4712345678", ring_time = "2s", on_busy = "answer voicemail" }
            "#,
        )
        .unwrap();
        let subscriber = &config.subscribers[0];
        let row = to_row(subscriber).unwrap();
        assert_eq!(row.mo_behaviour.as_deref(), Some("\"reject 486 Busy Here\""));
        assert_eq!(&from_row(row).unwrap(), subscriber);
    }

    #[test]
    fn a_behaviour_the_tas_cannot_read_is_named() {
        let mut row = to_row(&SubscriberConfig {
            phone_number: "+4799990001".parse().unwrap(),
            route_type: domain::types::RouteType::Loop,
            mo_prefix: None,
            mt_prefix: None,
            mo: None,
            mt: None,
        })
        .unwrap();
        row.mt_behaviour = Some("\"teleport\"".into());
        let error = from_row(row).unwrap_err().to_string();
        assert!(error.contains("+4799990001") && error.contains("mt behaviour"), "{error}");
    }
}
