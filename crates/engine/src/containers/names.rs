//! Container names: validation as dockerd's (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`)
//! and generated `adjective_noun` names for containers created without one.

use crate::{Error, Result};

/// Checks a user-given name (an optional leading `/` is dropped).
pub fn validate(name: &str) -> Result<String> {
    let name = name.strip_prefix('/').unwrap_or(name);
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        return Err(Error::InvalidArgument(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    Ok(name.to_string())
}

const ADJECTIVES: [&str; 32] = [
    "agile", "amber", "brave", "bright", "calm", "clever", "cosmic", "crisp", "daring", "eager",
    "fair", "fond", "gentle", "glad", "hardy", "keen", "kind", "lively", "lucid", "merry",
    "nimble", "noble", "patient", "quiet", "rapid", "serene", "sharp", "steady", "swift", "tidy",
    "vivid", "witty",
];

const NOUNS: [&str; 32] = [
    "anchor",
    "atoll",
    "beacon",
    "bollard",
    "buoy",
    "capstan",
    "cove",
    "current",
    "delta",
    "dock",
    "estuary",
    "fjord",
    "galley",
    "harbor",
    "hull",
    "jetty",
    "keel",
    "lagoon",
    "lighthouse",
    "mast",
    "mooring",
    "pier",
    "quay",
    "reef",
    "rudder",
    "schooner",
    "shoal",
    "sloop",
    "tide",
    "wharf",
    "windlass",
    "yawl",
];

/// A random `adjective_noun`; after a few collisions a digit is appended,
/// as dockerd does.
pub fn generate(taken: impl Fn(&str) -> bool) -> String {
    for attempt in 0..64 {
        let r = random_u64();
        let mut name = format!(
            "{}_{}",
            ADJECTIVES[(r % 32) as usize],
            NOUNS[((r >> 8) % 32) as usize]
        );
        if attempt >= 8 {
            name.push_str(&((r >> 16) % 10).to_string());
        }
        if !taken(&name) {
            return name;
        }
    }
    format!("berth_{:016x}", random_u64())
}

fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    crate::containers::fill_random(&mut buf);
    u64::from_le_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_dockerd_accepts_them() {
        assert_eq!(validate("/web.1_a-b").expect("valid"), "web.1_a-b");
        for bad in ["", "a", "_x", "-x", "a b", "a/b", "ü1"] {
            let e = validate(bad).expect_err(bad).to_string();
            assert!(e.contains("Invalid container name"), "{e}");
        }
    }

    #[test]
    fn generated_names_avoid_taken_ones() {
        let first = generate(|_| false);
        assert!(first.contains('_'));
        assert!(validate(&first).is_ok());
        let other = generate(|n| n == first);
        assert_ne!(other, first);
    }
}
