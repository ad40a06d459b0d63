//! Mutual authentication with a pre-shared cluster key: HMAC-SHA256
//! challenge-response in both directions, before anything else is said.
//!
//! The copy sends a fresh nonce Nc. The active answers with its own nonce
//! Na and HMAC(K, "mailvault-repl-1 active" ‖ Nc ‖ Na); the copy checks it
//! (so it never sends its own proof to an impostor) and answers with
//! HMAC(K, "mailvault-repl-1 copy" ‖ Na ‖ Nc), which the active checks
//! before it sends a single byte of the database or log. Each side's proof
//! covers the other's fresh nonce, so a recorded session cannot be
//! replayed; the labels differ, so one side's proof never serves as the
//! other's. Comparisons are constant-time (`Mac::verify_slice`).

use super::error::{ReplError, Result};
use super::wire::{self, Message};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{Read, Write};
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

const ACTIVE_LABEL: &[u8] = b"mailvault-repl-1 active";
const COPY_LABEL: &[u8] = b"mailvault-repl-1 copy";
/// Shortest key accepted.
pub const MIN_KEY_LEN: usize = 16;
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 1024;

/// The cluster's pre-shared key.
#[derive(Clone)]
pub struct ClusterKey(Vec<u8>);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    /// A key of 16 to 1024 bytes.
    pub fn new(bytes: &[u8]) -> Result<ClusterKey> {
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&bytes.len()) {
            return Err(ReplError::BadKey(format!(
                "a cluster key is {MIN_KEY_LEN} to {MAX_KEY_LEN} bytes, not {}",
                bytes.len()
            )));
        }
        Ok(ClusterKey(bytes.to_vec()))
    }

    /// Reads a key file: its bytes, without a trailing newline.
    pub fn from_file(path: &Path) -> Result<ClusterKey> {
        let bytes = std::fs::read(path).map_err(|e| ReplError::BadKey(format!("{}: {e}", path.display())))?;
        let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
        ClusterKey::new(trimmed).map_err(|e| ReplError::BadKey(format!("{}: {e}", path.display())))
    }

    fn mac(&self, label: &[u8], first: &[u8; 32], second: &[u8; 32]) -> HmacSha256 {
        // new_from_slice accepts keys of any length for HMAC.
        let mut mac = HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(label);
        mac.update(first);
        mac.update(second);
        mac
    }

    fn prove(&self, label: &[u8], first: &[u8; 32], second: &[u8; 32]) -> [u8; 32] {
        self.mac(label, first, second).finalize().into_bytes().into()
    }

    fn check(&self, label: &[u8], first: &[u8; 32], second: &[u8; 32], proof: &[u8; 32]) -> bool {
        self.mac(label, first, second).verify_slice(proof).is_ok()
    }
}

fn nonce() -> Result<[u8; 32]> {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).map_err(|e| ReplError::Io(std::io::Error::other(format!("getrandom: {e}"))))?;
    Ok(n)
}

fn expect(got: Message, want: &'static str) -> ReplError {
    match got {
        Message::Refuse { code, reason } => ReplError::Refused { code, reason },
        other => ReplError::Protocol(format!("expected {want}, got {}", other.name())),
    }
}

/// Refusal codes.
pub mod codes {
    /// The peer failed authentication.
    pub const AUTH: u16 = 1;
    /// The copy holds another database.
    pub const IDENTITY: u16 = 2;
    /// The copy is too far behind: it needs a reseed.
    pub const NEEDS_RESEED: u16 = 3;
    /// A protocol violation.
    pub const PROTOCOL: u16 = 4;
    /// The active is shutting down.
    pub const SHUTDOWN: u16 = 5;
    /// The copy ends the session (it has what it wanted).
    pub const LEAVING: u16 = 6;
    /// The source is a copy with no database yet: try again later.
    pub const NOT_READY: u16 = 7;
}

/// The copy's side of the handshake. Fails with `AuthFailed` if the active
/// does not prove the key.
pub fn copy_handshake<S: Read + Write>(stream: &mut S, key: &ClusterKey) -> Result<()> {
    let mine = nonce()?;
    wire::write_message(stream, &Message::Hello { nonce: mine }, None)?;
    let (theirs, proof) = match wire::read_message(stream)? {
        Message::Challenge { nonce, proof } => (nonce, proof),
        other => return Err(expect(other, "Challenge")),
    };
    if !key.check(ACTIVE_LABEL, &mine, &theirs, &proof) {
        let _ = wire::write_message(
            stream,
            &Message::Refuse {
                code: codes::AUTH,
                reason: "the active did not prove the cluster key".into(),
            },
            None,
        );
        return Err(ReplError::AuthFailed("the active did not prove the cluster key".into()));
    }
    let proof = key.prove(COPY_LABEL, &theirs, &mine);
    wire::write_message(stream, &Message::Proof { proof }, None)?;
    Ok(())
}

/// The active's side of the handshake. Fails with `AuthFailed` (after
/// telling the peer) if the copy does not prove the key.
pub fn active_handshake<S: Read + Write>(stream: &mut S, key: &ClusterKey) -> Result<()> {
    let theirs = match wire::read_message(stream)? {
        Message::Hello { nonce } => nonce,
        other => return Err(expect(other, "Hello")),
    };
    let mine = nonce()?;
    let proof = key.prove(ACTIVE_LABEL, &theirs, &mine);
    wire::write_message(stream, &Message::Challenge { nonce: mine, proof }, None)?;
    let proof = match wire::read_message(stream)? {
        Message::Proof { proof } => proof,
        other => return Err(expect(other, "Proof")),
    };
    if !key.check(COPY_LABEL, &mine, &theirs, &proof) {
        let _ = wire::write_message(
            stream,
            &Message::Refuse {
                code: codes::AUTH,
                reason: "authentication failed".into(),
            },
            None,
        );
        return Err(ReplError::AuthFailed("the copy did not prove the cluster key".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn pair(active_key: &'static [u8], copy_key: &'static [u8]) -> (Result<()>, Result<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let active = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            active_handshake(&mut s, &ClusterKey::new(active_key).unwrap())
        });
        let mut s = TcpStream::connect(addr).unwrap();
        let copy = copy_handshake(&mut s, &ClusterKey::new(copy_key).unwrap());
        drop(s);
        (active.join().unwrap(), copy)
    }

    #[test]
    fn the_same_key_passes_both_ways_and_a_wrong_key_fails_both_ways() {
        let (a, c) = pair(b"0123456789abcdef-cluster", b"0123456789abcdef-cluster");
        assert!(a.is_ok() && c.is_ok(), "{a:?} {c:?}");
        let (a, c) = pair(b"0123456789abcdef-cluster", b"0123456789abcdef-WRONG!!");
        assert!(
            matches!(c, Err(ReplError::AuthFailed(_))),
            "the copy refuses an active without the key: {c:?}"
        );
        assert!(a.is_err(), "the active never gets a proof: {a:?}");
    }

    #[test]
    fn proofs_differ_by_role_and_nonce() {
        let k = ClusterKey::new(b"0123456789abcdef").unwrap();
        let (x, y) = ([1u8; 32], [2u8; 32]);
        assert_ne!(k.prove(ACTIVE_LABEL, &x, &y), k.prove(COPY_LABEL, &x, &y));
        assert_ne!(k.prove(ACTIVE_LABEL, &x, &y), k.prove(ACTIVE_LABEL, &y, &x));
        assert!(k.check(COPY_LABEL, &x, &y, &k.prove(COPY_LABEL, &x, &y)));
        assert!(ClusterKey::new(b"short").is_err());
    }
}
