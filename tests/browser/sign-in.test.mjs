// Passkey sign-in (API.md, "Passkey sign-in") on the demo page: "Sign in with
// a passkey" (a modal prompt), and the browser's autofill (conditional
// mediation, the login username field being autocomplete="username webauthn").
//
// What Chromium's virtual authenticator does with a conditional request (as
// found with Chromium 156, headless): it does not wait for anyone to pick a
// passkey from the autofill. Holding a discoverable credential for the site
// (and with automatic presence simulation on) it answers at once with it;
// holding none it refuses at once (NotAllowedError); with presence simulation
// off, or no authenticator at all, the request stays pending until aborted.
// So these tests can check that the page starts the request (at load and after
// logout), aborts it before a modal prompt or a password login, signs in
// with what it resolves to, and stays quiet when it is refused; what they
// cannot check is the autofill itself: the dropdown of the username field and
// a person choosing in it (headless Chromium draws no autofill UI here).
//
// The page's WebAuthn calls, their AbortSignals and its fetches are recorded
// by a script added before the page's own (instrumentation only: it calls
// through unchanged). Screenshots: screenshots/sign-in-*/.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ask, claimsOf, clickAndWait, eventually, expectText, idle, isDisabled, launchBrowser, logIn, message,
  phoneShot, registerPasskey, scenario, signUp, sleep, startServer, storedTokens, text, uniqueUsername,
  verifyPasskey,
} from './harness.mjs';

const SIGN_IN_REFUSED = 'This passkey could not sign you in: use your password, or a passkey registered for sign-in.';

// Records, in order, every navigator.credentials.get/create call (with its
// mediation), the abort of its signal, how it settled, and every fetch.
function recordWebAuthn() {
  const events = [];
  window.__webauthnEvents = events;
  const container = navigator.credentials;
  let next = 0;
  for (const kind of ['get', 'create']) {
    const original = container[kind].bind(container);
    container[kind] = (options = {}) => {
      next += 1;
      const id = next;
      events.push({ type: kind, id, mediation: options.mediation || null });
      if (options.signal) options.signal.addEventListener('abort', () => events.push({ type: 'abort', id }));
      const promise = original(options);
      promise.then(() => events.push({ type: 'settled', id, outcome: 'resolved' }),
        (err) => events.push({ type: 'settled', id, outcome: err.name }));
      return promise;
    };
  }
  const originalFetch = window.fetch.bind(window);
  window.fetch = (input, init = {}) => {
    events.push({ type: 'fetch', method: init.method || 'GET', path: new URL(String(input), location.href).pathname });
    return originalFetch(input, init);
  };
}

const events = (page) => page.evaluate(() => window.__webauthnEvents.slice());
const conditionalState = (page) => page.getAttribute('#login-form', 'data-conditional');

function waitForConditional(page, expected, what) {
  return eventually(() => conditionalState(page), (v) => v === expected,
    what || `the autofill request should be ${expected} (data-conditional)`);
}

// The conditional get calls recorded, each with the index of its abort and settling.
function conditionalCalls(log) {
  return log.map((e, index) => ({ ...e, index }))
    .filter((e) => e.type === 'get' && e.mediation === 'conditional')
    .map((call) => ({
      ...call,
      abortedAt: log.findIndex((e) => e.type === 'abort' && e.id === call.id),
      settled: log.find((e) => e.type === 'settled' && e.id === call.id) || null,
    }));
}

const passkeyItem = (page, nickname) => page.locator('#passkey-list li.passkey-item', {
  has: page.locator('.passkey-nickname', { hasText: nickname }),
});

// The "Sign-in" fact of a listed passkey.
async function signInFact(page, nickname) {
  const item = passkeyItem(page, nickname);
  const facts = await item.locator('dl dt, dl dd').allTextContents();
  const at = facts.indexOf('Sign-in');
  return { text: at >= 0 ? facts[at + 1] : null, discoverable: await item.getAttribute('data-discoverable') };
}

const setPresence = (browser, authenticatorId, enabled) => browser.cdp.send(
  'WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled },
);

// Logs out with the button; the caller says what the autofill request does next.
async function clickLogOut(page) {
  await page.click('#logout');
  await expectText(page, '#message', /^Logged out: the session was ended on the server/);
}

