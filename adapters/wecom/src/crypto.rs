//! WeCom callback crypto: the SHA1 signature and the AES-256-CBC envelope.
//!
//! Both the self-built app (receive id = corp id, XML inside) and the AI robot in
//! callback mode (receive id = empty, JSON inside) use the same scheme:
//!
//! - `msg_signature` is the lowercase hex SHA1 of the byte-sorted strings
//!   `[token, timestamp, nonce, encrypt]` concatenated without separators.
//! - The AES key is the base64 decoding of `EncodingAESKey + "="` (32 bytes); the
//!   IV is the first 16 bytes of the key.
//! - The plaintext is `random(16) ‖ len(msg) as u32 big-endian ‖ msg ‖ receive id`,
//!   padded PKCS#7-style to a multiple of 32 bytes (pad value 1..=32), then
//!   encrypted with AES-256-CBC without cipher-level padding and sent as base64.

use aes::Aes256;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use maxwin_channel::Secret;

type Encryptor = cbc::Encryptor<Aes256>;
type Decryptor = cbc::Decryptor<Aes256>;

/// The pad block size of the WeCom envelope; twice the AES block size.
const PAD_BLOCK: usize = 32;
/// Random prefix plus the 4-byte length field.
const HEADER_LEN: usize = 20;

/// Standard base64 that ignores non-zero trailing bits. An EncodingAESKey is 43
/// characters, so its last character carries 2 bits beyond the 32 key bytes, and
/// WeCom does not promise that they are zero.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A failure to verify, decrypt or encrypt a callback payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("EncodingAESKey is invalid: it must be 43 base64 characters that decode to 32 bytes")]
    InvalidKey,
    #[error("msg_signature does not match the payload")]
    InvalidSignature,
    #[error("ciphertext is not valid base64")]
    InvalidBase64,
    #[error("ciphertext length {0} is not a positive multiple of 16 bytes")]
    InvalidCiphertextLength(usize),
    #[error("padding is invalid")]
    InvalidPadding,
    #[error("decrypted buffer is inconsistent with its length field")]
    InvalidLength,
    #[error("receive id in the payload does not match the configured one")]
    ReceiveIdMismatch,
    #[error("decrypted message is not valid UTF-8")]
    InvalidUtf8,
}

/// Computes `msg_signature` for a callback or a passive reply.
pub fn signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let mut parts = [
        token.as_bytes(),
        timestamp.as_bytes(),
        nonce.as_bytes(),
        encrypt.as_bytes(),
    ];
    parts.sort_unstable();
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part);
    }
    hex_lower(&hasher.finalize())
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// Decodes an EncodingAESKey into the 32-byte AES key.
pub fn decode_aes_key(encoding_aes_key: &str) -> Result<[u8; 32], CryptoError> {
    let trimmed = encoding_aes_key.trim();
    if trimmed.len() != 43 {
        return Err(CryptoError::InvalidKey);
    }
    let bytes = LENIENT_BASE64
        .decode(format!("{trimmed}="))
        .map_err(|_| CryptoError::InvalidKey)?;
    bytes.try_into().map_err(|_| CryptoError::InvalidKey)
}

/// The signing and encryption context of one WeCom callback endpoint.
#[derive(Clone)]
pub struct WecomCrypto {
    token: Secret,
    key: [u8; 32],
    receive_id: String,
}

impl std::fmt::Debug for WecomCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WecomCrypto")
            .field("receive_id", &self.receive_id)
            .finish_non_exhaustive()
    }
}

impl WecomCrypto {
    /// Creates the context. `receive_id` is the corp id for a self-built app and
    /// the empty string for the AI robot.
    pub fn new(
        token: &Secret,
        encoding_aes_key: &Secret,
        receive_id: impl Into<String>,
    ) -> Result<Self, CryptoError> {
        Ok(WecomCrypto {
            token: token.clone(),
            key: decode_aes_key(encoding_aes_key.expose())?,
            receive_id: receive_id.into(),
        })
    }

    pub fn receive_id(&self) -> &str {
        &self.receive_id
    }

    /// Computes the signature with this endpoint's token.
    pub fn sign(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        signature(self.token.expose(), timestamp, nonce, encrypt)
    }

