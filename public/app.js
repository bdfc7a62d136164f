// Passkey demo page: password login, passkey registration and step-up,
// passkey management and protected routes, following /work/shared/API.md.
// No framework and nothing inline, so a strict CSP (default-src 'self') works.
'use strict';

const TOKEN_KEY = 'passkeyDemo.accessToken';

const state = {
  token: null,     // raw JWT string
  claims: null,    // decoded JWT payload (not verified: display only)
  expired: false,  // cached so the timer can notice the transition
  me: null,        // last GET /auth/me answer
  passkeys: null,  // last GET /passkeys answer (null = not loaded)
  busy: false,     // one request/ceremony at a time; buttons are disabled meanwhile
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

// Decodes a JWT payload without verifying it (the server does that).
function decodeJwt(token) {
  const parts = String(token).split('.');
  if (parts.length !== 3) return null;
  try {
    return JSON.parse(new TextDecoder().decode(base64urlToBuffer(parts[1])));
  } catch (_) {
    return null;
  }
}

// ---------------------------------------------------------------- errors

class ApiError extends Error {
  constructor(status, body) {
    const problem = body && typeof body === 'object' ? body : {};
    super(problem.detail || problem.title || (typeof body === 'string' && body) || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = problem.code || null;
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
  }
}

// Extra guidance for the error codes a person can act on.
const CODE_HINTS = {
  passkey_required: 'Passkey verification needed: click "Verify with a passkey", then try again.',
  no_passkeys: 'Register a passkey first.',
  missing_token: 'Log in first.',
  invalid_token: 'Your token is no longer accepted: log in again.',
  challenge_expired: 'The passkey challenge expired or was already used: start again.',
};

function describeWebAuthnException(err) {
  switch (err && err.name) {
    case 'NotAllowedError':
      return 'Passkey prompt was cancelled or timed out.';
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

// Low level: always resolves with {status, ok, body} unless the network fails.
async function request(method, path, { body, auth = true } = {}) {
  const headers = { Accept: 'application/json, application/problem+json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth && state.token) headers.Authorization = `Bearer ${state.token}`;
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
  return { status: response.status, ok: response.ok, body: parsed };
}

// High level: resolves with the body on 2xx, throws ApiError otherwise.
async function api(method, path, options) {
  const res = await request(method, path, options);
  if (!res.ok) throw new ApiError(res.status, res.body);
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

// Runs a navigator.credentials call and turns its exceptions into WebAuthnError.
async function runCeremony(call) {
  if (!webauthnAvailable) throw new Error('Passkeys (WebAuthn) are not available in this browser.');
  try {
    const credential = await call();
    if (!credential) throw new Error('The browser returned no credential.');
    return credential;
  } catch (err) {
    throw new WebAuthnError(err);
  }
}

function publicKeyFrom(answer) {
  if (!answer || typeof answer.publicKey !== 'object' || answer.publicKey === null) {
    throw new Error('The server\'s options answer has no "publicKey" member.');
  }
  return answer.publicKey;
}

// ---------------------------------------------------------------- session state

function storage() {
  try { return window.sessionStorage; } catch (_) { return null; }
}

function setToken(token) {
  state.token = token;
  state.claims = decodeJwt(token);
  state.expired = isExpired();
  const s = storage();
  if (s) s.setItem(TOKEN_KEY, token);
}

function clearSession() {
  state.token = null;
  state.claims = null;
  state.expired = false;
  state.me = null;
  state.passkeys = null;
  const s = storage();
  if (s) s.removeItem(TOKEN_KEY);
}

function acceptTokenResponse(answer) {
  if (!answer || typeof answer.accessToken !== 'string') {
    throw new Error('The server\'s token response has no "accessToken".');
  }
  setToken(answer.accessToken);
}

function secondsLeft() {
  if (!state.claims || typeof state.claims.exp !== 'number') return null;
  return Math.floor(state.claims.exp - Date.now() / 1000);
}

function isExpired() {
  const left = secondsLeft();
  return left !== null && left <= 0;
}

// A token that can be used for authenticated routes.
function hasLiveToken() {
  return Boolean(state.token) && !state.expired;
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

function renderExpiry() {
  const el = $('token-expiry');
  const left = secondsLeft();
  el.classList.toggle('expired', state.expired);
  if (!state.token) el.textContent = '—';
  else if (left === null) el.textContent = 'no exp claim';
  else if (left <= 0) el.textContent = `expired (at ${formatDate(state.claims.exp)})`;
  else el.textContent = `${formatDuration(left)} (at ${formatDate(state.claims.exp)})`;
}

function renderSession() {
  const c = state.claims || {};
  const level = state.token ? (c.authLevel || 'unknown') : 'none';
  const badge = $('auth-level');
  badge.textContent = level;
  badge.dataset.level = level;
  badge.className = `badge badge--${['password', 'full'].includes(level) ? level : 'none'}`;
  badge.classList.toggle('badge--expired', state.expired);
  badge.title = state.expired ? 'expired' : '';

  let status = 'Not logged in.';
  if (state.token && !state.claims) status = 'Logged in, but the token could not be decoded.';
  else if (state.expired) status = `Token for ${c.username || '?'} has expired: log in again.`;
  else if (state.token && level === 'full') status = `Logged in as ${c.username} with a passkey (full level).`;
  else if (state.token) status = `Logged in as ${c.username} with a password only (password level).`;
  $('session-status').textContent = status;
  $('session-status').classList.toggle('expired', state.expired);

  $('claim-username').textContent = state.token ? (c.username || '—') : '—';
  $('claim-auth-level').textContent = state.token ? level : '—';
  $('claim-amr').textContent = state.token && Array.isArray(c.amr) ? c.amr.join(', ') : '—';
  $('claim-sub').textContent = state.token && c.sub !== undefined ? String(c.sub) : '—';
  $('claim-iat').textContent = state.token && c.iat ? formatDate(c.iat) : '—';
  renderExpiry();
}

function renderMe() {
  $('me-display-name').textContent = state.me ? (state.me.displayName || '—') : '—';
  $('me-passkey-count').textContent = state.me && state.me.passkeyCount !== undefined
    ? String(state.me.passkeyCount) : '—';
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
      textContent: 'Delete', dataset: { passkeyId: id }, attrs: { 'aria-label': `Delete passkey ${name}` },
    }));

  return h('li', { id: domId, className: 'passkey-item', dataset: { passkeyId: id } },
    h('h3', { className: 'passkey-nickname', textContent: name }),
    h('dl', { className: 'facts facts--compact' }, ...facts),
    form);
}

let renderedListKey = null;

// Rebuilds the list only when its data changed, so typed text survives other actions.
function renderPasskeys() {
  const list = $('passkey-list');
  const empty = $('passkey-empty');
  const key = JSON.stringify([Boolean(state.token), state.passkeys]);
  if (key === renderedListKey) return;
  renderedListKey = key;
  list.replaceChildren();
  if (!state.token) {
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

// Enables exactly the controls that can work in the current state.
function renderControls() {
  const live = hasLiveToken();
  const idle = !state.busy;
  const set = (id, enabled) => { $(id).disabled = !enabled; };
  set('signup-submit', idle);
  set('login-submit', idle);
  set('logout', Boolean(state.token) && idle);
  set('passkey-nickname', live && webauthnAvailable && idle);
  set('register-passkey', live && webauthnAvailable && idle);
  set('verify-passkey', live && webauthnAvailable && idle);
  set('refresh-passkeys', live && idle);
  set('call-basic', live && idle);
  set('call-full', live && idle);
  for (const el of $('passkey-list').querySelectorAll('input, button')) el.disabled = !(live && idle);
  $('stepup-hint').hidden = !(live && state.claims && state.claims.authLevel !== 'full'
    && state.passkeys && state.passkeys.length > 0);
  document.body.setAttribute('aria-busy', String(state.busy));
}

function renderAll() {
  renderSession();
  renderMe();
  renderPasskeys();
  renderControls();
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
// with the same id (list items are rebuilt), or on the list if it is gone.
function restoreFocus(before) {
  const active = document.activeElement;
  if (!before || !before.id || (active && active !== document.body)) return;
  const target = document.getElementById(before.id);
  if (target && !target.disabled) target.focus();
  else if (!target) $('passkey-list').focus();
}

// Runs one user action: disables controls meanwhile and reports any failure.
async function runAction(label, fn) {
  if (state.busy) return;
  const focusedBefore = document.activeElement;
  state.busy = true;
  renderControls();
  try {
    await fn();
  } catch (err) {
    showMessage('error', `${label} failed: ${describeError(err)}`, err);
  } finally {
    state.busy = false;
    renderAll();
    restoreFocus(focusedBefore);
  }
}

// Reloads GET /auth/me and GET /passkeys (after login and every passkey change).
async function refreshAccount() {
  const [me, passkeys] = await Promise.all([api('GET', '/auth/me'), api('GET', '/passkeys')]);
  state.me = me;
  state.passkeys = Array.isArray(passkeys) ? passkeys : [];
  renderAll();
}

function onSignup(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const username = $('signup-username').value.trim();
  const password = $('signup-password').value;
  const displayName = $('signup-display-name').value.trim();
  runAction('Sign up', async () => {
    const body = { username, password };
    if (displayName) body.displayName = displayName;
    const user = await api('POST', '/auth/signup', { body, auth: false });
    // Signup answers the new user, not a token: log in with the same credentials.
    const answer = await api('POST', '/auth/login', { body: { username, password }, auth: false });
    clearSession();
    acceptTokenResponse(answer);
    form.reset();
    renderAll();
    showMessage('success', `Account "${user.username}" created; you are logged in at password level.`);
    await refreshAccount();
  });
}

function onLogin(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const username = $('login-username').value.trim();
  const password = $('login-password').value;
  runAction('Log in', async () => {
    const answer = await api('POST', '/auth/login', { body: { username, password }, auth: false });
    clearSession();
    acceptTokenResponse(answer);
    form.reset();
    renderAll();
    showMessage('success', `Logged in as ${state.claims ? state.claims.username : username} (authLevel: ${answer.authLevel}).`);
    await refreshAccount();
  });
}

function onLogout() {
  clearSession();
  renderAll();
  showMessage('info', 'Logged out: the token was forgotten by this page.');
}

function onRegisterPasskey(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const nickname = $('passkey-nickname').value.trim();
  runAction('Passkey registration', async () => {
    const publicKey = publicKeyFrom(await api('GET', '/passkeys/register/options'));
    showMessage('info', 'Follow your browser\'s prompt to create a passkey…');
    const credential = await runCeremony(() => navigator.credentials.create({
      publicKey: creationOptionsFromJSON(publicKey),
    }));
    const body = credentialToJSON(credential);
    if (nickname) body.nickname = nickname;
    const summary = await api('POST', '/passkeys/register/verify', { body });
    form.reset();
    showMessage('success', `Passkey ${summary && summary.nickname ? `"${summary.nickname}" ` : ''}registered.`);
    await refreshAccount();
  });
}

function onVerifyPasskey() {
  runAction('Passkey verification', async () => {
    const publicKey = publicKeyFrom(await api('GET', '/passkeys/authenticate/options'));
    showMessage('info', 'Follow your browser\'s prompt to use your passkey…');
    const credential = await runCeremony(() => navigator.credentials.get({
      publicKey: requestOptionsFromJSON(publicKey),
    }));
    const answer = await api('POST', '/passkeys/authenticate/verify', { body: credentialToJSON(credential) });
    acceptTokenResponse(answer);
    renderAll();
    showMessage('success', `Passkey verified: token upgraded (authLevel: ${answer.authLevel}).`);
    await refreshAccount();
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
  runAction('Delete', async () => {
    await api('DELETE', `/passkeys/${encodeURIComponent(id)}`);
    showMessage('success', 'Passkey deleted.');
    await refreshAccount();
  });
}

function callProtected(path) {
  runAction(`GET ${path}`, async () => {
    const res = await request('GET', path);
    renderResult('GET', path, res);
    if (res.ok) showMessage('success', `GET ${path} answered HTTP ${res.status}.`);
    else throw new ApiError(res.status, res.body);
  });
}

// ---------------------------------------------------------------- timer & startup

// Once a second: count down, and re-render when the token crosses its expiry.
function tick() {
  if (!state.token) return;
  const expired = isExpired();
  if (expired !== state.expired) {
    state.expired = expired;
    renderAll();
    if (expired) showMessage('warning', 'Your access token has expired: log in again.');
  } else {
    renderExpiry();
  }
}

function wireEvents() {
  $('signup-form').addEventListener('submit', onSignup);
  $('login-form').addEventListener('submit', onLogin);
  $('logout').addEventListener('click', onLogout);
  $('register-form').addEventListener('submit', onRegisterPasskey);
  $('verify-passkey').addEventListener('click', onVerifyPasskey);
  $('refresh-passkeys').addEventListener('click', onRefreshPasskeys);
  $('passkey-list').addEventListener('submit', onRenameSubmit);
  $('passkey-list').addEventListener('click', onPasskeyListClick);
  $('call-basic').addEventListener('click', () => callProtected('/protected/basic'));
  $('call-full').addEventListener('click', () => callProtected('/protected/full'));
}

function showWebAuthnSupport() {
  if (webauthnAvailable) return;
  const el = $('webauthn-status');
  el.textContent = window.isSecureContext
    ? 'This browser does not support passkeys (WebAuthn): passkey buttons are disabled.'
    : 'Passkeys (WebAuthn) are unavailable: they need HTTPS or http://localhost. Passkey buttons are disabled.';
  el.hidden = false;
}

function init() {
  wireEvents();
  showWebAuthnSupport();
  const s = storage();
  const saved = s && s.getItem(TOKEN_KEY);
  if (saved) setToken(saved);
  renderAll();
  setInterval(tick, 1000);
  if (hasLiveToken()) {
    showMessage('info', 'Session restored from this tab.');
    runAction('Loading the session', refreshAccount);
  } else if (state.token) {
    showMessage('warning', 'The saved token has expired: log in again.');
  }
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
else init();
