//! Engine events as dockerd emits them (`docker events`): a bounded history
//! for `since`, and a broadcast for followers, with Docker's filters.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// One event, serialized in dockerd's shape (with the legacy `status`, `id`
/// and `from` fields older clients read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(rename = "Type")]
    pub typ: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

impl Event {
    pub fn new(
        typ: &str,
        action: &str,
        actor_id: &str,
        attributes: BTreeMap<String, String>,
    ) -> Event {
        let now = chrono::Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or_default();
        let legacy = matches!(typ, "image" | "container");
        Event {
            status: legacy.then(|| action.to_string()),
            id: legacy.then(|| actor_id.to_string()),
            from: (typ == "container")
                .then(|| attributes.get("image").cloned())
                .flatten(),
            typ: typ.to_string(),
            action: action.to_string(),
            actor: Actor {
                id: actor_id.to_string(),
                attributes,
            },
            scope: "local".to_string(),
            time: nanos / 1_000_000_000,
            time_nano: nanos,
        }
    }
}

pub struct EventBus {
    history: Mutex<VecDeque<Event>>,
    capacity: usize,
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    pub fn new(capacity: usize) -> EventBus {
        let (tx, _) = broadcast::channel(capacity);
        EventBus {
            history: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
            tx,
        }
    }

    pub fn publish(&self, event: Event) {
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if history.len() == self.capacity {
            history.pop_front();
        }
        history.push_back(event.clone());
        // Sent while holding the history lock, so a subscriber sees each event
        // exactly once: either in its history snapshot or on its receiver.
        let _ = self.tx.send(event);
    }

    /// Past events (from the bounded history) and a receiver for new ones.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        (history.iter().cloned().collect(), rx)
    }
}

/// Docker's event filters: `type`, `event`, `image`, `container`, `label`,
/// `scope` and friends, each a set of accepted values (OR within a key, AND
/// across keys).
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    filters: BTreeMap<String, Vec<String>>,
}

const FILTER_KEYS: [&str; 12] = [
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "type",
    "volume",
];

impl EventFilter {
    /// Parses the `filters` query parameter (both the map-of-bools and the
    /// list forms dockerd accepts).
    pub fn parse(json: &str) -> Result<EventFilter> {
        let filters = parse_filter_map(json)?;
        for key in filters.keys() {
            if !FILTER_KEYS.contains(&key.as_str()) {
                return Err(Error::InvalidArgument(format!("invalid filter '{key}'")));
            }
        }
        Ok(EventFilter { filters })
    }

    pub fn matches(&self, e: &Event) -> bool {
        self.filters.iter().all(|(key, values)| {
            let any = |f: &dyn Fn(&str) -> bool| values.iter().any(|v| f(v));
            match key.as_str() {
                "type" => any(&|v| v == e.typ),
                "event" => any(&|v| v == e.action || e.action.starts_with(&format!("{v}:"))),
                "scope" => any(&|v| v == e.scope),
                "label" => any(&|v| match v.split_once('=') {
                    Some((k, val)) => e.actor.attributes.get(k).is_some_and(|x| x == val),
                    None => e.actor.attributes.contains_key(v),
                }),
                "image" => {
                    (e.typ == "image" || e.typ == "container")
                        && any(&|v| {
                            e.actor.id == v
                                || e.actor
                                    .id
                                    .strip_prefix("sha256:")
                                    .is_some_and(|h| h.starts_with(v))
                                || e.actor.attributes.get("name").is_some_and(|n| n == v)
                                || e.actor.attributes.get("image").is_some_and(|n| n == v)
                        })
                }
                other => {
                    e.typ == other
                        && any(&|v| {
                            e.actor.id == v
                                || e.actor.id.starts_with(v)
                                || e.actor.attributes.get("name").is_some_and(|n| n == v)
                        })
                }
            }
        })
    }
}

/// `{"key":{"value":true}}` or `{"key":["value"]}` into key → values.
pub fn parse_filter_map(json: &str) -> Result<BTreeMap<String, Vec<String>>> {
    if json.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::InvalidArgument(format!("invalid filters JSON: {e}")))?;
    let Some(map) = value.as_object() else {
        return Err(Error::InvalidArgument(
            "invalid filters: expected a JSON object".into(),
        ));
    };
    let mut out = BTreeMap::new();
    for (key, v) in map {
        let values: Vec<String> = match v {
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(_, on)| on.as_bool().unwrap_or(true))
                .map(|(k, _)| k.clone())
                .collect(),
            serde_json::Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("invalid filter values for '{key}'"))
                })?,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "invalid filter values for '{key}'"
                )))
            }
        };
        out.insert(key.clone(), values);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_event(action: &str, name: &str) -> Event {
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), name.to_string());
        Event::new("image", action, "sha256:abcdef0123", attrs)
    }

    #[test]
    fn filters_select_by_type_event_and_image() {
        let e = image_event("tag", "busybox:latest");
        assert!(EventFilter::parse(r#"{"type":{"image":true}}"#)
            .expect("f")
            .matches(&e));
        assert!(EventFilter::parse(r#"{"type":["image"],"event":["tag"]}"#)
            .expect("f")
            .matches(&e));
        assert!(!EventFilter::parse(r#"{"event":["untag"]}"#)
            .expect("f")
            .matches(&e));
        assert!(EventFilter::parse(r#"{"image":["busybox:latest"]}"#)
            .expect("f")
            .matches(&e));
        assert!(EventFilter::parse(r#"{"image":["abcdef"]}"#)
            .expect("f")
            .matches(&e));
        assert!(!EventFilter::parse(r#"{"container":["x"]}"#)
            .expect("f")
            .matches(&e));
    }

    #[test]
    fn bad_filters_are_named() {
        let err = EventFilter::parse(r#"{"colour":["red"]}"#).expect_err("bad key");
        assert!(err.to_string().contains("colour"));
        assert!(EventFilter::parse("not json").is_err());
    }

    #[test]
    fn subscribers_see_history_then_new_events() {
        let bus = EventBus::new(2);
        bus.publish(image_event("pull", "a"));
        bus.publish(image_event("tag", "b"));
        bus.publish(image_event("untag", "c"));
        let (history, mut rx) = bus.subscribe();
        assert_eq!(history.len(), 2, "bounded history");
        assert_eq!(history[0].action, "tag");
        bus.publish(image_event("delete", "d"));
        assert_eq!(rx.try_recv().expect("new event").action, "delete");
    }

    #[test]
    fn events_serialize_in_dockers_shape() {
        let json = serde_json::to_value(image_event("tag", "busybox:latest")).expect("json");
        assert_eq!(json["Type"], "image");
        assert_eq!(json["Action"], "tag");
        assert_eq!(json["status"], "tag");
        assert_eq!(json["Actor"]["Attributes"]["name"], "busybox:latest");
        assert_eq!(json["scope"], "local");
        assert!(json["timeNano"].as_i64().expect("nanos") > 0);
    }
}
