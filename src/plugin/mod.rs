//! egressgen as a plugin of other tools: the legacy Kustomize exec plugin
//! ([`kustomize`]) and the KRM function for kpt and Kustomize ([`krm`]).
//!
//! Both use the same `EgressGateway` config and the same renderer as
//! `egressgen render`; this module only adapts their calling conventions.
//! [`validator`] is the KRM function's `lint` mode, over the same lint
//! engine. [`node`] carries the objects of a ResourceList through unchanged.

pub mod krm;
pub mod kustomize;
pub mod node;
pub mod validator;

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

/// Reads all of stdin, at most [`node::MAX_INPUT_BYTES`]. With a timeout,
/// gives `None` when no byte arrives in time (stdin left open by a caller
/// that sends nothing).
pub fn read_stdin(first_byte: Option<Duration>) -> Result<Option<String>, String> {
    let (tx, rx) = mpsc::channel::<std::io::Result<Vec<u8>>>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send(Ok(buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    break;
                }
            }
        }
    });
    let mut data = Vec::new();
    let first = match first_byte {
        Some(t) => match rx.recv_timeout(t) {
            Ok(chunk) => Some(chunk),
            Err(mpsc::RecvTimeoutError::Timeout) => return Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
        },
        None => rx.recv().ok(),
    };
    for chunk in first.into_iter().chain(rx.iter()) {
        let chunk = chunk.map_err(|e| format!("cannot read stdin: {e}"))?;
        if data.len() + chunk.len() > node::MAX_INPUT_BYTES {
            return Err(format!(
                "stdin is larger than {} MiB",
                node::MAX_INPUT_BYTES >> 20
            ));
        }
        data.extend_from_slice(&chunk);
    }
    String::from_utf8(data).map(Some).map_err(|e| {
        format!(
            "stdin is not UTF-8 (byte {} is invalid)",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Writes a KRM function's outcome: the ResourceList on stdout, errors on
/// stderr. Returns the exit code.
pub fn finish(outcome: krm::Outcome) -> u8 {
    use std::io::Write;
    for e in &outcome.errors {
        eprintln!("egressgen: error: {e}");
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out
        .write_all(outcome.output.as_bytes())
        .and_then(|_| out.flush())
    {
        eprintln!("egressgen: cannot write the ResourceList: {e}");
        return crate::cli::exit::FINDINGS;
    }
    outcome.code
}

/// `egressgen fn`: the generator on stdin.
pub fn run_generator() -> u8 {
    match read_stdin(None) {
        Ok(Some(text)) => finish(krm::generate(&text)),
        Ok(None) => finish(krm::failure(
            "stdin is empty; expected a ResourceList".into(),
        )),
        Err(e) => finish(krm::failure(e)),
    }
}

/// `egressgen fn lint`: the validator on stdin.
pub fn run_validator() -> u8 {
    match read_stdin(None) {
        Ok(Some(text)) => finish(validator::validate(&text)),
        Ok(None) => finish(krm::failure(
            "stdin is empty; expected a ResourceList".into(),
        )),
        Err(e) => finish(krm::failure(e)),
    }
}

/// `egressgen` with no arguments: a ResourceList on stdin (standalone
/// Kustomize `exec` functions pass no arguments) runs the generator.
/// `None` when stdin holds no ResourceList, so the usual usage error shows.
pub fn autodetect() -> Option<u8> {
    let text = read_stdin(Some(Duration::from_secs(10))).ok()??;
    let looks_like_list = text.lines().any(|l| {
        let l = l.trim_end();
        l == "kind: ResourceList"
            || l == "\"kind\": \"ResourceList\""
            || l == "kind: \"ResourceList\""
    });
    looks_like_list.then(|| finish(krm::generate(&text)))
}
