//! The extractors a handler names to be protected: [`LoginUser`] (any valid
//! token), [`FullUser`] (`authLevel` full) and [`RecentUser`] (full, and
//! verified within `MAX_AGE_SECS`). They read the [`JwksVerifier`] from the
//! app's data (`App::app_data(web::Data::new(verifier))`).
//!
//! These checks stand on the token alone. A session ended at the auth
//! server (logout, revocation) is refused there at once, but its access
//! tokens are accepted here until they expire.

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;

use crate::claims::{AuthLevel, Principal};
use crate::jwks::JwksVerifier;
use crate::rejection::Rejection;

/// Any valid token: `authLevel` password or full.
#[derive(Debug, Clone)]
pub struct LoginUser(pub Principal);

/// A valid token with `authLevel` full (a passkey was verified).
#[derive(Debug, Clone)]
pub struct FullUser(pub Principal);

/// A full-level token whose passkey verification happened at most
/// `MAX_AGE_SECS` ago, for the routes where a token stolen minutes ago must
/// not be enough (a transfer, say).
#[derive(Debug, Clone)]
pub struct RecentUser<const MAX_AGE_SECS: u64>(pub Principal);

/// The bearer token of a request: [`Rejection::MissingToken`] when there is
/// no `Authorization` header, [`Rejection::InvalidToken`] when it is not
/// `Bearer <token>`.
pub fn bearer_token(req: &HttpRequest) -> Result<&str, Rejection> {
    let value = req
        .headers()
        .get(AUTHORIZATION)
        .ok_or(Rejection::MissingToken)?;
    let value = value.to_str().map_err(|_| Rejection::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(Rejection::InvalidToken)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(Rejection::InvalidToken);
    }
    Ok(token)
}

/// What a guard asks of a verified token.
fn admit(
    principal: &Principal,
    full: bool,
    max_age: Option<u64>,
    now: i64,
) -> Result<(), Rejection> {
    if (full || max_age.is_some()) && principal.auth_level != AuthLevel::Full {
        return Err(Rejection::PasskeyRequired { max_age });
    }
    match max_age {
        Some(max_age) if !principal.verified_within(max_age, now) => {
            Err(Rejection::ReauthenticationRequired {
                acr: AuthLevel::Full,
                max_age,
            })
        }
        _ => Ok(()),
    }
}

fn authenticate(
    req: &HttpRequest,
    full: bool,
    max_age: Option<u64>,
) -> LocalBoxFuture<'static, Result<Principal, Rejection>> {
    let checked = bearer_token(req).map(str::to_owned).and_then(|token| {
        let verifier = req
            .app_data::<web::Data<JwksVerifier>>()
            .cloned()
            .ok_or_else(|| {
                log::error!("no web::Data<JwksVerifier> in the app: every guarded request fails");
                Rejection::KeysUnavailable
            })?;
        Ok((token, verifier))
    });
    Box::pin(async move {
        let (token, verifier) = checked?;
        let principal = verifier.verify(&token).await?;
        admit(&principal, full, max_age, verifier.now())?;
        Ok(principal)
    })
}

impl FromRequest for LoginUser {
    type Error = Rejection;
    type Future = LocalBoxFuture<'static, Result<Self, Rejection>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let fut = authenticate(req, false, None);
        Box::pin(async move { fut.await.map(LoginUser) })
    }
}

impl FromRequest for FullUser {
    type Error = Rejection;
    type Future = LocalBoxFuture<'static, Result<Self, Rejection>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let fut = authenticate(req, true, None);
        Box::pin(async move { fut.await.map(FullUser) })
    }
}

impl<const MAX_AGE_SECS: u64> FromRequest for RecentUser<MAX_AGE_SECS> {
    type Error = Rejection;
    type Future = LocalBoxFuture<'static, Result<Self, Rejection>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let fut = authenticate(req, true, Some(MAX_AGE_SECS));
        Box::pin(async move { fut.await.map(RecentUser) })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;
    use uuid::Uuid;

    use super::*;
    use crate::claims::Claims;

    const NOW: i64 = 1_800_000_000;

    fn principal(level: AuthLevel, auth_time: i64) -> Principal {
        Principal::from_claims(Claims {
            sub: Uuid::nil().to_string(),
            username: "alice".into(),
            auth_level: level,
            acr: level,
            amr: vec!["pwd".into()],
            auth_time,
            iat: auth_time,
            exp: NOW + 900,
            iss: "passkey-auth".into(),
            aud: "passkey-auth".into(),
            jti: "jti".into(),
            sid: Uuid::max().to_string(),
        })
        .unwrap()
    }

    fn token_of(header: Option<&[u8]>) -> Result<String, Rejection> {
        let mut req = TestRequest::default();
        if let Some(value) = header {
            req = req.insert_header((AUTHORIZATION, value));
        }
        bearer_token(&req.to_http_request()).map(str::to_owned)
    }

    #[test]
    fn reads_the_bearer_token() {
        assert_eq!(
            token_of(Some(b"Bearer abc.def.ghi")),
            Ok("abc.def.ghi".into())
        );
        assert_eq!(token_of(Some(b"bearer abc")), Ok("abc".into()));
        assert_eq!(token_of(Some(b"BEARER abc")), Ok("abc".into()));
        assert_eq!(token_of(Some(b"Bearer   abc  ")), Ok("abc".into()));
    }

    #[test]
    fn refuses_a_missing_or_malformed_authorization() {
        assert_eq!(token_of(None), Err(Rejection::MissingToken));
        for value in [
            &b"Basic x"[..],
            b"Basic dXNlcjpwYXNz",
            b"Bearer",
            b"Bearer ",
            b"Bearer a b",
            b"Token abc",
            b"Bearerabc",
            b"",
            b"Bearer \xff\xfe",
        ] {
            assert_eq!(
                token_of(Some(value)),
                Err(Rejection::InvalidToken),
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn any_valid_token_is_a_login() {
        for level in [AuthLevel::Password, AuthLevel::Full] {
            assert_eq!(
                admit(&principal(level, NOW - 86_400), false, None, NOW),
                Ok(())
            );
        }
    }

    #[test]
    fn full_needs_the_full_level() {
        assert_eq!(
            admit(&principal(AuthLevel::Password, NOW), true, None, NOW),
            Err(Rejection::PasskeyRequired { max_age: None })
        );
        assert_eq!(
            admit(&principal(AuthLevel::Full, NOW - 86_400), true, None, NOW),
            Ok(())
        );
    }

    #[test]
    fn recent_needs_the_full_level_verified_within_max_age() {
        // A password token is asked for a passkey first, however recent.
        assert_eq!(
            admit(&principal(AuthLevel::Password, NOW), true, Some(300), NOW),
            Err(Rejection::PasskeyRequired { max_age: Some(300) })
        );
        assert_eq!(
            admit(&principal(AuthLevel::Full, NOW - 300), true, Some(300), NOW),
            Ok(())
        );
        assert_eq!(
            admit(&principal(AuthLevel::Full, NOW), true, Some(300), NOW),
            Ok(())
        );
        assert_eq!(
            admit(&principal(AuthLevel::Full, NOW - 301), true, Some(300), NOW),
            Err(Rejection::ReauthenticationRequired {
                acr: AuthLevel::Full,
                max_age: 300
            })
        );
    }
}
