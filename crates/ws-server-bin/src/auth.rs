//! `ServerAuthenticator`: client authentication by static API keys and JWTs (HS256, RS256, ES256).

use std::collections::BTreeMap;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use ws_core::{AuthError, AuthRequest, Authenticator, Identity};
use ws_protocol::ChannelName;

use crate::config::AuthConfig;

/// The claims `ws-server` reads from a JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Channels the token grants subscribe to, whatever their namespace says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
}

/// Why the authenticator could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthSetupError {
    /// The public key file could not be read; check `auth.jwt.public_key_file`.
    #[error("cannot read auth.jwt.public_key_file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The key is not a PEM key of the configured algorithm.
    #[error("auth.jwt.public_key_file is not a PEM {algorithm} public key: {source}")]
    BadKey {
        /// The algorithm.
        algorithm: String,
        /// The parse error.
        source: jsonwebtoken::errors::Error,
    },
}

#[derive(Clone)]
struct Jwt {
    key: DecodingKey,
    validation: Validation,
}

/// Authenticates upgrade requests by token: a configured API key maps to its
/// user; otherwise the token must be a valid JWT whose `sub` is the user id.
/// Requests without a token are anonymous when anonymous access is on.
#[derive(Clone)]
pub struct ServerAuthenticator {
    anonymous: bool,
    api_keys: Arc<BTreeMap<String, String>>,
    jwt: Option<Jwt>,
}

impl std::fmt::Debug for ServerAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys and secrets are never printed.
        f.debug_struct("ServerAuthenticator")
            .field("anonymous", &self.anonymous)
            .field("api_keys", &self.api_keys.len())
            .field("jwt", &self.jwt.as_ref().map(|j| j.validation.algorithms.clone()))
            .finish()
    }
}

impl ServerAuthenticator {
    /// Builds the authenticator from the `[auth]` section.
    ///
    /// # Errors
    /// [`AuthSetupError`] when the JWT key cannot be read or parsed.
    pub fn new(config: &AuthConfig) -> Result<Self, AuthSetupError> {
        let jwt = match config.jwt.algorithm.as_str() {
            "" => None,
            alg => {
                let (algorithm, key) = match alg {
                    "HS256" => (Algorithm::HS256, DecodingKey::from_secret(config.jwt.secret.as_bytes())),
                    _ => {
                        let path = config.jwt.public_key_file.clone().unwrap_or_default();
                        let pem = std::fs::read(&path)
                            .map_err(|source| AuthSetupError::KeyFile { path: path.display().to_string(), source })?;
                        let bad = |source| AuthSetupError::BadKey { algorithm: alg.into(), source };
                        if alg == "RS256" {
                            (Algorithm::RS256, DecodingKey::from_rsa_pem(&pem).map_err(bad)?)
                        } else {
                            (Algorithm::ES256, DecodingKey::from_ec_pem(&pem).map_err(bad)?)
                        }
                    }
                };
                let mut validation = Validation::new(algorithm);
                validation.leeway = config.jwt.leeway_s;
                validation.validate_nbf = true;
                validation.set_required_spec_claims(&["exp", "sub"]);
                if config.jwt.audience.is_empty() {
                    validation.validate_aud = false;
                } else {
                    validation.set_audience(&[config.jwt.audience.as_str()]);
                }
                Some(Jwt { key, validation })
            }
        };
        Ok(Self { anonymous: config.anonymous, api_keys: Arc::new(config.api_keys.clone()), jwt })
    }

    fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if let Some(user) = self.api_keys.get(token) {
            return Ok(Identity::user(user.as_str()));
        }
        let Some(jwt) = &self.jwt else {
            return Err(AuthError::Unauthorized("unknown token".into()));
        };
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &jwt.key, &jwt.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "token expired",
                ErrorKind::InvalidSignature => "token signature is invalid",
                ErrorKind::InvalidAlgorithm => "token algorithm is not accepted",
                ErrorKind::MissingRequiredClaim(_) => "token lacks `sub` or `exp`",
                ErrorKind::ImmatureSignature => "token is not valid yet",
                ErrorKind::InvalidAudience => "token audience is not accepted",
                _ => "token is malformed",
            };
            AuthError::Unauthorized(why.into())
        })?;
        let claims: Claims = serde_json::from_value(data.claims.clone()).map_err(|_| {
            AuthError::Unauthorized("token claims `sub`, `exp` or `channels` have the wrong type".into())
        })?;
        let channels = claims
            .channels
            .iter()
            .map(|c| ChannelName::new(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| AuthError::Unauthorized("token `channels` claim holds an invalid channel name".into()))?;
        // The transport closes the connection with 1008 when the token expires;
        // the leeway applies there too.
        let expires_at_ms = claims.exp.saturating_add(jwt.validation.leeway).saturating_mul(1000);
        Ok(Identity::user(claims.sub).with_claims(data.claims).with_channels(channels).with_expiry(expires_at_ms))
    }
}

#[async_trait::async_trait]
impl Authenticator for ServerAuthenticator {
    async fn authenticate(&self, request: &AuthRequest) -> Result<Identity, AuthError> {
        match request.token.as_deref() {
            Some(token) if !token.is_empty() => self.verify(token),
            _ if self.anonymous => Ok(Identity::anonymous()),
            _ => Err(AuthError::Unauthorized("a token is required".into())),
        }
    }
}

/// Makes an HS256 token for `user` that expires `ttl_s` seconds after `now_s`, for development.
///
/// # Errors
/// When signing fails.
pub fn hs256_token(secret: &str, user: &str, now_s: u64, ttl_s: u64) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = Claims { sub: user.into(), exp: now_s + ttl_s, channels: Vec::new() };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
}