    /// Checks `msg_signature` in constant time. Hex case is ignored.
    pub fn verify(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<(), CryptoError> {
        let expected = self.sign(timestamp, nonce, encrypt);
        let given = msg_signature.trim().to_ascii_lowercase();
        if expected.as_bytes().ct_eq(given.as_bytes()).into() {
            Ok(())
        } else {
            Err(CryptoError::InvalidSignature)
        }
    }

    /// Verifies the signature, then decrypts `encrypt` and returns the message.
    pub fn open(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<String, CryptoError> {
        self.verify(msg_signature, timestamp, nonce, encrypt)?;
        self.decrypt(encrypt)
    }

    /// Decrypts a base64 ciphertext and checks the receive id.
    pub fn decrypt(&self, encrypt: &str) -> Result<String, CryptoError> {
        let mut buffer = base64::engine::general_purpose::STANDARD
            .decode(encrypt.trim())
            .map_err(|_| CryptoError::InvalidBase64)?;
        if buffer.is_empty() || buffer.len() % 16 != 0 {
            return Err(CryptoError::InvalidCiphertextLength(buffer.len()));
        }

        let decryptor = Decryptor::new(&self.key.into(), self.key[..16].into());
        let plain = decryptor
            .decrypt_padded_mut::<NoPadding>(&mut buffer)
            .map_err(|_| CryptoError::InvalidPadding)?;

        let unpadded = strip_pad(plain)?;
        if unpadded.len() < HEADER_LEN {
            return Err(CryptoError::InvalidLength);
        }
        let length_field: [u8; 4] = unpadded[16..HEADER_LEN]
            .try_into()
            .map_err(|_| CryptoError::InvalidLength)?;
        let message_len = u32::from_be_bytes(length_field) as usize;
        let message_end = HEADER_LEN
            .checked_add(message_len)
            .filter(|end| *end <= unpadded.len())
            .ok_or(CryptoError::InvalidLength)?;

        let receive_id = &unpadded[message_end..];
        if receive_id != self.receive_id.as_bytes() {
            return Err(CryptoError::ReceiveIdMismatch);
        }
        String::from_utf8(unpadded[HEADER_LEN..message_end].to_vec())
            .map_err(|_| CryptoError::InvalidUtf8)
    }

    /// Encrypts a message with a fresh random prefix.
    pub fn encrypt(&self, message: &str) -> String {
        self.encrypt_with_prefix(message, rand::random::<[u8; 16]>())
    }

    /// Encrypts a message with a given prefix; deterministic, for tests and vectors.
    pub fn encrypt_with_prefix(&self, message: &str, prefix: [u8; 16]) -> String {
        let body_len = HEADER_LEN + message.len() + self.receive_id.len();
        let pad = PAD_BLOCK - body_len % PAD_BLOCK;
        let mut buffer = Vec::with_capacity(body_len + pad);
        buffer.extend_from_slice(&prefix);
        // A message longer than u32::MAX cannot reach this point: WeCom payloads are
        // limited to kilobytes, and the conversion below saturates instead of wrapping.
        let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
        buffer.extend_from_slice(&length.to_be_bytes());
        buffer.extend_from_slice(message.as_bytes());
        buffer.extend_from_slice(self.receive_id.as_bytes());
        buffer.resize(body_len + pad, pad as u8);

        let len = buffer.len();
        let encryptor = Encryptor::new(&self.key.into(), self.key[..16].into());
        let cipher = encryptor
            .encrypt_padded_mut::<NoPadding>(&mut buffer, len)
            .expect("buffer length is a multiple of the AES block size");
        base64::engine::general_purpose::STANDARD.encode(cipher)
    }
}

/// Removes the 32-byte-block PKCS#7 pad, checking every pad byte.
fn strip_pad(plain: &[u8]) -> Result<&[u8], CryptoError> {
    let pad = usize::from(*plain.last().ok_or(CryptoError::InvalidPadding)?);
    if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
        return Err(CryptoError::InvalidPadding);
    }
    let (body, padding) = plain.split_at(plain.len() - pad);
    if padding.iter().any(|byte| usize::from(*byte) != pad) {
        return Err(CryptoError::InvalidPadding);
    }
    Ok(body)
}

/// Percent-decodes one query value without turning `+` into a space.
///
/// WeCom's `echostr` is base64, so a `+` that arrives unencoded is a literal `+`.
/// Form decoding maps `+` to a space and would break the signature check.
/// Invalid escapes are kept as they are.
pub fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            out.push(high << 4 | low);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The query parameters of a WeCom callback, percent-decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackQuery {
    pub msg_signature: String,
    pub timestamp: String,
    pub nonce: String,
    /// Present only on the GET URL verification.
    pub echostr: Option<String>,
}

impl CallbackQuery {
    /// Parses a raw query string; missing parameters become empty strings.
    pub fn parse(raw: Option<&str>) -> CallbackQuery {
        let mut query = CallbackQuery::default();
        for pair in raw.unwrap_or_default().split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match name {
                "msg_signature" => query.msg_signature = value,
                "timestamp" => query.timestamp = value,
                "nonce" => query.nonce = value,
                "echostr" => query.echostr = Some(value),
                _ => {}
            }
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crypto(receive_id: &str) -> WecomCrypto {
        WecomCrypto::new(
            &Secret::new("QDG6eK"),
            &Secret::new("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"),
            receive_id,
        )
        .unwrap()
    }

    #[test]
    fn key_with_nonzero_trailing_bits_decodes() {
        assert!(decode_aes_key("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C").is_ok());
    }

    #[test]
    fn key_of_wrong_length_is_rejected() {
        assert_eq!(decode_aes_key("abc"), Err(CryptoError::InvalidKey));
        assert_eq!(
            decode_aes_key(&"A".repeat(44)),
            Err(CryptoError::InvalidKey)
        );
    }

    #[test]
    fn percent_decode_keeps_plus() {
        assert_eq!(percent_decode("a+b%2Bc%3D%3d"), "a+b+c==");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41"), "A");
    }

    #[test]
    fn query_parse_decodes_every_value() {
        let query =
            CallbackQuery::parse(Some("msg_signature=ab&timestamp=1&nonce=2&echostr=x%2By+z"));
        assert_eq!(query.msg_signature, "ab");
        assert_eq!(query.timestamp, "1");
        assert_eq!(query.nonce, "2");
        assert_eq!(query.echostr.as_deref(), Some("x+y+z"));
    }

    #[test]
    fn exact_multiple_gets_full_pad() {
        let crypto = crypto("");
        // 20 header bytes + 12 message bytes = 32: the pad must be a whole block.
        let encrypted = crypto.encrypt_with_prefix("123456789012", [7; 16]);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&encrypted)
            .unwrap();
        assert_eq!(raw.len(), 64);
        assert_eq!(crypto.decrypt(&encrypted).unwrap(), "123456789012");
    }

