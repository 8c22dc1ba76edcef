//! Reading HTTP response bodies with a size cap. Neither Dynatrace nor Vault sends a
//! legitimate answer anywhere near 4 MiB to the calls the rotator makes, so a larger body is
//! a fault (or hostile) and is refused before it fills the function's memory. The one
//! exception is a page of the Dynatrace token listing: up to 10 000 tokens with their
//! metadata, a few MiB, capped at [`MAX_LIST_PAGE_BYTES`]. Bodies may carry token values, so
//! they are kept in zeroizing buffers.

use zeroize::Zeroizing;

/// Largest response body read.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Largest page of a Dynatrace token listing read: 10 000 tokens with every field the sweep
/// and the audit ask for take about 5 MiB.
pub const MAX_LIST_PAGE_BYTES: usize = 32 * 1024 * 1024;

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
    // Sized up front when the length is announced: no reallocation leaves an unzeroed copy
    // behind, and a large body does not briefly take twice its size.
    let announced = resp.content_length().map_or(0, |n| n as usize);
    let mut body = Zeroizing::new(Vec::with_capacity(announced));
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
