#!/usr/bin/env python3
"""Generate WeCom callback crypto test vectors for adapters/wecom/tests/fixtures.

The vectors come from an implementation independent of the Rust crate:
wechatpy's enterprise WeChatCrypto (PyPI `wechatpy`), with its random 16-byte
prefix replaced by a fixed value per vector so that the output is deterministic.
Every vector is decrypted again with pycryptodome and checked field by field, so
the fixture never depends on one library alone.

Usage (in a throwaway virtualenv; nothing here talks to WeCom):

    python3 -m venv /tmp/wecom-venv
    /tmp/wecom-venv/bin/pip install wechatpy pycryptodome cryptography
    /tmp/wecom-venv/bin/python scripts/wecom_vectors.py adapters/wecom/tests/fixtures/crypto_vectors.json
"""

import base64
import hashlib
import json
import string
import struct
import sys

from Crypto.Cipher import AES
from wechatpy.crypto.base import BasePrpCrypto
from wechatpy.enterprise.crypto import WeChatCrypto

TOKEN = "QDG6eK"
# 43 characters; decodes to 32 bytes once "=" is appended.
ENCODING_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CORP_ID = "wx5823bf96d3bd56c7"
TIMESTAMP = "1409659813"
NONCE = "1372623149"

ALPHABET = string.ascii_letters + string.digits


def fixed_prefix(index):
    """Returns a 16-character prefix that differs between vectors."""
    return "".join(ALPHABET[(index * 7 + i * 3) % len(ALPHABET)] for i in range(16))


def sample_text(length, index):
    """Returns a message of exactly `length` UTF-8 bytes, mixing ASCII and Chinese."""
    out = bytearray()
    chinese = "销售参谋".encode("utf-8")
    position = index
    while len(out) < length:
        remaining = length - len(out)
        if remaining >= 3 and position % 3 == 0:
            start = (position % 4) * 3
            out += chinese[start : start + 3]
        else:
            out += ALPHABET[position % len(ALPHABET)].encode()
        position += 1
    return out.decode("utf-8")


def encrypt(message, receive_id, prefix):
    """Encrypts with wechatpy, forcing its random prefix to `prefix`."""
    original = BasePrpCrypto.get_random_string
    BasePrpCrypto.get_random_string = lambda self: prefix
    try:
        crypto = WeChatCrypto(TOKEN, ENCODING_AES_KEY, receive_id)
        envelope = crypto.encrypt_message(message, NONCE, TIMESTAMP)
    finally:
        BasePrpCrypto.get_random_string = original
    encrypt_value = envelope.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    signature = envelope.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    return envelope, encrypt_value, signature


def cross_check(message, receive_id, prefix, ciphertext, signature):
    """Decrypts with pycryptodome and recomputes the signature independently."""
    key = base64.b64decode(ENCODING_AES_KEY + "=")
    raw = AES.new(key, AES.MODE_CBC, key[:16]).decrypt(base64.b64decode(ciphertext))
    pad = raw[-1]
    assert 1 <= pad <= 32, pad
    assert raw[-pad:] == bytes([pad]) * pad
    body = raw[:-pad]
    assert body[:16] == prefix.encode()
    (length,) = struct.unpack(">I", body[16:20])
    assert body[20 : 20 + length] == message.encode("utf-8")
    assert body[20 + length :] == receive_id.encode()
    parts = sorted([TOKEN.encode(), TIMESTAMP.encode(), NONCE.encode(), ciphertext.encode()])
    assert hashlib.sha1(b"".join(parts)).hexdigest() == signature
    return pad


def vector(name, message, receive_id, index):
    prefix = fixed_prefix(index)
    envelope, ciphertext, signature = encrypt(message, receive_id, prefix)
    pad = cross_check(message, receive_id, prefix, ciphertext, signature)
    # wechatpy must also accept its own output through the public decrypt path.
    crypto = WeChatCrypto(TOKEN, ENCODING_AES_KEY, receive_id)
    assert crypto.decrypt_message(envelope, signature, TIMESTAMP, NONCE) == message
    return {
        "name": name,
        "receive_id": receive_id,
        "random_prefix": prefix,
        "message": message,
        "message_bytes": len(message.encode("utf-8")),
        "pad": pad,
        "encrypt": ciphertext,
        "msg_signature": signature,
        "envelope_xml": envelope,
    }


APP_TEXT = (
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>"
    "<FromUserName><![CDATA[zhangsan]]></FromUserName>"
    "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[客户说价格太高，我该怎么回应？]]></Content>"
    "<MsgId>7300000000000000001</MsgId><AgentID>1000002</AgentID></xml>"
)
APP_EVENT = (
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>"
    "<FromUserName><![CDATA[zhangsan]]></FromUserName>"
    "<CreateTime>1700000001</CreateTime><MsgType><![CDATA[event]]></MsgType>"
    "<Event><![CDATA[enter_agent]]></Event><EventKey><![CDATA[]]></EventKey>"
    "<AgentID>1000002</AgentID></xml>"
)
BOT_TEXT = json.dumps(
    {
        "msgid": "CAIQz7Sy8wUYASD9uMaWBg",
        "aibotid": "aibABCDEF",
        "chatid": "wrkSFfCgAAxxxx",
        "chattype": "group",
        "from": {"userid": "lisi"},
        "response_url": "http://127.0.0.1:1/cgi-bin/aibot/response?response_code=abc",
        "msgtype": "text",
        "text": {"content": "@销售参谋 客户迟迟不签约怎么办"},
    },
    ensure_ascii=False,
)


def main():
    vectors = []
    index = 0
    # Every plaintext length modulo 32 for both receive ids, including the
    # exact multiple of 32 (full 32-byte pad) and pads above 16.
    for receive_id in (CORP_ID, ""):
        for length in range(0, 70):
            name = f"len{length}_{'app' if receive_id else 'bot'}"
            vectors.append(vector(name, sample_text(length, index), receive_id, index))
            index += 1
    vectors.append(vector("app_text_message", APP_TEXT, CORP_ID, index))
    vectors.append(vector("app_event", APP_EVENT, CORP_ID, index + 1))
    vectors.append(vector("bot_text_message", BOT_TEXT, "", index + 2))

    pads = {v["pad"] for v in vectors}
    assert pads == set(range(1, 33)), sorted(pads)
    assert any("+" in v["encrypt"] for v in vectors)

    fixture = {
        "generator": "scripts/wecom_vectors.py with wechatpy enterprise WeChatCrypto, checked with pycryptodome",
        "token": TOKEN,
        "encoding_aes_key": ENCODING_AES_KEY,
        "corp_id": CORP_ID,
        "timestamp": TIMESTAMP,
        "nonce": NONCE,
        "vectors": vectors,
    }
    with open(sys.argv[1], "w", encoding="utf-8") as handle:
        json.dump(fixture, handle, ensure_ascii=False, indent=1)
        handle.write("\n")


if __name__ == "__main__":
    main()