// The page after a passkey sign-in: full level, amr hwk, a full-level token
// and a refresh token held (no password-level one), nothing typed.
async function assertSignedInWithPasskey(page, server, username) {
  await expectText(page, '#message', /^Signed in with a passkey/);
  await idle(page);
  await expectText(page, '#auth-level', 'full');
  await expectText(page, '#claim-amr', 'hwk');
  await expectText(page, '#session-status', 'Signed in with a passkey.');
  assert.equal(await text(page, '#claim-username'), username);
  assert.equal(await text(page, '#claim-auth-level'), 'full');
  assert.equal(await text(page, '#claim-acr'), 'full');
  const m = await message(page);
  assert.equal(m.kind, 'success', `message: ${m.text}`);
  assert.equal(m.text, `Signed in with a passkey as ${username} (authLevel: full, amr: hwk).`);
  const tokens = await storedTokens(page);
  assert.ok(tokens.full, 'a full-level token is held');
  assert.ok(tokens.refresh, 'a refresh token is held');
  assert.equal(tokens.password, null, 'no password-level token (no password was used)');
  const claims = claimsOf(tokens.full);
  assert.equal(claims.authLevel, 'full');
  assert.deepEqual(claims.amr, ['hwk']);
  assert.equal(claims.username, username);
  assert.equal(await text(page, '#token-password-expiry'), 'none');
  assert.match(await text(page, '#token-full-expiry'), /^\d+:\d\d \(at /);
  // Renewed before the full-level token expires, not at once.
  assert.match(await text(page, '#token-refresh'), /^held: renews the password token in (1[0-4]|[5-9]):\d\d/);
  assert.equal(await page.inputValue('#login-username'), '', 'no username typed');
  assert.equal(await page.inputValue('#login-password'), '', 'no password typed');
  assert.equal(await page.evaluate(() => document.getElementById('account-forms').open), false,
    'the login forms fold away');
  // The server takes the token, at full level, for a session of its own.
  const full = await ask(server, 'GET', '/protected/full', { token: tokens.full });
  assert.equal(full.status, 200, full.raw);
  await expectText(page, '#me-passkey-count', /^\d+$/);
  assert.equal(await page.locator('#session-list .session-item[data-current="true"]').count(), 1, 'this session listed');
  return tokens;
}

test('passkey sign-in with a discoverable passkey: the button and the autofill', async (t) => {
  const server = await startServer();
  let browser;
  try {
    browser = await launchBrowser();
    const { page, cdp } = browser;
    await browser.context.addInitScript(recordWebAuthn);
    const authenticatorId = await browser.addAuthenticator({
      hasResidentKey: true, isUserVerified: true, automaticPresenceSimulation: true,
    });
    const verifies = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().endsWith('/passkeys/login/verify')) verifies.push(Date.now());
    });
    const { step, shot } = scenario(t, 'sign-in-discoverable', { page, server, pageErrors: browser.pageErrors });
    const username = uniqueUsername('signin');
    let firstSid = null;

    await step('page-loaded-autofill-requested', async () => {
      await page.goto(`${server.baseUrl}/`);
      assert.equal(await page.getAttribute('#login-username', 'autocomplete'), 'username webauthn');
      assert.equal(await page.evaluate(() => PublicKeyCredential.isConditionalMediationAvailable()), true,
        'headless Chromium offers conditional mediation');
      assert.ok(!(await isDisabled(page, '#passkey-signin')), 'the sign-in button is usable while logged out');
      // The authenticator holds no passkey yet: Chromium's virtual one refuses
      // the request at once, and the page says nothing about it.
      await waitForConditional(page, 'ended');
      assert.equal(await page.getAttribute('#login-form', 'data-conditional-error'), 'NotAllowedError');
      const calls = conditionalCalls(await events(page));
      assert.equal(calls.length, 1, 'one conditional request at load');
      assert.equal(calls[0].settled?.outcome, 'NotAllowedError');
      const log = await events(page);
      assert.ok(log.findIndex((e) => e.type === 'fetch' && e.path === '/passkeys/login/options') < calls[0].index,
        'its options came from GET /passkeys/login/options');
      const m = await message(page);
      assert.equal(m.text, 'Sign up or log in to begin.', 'no message about it');
      await expectText(page, '#passkey-signin-hint', /may also offer it in the username field's suggestions/);
    }, { show: '#login-form' });

    await step('signed-up-passkey-registered-discoverable', async () => {
      await signUp(page, username);
      await registerPasskey(page, 'Sign-in key');
      const fact = await signInFact(page, 'Sign-in key');
      assert.equal(fact.text, 'signs in without a username');
      assert.equal(fact.discoverable, 'true');
      const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
      assert.equal(credentials.length, 1);
      assert.equal(credentials[0].isResidentCredential, true, 'a resident (discoverable) credential was created');
      const token = (await storedTokens(page)).password;
      const list = await ask(server, 'GET', '/passkeys', { token });
      assert.equal(list.json?.[0]?.discoverable, true, list.raw);
      assert.equal(conditionalCalls(await events(page)).filter((c) => !c.settled).length, 0,
        'no autofill request while logged in');
    }, { show: '#passkeys' });

    await step('logged-out-autofill-pending', async () => {
      // Nobody "touches" the authenticator: the conditional request then stays
      // pending, as it does in a real browser until the person picks a passkey.
      await setPresence(browser, authenticatorId, false);
      const before = (await events(page)).length;
      await clickLogOut(page);
      await expectText(page, '#auth-level', 'none');
      await waitForConditional(page, 'pending', 'after logout the page starts the autofill request again');
      const calls = conditionalCalls((await events(page)).slice(before));
      assert.equal(calls.length, 1, 'one conditional request after logout');
      assert.equal(calls[0].settled, null, 'still pending');
      assert.equal((await message(page)).kind, 'info');
    }, { show: '#login-form' });

    await step('button-prompt-cancelled', async () => {
      // Presence still off: the modal prompt waits, its Cancel button under
      // the sign-in button; Escape ends it, and the autofill request comes back.
      const before = (await events(page)).length;
      await page.click('#passkey-signin');
      await page.locator('#cancel-passkey').waitFor({ state: 'visible' });
      assert.equal(await page.evaluate(() => document.getElementById('ceremony').parentElement.id), 'passkey-signin-area',
        'the prompt\'s Cancel panel is in the login form');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'cancel-passkey');
      await expectText(page, '#ceremony-status', 'Waiting for you to choose a passkey…');
      await shot('button-prompt-open', '#login-form');
      await page.keyboard.press('Escape');
      await idle(page);
      const m = await message(page);
      assert.equal(m.kind, 'warning', `message: ${m.text}`);
      assert.equal(m.text, 'Passkey prompt was cancelled: you are not signed in. Try again, or log in with your password.');
      await expectText(page, '#auth-level', 'none');
      await waitForConditional(page, 'pending', 'the autofill request starts again after the cancelled prompt');
      const log = (await events(page)).slice(before);
      const calls = conditionalCalls(log);
      assert.equal(calls.length, 1, 'a new conditional request');
      const modal = log.findIndex((e) => e.type === 'get' && e.mediation === null);
      assert.ok(modal >= 0 && calls[0].index > modal, 'started after the modal one');
      assert.ok(await page.locator('#cancel-passkey').isHidden());
      assert.equal(await page.evaluate(() => document.activeElement.id), 'passkey-signin', 'focus back on the button');
    }, { show: '#login-form' });

    await step('login-form-phone-width', async () => {
      await phoneShot(page, shot, 'login-form-phone-width-375', ['#login-form']);
    }, { screenshot: false });

    await step('password-login-aborts-autofill-first', async () => {
      const before = (await events(page)).length;
      await logIn(page, username);
      const log = (await events(page)).slice(before);
      const pending = conditionalCalls(await events(page)).find((c) => c.abortedAt >= 0 && c.settled?.outcome === 'AbortError');
      assert.ok(pending, 'the pending conditional request was aborted (AbortError)');
      const abort = log.findIndex((e) => e.type === 'abort');
      const login = log.findIndex((e) => e.type === 'fetch' && e.method === 'POST' && e.path === '/auth/login');
      assert.ok(abort >= 0 && login > abort, `aborted before POST /auth/login: ${JSON.stringify(log)}`);
      const m = await message(page);
      assert.equal(m.kind, 'success', 'its AbortError shows no error');
      await expectText(page, '#session-status', 'Logged in with a password only.');
      await setPresence(browser, authenticatorId, false);
      await clickLogOut(page);
      await waitForConditional(page, 'pending');
    });

    await step('signed-in-with-the-button', async () => {
      await setPresence(browser, authenticatorId, true);
      const before = (await events(page)).length;
      await clickAndWait(page, '#passkey-signin');
      const tokens = await assertSignedInWithPasskey(page, server, username);
      firstSid = claimsOf(tokens.full).sid;
      assert.equal(await text(page, '#claim-sid'), firstSid);
      const log = (await events(page)).slice(before);
      const abort = log.findIndex((e) => e.type === 'abort');
      const modal = log.findIndex((e) => e.type === 'get' && e.mediation === null);
      assert.ok(modal >= 0, 'a modal get (no mediation)');
      assert.ok(abort >= 0 && abort < modal, `the autofill request was aborted before the modal prompt: ${JSON.stringify(log)}`);
      const settledAbort = log.findIndex((e) => e.type === 'settled' && e.outcome === 'AbortError');
      assert.ok(settledAbort >= 0 && settledAbort < modal, 'and had let go (AbortError) before it started');
      assert.equal(log.filter((e) => e.type === 'settled' && e.outcome === 'resolved').length, 1, 'the modal one resolved');
      assert.equal(verifies.length, 1, 'one POST /passkeys/login/verify');
      assert.equal(conditionalCalls(await events(page)).filter((c) => !c.settled).length, 0, 'nothing pending now');
    }, { show: '#session' });

    await step('full-level-route-answered', async () => {
      await clickAndWait(page, '#call-full');
      await expectText(page, '#result-status', 'GET /protected/full → HTTP 200');
    }, { show: '#protected' });

    await step('logged-out-autofill-signs-in', async () => {
      // Presence simulated: the virtual authenticator answers the autofill
      // request at once with its discoverable passkey (a real browser would wait for
      // the person to pick it in the username field's suggestions), and the
      // page signs in with it, no click.
      const before = (await events(page)).length;
      await page.click('#logout'); // its "Logged out" message lasts a few milliseconds
      const tokens = await assertSignedInWithPasskey(page, server, username);
      const log = (await events(page)).slice(before);
      assert.ok(log.some((e) => e.type === 'fetch' && e.method === 'POST' && e.path === '/auth/logout'),
        'logged out first');
      assert.notEqual(claimsOf(tokens.full).sid, firstSid, 'a new session');
      const calls = conditionalCalls((await events(page)).slice(before));
      assert.equal(calls.length, 1, 'the conditional request after logout');
      assert.equal(calls[0].settled?.outcome, 'resolved');
      assert.equal(await conditionalState(page), 'resolved');
      assert.equal(verifies.length, 2);
      assert.equal((await events(page)).slice(before).filter((e) => e.type === 'get' && e.mediation === null).length, 0,
        'no modal prompt');
    }, { show: '#session' });

    await step('reloaded-logged-out-autofill-at-load', async () => {
      await setPresence(browser, authenticatorId, false);
      await clickLogOut(page);
      await waitForConditional(page, 'pending');
      await setPresence(browser, authenticatorId, true);
      await page.reload();
      await idle(page);
      await assertSignedInWithPasskey(page, server, username);
      const log = await events(page);
      const first = log.find((e) => e.type === 'get');
      assert.equal(first?.mediation, 'conditional', 'the first WebAuthn call after load is the conditional one');
      assert.equal(conditionalCalls(log)[0].settled?.outcome, 'resolved');
      assert.equal(verifies.length, 3);
    }, { show: '#session' });

    await step('session-restored-on-reload', async () => {
      const before = await storedTokens(page);
      await page.reload();
      await idle(page);
      await expectText(page, '#message', 'Session restored from this tab.');
      await expectText(page, '#auth-level', 'full');
      await expectText(page, '#session-status', 'Signed in with a passkey.');
      assert.deepEqual(await storedTokens(page), before, 'the same tokens, no refresh at once');
      assert.equal(conditionalCalls(await events(page)).length, 0, 'no autofill request while logged in');
    });

    await step('passkey-deleted-sign-in-refused', async () => {
      // The passkey goes from the account but stays on the authenticator.
      await passkeyItem(page, 'Sign-in key').locator('.delete-button').click();
      await idle(page);
      assert.match((await message(page)).text, /Passkey "Sign-in key" deleted/);
      await expectText(page, '#me-passkey-count', '0');
      await setPresence(browser, authenticatorId, false);
      await clickLogOut(page);
      await waitForConditional(page, 'pending');
      await setPresence(browser, authenticatorId, true);
      const count = verifies.length;
      await clickAndWait(page, '#passkey-signin');
      await expectText(page, '#auth-level', 'none');
      const m = await message(page);
      assert.equal(m.kind, 'error', `message: ${m.text}`);
      assert.ok(m.text.includes(SIGN_IN_REFUSED), `message: ${m.text}`);
      assert.equal(m.code, 'passkey_verification_failed');
      assert.equal(m.status, '401');
      assert.deepEqual(await storedTokens(page), { password: null, full: null, refresh: null });
      // Back to logged out after a failed prompt: the autofill request starts
      // again; the virtual authenticator answers it at once with the same
      // passkey, refused too, and the page does not try again by itself.
      await waitForConditional(page, 'held');
      await sleep(1_500);
      assert.equal(verifies.length, count + 2, 'the button\'s try, then the autofill\'s, then no more');
      assert.equal(await conditionalState(page), 'held');
      assert.ok((await message(page)).text.includes(SIGN_IN_REFUSED));
      assert.ok(!(await isDisabled(page, '#login-submit')), 'the page stays usable');
    }, { show: '#login-form' });

    await step('password-login-still-works', async () => {
      await logIn(page, username);
      await expectText(page, '#claim-amr', 'pwd');
    });

    await step('no-script-errors', async () => {
      assert.deepEqual(browser.pageErrors, [], 'no script errors or CSP violations on the page');
    }, { screenshot: false });
  } finally {
    await browser?.close();
    await server.stop();
  }
});

