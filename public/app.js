// Passkey demo page: password login, passkey sign-in (a button, and the
// browser's autofill through conditional mediation), passkey registration and
// step-up, passkey management and protected routes, following the HTTP contract
// (API.md). No framework, no build step and nothing inline, so a strict CSP
// (default-src 'self') works.
'use strict';

// The page keeps both tokens: the password-level one from login, and the
// full-level one from passkey verification. The full one is used while it is
// live; when it expires the page falls back to the password one and asks for
// the passkey again. A passkey sign-in gives a full-level token (and a
// refresh token) with no password-level one: refreshing it later gives one.
const STORAGE_KEYS = {
  password: 'passkeyDemo.passwordToken',
  full: 'passkeyDemo.fullToken',
};
// The session's refresh token (from login), kept with them. POST /auth/refresh
// swaps it for a new one and a new password-level token shortly before that
// one expires, so a person stays logged in. A refresh token is used once:
// presenting it again after its rotation ends the whole session (the server
// takes it for a stolen copy), so the new one is stored before anything
// else, and refreshes never overlap (one in flight per tab, one at a time
// across tabs with the Web Locks API).
const REFRESH_KEY = 'passkeyDemo.refreshToken';
// Hashes of refresh tokens already rotated, shared by the tabs of this origin:
// a tab duplicated from another holds a copy of the same refresh token, and
// must not present it once the other tab has used it.
const ROTATED_KEY = 'passkeyDemo.rotatedRefreshTokens';
const REFRESH_LOCK = 'passkeyDemo.refresh';
const REFRESH_MIN_DELAY_MS = 5_000;  // never refresh more often than this…
const REFRESH_MARGIN_MS = 2_000;     // …unless the token would expire first
const REFRESH_RETRY_MS = 10_000;     // after a failure that is not a 401
const SESSION_ENDED_TEXT = 'Your session has ended (logged out here or from another device, or the password '
  + 'was changed): log in again.';

const state = {
  tokens: { password: null, full: null }, // each { raw, claims } or null
  level: 'none',      // level shown by the last render: none | password | full | expired
  stepUpLost: false,  // the full-level token expired (or was refused) while the password one lives
  me: null,           // last GET /auth/me answer
  passkeys: null,     // last GET /passkeys answer (null = not loaded)
  busy: false,        // one request/ceremony at a time; controls are disabled meanwhile
  ceremony: null,     // { controller, kind } while a passkey prompt is open
  reauth: null,       // { need: 'full'|'password', label, resolve, reject, running } while re-verification is asked
  codes: null,        // recovery codes on show (shown once), or null
  focusAfter: null,   // element to focus once the running action ends (instead of restoring focus)
  maxAge: null,       // STEP_UP_MAX_AGE_SECS, once a challenge told it (max_age)
  refreshToken: null, // the session's refresh token (raw string), or null
  refresh: {
    inFlight: null,   // the running refresh (a promise), so that two never overlap
    nextAt: null,     // when the next refresh is due (ms since the epoch), or null
    lastAt: null,     // when the last one succeeded
    problem: null,    // why the last one failed (not 401), while retrying
  },
  generation: 0,      // bumped whenever the session held here changes (login, logout, ended)
  sessions: null,     // last GET /auth/sessions answer (null = not loaded)
  sessionEnded: null, // why this page lost its session (shown until the next login), or null
  lastCheck: 0,       // when the session list was last reloaded quietly (tab shown again)
  // The pending conditional-mediation request (passkeys offered in the login
  // username field's autofill) while logged out: { controller, phase, call, timer }.
  conditional: null,
  // A conditional request that ended by itself (the browser refused it, or
  // the passkey picked from it did not sign in) is not started again until
  // the person does something: some browsers end it at once, every time.
  conditionalHold: false,
};

const webauthnAvailable = typeof window.PublicKeyCredential === 'function';

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- base64url

