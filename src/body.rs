//! Reading HTTP response bodies with a size cap. Neither Dynatrace nor Vault sends a
//! legitimate answer anywhere near 4 MiB to the calls the rotator makes, so a larger body is
//! a fault (or hostile) and is refused before it fills the function's memory. Bodies may
//! carry token values, so they are kept in zeroizing buffers.

use zeroize::Zeroizing;

/// Largest response body read.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the cap.
    TooLarge,
    /// The connection failed while reading.
    Transport(reqwest::Error),
}

/// Reads `resp`'s body, at most `max` bytes.
pub async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Zeroizing::new(Vec::new());
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