test('a passkey for step-up only (not discoverable) cannot sign in, but still steps up', async (t) => {
  const server = await startServer();
  let browser;
  try {
    browser = await launchBrowser();
    const { page, cdp } = browser;
    await browser.context.addInitScript(recordWebAuthn);
    const authenticatorId = await browser.addAuthenticator({
      hasResidentKey: false, isUserVerified: true, automaticPresenceSimulation: true,
    });
    const verifies = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().endsWith('/passkeys/login/verify')) verifies.push(Date.now());
    });
    const { step } = scenario(t, 'sign-in-step-up-only', { page, server, pageErrors: browser.pageErrors });
    const username = uniqueUsername('stepuponly');

    await step('registered-step-up-only', async () => {
      await page.goto(`${server.baseUrl}/`);
      await signUp(page, username);
      await registerPasskey(page, 'Old key');
      const fact = await signInFact(page, 'Old key');
      assert.equal(fact.text, 'step-up only');
      assert.equal(fact.discoverable, 'false');
      const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
      assert.equal(credentials[0].isResidentCredential, false, 'a non-resident credential');
    }, { show: '#passkeys' });

    await step('logged-out-autofill-refused-quietly', async () => {
      const before = (await events(page)).length;
      await clickLogOut(page);
      // Chromium's virtual authenticator has no discoverable passkey to offer:
      // it refuses the conditional request at once; the page shows nothing and
      // does not start it again by itself.
      await waitForConditional(page, 'ended');
      assert.equal(await page.getAttribute('#login-form', 'data-conditional-error'), 'NotAllowedError');
      await sleep(1_000);
      const calls = conditionalCalls((await events(page)).slice(before));
      assert.equal(calls.length, 1, 'started once, not again and again');
      const m = await message(page);
      assert.equal(m.kind, 'info', `the logout message stays: ${m.text}`);
      assert.match(m.text, /^Logged out/);
      await expectText(page, '#auth-level', 'none');
    }, { show: '#login-form' });

    await step('button-finds-no-passkey', async () => {
      await clickAndWait(page, '#passkey-signin');
      const m = await message(page);
      assert.equal(m.kind, 'error', `message: ${m.text}`);
      assert.match(m.text, /^Passkey sign-in failed: No passkey signed you in: .*holds no passkey for this site that signs in without a username/);
      assert.equal(m.code, 'NotAllowedError');
      assert.equal(verifies.length, 0, 'nothing to verify: the browser gave no passkey');
      await expectText(page, '#auth-level', 'none');
      assert.deepEqual(await storedTokens(page), { password: null, full: null, refresh: null });
      for (const id of ['#passkey-signin', '#login-submit', '#signup-submit']) {
        assert.ok(!(await isDisabled(page, id)), `${id} usable again`);
      }
      assert.ok(await page.locator('#cancel-passkey').isHidden(), 'no prompt left open');
    }, { show: '#login-form' });

    await step('password-login-then-step-up', async () => {
      await logIn(page, username);
      await verifyPasskey(page);
      await expectText(page, '#session-status', 'Logged in with a password and a passkey.');
      const claims = claimsOf((await storedTokens(page)).full);
      assert.deepEqual(claims.amr, ['pwd', 'hwk']);
    }, { show: '#session' });

    await step('no-script-errors', async () => {
      assert.deepEqual(browser.pageErrors, [], 'no script errors or CSP violations on the page');
    }, { screenshot: false });
  } finally {
    await browser?.close();
    await server.stop();
  }
});
