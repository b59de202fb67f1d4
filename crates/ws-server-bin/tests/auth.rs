//! Client authentication through the real server: API keys, JWTs (HS256, RS256, ES256), expiry and grants.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{close_code, config, http, next_json, send_json, start, ws_connect};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "a-test-secret-of-some-length";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn token(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs256(claims: &serde_json::Value) -> String {
    token(Algorithm::HS256, &EncodingKey::from_secret(SECRET.as_bytes()), claims)
}

fn jwt_config(alg: &str) -> ws_server::Config {
    let mut c = config();
    c.auth.anonymous = false;
    c.auth.jwt.algorithm = alg.into();
    c.auth.jwt.leeway_s = 0;
    match alg {
        "HS256" => c.auth.jwt.secret = SECRET.into(),
        "RS256" => c.auth.jwt.public_key_file = Some(fixture("rsa_public.pem")),
        _ => c.auth.jwt.public_key_file = Some(fixture("ec_public.pem")),
    }
    c.auth.api_keys.insert("static-key".into(), "svc".into());
    c
}

async fn welcome_user(ws: &mut common::Ws) -> serde_json::Value {
    let w = next_json(ws).await;
    assert_eq!(w["type"], "welcome");
    w["user_id"].clone()
}

#[tokio::test]
async fn each_algorithm_accepts_a_valid_token_and_refuses_a_forged_one() {
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa_private.pem")).unwrap()).unwrap();
    let ec = EncodingKey::from_ec_pem(&std::fs::read(fixture("ec_private.pem")).unwrap()).unwrap();
    let hs = EncodingKey::from_secret(SECRET.as_bytes());
    let claims = json!({"sub":"42","exp": now() + 600});
    for (name, alg, key) in
        [("HS256", Algorithm::HS256, &hs), ("RS256", Algorithm::RS256, &rsa), ("ES256", Algorithm::ES256, &ec)]
    {
        let server = start(jwt_config(name)).await;
        let good = token(alg, key, &claims);
        let mut ws = ws_connect(server.addr, "/ws", &[("Authorization", &format!("Bearer {good}"))]).await.unwrap();
        assert_eq!(welcome_user(&mut ws).await, json!("42"), "{name} via header");
        let mut ws = ws_connect(server.addr, &format!("/ws?token={good}"), &[]).await.unwrap();
        assert_eq!(welcome_user(&mut ws).await, json!("42"), "{name} via query");
        // Signed with another key or algorithm: refused before the upgrade.
        let forged = hs256(&json!({"sub":"42","exp": now() + 600}));
        let forged = if name == "HS256" {
            token(Algorithm::HS256, &EncodingKey::from_secret(b"another-secret-entirely"), &claims)
        } else {
            forged
        };
        assert_eq!(ws_connect(server.addr, &format!("/ws?token={forged}"), &[]).await.err(), Some(401), "{name}");
        server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn refusals_are_401_with_a_json_body() {
    let server = start(jwt_config("HS256")).await;
    let expired = hs256(&json!({"sub":"42","exp": now() - 60}));
    let no_sub = hs256(&json!({"exp": now() + 60}));
    for (path, why) in [
        ("/ws".to_owned(), "a token is required"),
        (format!("/ws?token={expired}"), "token expired"),
        (format!("/ws?token={no_sub}"), "token lacks"),
        ("/ws?token=garbage".to_owned(), "token is malformed"),
        (format!("/ws?token={}", hs256(&json!({"sub":"42","exp": now() + 600, "nbf": now() + 300}))), "not valid yet"),
    ] {
        let r = http(
            server.addr,
            "GET",
            &path,
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            b"",
        )
        .await;
        assert_eq!(r.status, 401, "{path}");
        let body = r.json();
        assert_eq!(body["error"], "unauthorized");
        assert!(body["message"].as_str().unwrap().contains(why), "{path}: {body}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn api_keys_map_to_their_user() {
    let server = start(jwt_config("HS256")).await;
    let mut ws = ws_connect(server.addr, "/ws", &[("Authorization", "Bearer static-key")]).await.unwrap();
    assert_eq!(welcome_user(&mut ws).await, json!("svc"));
    assert_eq!(ws_connect(server.addr, "/ws?token=other-key", &[]).await.err(), Some(401));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_channels_claim_grants_subscribe() {
    let mut c = jwt_config("HS256");
    let mut members = ws_core::NamespaceConfig::default();
    members.allow_anonymous = false;
    c.namespaces.insert("team".into(), members);
    c.auth.anonymous = true;
    let server = start(c).await;
    let t = hs256(&json!({"sub":"7","exp": now() + 600, "channels": ["team#9"]}));
    let mut ws = ws_connect(server.addr, &format!("/ws?token={t}"), &[]).await.unwrap();
    welcome_user(&mut ws).await;
    // `team#9` belongs to user 9, but the backend's token grants it to user 7.
    send_json(&mut ws, json!({"type":"subscribe","id":1,"channel":"team#9"})).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    let t = hs256(&json!({"sub":"7","exp": now() + 600, "channels": ["team:ops"]}));
    let mut anon = ws_connect(server.addr, "/ws", &[]).await.unwrap();
    welcome_user(&mut anon).await;
    send_json(&mut anon, json!({"type":"subscribe","id":1,"channel":"team:ops"})).await;
    assert_eq!(next_json(&mut anon).await["code"], "unauthorized", "anonymous may not");
    let mut ws = ws_connect(server.addr, &format!("/ws?token={t}"), &[]).await.unwrap();
    welcome_user(&mut ws).await;
    send_json(&mut ws, json!({"type":"subscribe","id":1,"channel":"team:ops"})).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_connection_is_closed_with_1008_when_its_token_expires() {
    let server = start(jwt_config("HS256")).await;
    let t = hs256(&json!({"sub":"42","exp": now() + 2}));
    let mut ws = ws_connect(server.addr, &format!("/ws?token={t}"), &[]).await.unwrap();
    welcome_user(&mut ws).await;
    assert_eq!(close_code(&mut ws).await, 1008);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_configured_audience_is_required() {
    let mut c = jwt_config("HS256");
    c.auth.jwt.audience = "ws-hub".into();
    let server = start(c).await;
    let right = hs256(&json!({"sub":"1","exp": now() + 600, "aud": "ws-hub"}));
    let wrong = hs256(&json!({"sub":"1","exp": now() + 600, "aud": "other"}));
    let mut ws = ws_connect(server.addr, &format!("/ws?token={right}"), &[]).await.unwrap();
    assert_eq!(welcome_user(&mut ws).await, json!("1"));
    assert_eq!(ws_connect(server.addr, &format!("/ws?token={wrong}"), &[]).await.err(), Some(401));
    server.shutdown().await.unwrap();
    // Without an audience configured, a token's `aud` is accepted whatever it says.
    let server = start(jwt_config("HS256")).await;
    let mut ws = ws_connect(server.addr, &format!("/ws?token={wrong}"), &[]).await.unwrap();
    assert_eq!(welcome_user(&mut ws).await, json!("1"));
    server.shutdown().await.unwrap();
}