function bufferToBase64url(buffer) {
  const bytes = ArrayBuffer.isView(buffer)
    ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
    : new Uint8Array(buffer);
  let binary = '';
  for (let i = 0; i < bytes.length; i += 1) binary += String.fromCharCode(bytes[i]);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// Accepts unpadded or padded base64url (and plain base64, to be lenient).
function base64urlToBuffer(text) {
  if (typeof text !== 'string') throw new TypeError('expected a base64url string');
  let b64 = text.replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
  while (b64.length % 4 !== 0) b64 += '=';
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

// Decodes a JWT part (0: header, 1: payload) without verifying it (the
// server does that).
function decodeJwtPart(token, index) {
  const parts = String(token).split('.');
  if (parts.length !== 3) return null;
  try {
    return JSON.parse(new TextDecoder().decode(base64urlToBuffer(parts[index])));
  } catch (_) {
    return null;
  }
}

function decodeJwt(token) {
  return decodeJwtPart(token, 1);
}

// ---------------------------------------------------------------- errors

class ApiError extends Error {
  constructor(status, body, token, wwwAuthenticate) {
    const problem = body && typeof body === 'object' ? body : {};
    super(problem.detail || problem.title || (typeof body === 'string' && body) || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = problem.code || null;
    this.token = token || null; // the token the request carried, if any
    // The parsed WWW-Authenticate challenge (readable: the page is same-origin).
    this.challenge = parseChallenge(wwwAuthenticate);
  }
}

// `Bearer error="...", acr_values="full", max_age=300` → { scheme, params }.
// One challenge is enough here; quoted strings may hold commas and \-escapes.
function parseChallenge(header) {
  if (!header || typeof header !== 'string') return null;
  const match = /^\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*(.*)$/.exec(header);
  if (!match) return null;
  const params = {};
  const re = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
  let m;
  while ((m = re.exec(match[2])) !== null) {
    params[m[1].toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3];
  }
  return { scheme: match[1], params };
}

// Re-verification was abandoned: the action the person clicked did not run.
class ReauthCancelledError extends Error {
  constructor(label) {
    super(`${label} cancelled: nothing was changed. It needs a recent verification; you can try again at any time.`);
    this.name = 'ReauthCancelledError';
    this.code = 'cancelled';
  }
}

// The server no longer knows this page's session (ended here or elsewhere):
// the page has forgotten its tokens.
class SessionEndedError extends Error {
  constructor(text = SESSION_ENDED_TEXT) {
    super(text);
    this.name = 'SessionEndedError';
    this.code = 'session_ended';
    this.status = 401;
  }
}

class NetworkError extends Error {
  constructor(cause) {
    super(`Network error: could not reach the server (${cause && cause.message ? cause.message : cause}).`);
    this.name = 'NetworkError';
  }
}

class WebAuthnError extends Error {
  constructor(cause) {
    super(describeWebAuthnException(cause));
    this.name = 'WebAuthnError';
    this.code = cause && cause.name ? cause.name : null;
  }
}

// The person pressed the page's Cancel button (or Escape) during a passkey prompt.
const CANCELLED_TEXT = {
  create: 'Passkey prompt was cancelled: no passkey was registered. You can try again at any time.',
  get: 'Passkey prompt was cancelled: your access level is unchanged. You can try again at any time.',
  signin: 'Passkey prompt was cancelled: you are not signed in. Try again, or log in with your password.',
};

class CancelledError extends Error {
  constructor(kind) {
    super(CANCELLED_TEXT[kind] || CANCELLED_TEXT.get);
    this.name = 'CancelledError';
    this.kind = kind;
    this.code = 'cancelled';
  }
}

// The server did not accept the passkey picked for a sign-in (401
// passkey_verification_failed): not one of an account's passkeys here, a
// passkey registered before passkey sign-in existed, or a stale challenge.
class PasskeySignInError extends Error {
  constructor(cause) {
    super('This passkey could not sign you in: use your password, or a passkey registered for sign-in.'
      + (cause && cause.code ? ` (code: ${cause.code}, HTTP ${cause.status})` : ''));
    this.name = 'PasskeySignInError';
    this.code = (cause && cause.code) || 'passkey_verification_failed';
    this.status = (cause && cause.status) || 401;
  }
}

// The browser's sign-in prompt ended without a passkey (NotAllowedError).
class NoPasskeyError extends Error {
  constructor() {
    super('No passkey signed you in: the prompt was cancelled or timed out, or this device holds no passkey for this '
      + 'site that signs in without a username (a passkey for step-up only cannot). Log in with your password, '
      + 'or try again.');
    this.name = 'NoPasskeyError';
    this.code = 'NotAllowedError';
  }
}

// Extra guidance for the error codes a person can act on.
const CODE_HINTS = {
  passkey_required: 'Click "Verify with a passkey", then try again.',
  no_passkeys: 'Register a passkey first.',
  missing_token: 'Log in first.',
  invalid_token: 'Your token is no longer accepted: log in again.',
  invalid_refresh_token: 'Your session has ended: log in again.',
  challenge_expired: 'The passkey challenge expired or was already used: start again.',
  invalid_credentials: 'Check the username and password.',
  username_taken: 'Pick another username, or log in.',
  invalid_recovery_code: 'Check the code; each one works only once.',
  reauthentication_required: 'Verify again, then repeat the change.',
  passkey_verification_failed: 'Use your password, or a passkey registered for sign-in.',
};

function describeWebAuthnException(err) {
  switch (err && err.name) {
    case 'NotAllowedError':
      return 'The passkey prompt ended without a passkey (cancelled, timed out, or the authenticator could not verify you). Nothing was changed: try again.';
    case 'InvalidStateError':
      return 'This authenticator already holds a passkey for this account.';
    case 'SecurityError':
      return 'The browser refused the passkey request: this page\'s origin does not match the server\'s relying party (RP_ID / RP_ORIGIN).';
    case 'NotSupportedError':
      return 'No available authenticator supports the requested options.';
    case 'AbortError':
      return 'The passkey request was aborted.';
    default:
      return `Passkey operation failed: ${err && err.name ? `${err.name}: ` : ''}${err && err.message ? err.message : err}`;
  }
}

function describeError(err) {
  if (err instanceof ApiError) {
    const hint = CODE_HINTS[err.code];
    return `${err.message} (code: ${err.code || 'none'}, HTTP ${err.status})${hint ? ` — ${hint}` : ''}`;
  }
  return err && err.message ? err.message : String(err);
}

// ---------------------------------------------------------------- HTTP

// Low level: resolves with {status, ok, body, token, ...} unless the network
// fails. A 401 invalid_token (the session ended elsewhere, or the token
// expired by the server's clock) is met with one refresh: when it works the
// request is sent once more with the new token; when the session has ended
// it throws SessionEndedError, the page being logged out by then.
// `token`: send this one instead of the active one; `recover: false`: no refresh.
async function request(method, path, options = {}) {
  const { auth = true, recover = true } = options;
  const token = options.token !== undefined ? options.token : (auth ? activeToken() : null);
  const res = await send(method, path, options.body, token);
  if (!(recover && token && res.status === 401 && problemCode(res.body) === 'invalid_token')) return res;
  try {
    if (!(await recoverSession(token))) return res;
  } catch (err) {
    if (err instanceof SessionEndedError) err.response = res;
    throw err;
  }
  return send(method, path, options.body, activeToken());
}

function problemCode(body) {
  return body && typeof body === 'object' ? body.code || null : null;
}

async function send(method, path, body, token) {
  const headers = { Accept: 'application/json, application/problem+json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token.raw}`;
  let response;
  let text;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
    text = await response.text();
  } catch (err) {
    throw new NetworkError(err);
  }
  let parsed = null;
  if (text) {
    try { parsed = JSON.parse(text); } catch (_) { parsed = text; }
  }
  return {
    status: response.status,
    ok: response.ok,
    body: parsed,
    token,
    wwwAuthenticate: response.headers.get('WWW-Authenticate'),
    retryAfter: response.headers.get('Retry-After'),
  };
}

// High level: resolves with the body on 2xx, throws ApiError otherwise.
async function api(method, path, options) {
  const res = await request(method, path, options);
  if (!res.ok) throw new ApiError(res.status, res.body, res.token, res.wwwAuthenticate);
  return res.body;
}

// ---------------------------------------------------------------- WebAuthn JSON

// Drops null members: WebIDL would turn e.g. `attestation: null` into the
// string "null" and reject it, so absent is safer than null.
function stripNulls(value) {
  if (Array.isArray(value)) return value.map(stripNulls);
  if (value && typeof value === 'object' && !(value instanceof ArrayBuffer)) {
    const out = {};
    for (const [key, v] of Object.entries(value)) {
      if (v !== null && v !== undefined) out[key] = stripNulls(v);
    }
    return out;
  }
  return value;
}

function descriptorFromJSON(descriptor) {
  return { ...descriptor, id: base64urlToBuffer(descriptor.id) };
}

function creationOptionsFromJSON(json) {
  const options = stripNulls(json);
  options.challenge = base64urlToBuffer(options.challenge);
  options.user = { ...options.user, id: base64urlToBuffer(options.user.id) };
  if (Array.isArray(options.excludeCredentials)) {
    options.excludeCredentials = options.excludeCredentials.map(descriptorFromJSON);
  }
  return options;
}

function requestOptionsFromJSON(json) {
  const options = stripNulls(json);
  options.challenge = base64urlToBuffer(options.challenge);
  if (Array.isArray(options.allowCredentials)) {
    options.allowCredentials = options.allowCredentials.map(descriptorFromJSON);
  }
  return options;
}

// RegistrationResponseJSON / AuthenticationResponseJSON (WebAuthn Level 3).
function credentialToJSON(credential) {
  if (typeof credential.toJSON === 'function') {
    try {
      return credential.toJSON();
    } catch (_) {
      // Some wrappers (e.g. password manager extensions) break toJSON: build it by hand.
    }
  }
  const r = credential.response;
  const json = {
    id: credential.id,
    rawId: bufferToBase64url(credential.rawId),
    type: credential.type,
    clientExtensionResults: typeof credential.getClientExtensionResults === 'function'
      ? credential.getClientExtensionResults() : {},
    response: { clientDataJSON: bufferToBase64url(r.clientDataJSON) },
  };
  if (credential.authenticatorAttachment) json.authenticatorAttachment = credential.authenticatorAttachment;
  if ('attestationObject' in r) {
    json.response.attestationObject = bufferToBase64url(r.attestationObject);
    json.response.transports = typeof r.getTransports === 'function' ? r.getTransports() : [];
  } else {
    json.response.authenticatorData = bufferToBase64url(r.authenticatorData);
    json.response.signature = bufferToBase64url(r.signature);
    json.response.userHandle = r.userHandle ? bufferToBase64url(r.userHandle) : null;
  }
  return json;
}

// Runs a navigator.credentials call with an AbortController, so the page's
// Cancel button can end a prompt that would otherwise wait for the timeout
// (e.g. no authenticator present). Exceptions become WebAuthnError or
// CancelledError.
async function runCeremony(kind, call) {
  if (!webauthnAvailable) throw new Error('Passkeys (WebAuthn) are not available in this browser.');
  // A browser runs one WebAuthn request at a time: the autofill one steps aside.
  await stopConditional();
  const controller = new AbortController();
  state.ceremony = { controller, kind };
  renderCeremony();
  renderReauth();
  $('cancel-passkey').focus();
  try {
    const credential = await call(controller.signal);
    if (!credential) throw new Error('The browser returned no credential.');
    return credential;
  } catch (err) {
    if (controller.signal.aborted) throw new CancelledError(kind);
    throw new WebAuthnError(err);
  } finally {
    state.ceremony = null;
    renderCeremony();
    renderReauth();
  }
}

function cancelCeremony() {
  if (state.ceremony) state.ceremony.controller.abort();
}

function publicKeyFrom(answer) {
  if (!answer || typeof answer.publicKey !== 'object' || answer.publicKey === null) {
    throw new Error('The server\'s options answer has no "publicKey" member.');
  }
  return answer.publicKey;
}

// ---------------------------------------------------------------- tokens

function storage() {
  try { return window.sessionStorage; } catch (_) { return null; }
}

function makeToken(raw) {
  return { raw, claims: decodeJwt(raw) };
}

// Seconds until the token's `exp`, or null when it has none (or is undecodable).
function secondsLeft(token) {
  if (!token || !token.claims || typeof token.claims.exp !== 'number') return null;
  return Math.floor(token.claims.exp - Date.now() / 1000);
}

function isLive(token) {
  if (!token) return false;
  const left = secondsLeft(token);
  return left === null || left > 0;
}

// The token requests carry: the full one while it lives, else the password one.
function activeToken() {
  if (isLive(state.tokens.full)) return state.tokens.full;
  if (isLive(state.tokens.password)) return state.tokens.password;
  return null;
}

// The token whose claims are shown: the active one, else the expired one left.
function displayedToken() {
  return activeToken() || state.tokens.full || state.tokens.password;
}

function slotOf(token) {
  return token && token.claims && token.claims.authLevel === 'full' ? 'full' : 'password';
}

// none | password | full | expired
function currentLevel() {
  const active = activeToken();
  if (active) return slotOf(active);
  return state.tokens.full || state.tokens.password ? 'expired' : 'none';
}

function storeToken(slot, token) {
  state.tokens[slot] = token;
  const s = storage();
  if (!s) return;
  if (token) s.setItem(STORAGE_KEYS[slot], token.raw);
  else s.removeItem(STORAGE_KEYS[slot]);
}

function storeRefreshToken(raw) {
  state.refreshToken = raw || null;
  const s = storage();
  if (!s) return;
  if (raw) s.setItem(REFRESH_KEY, raw);
  else s.removeItem(REFRESH_KEY);
}

// Login, refresh and passkey sign-in answer a refreshToken (stored first of
// all); a step-up or a recovery code keeps the session and its refresh token.
function acceptTokenResponse(answer) {
  if (!answer || typeof answer.accessToken !== 'string') {
    throw new Error('The server\'s token response has no "accessToken".');
  }
  if (typeof answer.refreshToken === 'string' && answer.refreshToken) storeRefreshToken(answer.refreshToken);
  const token = makeToken(answer.accessToken);
  const slot = answer.authLevel === 'full' || slotOf(token) === 'full' ? 'full' : 'password';
  storeToken(slot, token);
  if (slot === 'full') state.stepUpLost = false;
  scheduleRefresh();
}

function clearSession() {
  storeToken('password', null);
  storeToken('full', null);
  storeRefreshToken(null);
  state.generation += 1; // a refresh still in flight belongs to the old session: its answer is dropped
  state.refresh.nextAt = null;
  state.refresh.problem = null;
  state.stepUpLost = false;
  state.me = null;
  state.passkeys = null;
  state.sessions = null;
  state.codes = null; // shown once, and not to whoever uses the page next
}

// Drops an expired full-level token; true when that leaves a live password one.
function dropExpiredFullToken() {
  if (!state.tokens.full || isLive(state.tokens.full)) return false;
  storeToken('full', null);
  if (!isLive(state.tokens.password)) return false;
  state.stepUpLost = true;
  return true;
}

function loadTokens() {
  const s = storage();
  if (!s) return;
  for (const slot of Object.keys(STORAGE_KEYS)) {
    const raw = s.getItem(STORAGE_KEYS[slot]);
    state.tokens[slot] = raw ? makeToken(raw) : null;
  }
  state.refreshToken = s.getItem(REFRESH_KEY) || null;
  s.removeItem('passkeyDemo.accessToken'); // older page versions kept one token
  scheduleRefresh();
}

// The server refused a token (401 invalid_token): forget it. A refused
// full-level token falls back to the password one, if that is still live.
function forgetToken(token) {
  const slot = ['full', 'password'].find((name) => state.tokens[name] && state.tokens[name].raw === token.raw);
  if (!slot) return;
  storeToken(slot, null);
  if (slot === 'full' && isLive(state.tokens.password)) state.stepUpLost = true;
  // With a refresh token left, the next refresh (due now) gets a new token.
  if (!activeToken() && state.refreshToken) state.refresh.nextAt = Date.now();
  else if (!activeToken()) clearSession();
}

// ---------------------------------------------------------------- refresh

// When the password-level token should be renewed: at 85 % of its life or
// 30 s before it expires, whichever is sooner; not sooner than
// REFRESH_MIN_DELAY_MS from now, unless it expires before that.
function scheduleRefresh() {
  state.refresh.problem = null;
  if (!state.refreshToken) {
    state.refresh.nextAt = null;
    return;
  }
  const now = Date.now();
  // After a passkey sign-in only the full-level token is there: renewing
  // before it expires gives the password-level one to fall back to.
  const held = state.tokens.password || state.tokens.full;
  const c = held && held.claims;
  if (!c || typeof c.exp !== 'number') {
    state.refresh.nextAt = now; // a refresh token without its access token: get one now
    return;
  }
  const exp = c.exp * 1000;
  const iat = typeof c.iat === 'number' ? c.iat * 1000 : exp;
  const due = Math.min(iat + 0.85 * (exp - iat), exp - 30_000);
  state.refresh.nextAt = Math.max(due, Math.min(now + REFRESH_MIN_DELAY_MS, exp - REFRESH_MARGIN_MS));
}

function refreshDue() {
  return Boolean(state.refreshToken) && state.refresh.nextAt !== null && Date.now() >= state.refresh.nextAt;
}

// Renews the password-level token with the refresh token. One at a time: a
// caller arriving while a refresh runs shares it. Resolves with the token
// response (null when the session changed meanwhile); rejects with SessionEndedError (the page is logged out by then)
// when the server refuses the refresh token, with another error otherwise.
function refreshSession() {
  if (!state.refresh.inFlight) {
    const run = withRefreshLock(doRefresh);
    state.refresh.inFlight = run;
    const done = () => { if (state.refresh.inFlight === run) state.refresh.inFlight = null; };
    run.then(done, done);
  }
  return state.refresh.inFlight;
}

// The Web Locks API serialises refreshes across this origin's tabs.
function withRefreshLock(fn) {
  if (navigator.locks && typeof navigator.locks.request === 'function') {
    return navigator.locks.request(REFRESH_LOCK, fn);
  }
  return fn();
}

async function doRefresh() {
  const generation = state.generation;
  // Read again what this tab holds: the lock may have been waited for.
  const s = storage();
  const raw = (s && s.getItem(REFRESH_KEY)) || state.refreshToken;
  if (!raw) return null;
  const hash = await tokenHash(raw);
  if (hash && rotatedElsewhere(hash)) {
    // A copy of this tab (or this tab's copy) already used it: presenting it
    // again would end the session for the other tab too.
    throw endSessionLocally('This tab is a copy of another one that has since renewed the session, so this tab '
      + 'cannot go on with it: log in again here (the other tab stays logged in).',
    'This tab left the session to the tab it was copied from: log in again here.');
  }
  const res = await send('POST', '/auth/refresh', { refreshToken: raw }, null);
  // Logged out or logged in anew meanwhile: this answer is of no use any more.
  if (generation !== state.generation) return null;
  if (res.status === 401) throw endSessionLocally();
  if (!res.ok) {
    const err = new ApiError(res.status, res.body, null, res.wwwAuthenticate);
    err.retryAfter = res.retryAfter;
    throw err;
  }
  const answer = res.body || {};
  if (typeof answer.refreshToken === 'string' && answer.refreshToken) storeRefreshToken(answer.refreshToken);
  if (hash) rememberRotated(hash);
  if (answer.authLevel === 'full') throw new Error('The server answered a full-level token to a refresh.');
  acceptTokenResponse(answer);
  state.refresh.lastAt = Date.now();
  renderAll();
  return answer;
}

// What the tick does when a refresh is due: renew quietly, retry later when
// the server cannot be reached (a refused refresh token logs the page out).
function backgroundRefresh() {
  refreshSession().catch((err) => {
    if (err instanceof SessionEndedError) return;
    if (!state.refreshToken) return;
    const wait = retryAfterMs(err) || REFRESH_RETRY_MS;
    state.refresh.nextAt = Date.now() + wait;
    state.refresh.problem = describeError(err);
    renderExpiry();
    if (!isLive(state.tokens.password)) {
      showMessage('warning', `Could not renew the access token: ${describeError(err)}. Trying again in `
        + `${humanSeconds(wait / 1000)}.`, err);
    }
  });
}

function retryAfterMs(err) {
  const seconds = err && err.retryAfter ? Number.parseInt(err.retryAfter, 10) : NaN;
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : null;
}

// Called with a token the server refused (401 invalid_token). Refreshes once,
// unless another caller already replaced that token. Resolves true when a
// new token is there to try again with, false when there is nothing to try;
// rejects with SessionEndedError when the session has ended.
async function recoverSession(refused) {
  const held = ['full', 'password'].find((slot) => state.tokens[slot] && state.tokens[slot].raw === refused.raw);
  if (!held) {
    const current = activeToken();
    return Boolean(current) && current.raw !== refused.raw;
  }
  if (!state.refreshToken) return false;
  try {
    await refreshSession();
  } catch (err) {
    if (err instanceof SessionEndedError) throw err;
    return false; // could not tell: the caller reports the 401 it got
  }
  // The session lives: a refused full-level token has expired by the
  // server's clock; the page goes on at password level.
  if (held === 'full' && state.tokens.full && state.tokens.full.raw === refused.raw) {
    storeToken('full', null);
    state.stepUpLost = true;
    renderAll();
  }
  const current = activeToken();
  return Boolean(current) && current.raw !== refused.raw;
}

// The server no longer knows this session: forget it, say so, and end
// whatever was waiting (a re-verification panel, a passkey prompt).
// Returns the error for the caller to throw.
function endSessionLocally(text = SESSION_ENDED_TEXT, status = 'Your session has ended: log in again.') {
  const err = new SessionEndedError(text);
  clearSession();
  state.sessionEnded = status;
  renderAll();
  showMessage('warning', text, err);
  if (state.ceremony) cancelCeremony();
  if (state.reauth) abandonReauth(err);
  return err;
}

// SHA-256 of a refresh token, base64url (null where SubtleCrypto is missing).
async function tokenHash(raw) {
  try {
    if (!window.crypto || !crypto.subtle) return null;
    const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(raw));
    return bufferToBase64url(digest);
  } catch (_) {
    return null;
  }
}

function readRotated() {
  try {
    const parsed = JSON.parse(window.localStorage.getItem(ROTATED_KEY) || '{}');
    return parsed && typeof parsed === 'object' ? parsed : {};
  } catch (_) {
    return {};
  }
}

function rotatedElsewhere(hash) {
  return Object.prototype.hasOwnProperty.call(readRotated(), hash);
}

// Keeps the hashes of the last refresh tokens used, for a day at most.
function rememberRotated(hash) {
  try {
    const now = Date.now();
    const kept = Object.entries(readRotated())
      .filter(([, at]) => typeof at === 'number' && now - at < 86_400_000)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 49);
    window.localStorage.setItem(ROTATED_KEY, JSON.stringify(Object.fromEntries([[hash, now], ...kept])));
  } catch (_) {
    // No localStorage: duplicated tabs are not detected, nothing else changes.
  }
}

// ---------------------------------------------------------------- rendering

function showMessage(kind, text, err) {
  const el = $('message');
  el.className = `message message--${kind}`;
  el.textContent = text;
  el.dataset.code = (err && err.code) || '';
  el.dataset.status = (err && err.status) || '';
}

function formatDuration(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  const pad = (n) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

// Dates may come as RFC 3339 strings or as unix seconds; show both readably.
function formatDate(value) {
  if (value === null || value === undefined || value === '') return 'never';
  const date = typeof value === 'number' ? new Date(value < 1e12 ? value * 1000 : value) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

function formatTime(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString();
}

// "4:59 (at 12:34:56)", "expired at 12:34:56", or a placeholder.
function expiryText(token, placeholder) {
  if (!token) return placeholder;
  const left = secondsLeft(token);
  if (left === null) return 'no exp claim';
  if (left <= 0) return `expired at ${formatTime(token.claims.exp)}`;
  return `${formatDuration(left)} (at ${formatTime(token.claims.exp)})`;
}

// The countdowns, redrawn every second.
function renderExpiry() {
  const shown = displayedToken();
  const expired = Boolean(shown) && !isLive(shown);
  const el = $('token-expiry');
  el.textContent = expiryText(shown, '—');
  el.classList.toggle('expired', expired);
  $('token-password-expiry').textContent = expiryText(state.tokens.password, 'none');
  $('token-full-expiry').textContent = expiryText(state.tokens.full,
    state.stepUpLost ? 'expired: verify with your passkey again' : 'none');
  $('token-full-expiry').classList.toggle('expired', state.stepUpLost && !state.tokens.full);
  $('token-refresh').textContent = refreshText();
  $('token-refresh').classList.toggle('expired', Boolean(state.refresh.problem));
  $('claim-auth-time').textContent = authTimeText(shown);
}

// "held: renews the password token in 0:42 (last renewed 12:34:56)", never the token itself.
function refreshText() {
  if (!state.refreshToken) return 'none';
  const r = state.refresh;
  let text = 'held';
  if (r.inFlight) text += ': renewing the password token now…';
  else if (r.problem) text += `: renewing failed (${r.problem}); trying again in ${formatDuration(Math.max(0, Math.ceil((r.nextAt - Date.now()) / 1000)))}`;
  else if (r.nextAt !== null) text += `: renews the password token in ${formatDuration(Math.max(0, Math.ceil((r.nextAt - Date.now()) / 1000)))}`;
  if (r.lastAt) text += ` (last renewed ${new Date(r.lastAt).toLocaleTimeString()})`;
  return text;
}

// "12:34:56 (0:42 ago)", plus whether it is within the window of recent-only
// changes, once the server told it (max_age of a challenge).
function authTimeText(token) {
  const c = token && token.claims;
  if (!c) return '—';
  if (typeof c.auth_time !== 'number') return 'not in this token';
  const ago = Math.max(0, Math.floor(Date.now() / 1000 - c.auth_time));
  let text = `${formatTime(c.auth_time)} (${formatDuration(ago)} ago)`;
  if (state.maxAge !== null) {
    text += ago <= state.maxAge ? `, within the ${state.maxAge} s window` : `, older than the ${state.maxAge} s window`;
  }
  return text;
}

function renderSession() {
  const level = currentLevel();
  state.level = level;
  const shown = displayedToken();
  const c = (shown && shown.claims) || {};
  const shownLevel = shown ? (c.authLevel || 'unknown') : 'none';
  const expired = level === 'expired';

  const badge = $('auth-level');
  badge.textContent = shownLevel;
  badge.dataset.level = shownLevel;
  badge.className = `badge badge--${['password', 'full'].includes(shownLevel) ? shownLevel : 'none'}`;
  badge.classList.toggle('badge--expired', expired);
  badge.title = expired ? 'expired' : '';

  let status = state.sessionEnded || 'Not logged in.';
  if (shown && !shown.claims) status = 'Logged in, but the token could not be decoded.';
  else if (expired && state.refreshToken) status = `The access token of ${c.username || '?'} expired: renewing it…`;
  else if (expired) status = `The session of ${c.username || '?'} has expired: log in again.`;
  else if (level === 'full') {
    if (passkeyOnly(c)) status = 'Signed in with a passkey.';
    else if (Array.isArray(c.amr) && c.amr.includes('otp')) status = 'Logged in with a password and a recovery code.';
    else status = 'Logged in with a password and a passkey.';
  }
  else if (level === 'password' && state.stepUpLost) {
    status = 'The full-level token expired: verify with your passkey again.';
  } else if (level === 'password' && passkeyOnly(c)) {
    status = 'Signed in with a passkey, now at password level: verify with your passkey again for the full level.';
  } else if (level === 'password') status = 'Logged in with a password only.';
  $('session-status').textContent = status;
  $('session-status').classList.toggle('expired', (expired && !state.refreshToken) || (!shown && Boolean(state.sessionEnded)));
  $('session-status').classList.toggle('attention', level === 'password' && state.stepUpLost);

  $('claim-username').textContent = shown ? (c.username || '—') : '—';
  $('claim-auth-level').textContent = shown ? shownLevel : '—';
  $('claim-amr').textContent = shown && Array.isArray(c.amr) ? c.amr.join(', ') : '—';
  $('claim-acr').textContent = shown && c.acr !== undefined ? String(c.acr) : '—';
  $('claim-sub').textContent = shown && c.sub !== undefined ? String(c.sub) : '—';
  $('claim-sid').textContent = shown && c.sid !== undefined ? String(c.sid) : '—';
  const header = shown ? decodeJwtPart(shown.raw, 0) : null;
  $('claim-kid').textContent = header && header.kid ? `${header.kid} (${header.alg})` : '—';
  $('claim-iat').textContent = shown && c.iat ? formatDate(c.iat) : '—';
  renderExpiry();
}

// A passkey sign-in: amr ["hwk"], no password (a refresh keeps the amr).
function passkeyOnly(claims) {
  return Boolean(claims) && Array.isArray(claims.amr) && claims.amr.length > 0
    && claims.amr.every((method) => method === 'hwk');
}

function renderMe() {
  $('me').hidden = !state.me;
  // Nothing to fold away while logged out: the forms are the way in.
  if (!activeToken()) $('account-forms').open = true;
  $('me-display-name').textContent = state.me ? (state.me.displayName || '—') : '—';
  $('me-passkey-count').textContent = state.me && state.me.passkeyCount !== undefined
    ? String(state.me.passkeyCount) : '—';
  const remaining = state.me ? state.me.recoveryCodesRemaining : undefined;
  $('me-recovery-remaining').textContent = typeof remaining === 'number' ? `${remaining} left` : '—';
  $('account-manage').hidden = !(activeToken() && state.me);
  if ($('account-manage').hidden) setDeleteConfirm(false);
  $('recovery-codes-hint').textContent = passkeyCount() === 0
    ? 'Recovery codes come with your first passkey.'
    : 'Replaces every unused code.';
}

// The account's passkey count as far as the page knows (null: not known yet).
function passkeyCount() {
  if (Array.isArray(state.passkeys)) return state.passkeys.length;
  if (state.me && typeof state.me.passkeyCount === 'number') return state.me.passkeyCount;
  return null;
}

function username() {
  const token = activeToken() || displayedToken();
  return (state.me && state.me.username) || (token && token.claims && token.claims.username) || '';
}

// A DOM id derived from the passkey id (ids may contain any characters).
function passkeyDomId(id) {
  return `passkey-${String(id).replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

// Creates an element: props are assigned as properties, except `dataset` and `attrs`.
function h(tag, props = {}, ...children) {
  const { dataset, attrs, ...rest } = props;
  const el = Object.assign(document.createElement(tag), rest);
  if (dataset) Object.assign(el.dataset, dataset);
  for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, value);
  el.append(...children);
  return el;
}

function renderPasskeyItem(passkey) {
  const domId = passkeyDomId(passkey.id);
  const id = String(passkey.id);
  const name = passkey.nickname || '(no nickname)';
  const transports = Array.isArray(passkey.transports) && passkey.transports.length
    ? passkey.transports.join(', ') : '—';
  const facts = [
    ['Sign-in', signInText(passkey.discoverable)],
    ['Credential ID', passkey.credentialId || '—'],
    ['Transports', transports],
    ['Backup', `${passkey.backupEligible ? 'eligible' : 'not eligible'}, ${passkey.backupState ? 'backed up' : 'not backed up'}`],
    ['Created', formatDate(passkey.createdAt)],
    ['Last used', formatDate(passkey.lastUsedAt)],
  ].flatMap(([label, value]) => [h('dt', { textContent: label }), h('dd', { textContent: value })]);

  const form = h('form', { className: 'rename-form inline', dataset: { passkeyId: id } },
    h('label', { htmlFor: `${domId}-rename`, className: 'visually-hidden', textContent: `New nickname for ${name}` }),
    h('input', {
      id: `${domId}-rename`, className: 'rename-input', type: 'text', required: true,
      maxLength: 64, autocomplete: 'off', value: passkey.nickname || '',
    }),
    h('button', {
      id: `${domId}-rename-button`, type: 'submit', className: 'button rename-button',
      textContent: 'Rename', attrs: { 'aria-label': `Rename passkey ${name}` },
    }),
    h('button', {
      id: `${domId}-delete`, type: 'button', className: 'button button--danger delete-button',
      textContent: 'Delete', dataset: { passkeyId: id, nickname: passkey.nickname || '' }, attrs: { 'aria-label': `Delete passkey ${name}` },
    }));

  return h('li', { id: domId, className: 'passkey-item', dataset: { passkeyId: id, discoverable: String(passkey.discoverable ?? null) } },
    h('h3', { className: 'passkey-nickname', textContent: name }),
    h('dl', { className: 'facts facts--compact' }, ...facts),
    form);
}

// Whether a passkey can sign in on its own (a discoverable credential, which
// the authenticator finds without being told its id) or only step up a
// password login; null: the authenticator did not say (credProps).
function signInText(discoverable) {
  if (discoverable === true) return 'signs in without a username';
  if (discoverable === false) return 'step-up only';
  return 'unknown';
}

let renderedListKey = null;

// Rebuilds the list only when its data changed, so typed text survives other actions.
function renderPasskeys() {
  const list = $('passkey-list');
  const empty = $('passkey-empty');
  const loggedIn = Boolean(activeToken());
  const key = JSON.stringify([loggedIn, state.passkeys]);
  if (key === renderedListKey) return;
  renderedListKey = key;
  list.replaceChildren();
  if (!loggedIn) {
    empty.textContent = 'Log in to see your passkeys.';
    empty.hidden = false;
    return;
  }
  if (state.passkeys === null) {
    empty.textContent = 'Passkeys not loaded yet.';
    empty.hidden = false;
    return;
  }
  empty.textContent = 'No passkeys registered yet.';
  empty.hidden = state.passkeys.length > 0;
  for (const passkey of state.passkeys) list.append(renderPasskeyItem(passkey));
}

// ---------------------------------------------------------------- sessions

// "Chrome 140 on Linux" from a User-Agent header; the header itself, cut
// short, when it is not a browser's.
function shortUserAgent(ua) {
  if (typeof ua !== 'string' || !ua.trim()) return 'Unknown device';
  const browsers = [
    [/Edg(?:e|A|iOS)?\/(\d+)/, 'Edge'],
    [/OPR\/(\d+)/, 'Opera'],
    [/SamsungBrowser\/(\d+)/, 'Samsung Internet'],
    [/(?:Firefox|FxiOS)\/(\d+)/, 'Firefox'],
    [/HeadlessChrome\/(\d+)/, 'Headless Chrome'],
    [/(?:Chrome|CriOS|Chromium)\/(\d+)/, 'Chrome'],
    [/Version\/(\d+)[\d.]*.*Safari\//, 'Safari'],
    [/^curl\/([\d.]+)/, 'curl'],
  ];
  let browser = null;
  for (const [re, name] of browsers) {
    const m = re.exec(ua);
    if (m) {
      browser = `${name} ${m[1]}`;
      break;
    }
  }
  const systems = [
    [/iPad/, 'iPad'], [/iPhone|iPod/, 'iPhone'], [/Android/, 'Android'], [/Windows/, 'Windows'],
    [/CrOS/, 'ChromeOS'], [/Macintosh|Mac OS X/, 'macOS'], [/Linux/, 'Linux'],
  ];
  const system = (systems.find(([re]) => re.test(ua)) || [null, null])[1];
  if (browser) return system ? `${browser} on ${system}` : browser;
  const trimmed = ua.trim();
  return trimmed.length > 48 ? `${trimmed.slice(0, 47)}…` : trimmed;
}

// The sid of the tokens this page holds.
function currentSid() {
  const token = activeToken() || displayedToken();
  return token && token.claims && token.claims.sid !== undefined ? String(token.claims.sid) : null;
}

function isCurrentSession(session) {
  if (typeof session.current === 'boolean') return session.current;
  return String(session.id) === currentSid();
}

function otherSessions() {
  return Array.isArray(state.sessions) ? state.sessions.filter((session) => !isCurrentSession(session)) : [];
}

function sessionDomId(id) {
  return `session-${String(id).replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

function renderSessionItem(session) {
  const id = String(session.id);
  const current = isCurrentSession(session);
  const device = shortUserAgent(session.userAgent);
  const lastSeen = formatDate(session.lastSeenAt);
  const facts = [
    ['Signed in', formatDate(session.createdAt)],
    ['Last seen', lastSeen],
    ['IP address', session.clientIp || '—'],
    ['Session', id],
  ].flatMap(([label, value]) => [h('dt', { textContent: label }), h('dd', { textContent: value })]);
  const head = h('div', { className: 'session-head' },
    h('h3', {
      className: 'session-device', textContent: device,
      title: session.userAgent || 'The browser did not say (no User-Agent header)',
    }));
  if (current) head.append(h('span', { className: 'badge badge--this', textContent: 'this device' }));
  const item = h('li', {
    id: sessionDomId(id),
    className: `session-item${current ? ' session-item--current' : ''}`,
    dataset: { sessionId: id, current: String(current) },
  }, head, h('dl', { className: 'facts facts--compact' }, ...facts));
  if (current) {
    item.append(h('p', { className: 'hint', textContent: 'The session of this page: "Log out" ends it.' }));
  } else {
    item.append(h('div', { className: 'actions session-item-actions' },
      h('button', {
        type: 'button', className: 'button button--danger end-session-button', textContent: 'End',
        dataset: { sessionId: id, device },
        attrs: { 'aria-label': `End the session of ${device}, last seen ${lastSeen}` },
      })));
  }
  return item;
}

let renderedSessionsKey = null;

function renderSessions() {
  const list = $('session-list');
  const empty = $('sessions-empty');
  const loggedIn = Boolean(activeToken() || state.refreshToken);
  const key = JSON.stringify([loggedIn, currentSid(), state.sessions]);
  if (key === renderedSessionsKey) return;
  renderedSessionsKey = key;
  list.replaceChildren();
  if (!loggedIn) {
    empty.textContent = 'Log in to see your sessions.';
    empty.hidden = false;
    return;
  }
  if (state.sessions === null) {
    empty.textContent = 'Sessions not loaded yet.';
    empty.hidden = false;
    return;
  }
  empty.textContent = 'No live session is listed for this account.';
  empty.hidden = state.sessions.length > 0;
  for (const session of state.sessions) list.append(renderSessionItem(session));
}

// The step-up hint next to the passkey buttons, at password level only.
function renderStepUpHint() {
  const hint = $('stepup-hint');
  if (state.level !== 'password') {
    hint.hidden = true;
    return;
  }
  hint.hidden = false;
  hint.classList.toggle('hint--alert', state.stepUpLost);
  if (state.stepUpLost) {
    hint.textContent = 'Your full-level token expired. Verify with your passkey again to call full-level routes and to rename passkeys.';
  } else if (state.passkeys && state.passkeys.length === 0) {
    hint.textContent = 'Register a passkey, then verify with it to get a full-level token.';
  } else {
    hint.textContent = 'Renaming a passkey and GET /protected/full need a full-level token: verify with a passkey first. '
      + 'Changes to how the account is protected ask for your passkey when they need it.';
  }
}

// Enables exactly the controls that can work in the current state.
function renderControls() {
  const live = Boolean(activeToken());
  const full = state.level === 'full';
  const idle = !state.busy;
  const hasPasskeys = state.passkeys === null || state.passkeys.length > 0;
  const set = (id, enabled) => { $(id).disabled = !enabled; };
  set('signup-submit', idle);
  set('login-submit', idle);
  set('passkey-signin', idle && webauthnAvailable);
  set('logout', Boolean(state.tokens.password || state.tokens.full || state.refreshToken) && idle);
  set('passkey-nickname', live && webauthnAvailable && idle);
  set('register-passkey', live && webauthnAvailable && idle);
  set('verify-passkey', live && webauthnAvailable && hasPasskeys && idle);
  set('refresh-passkeys', live && idle);
  set('call-basic', live && idle);
  // Enabled at password level too: its 403 answer is part of the demo.
  set('call-full', live && idle);
  // Renaming needs the full level; deleting asks for the passkey itself when needed.
  for (const el of $('passkey-list').querySelectorAll('input, .rename-button')) el.disabled = !(full && idle);
  for (const el of $('passkey-list').querySelectorAll('.delete-button')) el.disabled = !(live && idle);
  const count = passkeyCount();
  // Recovery codes exist to get back to a passkey: none without one.
  set('new-recovery-codes', live && idle && count !== 0);
  for (const id of ['current-password', 'new-password', 'change-password', 'delete-account',
    'delete-account-confirm', 'delete-account-cancel']) set(id, live && idle);
  // The recovery-code step-up: at password level, for an account with a passkey.
  // (The re-verification panel has its own while it is open.)
  $('recovery-form').hidden = !(state.level === 'password' && count !== null && count > 0) || Boolean(state.reauth);
  set('recovery-code', live && idle);
  set('use-recovery-code', live && idle);
  // Sessions: "Log out everywhere else" once there is another session to end
  // (or while the list is not loaded).
  set('refresh-sessions', live && idle);
  set('end-other-sessions', live && idle && (state.sessions === null || otherSessions().length > 0));
  $('end-other-sessions').parentElement.hidden = !(live || state.refreshToken);
  for (const el of $('session-list').querySelectorAll('.end-session-button')) el.disabled = !(live && idle);
  renderStepUpHint();
  document.body.setAttribute('aria-busy', String(state.busy));
}

// The Cancel panel, shown only while a passkey prompt is open.
function renderCeremony() {
  const open = Boolean(state.ceremony);
  $('ceremony').hidden = !open;
  $('cancel-passkey').disabled = !open;
  if (open) {
    $('ceremony-status').textContent = {
      create: 'Waiting for your authenticator to create a passkey…',
      signin: 'Waiting for you to choose a passkey…',
    }[state.ceremony.kind] || 'Waiting for your authenticator to confirm it is you…';
  }
  placeCeremony();
}

// Where the prompt's Cancel panel goes: in the re-verification panel while it
// asks for the passkey, under "Sign in with a passkey" for a sign-in, else in
// the passkeys card.
function placeCeremony() {
  const panel = $('ceremony');
  let parent = ceremonyHome.parent;
  let next = ceremonyHome.next;
  if (state.reauth && state.reauth.need === 'full') {
    parent = $('reauth-passkey');
    next = $('reauth-code-form');
  } else if (state.ceremony && state.ceremony.kind === 'signin') {
    parent = $('passkey-signin-area');
    next = $('passkey-signin-hint');
  }
  if (panel.parentElement !== parent || panel.nextElementSibling !== next) parent.insertBefore(panel, next);
}

// The re-verification panel: the passkey (or a recovery code) for the full
// level, the password for an account without a passkey.
function renderReauth() {
  const r = state.reauth;
  const panel = $('reauth');
  panel.hidden = !r;
  // While it asks, a passkey prompt shows its Cancel button in this panel.
  placeCeremony();
  if (!r) return;
  const full = r.need === 'full';
  $('reauth-passkey').hidden = !full;
  $('reauth-password-form').hidden = full;
  $('reauth-heading').textContent = full ? 'Confirm it is you with your passkey' : 'Confirm it is you with your password';
  $('reauth-reason').textContent = r.reason;
  $('reauth-username').textContent = username() || 'your account';
  const running = r.running;
  // While the prompt is open, its own status and Cancel button stand in for this button.
  $('reauth-passkey-button').parentElement.hidden = Boolean(state.ceremony);
  $('reauth-cancel').parentElement.hidden = Boolean(state.ceremony);
  $('reauth-passkey-button').disabled = running || !webauthnAvailable;
  $('reauth-passkey-button').textContent = r.tried ? 'Try the passkey again' : 'Verify with a passkey';
  for (const id of ['reauth-code', 'reauth-code-submit', 'reauth-password', 'reauth-password-submit', 'reauth-cancel']) {
    $(id).disabled = running;
  }
}

// The recovery codes panel, shown once per set of codes.
function renderCodes() {
  const panel = $('codes-panel');
  panel.hidden = !state.codes;
  const list = $('codes-list');
  if (!state.codes) {
    list.replaceChildren();
    delete list.dataset.key;
    $('codes-copy-status').textContent = '';
    return;
  }
  if (list.dataset.key === state.codes.key) return;
  list.dataset.key = state.codes.key;
  list.replaceChildren(...state.codes.codes.map((code) => h('li', {}, h('code', { className: 'code', textContent: code }))));
  $('codes-copy-status').textContent = '';
}

function renderAll() {
  renderSession();
  renderMe();
  renderPasskeys();
  renderSessions();
  renderControls();
  renderCeremony();
  renderReauth();
  renderCodes();
  syncConditional();
}

function renderResult(method, path, res) {
  const result = $('result');
  result.dataset.status = String(res.status);
  result.classList.toggle('result--ok', res.ok);
  result.classList.toggle('result--error', !res.ok);
  $('result-status').textContent = `${method} ${path} → HTTP ${res.status}`;
  $('result-body').textContent = typeof res.body === 'string'
    ? res.body : JSON.stringify(res.body, null, 2);
}

// ---------------------------------------------------------------- actions

// Disabling a focused button drops keyboard focus; put it back on the control
// with the same id (list items are rebuilt), on the list if it is gone, or on
// the summary of the account forms once they are folded away.
function restoreFocus(before) {
  const active = document.activeElement;
  // Chromium moves focus off a control hidden or disabled meanwhile only later.
  const lost = !active || active === document.body || active.disabled || !active.getClientRects().length;
  if (!before || !before.id || !lost) return;
  const target = document.getElementById(before.id);
  const folded = target && target.closest('details:not([open])');
  if (folded) folded.querySelector('summary').focus();
  else if (target && !target.disabled) target.focus();
  else if (!target) $('passkey-list').focus();
}

// What an error means for the session, before it is reported.
function absorbError(err) {
  if (!(err instanceof ApiError)) return;
  if (err.status === 401 && err.code === 'invalid_token' && err.token) forgetToken(err.token);
  // A full-level token the server does not take as full: drop it, ask for the passkey.
  if (err.status === 403 && err.code === 'passkey_required' && err.token && slotOf(err.token) === 'full') {
    forgetToken(err.token);
  }
}

// Runs one user action: disables controls meanwhile and reports any failure.
// The autofill passkey request (conditional mediation) steps aside first and
// comes back afterwards if the page is still logged out. `fromAutofill`: the
// action finishes a sign-in with the passkey picked from the autofill.
async function runAction(label, fn, { fromAutofill = false } = {}) {
  if (state.busy) return;
  const focusedBefore = document.activeElement;
  state.busy = true;
  state.focusAfter = null;
  if (!fromAutofill) state.conditionalHold = false; // the person did something: autofill may be offered again
  renderControls();
  let failed = false;
  try {
    await stopConditional();
    await fn();
  } catch (err) {
    failed = true;
    absorbError(err);
    if (err instanceof SessionEndedError) {
      // Logged out already (endSessionLocally): say why, and offer the login form.
      showMessage('warning', err.message, err);
      state.focusAfter = $('login-username');
    } else if (err instanceof CancelledError && err.kind !== 'signin' && state.sessionEnded && !activeToken()) {
      // A passkey prompt ended because the session did: its message stays.
      state.focusAfter = $('login-username');
    } else if (err instanceof CancelledError || err instanceof ReauthCancelledError) {
      showMessage('warning', err.message, err);
    } else {
      showMessage('error', `${label} failed: ${describeError(err)}`, err);
    }
  } finally {
    state.busy = false;
    // A passkey from the autofill that did not sign in: not offered again by
    // itself (a browser may answer at once with the same passkey).
    if (fromAutofill && failed) {
      state.conditionalHold = true;
      setConditionalState('held');
    }
    renderAll();
    const target = state.focusAfter;
    state.focusAfter = null;
    if (target && target.getClientRects().length) {
      target.focus({ preventScroll: true });
      reveal(target);
    } else {
      restoreFocus(focusedBefore);
    }
  }
}

// Scrolls `el` into view below the sticky message, if it is not in view already.
function reveal(el) {
  const box = el.getBoundingClientRect();
  const offset = $('message').offsetHeight + 16;
  if (box.top < offset || box.bottom > window.innerHeight) {
    window.scrollTo(0, Math.max(0, window.scrollY + box.top - offset));
  }
}

// ---------------------------------------------------------------- recent verification

// Runs a "recent" action (one that changes how the account is protected).
// When the server asks for a fresh verification (403 passkey_required or
// reauthentication_required), asks the person for it in the re-verification
// panel, then runs the action again, without a second click.
function runRecentAction(label, fn) {
  return runAction(label, async () => {
    for (let round = 0; ; round += 1) {
      try {
        return await fn();
      } catch (err) {
        const need = verificationNeeded(err);
        if (!need || round >= 2) throw err;
        absorbError(err);
        await reverify(need, err, label);
      }
    }
  });
}

// 'full' (passkey or recovery code), 'password', or null when `err` does not ask for one.
// The WWW-Authenticate challenge says which (acr_values); without it, the
// account's passkeys do.
function verificationNeeded(err) {
  if (!(err instanceof ApiError) || err.status !== 403) return null;
  if (err.code !== 'passkey_required' && err.code !== 'reauthentication_required') return null;
  const params = (err.challenge && err.challenge.params) || {};
  const maxAge = Number.parseInt(params.max_age, 10);
  if (Number.isFinite(maxAge) && maxAge >= 0) state.maxAge = maxAge;
  const acr = typeof params.acr_values === 'string' ? params.acr_values.split(/\s+/) : [];
  if (acr.includes('full')) return 'full';
  if (acr.includes('password')) return 'password';
  if (err.code === 'passkey_required') return 'full';
  return passkeyCount() === 0 ? 'password' : 'full';
}

// 45 → "45 seconds", 300 → "5 minutes", 330 → "5 minutes 30 seconds".
function humanSeconds(total) {
  const n = Math.max(0, Math.round(total));
  const m = Math.floor(n / 60);
  const sec = n % 60;
  const part = (v, unit) => `${v} ${unit}${v === 1 ? '' : 's'}`;
  if (m === 0) return part(sec, 'second');
  return sec ? `${part(m, 'minute')} ${part(sec, 'second')}` : part(m, 'minute');
}

// Why the panel asks, in the person's terms.
function reauthReason(err, need, label) {
  const what = `the ${label.toLowerCase()}`;
  const how = need === 'full'
    ? 'Confirm with your passkey (or one of your recovery codes)'
    : 'Enter your password again';
  if (err.code === 'passkey_required') {
    return `This change needs a recent verification with your passkey: your account has one, so a password `
      + `login is not enough to change how it is protected. ${how}, and ${what} continues by itself.`;
  }
  const c = err.token && err.token.claims;
  const since = c && typeof c.auth_time === 'number'
    ? ` was ${humanSeconds(Date.now() / 1000 - c.auth_time)} ago` : ' is too old';
  const limit = state.maxAge !== null ? `; changes like this one accept ${humanSeconds(state.maxAge)} at most` : '';
  const last = need === 'full' ? 'Your last verification' : 'Your password login';
  return `This change needs a recent verification. ${last}${since}${limit}. ${how}, and ${what} continues by itself.`;
}

// Opens the re-verification panel; resolves once a fresh token is stored,
// rejects with ReauthCancelledError when the person gives up.
function reverify(need, err, label) {
  return new Promise((resolve, reject) => {
    state.reauth = {
      need, label, resolve, reject, reason: reauthReason(err, need, label), running: false, tried: false,
    };
    $('reauth-code').value = '';
    $('reauth-password').value = '';
    renderAll();
    showMessage('warning', need === 'full'
      ? `${label}: this change needs a recent verification. Confirm with your passkey (or a recovery code) to continue.`
      : `${label}: this change needs a recent verification. Enter your password again to continue.`, err);
    const panel = $('reauth');
    reveal(panel);
    if (need === 'full' && webauthnAvailable) {
      reauthWithPasskey(); // the prompt opens at once; its Cancel button is in the panel
    } else {
      $(need === 'full' ? 'reauth-code' : 'reauth-password').focus({ preventScroll: true });
    }
  });
}

function finishReauth(r) {
  if (state.reauth !== r) return;
  state.reauth = null;
  renderAll();
  r.resolve();
}

// Ends the panel: Cancel, Escape, or a session that is gone.
function abandonReauth(err) {
  const r = state.reauth;
  if (!r) return;
  state.reauth = null;
  renderAll();
  r.reject(err || new ReauthCancelledError(r.label));
}

// A failed attempt keeps the panel open for another try, unless the session is gone.
function reauthAttemptFailed(r, err, focusId) {
  r.running = false;
  if (focusId === 'reauth-passkey-button') r.tried = true;
  absorbError(err);
  if (!activeToken()) {
    abandonReauth(err);
    return;
  }
  renderAll();
  if (err instanceof CancelledError) {
    showMessage('warning', 'Passkey prompt was cancelled. Try the passkey again, use a recovery code, '
      + 'or press Cancel to leave the change undone.', err);
  } else {
    showMessage('error', `Verification failed: ${describeError(err)}`, err);
  }
  const el = $(focusId);
  if (el && !el.disabled) el.focus();
}

// GET options, the browser's prompt, POST verify: the full-level token is stored.
async function passkeyStepUp() {
  const publicKey = publicKeyFrom(await api('GET', '/passkeys/authenticate/options'));
  showMessage('info', 'Follow your browser\'s prompt to use your passkey…');
  const credential = await runCeremony('get', (signal) => navigator.credentials.get({
    publicKey: requestOptionsFromJSON(publicKey), signal,
  }));
  const answer = await api('POST', '/passkeys/authenticate/verify', { body: credentialToJSON(credential) });
  acceptTokenResponse(answer);
  renderAll();
  return answer;
}

function amrText(answer) {
  const claims = decodeJwt(answer && answer.accessToken);
  return claims && Array.isArray(claims.amr) ? claims.amr.join(', ') : '?';
}

async function reauthWithPasskey() {
  const r = state.reauth;
  if (!r || r.running) return;
  r.running = true;
  renderReauth();
  try {
    const answer = await passkeyStepUp();
    showMessage('success', `Passkey verified (authLevel: ${answer.authLevel}): continuing with the ${r.label.toLowerCase()}…`);
    finishReauth(r);
  } catch (err) {
    reauthAttemptFailed(r, err, 'reauth-passkey-button');
  }
}

function onReauthCode(event) {
  event.preventDefault();
  const r = state.reauth;
  const code = $('reauth-code').value.trim();
  if (!r || r.running || !code) return;
  r.running = true;
  renderReauth();
  (async () => {
    try {
      const answer = await api('POST', '/auth/recovery', { body: { code } });
      acceptTokenResponse(answer);
      $('reauth-code').value = '';
      showMessage('success', `Recovery code accepted (authLevel: ${answer.authLevel}, amr: ${amrText(answer)}): `
        + `continuing with the ${r.label.toLowerCase()}…`);
      finishReauth(r);
    } catch (err) {
      reauthAttemptFailed(r, err, 'reauth-code');
    }
  })();
}

function onReauthPassword(event) {
  event.preventDefault();
  const r = state.reauth;
  const password = $('reauth-password').value;
  if (!r || r.running || !password) return;
  r.running = true;
  renderReauth();
  (async () => {
    try {
      const answer = await api('POST', '/auth/login', { body: { username: username(), password }, auth: false });
      // A new login: its password-level token is the fresh one (a full-level
      // token of the old login would be sent first, and refused again). It
      // starts a new session, which replaces this page's old one: that ends.
      const old = activeToken() || state.tokens.password;
      state.generation += 1; // a refresh of the old session still in flight is dropped
      storeToken('full', null);
      state.stepUpLost = false;
      acceptTokenResponse(answer);
      await endReplacedSession(old);
      $('reauth-password').value = '';
      showMessage('success', `Password confirmed: continuing with the ${r.label.toLowerCase()}…`);
      finishReauth(r);
    } catch (err) {
      $('reauth-password').value = '';
      reauthAttemptFailed(r, err, 'reauth-password');
    }
  })();
}

function onReauthCancel() {
  if (!state.reauth) return;
  if (state.reauth.running) cancelCeremony();
  else abandonReauth();
}

// Reloads GET /auth/me, GET /passkeys and GET /auth/sessions (after login and
// every passkey change).
async function refreshAccount() {
  const [me, passkeys, sessions] = await Promise.all([
    api('GET', '/auth/me'), api('GET', '/passkeys'), api('GET', '/auth/sessions'),
  ]);
  state.me = me;
  state.passkeys = Array.isArray(passkeys) ? passkeys : [];
  state.sessions = Array.isArray(sessions) ? sessions : [];
  renderAll();
}

async function loadSessions() {
  const sessions = await api('GET', '/auth/sessions');
  state.sessions = Array.isArray(sessions) ? sessions : [];
  renderAll();
}

// Best effort: POST /auth/logout with a token of a session this page is
// leaving (another login took its place). Never refreshes, never throws.
async function endReplacedSession(token) {
  if (!token || !token.claims || token.claims.sid === currentSid()) return;
  try {
    await request('POST', '/auth/logout', { token, recover: false });
  } catch (_) {
    // Unreachable server: that session ends with its refresh token's life.
  }
}

// Stores a login's answer in place of whatever session this page held,
// ending that one on the server.
async function adoptLogin(answer) {
  const previous = activeToken() || state.tokens.password;
  clearSession();
  state.sessionEnded = null;
  acceptTokenResponse(answer);
  await endReplacedSession(previous);
}

function onSignup(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const username = $('signup-username').value.trim();
  const password = $('signup-password').value;
  const displayName = $('signup-display-name').value.trim();
  runAction('Sign-up', async () => {
    const body = { username, password };
    if (displayName) body.displayName = displayName;
    const user = await api('POST', '/auth/signup', { body, auth: false });
    // Signup answers the new user, not a token: log in with the same credentials.
    const answer = await api('POST', '/auth/login', { body: { username, password }, auth: false });
    await adoptLogin(answer);
    form.reset();
    renderAll();
    $('account-forms').open = false;
    showMessage('success', `Account "${user.username}" created; you are logged in at password level.`);
    await refreshAccount();
  });
}

function onLogin(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const username = $('login-username').value.trim();
  const password = $('login-password').value;
  runAction('Login', async () => {
    const answer = await api('POST', '/auth/login', { body: { username, password }, auth: false });
    await adoptLogin(answer);
    form.reset();
    renderAll();
    $('account-forms').open = false;
    const name = activeToken() && activeToken().claims ? activeToken().claims.username : username;
    showMessage('success', `Logged in as ${name} (authLevel: ${answer.authLevel}).`);
    await refreshAccount();
  });
}

// POST /auth/logout ends the session on the server (its access tokens and its
// refresh token stop working); the page forgets its tokens whatever the answer.
function onLogout() {
  runAction('Logout', async () => {
    // A refresh under way first: its answer would hold the session's latest tokens.
    if (state.refresh.inFlight) await state.refresh.inFlight.catch(() => null);
    let token = activeToken();
    if (!token && state.refreshToken) {
      // Only an expired access token left: renew it, to be able to end the session.
      token = await refreshSession().then(() => activeToken(), () => null);
    }
    let outcome = 'this page had no live token to end the session with on the server';
    if (token) {
      try {
        const res = await request('POST', '/auth/logout', { token, recover: false });
        if (res.ok) outcome = 'the session was ended on the server';
        else if (res.status === 401) outcome = 'the server had already ended this session';
        else outcome = `the server could not end the session (HTTP ${res.status}${problemCode(res.body) ? `, ${problemCode(res.body)}` : ''})`;
      } catch (err) {
        outcome = `the server could not be told (${err.message})`;
      }
    }
    clearSession();
    state.sessionEnded = null;
    renderAll();
    showMessage('info', `Logged out: ${outcome}, and this page forgot its tokens.`);
  });
}

function onRegisterPasskey(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const nickname = $('passkey-nickname').value.trim();
  runRecentAction('Passkey registration', async () => {
    const publicKey = publicKeyFrom(await api('GET', '/passkeys/register/options'));
    showMessage('info', 'Follow your browser\'s prompt to create a passkey…');
    const credential = await runCeremony('create', (signal) => navigator.credentials.create({
      publicKey: creationOptionsFromJSON(publicKey), signal,
    }));
    const body = credentialToJSON(credential);
    if (nickname) body.nickname = nickname;
    const summary = await api('POST', '/passkeys/register/verify', { body });
    form.reset();
    const name = `Passkey ${summary && summary.nickname ? `"${summary.nickname}" ` : ''}registered.`;
    // The account's first passkey comes with its recovery codes, shown once.
    if (summary && Array.isArray(summary.recoveryCodes) && summary.recoveryCodes.length) {
      showCodes(summary.recoveryCodes);
      showMessage('success', `${name} It is your first one: store the recovery codes shown now, they will not be shown again.`);
    } else {
      showMessage('success', name);
    }
    await refreshAccount();
  });
}

function onVerifyPasskey() {
  runAction('Passkey verification', async () => {
    const answer = await passkeyStepUp();
    showMessage('success', `Passkey verified: token upgraded (authLevel: ${answer.authLevel}).`);
    await refreshAccount();
  });
}

// The recovery-code step-up, for when no passkey is at hand.
function onUseRecoveryCode(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const code = $('recovery-code').value.trim();
  runAction('Recovery code', async () => {
    const answer = await api('POST', '/auth/recovery', { body: { code } });
    acceptTokenResponse(answer);
    form.reset();
    renderAll();
    await refreshAccount();
    const left = state.me && typeof state.me.recoveryCodesRemaining === 'number'
      ? ` ${state.me.recoveryCodesRemaining} recovery codes left.` : '';
    showMessage('success', `Recovery code accepted: token upgraded (authLevel: ${answer.authLevel}, amr: ${amrText(answer)}).${left}`);
    state.focusAfter = $('verify-passkey').disabled ? $('passkey-list') : $('verify-passkey');
  });
}

// ---------------------------------------------------------------- passkey sign-in

// "Sign in with a passkey": the browser's own prompt (modal, no mediation)
// offers the discoverable passkeys it holds for this site; no username.
function onPasskeySignIn() {
  runAction('Passkey sign-in', async () => {
    const publicKey = publicKeyFrom(await api('GET', '/passkeys/login/options', { auth: false }));
    showMessage('info', 'Choose a passkey in your browser\'s prompt…');
    let credential;
    try {
      credential = await runCeremony('signin', (signal) => navigator.credentials.get({
        publicKey: requestOptionsFromJSON(publicKey), signal,
      }));
    } catch (err) {
      if (err instanceof WebAuthnError && err.code === 'NotAllowedError') throw new NoPasskeyError();
      throw err;
    }
    await finishPasskeySignIn(credential);
  });
}

// POST /passkeys/login/verify: a new session, at full level (amr ["hwk"]),
// stored as a login's tokens are (in place of any session held here).
async function finishPasskeySignIn(credential) {
  let answer;
  try {
    answer = await api('POST', '/passkeys/login/verify', { body: credentialToJSON(credential), auth: false });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) throw new PasskeySignInError(err);
    throw err;
  }
  await adoptLogin(answer);
  $('login-form').reset();
  renderAll();
  $('account-forms').open = false;
  const claims = decodeJwt(answer.accessToken) || {};
  showMessage('success', `Signed in with a passkey${claims.username ? ` as ${claims.username}` : ''} `
    + `(authLevel: ${answer.authLevel}, amr: ${amrText(answer)}).`);
  await refreshAccount();
}

// ---------------------------------------------------------------- autofill (conditional mediation)

// While logged out, the page keeps a conditional request pending: the
// browser then lists this site's passkeys among the suggestions of the login
// username field (autocomplete="username webauthn"), and picking one signs
// in as the button does. A browser runs one WebAuthn request at a time, so
// the pending one is aborted before any other (runCeremony) and before any
// action (runAction: a password login, a sign-up), and started again once
// the page is idle and still logged out. Its state is on the login form
// (data-conditional), for whoever wants to know.

let conditionalSupport = null; // a promise of whether the browser offers passkeys in autofill

function conditionalSupported() {
  if (!conditionalSupport) {
    conditionalSupport = (async () => {
      try {
        return Boolean(window.PublicKeyCredential && PublicKeyCredential.isConditionalMediationAvailable
          && await PublicKeyCredential.isConditionalMediationAvailable());
      } catch (_) {
        return false;
      }
    })();
    conditionalSupport.then((supported) => {
      if (supported) {
        $('passkey-signin-hint').textContent = 'No username or password: uses a passkey registered for sign-in. '
          + 'Your browser may also offer it in the username field\'s suggestions.';
      } else {
        setConditionalState('unavailable');
      }
    });
  }
  return conditionalSupport;
}

// starting | pending | aborted | resolved | ended (the browser ended it; data-conditional-error says how) |
// held (not started again until the person does something) | unavailable
function setConditionalState(value, error) {
  const form = $('login-form');
  form.dataset.conditional = value;
  if (error) form.dataset.conditionalError = error;
  else delete form.dataset.conditionalError;
}

// Logged out, as far as signing in goes: no live access token, no refresh token.
function signedOut() {
  return !activeToken() && !state.refreshToken;
}

// Starts the conditional request when it should run, stops it when it should not.
function syncConditional() {
  if (!webauthnAvailable) return;
  if (!signedOut()) {
    if (state.conditional) stopConditional();
    return;
  }
  if (state.conditional || state.busy || state.conditionalHold) return;
  const entry = { controller: new AbortController(), phase: 'starting', call: null, timer: null };
  state.conditional = entry;
  runConditional(entry);
}

async function runConditional(entry) {
  const { signal } = entry.controller;
  let credential = null;
  try {
    if (!(await conditionalSupported())) {
      state.conditionalHold = true; // nothing to offer in this browser
      return;
    }
    if (signal.aborted) return;
    setConditionalState('starting');
    const publicKey = publicKeyFrom(await api('GET', '/passkeys/login/options', { auth: false }));
    if (signal.aborted) return;
    entry.phase = 'pending';
    // The server's challenge lives CHALLENGE_TTL_SECS (the options' timeout);
    // a browser may keep a conditional request pending far longer: renew it first.
    const ttl = Number.isFinite(publicKey.timeout) && publicKey.timeout > 0 ? publicKey.timeout : 300_000;
    entry.timer = setTimeout(() => renewConditional(entry), Math.max(15_000, ttl - 30_000));
    entry.call = navigator.credentials.get({
      publicKey: requestOptionsFromJSON(publicKey), mediation: 'conditional', signal,
    });
    setConditionalState('pending');
    credential = await entry.call;
  } catch (err) {
    // The page's own abort is no failure, and says nothing. The browser
    // ending it (or the server refusing options) says nothing either: the
    // button and the password are still there.
    if (!signal.aborted) {
      state.conditionalHold = true;
      setConditionalState('ended', (err && err.code) || (err && err.name) || 'Error');
    }
    return;
  } finally {
    clearTimeout(entry.timer);
    if (state.conditional === entry) state.conditional = null;
  }
  if (signal.aborted) return; // picked just as something else started: that one goes on
  if (!credential) {
    state.conditionalHold = true;
    setConditionalState('ended', 'no credential');
    return;
  }
  // The person picked a passkey from the autofill.
  setConditionalState('resolved');
  runAction('Passkey sign-in', () => finishPasskeySignIn(credential), { fromAutofill: true });
}

// Aborts the pending conditional request; resolves once the browser has let
// go of it (its promise rejected with an AbortError), so that another
// WebAuthn request can start.
async function stopConditional() {
  const entry = state.conditional;
  if (!entry) return;
  state.conditional = null;
  entry.controller.abort();
  clearTimeout(entry.timer);
  setConditionalState('aborted');
  if (entry.call) {
    let timer;
    await Promise.race([
      entry.call.catch(() => null),
      new Promise((r) => { timer = setTimeout(r, 1_000); }),
    ]);
    clearTimeout(timer);
  }
}

function renewConditional(entry) {
  if (state.conditional !== entry) return;
  stopConditional().then(syncConditional);
}

// ---------------------------------------------------------------- recovery codes

let codeSets = 0; // each set shown gets its own key, so a new set is always redrawn

function showCodes(codes) {
  codeSets += 1;
  state.codes = { codes: codes.map(String), key: String(codeSets) };
  renderCodes();
  state.focusAfter = $('codes-panel');
}

function onNewRecoveryCodes() {
  runRecentAction('Recovery code replacement', async () => {
    const answer = await api('POST', '/auth/recovery-codes');
    if (!answer || !Array.isArray(answer.codes)) throw new Error('The server\'s answer has no "codes".');
    showCodes(answer.codes);
    showMessage('success', `${answer.codes.length} new recovery codes created; the previous ones no longer work. Store these now.`);
    await refreshAccount();
  });
}

async function onCopyCodes() {
  if (!state.codes) return;
  const { codes } = state.codes;
  const status = $('codes-copy-status');
  try {
    if (!navigator.clipboard || typeof navigator.clipboard.writeText !== 'function') {
      throw new Error('no clipboard access');
    }
    await navigator.clipboard.writeText(`${codes.join('\n')}\n`);
    status.textContent = `Copied ${codes.length} codes to the clipboard.`;
    showMessage('success', `Recovery codes copied to the clipboard (${codes.length}). Paste them somewhere safe.`);
  } catch (_) {
    // Select them instead, ready for Ctrl+C.
    window.getSelection().selectAllChildren($('codes-list'));
    status.textContent = 'This browser did not allow copying: the codes are selected, copy them by hand (Ctrl+C) or write them down.';
    showMessage('warning', 'Could not copy the recovery codes automatically: they are selected, copy them by hand.');
  }
}

function onCodesDone() {
  state.codes = null;
  renderCodes();
  showMessage('info', 'Recovery codes hidden: they will not be shown again. "New recovery codes" replaces them.');
  const next = $('new-recovery-codes');
  if (next.getClientRects().length && !next.disabled) next.focus();
}

// ---------------------------------------------------------------- password, account

function onChangePassword(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const currentPassword = $('current-password').value;
  const newPassword = $('new-password').value;
  runRecentAction('Password change', async () => {
    await api('POST', '/auth/password', { body: { currentPassword, newPassword } });
    form.reset();
    showMessage('success', 'Password changed. Every other session of this account was logged out; use the new password from now on.');
    await loadSessions();
  });
}

function setDeleteConfirm(open) {
  $('delete-confirm').hidden = !open;
  $('delete-account').setAttribute('aria-expanded', String(open));
}

function onDeleteAccount() {
  $('delete-confirm-text').textContent = `Delete the account "${username()}" with its passkeys, recovery codes `
    + 'and sessions? This cannot be undone.';
  setDeleteConfirm(true);
  $('delete-account-cancel').focus();
}

function onDeleteAccountCancel() {
  setDeleteConfirm(false);
  $('delete-account').focus();
}

function onDeleteAccountConfirm() {
  const name = username();
  runRecentAction('Account deletion', async () => {
    await api('DELETE', '/auth/me');
    clearSession();
    setDeleteConfirm(false);
    renderAll();
    showMessage('success', `Account "${name}" deleted, with its passkeys, recovery codes and sessions. You are logged out.`);
    state.focusAfter = $('login-username');
  });
}

function onRefreshPasskeys() {
  runAction('Loading passkeys', async () => {
    await refreshAccount();
    showMessage('info', `Passkey list refreshed (${state.passkeys.length}).`);
  });
}

function onRenameSubmit(event) {
  const form = event.target.closest('.rename-form');
  if (!form) return;
  event.preventDefault();
  const id = form.dataset.passkeyId;
  const nickname = form.querySelector('.rename-input').value.trim();
  runAction('Rename', async () => {
    const summary = await api('PATCH', `/passkeys/${encodeURIComponent(id)}`, { body: { nickname } });
    showMessage('success', `Passkey renamed to "${summary && summary.nickname ? summary.nickname : nickname}".`);
    await refreshAccount();
  });
}

function onPasskeyListClick(event) {
  const button = event.target.closest('.delete-button');
  if (!button) return;
  const id = button.dataset.passkeyId;
  const name = button.dataset.nickname;
  runRecentAction('Passkey deletion', async () => {
    await api('DELETE', `/passkeys/${encodeURIComponent(id)}`);
    showMessage('success', `Passkey ${name ? `"${name}" ` : ''}deleted.`);
    await refreshAccount();
  });
}

function callProtected(path) {
  runAction(`GET ${path}`, async () => {
    let res;
    try {
      res = await request('GET', path);
    } catch (err) {
      if (err.response) renderResult('GET', path, err.response);
      throw err;
    }
    renderResult('GET', path, res);
    if (res.ok) showMessage('success', `GET ${path} answered HTTP ${res.status}.`);
    else throw new ApiError(res.status, res.body, res.token, res.wwwAuthenticate);
  });
}

// ---------------------------------------------------------------- sessions panel

function onRefreshSessions() {
  runAction('Loading sessions', async () => {
    await loadSessions();
    const others = otherSessions().length;
    showMessage('info', `Session list refreshed: this one${others ? ` and ${others} other${others === 1 ? '' : 's'}` : ' only'}.`);
  });
}

function onSessionListClick(event) {
  const button = event.target.closest('.end-session-button');
  if (!button) return;
  const id = button.dataset.sessionId;
  const device = button.dataset.device;
  runRecentAction('Logout of that session', async () => {
    const res = await request('DELETE', `/auth/sessions/${encodeURIComponent(id)}`);
    if (res.status === 404) {
      await loadSessions();
      showMessage('info', `That session (${device}) had already ended.`);
      return;
    }
    if (!res.ok) throw new ApiError(res.status, res.body, res.token, res.wwwAuthenticate);
    await loadSessions();
    showMessage('success', `Session ended: ${device} is logged out.`);
    state.focusAfter = $('session-list');
  });
}

function onEndOtherSessions() {
  runRecentAction('Logout of the other sessions', async () => {
    await api('DELETE', '/auth/sessions');
    await loadSessions();
    showMessage('success', 'Every other session was ended: only this device is still logged in.');
  });
}

// Back to a tab left alone for a while: renew what is due, and reload the
// session list (which tells whether this session still lives).
function onVisible() {
  if (document.visibilityState !== 'visible') return;
  tick();
  if (state.busy || !activeToken() || state.sessions === null) return;
  if (Date.now() - state.lastCheck < 10_000) return;
  state.lastCheck = Date.now();
  loadSessions().catch((err) => {
    if (!(err instanceof SessionEndedError)) absorbError(err);
  });
}

// ---------------------------------------------------------------- timer & startup

// Once a second: count down, and react when a token crosses its expiry.
// Renews the password-level token when it is due.
function tick() {
  if (refreshDue() && !state.refresh.inFlight) backgroundRefresh();
  const fellBack = dropExpiredFullToken();
  const level = currentLevel();
  if (level === state.level && !fellBack) {
    renderExpiry();
    return;
  }
  renderAll();
  if (fellBack) {
    showMessage('warning', 'Your full-level token expired, so this page is back at password level. '
      + 'Verify with your passkey again to call full-level routes and to rename or delete passkeys.',
    { code: 'full_token_expired' });
  } else if (level === 'expired' && !state.refreshToken) {
    showMessage('warning', 'Your access token has expired: log in again.', { code: 'token_expired' });
  }
}

// Escape ends the innermost thing open: a passkey prompt, the
// re-verification panel, the account deletion confirmation.
function onKeydown(event) {
  if (event.key !== 'Escape') return;
  if (state.ceremony) {
    cancelCeremony();
  } else if (state.reauth && !state.reauth.running) {
    abandonReauth();
  } else if (!$('delete-confirm').hidden && !state.busy) {
    onDeleteAccountCancel();
  } else {
    return;
  }
  event.preventDefault();
}

function wireEvents() {
  $('signup-form').addEventListener('submit', onSignup);
  $('login-form').addEventListener('submit', onLogin);
  $('passkey-signin').addEventListener('click', onPasskeySignIn);
  $('logout').addEventListener('click', onLogout);
  $('register-form').addEventListener('submit', onRegisterPasskey);
  $('verify-passkey').addEventListener('click', onVerifyPasskey);
  $('cancel-passkey').addEventListener('click', cancelCeremony);
  $('refresh-passkeys').addEventListener('click', onRefreshPasskeys);
  $('passkey-list').addEventListener('submit', onRenameSubmit);
  $('passkey-list').addEventListener('click', onPasskeyListClick);
  $('call-basic').addEventListener('click', () => callProtected('/protected/basic'));
  $('call-full').addEventListener('click', () => callProtected('/protected/full'));
  $('recovery-form').addEventListener('submit', onUseRecoveryCode);
  $('new-recovery-codes').addEventListener('click', onNewRecoveryCodes);
  $('codes-copy').addEventListener('click', onCopyCodes);
  $('codes-done').addEventListener('click', onCodesDone);
  $('password-form').addEventListener('submit', onChangePassword);
  $('delete-account').addEventListener('click', onDeleteAccount);
  $('delete-account-cancel').addEventListener('click', onDeleteAccountCancel);
  $('delete-account-confirm').addEventListener('click', onDeleteAccountConfirm);
  $('reauth-passkey-button').addEventListener('click', reauthWithPasskey);
  $('reauth-code-form').addEventListener('submit', onReauthCode);
  $('reauth-password-form').addEventListener('submit', onReauthPassword);
  $('reauth-cancel').addEventListener('click', onReauthCancel);
  $('refresh-sessions').addEventListener('click', onRefreshSessions);
  $('session-list').addEventListener('click', onSessionListClick);
  $('end-other-sessions').addEventListener('click', onEndOtherSessions);
  document.addEventListener('keydown', onKeydown);
  document.addEventListener('visibilitychange', onVisible);
}

function showWebAuthnSupport() {
  if (webauthnAvailable) return;
  const el = $('webauthn-status');
  el.textContent = window.isSecureContext
    ? 'This browser does not support passkeys (WebAuthn): passkey buttons are disabled.'
    : 'Passkeys (WebAuthn) are unavailable: they need HTTPS or http://localhost. Passkey buttons are disabled.';
  el.hidden = false;
}

// Where the prompt's Cancel panel lives when no re-verification borrows it.
const ceremonyHome = { parent: null, next: null };

function init() {
  ceremonyHome.parent = $('ceremony').parentElement;
  ceremonyHome.next = $('ceremony').nextElementSibling;
  wireEvents();
  showWebAuthnSupport();
  if (webauthnAvailable) conditionalSupported(); // says in the hint whether autofill offers passkeys
  loadTokens();
  const fellBack = dropExpiredFullToken();
  renderAll();
  setInterval(tick, 1000);
  if (state.refreshToken && (refreshDue() || !activeToken())) {
    // The access token expired (or is about to) while the page was closed:
    // the refresh token renews it.
    $('account-forms').open = false;
    runAction('Restoring the session', async () => {
      await refreshSession();
      showMessage('info', 'Session restored from this tab: the access token was renewed with the refresh token.');
      await refreshAccount();
    });
  } else if (activeToken()) {
    $('account-forms').open = false;
    showMessage(fellBack ? 'warning' : 'info', fellBack
      ? 'Session restored at password level: the full-level token expired, verify with your passkey again.'
      : 'Session restored from this tab.');
    runAction('Loading the session', refreshAccount);
  } else if (state.level === 'expired') {
    showMessage('warning', 'The saved token has expired: log in again.');
  }
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
else init();
