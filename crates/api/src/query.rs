//! Query strings as dockerd reads them: repeated keys (`names=a&names=b`),
//! booleans as `1`/`true`, and the JSON `filters` parameter.

use std::collections::BTreeMap;

use crate::error::ApiError;

pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub fn parse(raw: Option<&str>) -> QueryParams {
        QueryParams(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// dockerd's boolean parameters: absent, empty, `0`, `false` and `no` are false.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"))
    }

    pub fn filters(&self) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
        Ok(berth_engine::events::parse_filter_map(
            self.get("filters").unwrap_or(""),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_and_flags() {
        let q = QueryParams::parse(Some(
            "names=a%3Alatest&names=b&force=1&noprune=false&quiet=True",
        ));
        assert_eq!(q.all("names"), vec!["a:latest", "b"]);
        assert!(q.flag("force"));
        assert!(!q.flag("noprune"));
        assert!(q.flag("quiet"));
        assert!(!q.flag("absent"));
    }
}
