//! RFC 3986 percent-encoding, for query strings and path segments Tether builds (the CLI's
//! requests, the invoke inbox's presigned URL).

/// Percent-encodes everything but the unreserved characters (`A-Z a-z 0-9 - _ . ~`).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_unreserved_characters_stay() {
        assert_eq!(super::encode("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(super::encode("a b/c+d=é"), "a%20b%2Fc%2Bd%3D%C3%A9");
    }
}
