//! The XML bodies of self-built app callbacks.

use serde::Deserialize;

/// The outer, encrypted callback body.
#[derive(Debug, Deserialize)]
pub struct EnvelopeXml {
    #[serde(rename = "Encrypt")]
    pub encrypt: String,
    #[serde(rename = "ToUserName", default)]
    pub to_user_name: Option<String>,
    #[serde(rename = "AgentID", default)]
    pub agent_id: Option<String>,
}

/// A decrypted message or event. Every field is optional so that unknown message
/// types still parse and can be acknowledged.
#[derive(Debug, Default, Deserialize)]
pub struct AppMessageXml {
    #[serde(rename = "ToUserName", default)]
    pub to_user_name: Option<String>,
    #[serde(rename = "FromUserName", default)]
    pub from_user_name: Option<String>,
    #[serde(rename = "CreateTime", default)]
    pub create_time: Option<String>,
    #[serde(rename = "MsgType", default)]
    pub msg_type: Option<String>,
    #[serde(rename = "Content", default)]
    pub content: Option<String>,
    #[serde(rename = "MsgId", default)]
    pub msg_id: Option<String>,
    #[serde(rename = "AgentID", default)]
    pub agent_id: Option<String>,
    #[serde(rename = "Event", default)]
    pub event: Option<String>,
}

/// Parses the outer envelope and returns the `Encrypt` value.
pub fn parse_envelope(body: &str) -> Result<EnvelopeXml, quick_xml::DeError> {
    let envelope: EnvelopeXml = quick_xml::de::from_str(body)?;
    Ok(envelope)
}

/// Parses a decrypted message.
pub fn parse_message(body: &str) -> Result<AppMessageXml, quick_xml::DeError> {
    quick_xml::de::from_str(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_parses_cdata() {
        let envelope = parse_envelope(
            "<xml><ToUserName><![CDATA[ww1]]></ToUserName><AgentID><![CDATA[1000002]]></AgentID><Encrypt><![CDATA[a+b/c=]]></Encrypt></xml>",
        )
        .unwrap();
        assert_eq!(envelope.encrypt, "a+b/c=");
        assert_eq!(envelope.agent_id.as_deref(), Some("1000002"));
    }

    #[test]
    fn message_parses_text_fields() {
        let message = parse_message(
            "<xml><ToUserName><![CDATA[ww1]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好 <b>]]></Content><MsgId>123</MsgId><AgentID>1000002</AgentID></xml>",
        )
        .unwrap();
        assert_eq!(message.msg_type.as_deref(), Some("text"));
        assert_eq!(message.content.as_deref(), Some("你好 <b>"));
        assert_eq!(message.msg_id.as_deref(), Some("123"));
        assert_eq!(message.from_user_name.as_deref(), Some("zhangsan"));
    }

    #[test]
    fn envelope_without_encrypt_fails() {
        assert!(parse_envelope("<xml><ToUserName>a</ToUserName></xml>").is_err());
        assert!(parse_envelope("not xml").is_err());
    }
}
