//! Fuzzes everything a WeCom callback body or query reaches before the core:
//! query parsing, base64 + AES decryption with padding and length checks, the
//! XML envelope and message parsers, the AI robot JSON parser and mention removal.
//! Any panic is a bug; errors are expected.

#![no_main]

use libfuzzer_sys::fuzz_target;
use maxwin_channel::Secret;
use maxwin_wecom::WecomCrypto;

const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let crypto = WecomCrypto::new(&Secret::new("token"), &Secret::new(AES_KEY), "wwcorp").unwrap();
    let robot = WecomCrypto::new(&Secret::new("token"), &Secret::new(AES_KEY), "").unwrap();

    let query = maxwin_wecom::crypto::CallbackQuery::parse(Some(&text));
    let _ = crypto.verify(&query.msg_signature, &query.timestamp, &query.nonce, &text);

    // Arbitrary text as ciphertext.
    let _ = crypto.decrypt(&text);
    let _ = robot.decrypt(&text);

    // Arbitrary bytes as the raw ciphertext, so AES decryption runs and the
    // padding and length checks see random plaintext.
    let raw = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data);
    let _ = crypto.decrypt(&raw);
    let _ = robot.decrypt(&raw);

    // Every message must survive an encrypt and decrypt round trip.
    let sealed = crypto.encrypt_with_prefix(&text, [0; 16]);
    assert_eq!(crypto.decrypt(&sealed).as_deref(), Ok(text.as_ref()));

    if let Ok(plain) = crypto.decrypt(&text) {
        let _ = maxwin_wecom::xml::parse_message(&plain);
    }
    let _ = maxwin_wecom::xml::parse_envelope(&text);
    let _ = maxwin_wecom::xml::parse_message(&text);

    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
        let _ = maxwin_wecom::bot::parse_message(&value, &["销售参谋".to_string()]);
        let _ = maxwin_wecom::bot::parse_feedback(&value);
    }
    let _ = maxwin_wecom::mention::strip_bot_mention(&text, &["Max Win".to_string()]);
    let _ = maxwin_wecom::mention::strip_bot_mention(&text, &[]);
});
