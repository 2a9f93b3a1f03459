//! Checks the crypto against vectors made by wechatpy (scripts/wecom_vectors.py).

use maxwin_channel::Secret;
use maxwin_wecom::crypto::{WecomCrypto, signature};
use proptest::prelude::*;
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/crypto_vectors.json")).unwrap()
}

fn crypto_for(fixture: &Value, receive_id: &str) -> WecomCrypto {
    WecomCrypto::new(
        &Secret::new(fixture["token"].as_str().unwrap()),
        &Secret::new(fixture["encoding_aes_key"].as_str().unwrap()),
        receive_id,
    )
    .unwrap()
}

fn prefix_of(vector: &Value) -> [u8; 16] {
    vector["random_prefix"]
        .as_str()
        .unwrap()
        .as_bytes()
        .try_into()
        .unwrap()
}

#[test]
fn vectors_cover_every_pad_value() {
    let fixture = fixture();
    let mut pads: Vec<u64> = fixture["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["pad"].as_u64().unwrap())
        .collect();
    pads.sort_unstable();
    pads.dedup();
    assert_eq!(pads, (1..=32).collect::<Vec<u64>>());
}

#[test]
fn decrypt_matches_wechatpy() {
    let fixture = fixture();
    let timestamp = fixture["timestamp"].as_str().unwrap();
    let nonce = fixture["nonce"].as_str().unwrap();
    for vector in fixture["vectors"].as_array().unwrap() {
        let name = vector["name"].as_str().unwrap();
        let crypto = crypto_for(&fixture, vector["receive_id"].as_str().unwrap());
        let encrypt = vector["encrypt"].as_str().unwrap();
        let opened = crypto.open(
            vector["msg_signature"].as_str().unwrap(),
            timestamp,
            nonce,
            encrypt,
        );
        assert_eq!(
            opened.as_deref(),
            Ok(vector["message"].as_str().unwrap()),
            "vector {name}"
        );
    }
}

#[test]
fn encrypt_matches_wechatpy() {
    let fixture = fixture();
    let timestamp = fixture["timestamp"].as_str().unwrap();
    let nonce = fixture["nonce"].as_str().unwrap();
    let token = fixture["token"].as_str().unwrap();
    for vector in fixture["vectors"].as_array().unwrap() {
        let name = vector["name"].as_str().unwrap();
        let crypto = crypto_for(&fixture, vector["receive_id"].as_str().unwrap());
        let encrypt =
            crypto.encrypt_with_prefix(vector["message"].as_str().unwrap(), prefix_of(vector));
        assert_eq!(
            encrypt,
            vector["encrypt"].as_str().unwrap(),
            "vector {name}"
        );
        assert_eq!(
            signature(token, timestamp, nonce, &encrypt),
            vector["msg_signature"].as_str().unwrap(),
            "vector {name}"
        );
    }
}

#[test]
fn app_vector_rejected_by_robot_receive_id() {
    let fixture = fixture();
    let vector = fixture["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "app_text_message")
        .unwrap();
    let robot = crypto_for(&fixture, "");
    assert!(robot.decrypt(vector["encrypt"].as_str().unwrap()).is_err());
}

proptest! {
    #[test]
    fn round_trip_every_length(length in 0usize..200, receive_id in "[a-z0-9]{0,18}", seed in any::<u8>()) {
        let crypto = WecomCrypto::new(
            &Secret::new("token"),
            &Secret::new("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"),
            receive_id.clone(),
        ).unwrap();
        let message: String = (0..length).map(|i| if (i + seed as usize).is_multiple_of(5) { '销' } else { 'a' }).collect();
        let encrypt = crypto.encrypt(&message);
        prop_assert_eq!(crypto.decrypt(&encrypt), Ok(message.clone()));
        let sig = crypto.sign("1", "2", &encrypt);
        prop_assert!(crypto.verify(&sig, "1", "2", &encrypt).is_ok());
    }
}