    #[test]
    fn wrong_receive_id_is_rejected() {
        let sealed = crypto("corp-a").encrypt("hi");
        assert_eq!(
            crypto("corp-b").decrypt(&sealed),
            Err(CryptoError::ReceiveIdMismatch)
        );
        assert_eq!(
            crypto("").decrypt(&sealed),
            Err(CryptoError::ReceiveIdMismatch)
        );
    }

    #[test]
    fn garbage_ciphertext_is_rejected() {
        let crypto = crypto("");
        assert_eq!(crypto.decrypt("@@@"), Err(CryptoError::InvalidBase64));
        assert_eq!(
            crypto.decrypt("AAAA"),
            Err(CryptoError::InvalidCiphertextLength(3))
        );
        assert!(crypto.decrypt(&"A".repeat(64)).is_err());
    }

    #[test]
    fn signature_mismatch_is_rejected() {
        let crypto = crypto("");
        let encrypt = crypto.encrypt("hi");
        let good = crypto.sign("1", "2", &encrypt);
        assert!(crypto.verify(&good, "1", "2", &encrypt).is_ok());
        assert!(
            crypto
                .verify(&good.to_uppercase(), "1", "2", &encrypt)
                .is_ok()
        );
        assert_eq!(
            crypto.verify(&good, "1", "3", &encrypt),
            Err(CryptoError::InvalidSignature)
        );
        assert_eq!(
            crypto.verify("", "1", "2", &encrypt),
            Err(CryptoError::InvalidSignature)
        );
    }
}
